"""Every acknowledged prediction reaches the capture store, also across a graceful restart."""

from __future__ import annotations

import asyncio
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fsspec
import orjson
import pytest
from fastapi.testclient import TestClient

from app.capture import CaptureStore, CaptureUnavailable
from app.main import create_app
from governance.core.capture import FeedbackRecord, PredictionRecord
from tests.support.serving import (
    MODEL_NAME,
    AsgiDriver,
    infer_body,
    read_capture,
    sample_records,
    wait_until_ready,
)

ROOT = Path(__file__).resolve().parents[2]


def wait_for(condition, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def predictions(root: Path) -> list[dict[str, Any]]:
    return [row for row in read_capture(root) if row["kind"] == "prediction"]


# -- in-process: 10,000 requests across a restart through the lifespan ---------------------------
async def serve_requests(app: Any, bodies: list[bytes], capture: Path) -> list[str]:
    """Start the app, send every body, stop it; the rows must be written by the stop alone."""
    written_before = len(predictions(capture))
    driver = AsgiDriver(app)
    await driver.startup()
    acknowledged = []
    for body in bodies:
        status, _, answer = await driver.request("POST", "/predict", body)
        assert status == 200, answer
        acknowledged.append(orjson.loads(answer)["request_id"])
    assert len(predictions(capture)) == written_before, "flushed before shutdown: the test proves nothing"
    await driver.shutdown()
    return acknowledged


def test_ten_thousand_requests_are_ten_thousand_rows_across_a_graceful_restart(settings_for, contract):
    # Large flush thresholds: nothing is written while serving, only by the shutdown flush.
    settings = settings_for(capture_flush_rows=100_000, capture_flush_seconds=60)
    capture = Path(settings.capture_uri)
    records = sample_records(contract, 200, seed=2)
    bodies = [orjson.dumps({"records": [records[i % len(records)]]}) for i in range(10_000)]
    acknowledged = asyncio.run(serve_requests(create_app(settings), bodies[:5000], capture))
    assert len(predictions(capture)) == 5000
    acknowledged += asyncio.run(serve_requests(create_app(settings), bodies[5000:], capture))
    rows = predictions(capture)
    assert len(rows) == 10_000
    assert sorted(row["request_id"] for row in rows) == sorted(acknowledged)
    assert len({row["prediction_id"] for row in rows}) == 10_000
    assert len({path.name for path in capture.glob("date=*/*.jsonl")}) == 2, "one stream per process start"


def test_a_row_holds_features_sensitive_attribute_prediction_scores_and_lineage(
    settings_for, contract, model_file
):
    settings = settings_for()
    record = sample_records(contract, 1)[0]
    with TestClient(create_app(settings)) as client:
        answer = client.post("/predict", json={"records": [record]}).json()
    [row] = predictions(Path(settings.capture_uri))
    assert set(row) == set(PredictionRecord.model_fields)
    assert row["prediction_id"] == f"{answer['request_id']}:0"
    assert row["features"] == {name: record[name] for name in contract.feature_names}
    if contract.sensitive is not None:
        assert row["sensitive"] == {contract.sensitive.name: record[contract.sensitive.name]}
    prediction = answer["predictions"][0]
    if contract.target.is_classification:  # the answered class value; probabilities in contract order
        assert row["label"] == prediction["label"] and type(row["label"]) is type(prediction["label"])
        assert row["scores"] == [prediction["probabilities"][key] for key in contract.target.class_keys]
    else:
        assert row["label"] == prediction["value"] and row["scores"] == []
    assert row["model_version"] == model_file.parent.name
    assert datetime.fromisoformat(row["timestamp"]).tzinfo is not None


def test_every_line_the_service_writes_is_a_record_of_the_one_capture_schema(labels, settings_for, contract):
    """The lines monitoring reads are governance.core.capture records, field for field."""
    settings = settings_for()
    records = sample_records(contract, 3, seed=21)
    records[0] |= dict.fromkeys(feature.name for feature in contract.features if feature.nullable)
    with TestClient(create_app(settings)) as client:
        answer = client.post("/predict", json={"records": records}).json()
        request_id = answer["request_id"]
        infer = client.post(f"/v2/models/{MODEL_NAME}/infer", json=infer_body(contract, records[1:]))
        assert infer.status_code == 200
        feedback = [{"feedback_token": answer["predictions"][2]["feedback_token"], "label": labels[1]}]
        assert client.post("/feedback", json=feedback).status_code == 202
    schema = {"prediction": PredictionRecord, "feedback": FeedbackRecord}
    rows = read_capture(Path(settings.capture_uri))
    for row in rows:
        assert set(row) == set(schema[row["kind"]].model_fields), row
    parsed = [schema[row["kind"]].model_validate(row) for row in rows]
    predicted = [record for record in parsed if isinstance(record, PredictionRecord)]
    [label] = [record for record in parsed if isinstance(record, FeedbackRecord)]
    assert len(predicted) == 5
    assert label.prediction_id == f"{request_id}:2" and label.label == labels[1]
    assert label.prediction_id in {record.prediction_id for record in predicted}


def test_the_stream_is_partitioned_by_date_and_named_per_process(settings_for, contract):
    settings = settings_for()
    with TestClient(create_app(settings)) as client:
        client.post("/predict", json={"records": sample_records(contract, 1)})
    [stream] = list(Path(settings.capture_uri).glob("date=*/*.jsonl"))
    assert stream.parent.name == f"date={datetime.now(UTC):%Y-%m-%d}"
    assert stream.name.startswith(f"{socket.gethostname()}-{os.getpid()}-")


def test_oip_infer_calls_are_captured_with_their_features(settings_for, contract):
    settings = settings_for()
    records = sample_records(contract, 3, sensitive=False)
    with TestClient(create_app(settings)) as client:
        answer = client.post(f"/v2/models/{MODEL_NAME}/infer", json=infer_body(contract, records)).json()
    rows = sorted(predictions(Path(settings.capture_uri)), key=lambda row: row["row"])
    assert [row["request_id"] for row in rows] == [answer["parameters"]["request_id"]] * 3
    assert [row["features"] for row in rows] == records


def test_rows_are_flushed_when_the_buffer_reaches_the_size_threshold(settings_for, contract):
    settings = settings_for(capture_flush_rows=10, capture_flush_seconds=60)
    with TestClient(create_app(settings)) as client:
        for record in sample_records(contract, 10):
            client.post("/predict", json={"records": [record]})
        assert wait_for(lambda: len(predictions(Path(settings.capture_uri))) == 10)


def test_rows_are_flushed_after_the_time_threshold(settings_for, contract):
    settings = settings_for(capture_flush_rows=100_000, capture_flush_seconds=0.1)
    with TestClient(create_app(settings)) as client:
        client.post("/predict", json={"records": sample_records(contract, 1)})
        assert wait_for(lambda: len(predictions(Path(settings.capture_uri))) == 1)


# -- the store itself -------------------------------------------------------------------------------------
def store(uri: str, **options: Any) -> CaptureStore:
    return CaptureStore(uri, ["x"], "group", **options)


def test_an_object_store_gets_one_new_object_per_flush_never_a_rewrite():
    uri = f"memory://capture-{uuid.uuid4().hex}"
    capture = store(uri, flush_seconds=60)
    capture.start()
    capture.record_predictions("a", time.time(), "m", "v", [{"x": 1, "group": "g"}], [1], [[0.2, 0.8]])
    capture.flush()
    capture.record_predictions("b", time.time(), "m", "v", {"x": [2, 3]}, [0, 1], [[0.9, 0.1], [0.4, 0.6]])
    capture.close()
    fs = fsspec.filesystem("memory")
    objects = sorted(fs.glob(f"{uri.removeprefix('memory://')}/date=*/*.jsonl"))
    assert len(objects) == 2
    rows = [orjson.loads(line) for path in objects for line in fs.cat_file(path).splitlines()]
    assert [(row["prediction_id"], row["features"], row["sensitive"]) for row in rows] == [
        ("a:0", {"x": 1}, {"group": "g"}),
        ("b:0", {"x": 2}, {}),
        ("b:1", {"x": 3}, {}),
    ]


def test_rows_go_to_the_partition_of_their_own_date(tmp_path):
    capture = store(str(tmp_path))
    capture.start()
    for stamp in ("2024-01-01T23:59:59+00:00", "2024-01-02T00:00:01+00:00"):
        moment = datetime.fromisoformat(stamp).timestamp()
        capture.record_predictions(stamp, moment, "m", "v", [{"x": 1}], [0], [[1.0, 0.0]])
    capture.record_feedback(datetime.fromisoformat("2024-01-03T08:00:00+00:00").timestamp(), [("r", 0, 1)])
    capture.close()
    assert sorted(path.parent.name for path in tmp_path.glob("date=*/*.jsonl")) == [
        "date=2024-01-01",
        "date=2024-01-02",
        "date=2024-01-03",
    ]


def test_a_failing_store_keeps_the_rows_retries_and_stops_acknowledging_when_full(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the capture folder should be")
    capture = store(str(blocker / "capture"), max_buffer_rows=3, flush_seconds=60)
    capture.start()
    for name in "abc":
        capture.record_predictions(name, time.time(), "m", "v", [{"x": 1}], [0], [[1.0, 0.0]])
    assert capture.flush() == 0
    assert capture.write_errors == 1
    assert not capture.available
    with pytest.raises(CaptureUnavailable, match="buffer full"):
        capture.record_predictions("d", time.time(), "m", "v", [{"x": 1}], [0], [[1.0, 0.0]])
    blocker.unlink()
    assert capture.flush() == 3
    assert capture.available
    capture.close()
    assert len(read_capture(blocker / "capture")) == 3


def test_the_service_answers_503_and_turns_unready_while_capture_cannot_keep_up(
    settings_for, tmp_path, contract
):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    settings = settings_for(
        capture_uri=str(blocker / "capture"), capture_max_buffer_rows=2, capture_flush_rows=1
    )
    with TestClient(create_app(settings)) as client:
        statuses = [
            client.post("/predict", json={"records": sample_records(contract, 1)}).status_code
            for _ in range(3)
        ]
        ready = client.get("/v2/health/ready")
    assert statuses == [200, 200, 503]
    assert ready.status_code == 503
    assert "capture" in ready.json()["error"]


# -- a real server process, stopped with SIGTERM while under load -------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(model_file: Path, contract_path: Path, capture: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = os.environ | {
        "PORT": str(port),
        "MODEL_PATH": str(model_file),
        "CONTRACT_PATH": str(contract_path),
        "CAPTURE_URI": str(capture),
        "CAPTURE_FLUSH_ROWS": "100000",
        "CAPTURE_FLUSH_SECONDS": "60",
        "ORT_INTRA_OP_THREADS": "1",
        "LOG_LEVEL": "warning",
    }
    server = subprocess.Popen([sys.executable, "-m", "app"], cwd=ROOT, env=env, stderr=subprocess.PIPE)
    wait_until_ready(server, port, lambda: server.stderr.read().decode() if server.stderr else "")
    return server, port


def load(port: int, bodies: list[bytes], acknowledged: list[str], lock: threading.Lock) -> None:
    """One keep-alive client: send until the server goes away or the bodies run out."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for body in bodies:
        try:
            connection.request("POST", "/predict", body, {"content-type": "application/json"})
            response = connection.getresponse()
            answer = response.read()
        except (OSError, http.client.HTTPException):
            break
        if response.status == 200:
            with lock:
                acknowledged.append(orjson.loads(answer)["request_id"])
        elif response.status != 503:
            raise AssertionError(f"unexpected {response.status}: {answer[:200]!r}")
    connection.close()


def run_phase(
    model_file: Path,
    contract_path: Path,
    capture: Path,
    bodies: list[bytes],
    acknowledged: list[str],
    sigterm_at: int,
) -> None:
    """Serve 4 clients; SIGTERM the server once `sigterm_at` answers are in, while they still send."""
    server, port = start_server(model_file, contract_path, capture)
    lock = threading.Lock()
    clients = [threading.Thread(target=load, args=(port, bodies[i::4], acknowledged, lock)) for i in range(4)]
    for client in clients:
        client.start()
    assert wait_for(lambda: len(acknowledged) >= sigterm_at, seconds=60)
    server.send_signal(signal.SIGTERM)
    for client in clients:
        client.join(timeout=30)
    _, errors = server.communicate(timeout=30)
    assert server.returncode in (0, -signal.SIGTERM), errors.decode()  # uvicorn re-raises the signal


@pytest.mark.slow
def test_sigterm_under_load_loses_no_acknowledged_prediction(model_file, contract_path, tmp_path, contract):
    """The real signal path: uvicorn stops taking requests, answers those in flight, then
    runs the lifespan shutdown that flushes the store. Two server processes in a row."""
    capture = tmp_path / "capture"
    records = sample_records(contract, 100, seed=4)
    bodies = [orjson.dumps({"records": [records[i % 100]]}) for i in range(8000)]
    acknowledged: list[str] = []
    run_phase(model_file, contract_path, capture, bodies[:4000], acknowledged, sigterm_at=1500)
    assert len(acknowledged) < 4000, "the clients should still have been sending at SIGTERM"
    run_phase(model_file, contract_path, capture, bodies[4000:], acknowledged, sigterm_at=3000)
    stored = [row["request_id"] for row in predictions(capture)]
    assert len(stored) == len(set(stored)), "no row is written twice"
    missing = set(acknowledged) - set(stored)
    assert not missing, f"{len(missing)} acknowledged predictions are missing from the store"
    assert len(stored) == len(acknowledged), "every stored row was acknowledged"
    assert len({path.name for path in capture.glob("date=*/*.jsonl")}) == 2, "one stream per process"
