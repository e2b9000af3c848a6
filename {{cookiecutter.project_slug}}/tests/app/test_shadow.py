"""Shadow scoring: a challenger (SHADOW_MODEL_PATH) answers every request too, and no client can tell.

The clients' answers must be the same with the challenger on or off, over /predict, OIP REST
and OIP gRPC; a challenger that fails, or blocks, changes no answer and delays none; the queue
in front of it stays bounded; and the capture holds the champion's and the challenger's answers
under one prediction id, each with its model version.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import onnx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from app import grpc_predict_v2_pb2_grpc as pb_grpc
from app import grpc_server
from app.main import create_app
from app.model import ModelError
from governance.core.capture import ShadowRecord
from governance.core.contract import Contract
from tests.app.test_grpc import free_port, typed_outputs, typed_request
from tests.support.serving import (
    MODEL_NAME,
    assert_answers,
    build_model,
    infer_body,
    onnx_answers,
    read_capture,
    sample_records,
    scored,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def challenger_file(tmp_path_factory: pytest.TempPathFactory, contract: Contract) -> Path:
    """Another model of the same contract (other training rows), so its answers differ from the champion's."""
    path, _ = build_model(tmp_path_factory.mktemp("challenger"), contract, rows=600, seed=11)
    return path


def version_of(model_file: Path) -> str:
    return {prop.key: prop.value for prop in onnx.load(str(model_file)).metadata_props}["version"]


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the /metrics samples named `name` whose labels include `labels`."""
    found = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    ]
    assert found, f"no {name} {labels} in /metrics"
    return sum(found)


@contextmanager
def serving(settings: Any) -> Iterator[tuple[TestClient, pb_grpc.GRPCInferenceServiceStub, Any]]:
    """A started app with its gRPC server on the same Service: (REST client, gRPC stub, app)."""
    app = create_app(settings)
    with TestClient(app) as rest:
        server = rest.portal.call(grpc_server.start, app.service, settings)
        try:
            with grpc.insecure_channel(f"127.0.0.1:{settings.grpc_port}") as channel:
                yield rest, pb_grpc.GRPCInferenceServiceStub(channel), app
        finally:
            rest.portal.call(server.stop, None)


class Blocking:
    """A challenger's scorer that waits until released: a challenger as slow as it gets."""

    def __init__(self, scorer: Any) -> None:
        self.scorer = scorer
        self.entered = threading.Event()
        self.release = threading.Event()

    def score(self, feeds: Any) -> Any:
        self.entered.set()
        self.release.wait(30)
        return self.scorer.score(feeds)


class Slow:
    """A challenger's scorer that takes `seconds` per request."""

    def __init__(self, scorer: Any, seconds: float) -> None:
        self.scorer, self.seconds = scorer, seconds

    def score(self, feeds: Any) -> Any:
        time.sleep(self.seconds)
        return self.scorer.score(feeds)


class Failing:
    """A challenger's scorer that raises, as a broken model or runtime would."""

    def score(self, feeds: Any) -> Any:
        raise RuntimeError("challenger exploded")


def replace_challenger_scorer(app: Any, scorer: Any) -> None:
    shadow = app.service.shadow
    shadow.model = dataclasses.replace(shadow.model, scorer=scorer)


def answers_of(
    rest: TestClient, stub: Any, contract: Contract, records: list[dict[str, Any]]
) -> dict[str, Any]:
    """What a client sees from each transport, without what is unique per request (ids, tokens)."""
    predicted = rest.post("/predict", json={"records": records})
    assert predicted.status_code == 200, predicted.text
    body = predicted.json()
    inferred = rest.post(f"/v2/models/{MODEL_NAME}/infer", json=infer_body(contract, records))
    assert inferred.status_code == 200, inferred.text
    oip = inferred.json()
    del oip["parameters"]  # request id and feedback tokens
    answer = stub.ModelInfer(typed_request(contract, records))
    return {
        "predict": {**body, "predictions": scored(body["predictions"]), "request_id": None},
        "oip_rest": oip,
        "oip_grpc": (answer.model_name, answer.model_version, typed_outputs(answer)),
        "metadata": rest.get(f"/v2/models/{MODEL_NAME}").json(),
    }


# -- what clients see ----------------------------------------------------------------------------
def test_answers_are_identical_with_the_challenger_on_or_off(
    settings_for: Any, contract: Contract, challenger_file: Path
) -> None:
    batches = [sample_records(contract, 1, seed=3), sample_records(contract, 25, seed=4)]
    seen = {}
    for shadow in (None, challenger_file.parent):
        with serving(settings_for(grpc_port=free_port(), shadow_model_path=shadow)) as (rest, stub, app):
            assert (app.service.shadow is not None) == (shadow is not None)
            seen[shadow] = [answers_of(rest, stub, contract, records) for records in batches]
    off, on = seen.values()
    assert on == off
    assert off[0]["metadata"]["versions"] != [version_of(challenger_file)]  # the challenger is not served


def test_capture_holds_both_answers_under_one_prediction_id(
    settings_for: Any, contract: Contract, model_file: Path, challenger_file: Path, tmp_path: Path
) -> None:
    """Requests of 1, 5, 3 and 2 rows; the last three wait together and are scored in one challenger call."""
    batches = [sample_records(contract, rows, seed=rows) for rows in (1, 5, 3, 2)]
    app = create_app(settings_for(shadow_model_path=challenger_file.parent))
    with TestClient(app) as rest:
        blocking = Blocking(app.service.shadow.model.scorer)
        replace_challenger_scorer(app, blocking)
        sent = {}
        for records in batches:
            answer = rest.post("/predict", json={"records": records}).json()
            sent[answer["request_id"]] = records
            assert blocking.entered.wait(10)
        blocking.release.set()
    # the lifespan's shutdown let the challenger finish before capture closed
    lines = read_capture(tmp_path / "capture")
    champion = {line["prediction_id"]: line for line in lines if line["kind"] == "prediction"}
    shadow = [ShadowRecord.model_validate(line) for line in lines if line["kind"] == "shadow"]
    assert sorted(record.prediction_id for record in shadow) == sorted(champion) and len(shadow) == 11
    assert {line["model_version"] for line in champion.values()} == {version_of(model_file)}
    assert {record.model_version for record in shadow} == {version_of(challenger_file)}
    assert {record.champion_version for record in shadow} == {version_of(model_file)}
    for request_id, records in sent.items():
        expected = onnx_answers(challenger_file, contract, records)
        rows = sorted((record for record in shadow if record.request_id == request_id), key=lambda r: r.row)
        as_answers = [
            {"value": record.label}
            if not contract.target.is_classification
            else {
                "label": record.label,
                "probabilities": dict(zip(expected[0]["probabilities"], record.scores, strict=True)),
            }
            for record in rows
        ]
        assert_answers(as_answers, expected)  # each request got its own rows back from the shared call
        assert all(record.latency_ms > 0 and record.champion_latency_ms > 0 for record in rows)


def test_metrics_are_per_model(
    settings_for: Any, contract: Contract, model_file: Path, challenger_file: Path
) -> None:
    app = create_app(settings_for(shadow_model_path=challenger_file.parent, shadow_drain_seconds=5))
    with TestClient(app) as rest:
        rest.post("/predict", json={"records": sample_records(contract, 3, seed=1)})
        app.service.stop()  # drains the queue, so the challenger's figures are in
        text = rest.get("/metrics").text
    for role, model in (("champion", model_file), ("challenger", challenger_file)):
        version = version_of(model)
        assert metric(text, "model_inference_seconds_count", role=role, model_version=version) == 1
        assert metric(text, "model_inference_rows_total", role=role, model_version=version) == 3
    info = metric(text, "shadow_model_info", model_name=MODEL_NAME, model_version=version_of(challenger_file))
    assert info == 1


# -- a challenger that misbehaves ---------------------------------------------------------------
def test_a_failing_challenger_changes_no_answer_and_is_counted_and_logged_once(
    settings_for: Any,
    contract: Contract,
    model_file: Path,
    challenger_file: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    records = sample_records(contract, 4, seed=5)
    app = create_app(settings_for(shadow_model_path=challenger_file.parent))
    with TestClient(app) as rest:
        replace_challenger_scorer(app, Failing())
        with caplog.at_level(logging.ERROR, logger="app.shadow"):
            for _ in range(20):
                answer = rest.post("/predict", json={"records": records})
                assert answer.status_code == 200
                assert_answers(answer.json()["predictions"], onnx_answers(model_file, contract, records))
            app.service.shadow.close(5)
        text = rest.get("/metrics").text
    assert metric(text, "shadow_errors_total") == 20
    failures = [record for record in caplog.records if "challenger exploded" in record.getMessage()]
    assert len(failures) == 1  # rate-limited: one line, not one per request


def test_a_blocked_challenger_delays_no_answer_and_the_queue_stays_bounded(
    settings_for: Any, contract: Contract, model_file: Path, challenger_file: Path
) -> None:
    records = sample_records(contract, 2, seed=6)
    app = create_app(settings_for(shadow_model_path=challenger_file.parent, shadow_queue_size=2))
    with TestClient(app) as rest:
        blocking = Blocking(app.service.shadow.model.scorer)
        replace_challenger_scorer(app, blocking)
        assert rest.post("/predict", json={"records": records}).status_code == 200
        assert blocking.entered.wait(10), "the challenger never got the first request"
        # The challenger holds the first request: two more fill the queue, the rest are dropped,
        # and every one of them is answered while the challenger is still blocked.
        for _ in range(5):
            answer = rest.post("/predict", json={"records": records})
            assert answer.status_code == 200
            assert_answers(answer.json()["predictions"], onnx_answers(model_file, contract, records))
        assert not blocking.release.is_set()
        text = rest.get("/metrics").text
        assert metric(text, "shadow_dropped_total", reason="queue_full") == 3
        assert metric(text, "shadow_queue_depth") == 2
        blocking.release.set()


def test_shutdown_drains_the_queue_within_its_bound(
    settings_for: Any, contract: Contract, challenger_file: Path, tmp_path: Path
) -> None:
    records = sample_records(contract, 1, seed=9)
    app = create_app(settings_for(shadow_model_path=challenger_file.parent, shadow_drain_seconds=10))
    with TestClient(app) as rest:
        replace_challenger_scorer(app, Slow(app.service.shadow.model.scorer, 0.05))
        ids = {rest.post("/predict", json={"records": records}).json()["request_id"] for _ in range(6)}
    shadow_ids = {
        line["request_id"] for line in read_capture(tmp_path / "capture") if line["kind"] == "shadow"
    }
    assert shadow_ids == ids  # every queued request was scored and captured before capture closed


def test_shutdown_gives_up_on_a_stuck_challenger_after_the_bound(
    settings_for: Any, contract: Contract, challenger_file: Path, tmp_path: Path
) -> None:
    records = sample_records(contract, 1, seed=9)
    app = create_app(settings_for(shadow_model_path=challenger_file.parent, shadow_drain_seconds=0.2))
    rest = TestClient(app)
    rest.__enter__()
    blocking = Blocking(app.service.shadow.model.scorer)
    replace_challenger_scorer(app, blocking)
    assert rest.post("/predict", json={"records": records}).status_code == 200
    assert blocking.entered.wait(10)
    for _ in range(3):
        assert rest.post("/predict", json={"records": records}).status_code == 200
    stopping = threading.Thread(target=rest.__exit__, args=(None, None, None))
    stopping.start()
    stopping.join(20)
    try:
        assert not stopping.is_alive(), "shutdown waited for a stuck challenger"
        assert app.service.shadow.dropped["shutdown"] == 3  # the queued ones; the stuck one is in flight
        predictions = [line for line in read_capture(tmp_path / "capture") if line["kind"] == "prediction"]
        assert len(predictions) == 4  # the champion's rows were all written
    finally:
        blocking.release.set()


# -- start-up and settings ----------------------------------------------------------------------
def relabelled(model_file: Path, folder: Path, **props: str) -> Path:
    """A copy of the model whose metadata claims other values (task, classes) than the contract's."""
    model = onnx.load(str(model_file))
    current = {prop.key: prop.value for prop in model.metadata_props}
    onnx.helper.set_model_props(model, current | props)
    path = folder / "model.onnx"
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(
    "props", [{"classes": '["x", "y", "z"]'}, {"task": "some_other_task"}], ids=["classes", "task"]
)
def test_a_challenger_of_another_contract_is_refused_at_start(
    settings_for: Any, model_file: Path, tmp_path: Path, props: dict[str, str]
) -> None:
    challenger = relabelled(model_file, tmp_path / "wrong", **props)
    refused = f"SHADOW_MODEL_PATH={challenger.parent}: challenger refused: .*{next(iter(props))}"
    with pytest.raises(ModelError, match=refused):
        create_app(settings_for(shadow_model_path=challenger.parent))


def test_python_m_app_exits_with_the_reason_when_the_challenger_is_refused(
    model_file: Path, contract_path: Path, tmp_path: Path, feedback_key_file: Path
) -> None:
    challenger = relabelled(model_file, tmp_path / "wrong", classes='["x", "y", "z"]')
    env = {
        "PATH": "/usr/bin:/bin",
        "MODEL_PATH": str(model_file),
        "SHADOW_MODEL_PATH": str(challenger.parent),
        "CONTRACT_PATH": str(contract_path),
        "CAPTURE_URI": str(tmp_path / "capture"),
        "FEEDBACK_KEY_FILE": str(feedback_key_file),
        "PORT": str(free_port()),
        "GRPC_PORT": "",
    }
    done = subprocess.run(
        [sys.executable, "-m", "app"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()  # one line, no traceback
    assert (
        line.startswith("cannot start: SHADOW_MODEL_PATH=")
        and "challenger refused" in line
        and "classes" in line
    )


def test_shadow_settings(settings_for: Any) -> None:
    assert settings_for(shadow_model_path="").shadow_model_path is None  # SHADOW_MODEL_PATH= means off
    with pytest.raises(ValidationError, match="shadow_queue_size"):
        settings_for(shadow_queue_size=0)
    assert json.loads(settings_for().model_dump_json())["shadow_queue_size"] >= 1
