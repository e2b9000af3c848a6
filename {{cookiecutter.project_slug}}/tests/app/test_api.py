"""The service's API: Open Inference Protocol v2, /predict, /feedback, /metrics, readiness."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from governance.core import encoding
from tests.support.serving import (
    MODEL_NAME,
    assert_answers,
    infer_body,
    onnx_answers,
    read_capture,
    sample_records,
    scored,
    served_outputs,
    true_labels,
)


# -- Open Inference Protocol: health and metadata ---------------------------------------------
def test_liveness_and_readiness_answer_200_when_the_model_is_loaded(client):
    assert client.get("/v2/health/live").status_code == 200
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True}


def test_server_metadata_names_the_server(client):
    body = client.get("/v2").json()
    assert set(body) == {"name", "version", "extensions"}
    assert isinstance(body["extensions"], list)


def test_model_metadata_lists_one_input_per_contract_feature(client, contract):
    body = client.get(f"/v2/models/{MODEL_NAME}").json()
    assert body["name"] == MODEL_NAME
    assert body["platform"] == "onnxruntime_onnx"
    assert len(body["versions"]) == 1
    inputs = {tensor["name"]: tensor for tensor in body["inputs"]}
    assert list(inputs) == contract.feature_names
    for feature in contract.features:
        assert inputs[feature.name]["datatype"] == ("FP32" if feature.is_numeric else "BYTES")
        assert inputs[feature.name]["shape"] == [-1, 1]
    # What the service answers, per task: class values typed by the contract + probabilities, or values.
    assert {tensor["name"]: tensor for tensor in body["outputs"]} == served_outputs(contract)


def test_model_metadata_and_readiness_under_the_versions_path(client):
    version = client.get(f"/v2/models/{MODEL_NAME}").json()["versions"][0]
    assert client.get(f"/v2/models/{MODEL_NAME}/versions/{version}").status_code == 200
    assert client.get(f"/v2/models/{MODEL_NAME}/ready").status_code == 200
    assert client.get(f"/v2/models/{MODEL_NAME}/versions/{version}/ready").status_code == 200


@pytest.mark.parametrize(
    "path",
    ["/v2/models/nope", "/v2/models/nope/ready", f"/v2/models/{MODEL_NAME}/versions/0-unknown/ready"],
)
def test_an_unknown_model_or_version_is_404_with_an_error(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert "error" in response.json()


# -- scoring ------------------------------------------------------------------------------------
def test_predict_answers_label_probabilities_version_and_request_id(client, contract, model_file):
    records = sample_records(contract, 1)
    response = client.post("/predict", json={"records": records})
    assert response.status_code == 200
    body = response.json()
    assert body["model_name"] == MODEL_NAME
    assert body["model_version"] == model_file.parent.name
    assert response.headers["x-request-id"] == body["request_id"]
    [prediction] = body["predictions"]
    assert prediction["feedback_token"]
    assert_answers(body["predictions"], onnx_answers(model_file, contract, records))
    if contract.target.is_classification:
        assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_a_batch_is_scored_row_by_row_in_order(client, contract, model_file):
    records = sample_records(contract, 100, seed=3)
    body = client.post("/predict", json={"records": records}).json()
    assert_answers(body["predictions"], onnx_answers(model_file, contract, records))
    if contract.target.is_classification:  # the label is the most probable class
        keys = contract.target.class_keys
        for prediction in body["predictions"]:
            top = max(prediction["probabilities"], key=prediction["probabilities"].get)
            assert prediction["label"] == contract.target.classes[keys.index(top)]


def test_both_scoring_routes_feed_the_model_through_the_ground_encoder(client, contract, monkeypatch):
    """Serving encodes with governance.core.encoding, as training, parity and re-scoring do."""
    original = encoding.encode_column
    encoded: list[tuple[str, int]] = []

    def spy(feature, values):
        encoded.append((feature.name, len(values)))
        return original(feature, values)

    monkeypatch.setattr(encoding, "encode_column", spy)
    records = sample_records(contract, 3, seed=13)
    for route, body, rows in (
        ("/predict", {"records": records}, 3),
        ("/predict", {"records": records[:1]}, 1),  # the single-row fast path
        (f"/v2/models/{MODEL_NAME}/infer", infer_body(contract, records[:2]), 2),
    ):
        encoded.clear()
        assert client.post(route, json=body).status_code == 200
        assert encoded == [(name, rows) for name in contract.feature_names], route


def test_null_in_a_nullable_feature_is_scored_as_missing(client, contract):
    nullable = [feature.name for feature in contract.features if feature.nullable]
    if not nullable:
        pytest.skip("the contract has no nullable feature")
    record = sample_records(contract, 1)[0] | dict.fromkeys(nullable)
    assert client.post("/predict", json={"records": [record]}).status_code == 200


def test_the_sensitive_attribute_is_accepted_but_not_scored(client, contract):
    if contract.sensitive is None:
        pytest.skip("the contract has no sensitive attribute")
    record = sample_records(contract, 1, sensitive=False)[0]
    name = contract.sensitive.name
    answers = {
        category: scored(
            client.post("/predict", json={"records": [record | {name: category}]}).json()["predictions"]
        )
        for category in contract.sensitive.categories
    }
    without = scored(client.post("/predict", json={"records": [record]}).json()["predictions"])
    assert all(answer == without for answer in answers.values())


def test_oip_infer_echoes_the_id_and_answers_label_and_probabilities(client, contract):
    records = sample_records(contract, 3, seed=5)
    response = client.post(f"/v2/models/{MODEL_NAME}/infer", json=infer_body(contract, records, "abc-1"))
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == "abc-1"
    assert body["model_name"] == MODEL_NAME
    assert body["parameters"]["request_id"] == response.headers["x-request-id"]
    outputs = {tensor["name"]: tensor for tensor in body["outputs"]}
    declared = served_outputs(contract)
    assert list(outputs) == list(declared)
    for name, tensor in outputs.items():  # as the model metadata declares it, with the batch's rows
        assert tensor["datatype"] == declared[name]["datatype"]
        assert tensor["shape"] == [3, *declared[name]["shape"][1:]]
    predicted = client.post("/predict", json={"records": records}).json()["predictions"]
    if "value" in outputs:
        assert outputs["value"]["data"] == pytest.approx([p["value"] for p in predicted], rel=1e-6)
        return
    assert outputs["label"]["data"] == [prediction["label"] for prediction in predicted]
    classes = len(contract.target.classes)
    assert len(outputs["probabilities"]["data"]) == 3 * classes
    rows = [outputs["probabilities"]["data"][row * classes : (row + 1) * classes] for row in range(3)]
    assert rows == [pytest.approx(list(p["probabilities"].values()), abs=1e-6) for p in predicted]


def test_oip_infer_accepts_flat_shapes_the_versions_path_and_an_output_selection(client, contract):
    body = infer_body(contract, sample_records(contract, 2), request_id=None)
    for tensor in body["inputs"]:
        tensor["shape"] = [2]
    first = next(iter(served_outputs(contract)))
    body["outputs"] = [{"name": first}]
    version = client.get(f"/v2/models/{MODEL_NAME}").json()["versions"][0]
    response = client.post(f"/v2/models/{MODEL_NAME}/versions/{version}/infer", json=body)
    assert response.status_code == 200
    assert "id" not in response.json()
    assert [tensor["name"] for tensor in response.json()["outputs"]] == [first]


def test_unseen_categories_are_scored_when_the_setting_says_score(settings_for, contract):
    feature = contract.categorical[0]
    record = sample_records(contract, 1)[0] | {feature.name: "never-seen-before"}
    with TestClient(create_app(settings_for(unknown_category="score"))) as client:
        response = client.post("/predict", json={"records": [record]})
    assert response.status_code == 200


def test_a_large_body_is_scored_in_a_worker_thread_with_the_same_answer(settings_for, contract):
    records = sample_records(contract, 50, seed=9)
    answers = []
    for inline in (1_000_000, 0):
        with TestClient(create_app(settings_for(inline_body_bytes=inline))) as client:
            answers.append(scored(client.post("/predict", json={"records": records}).json()["predictions"]))
    assert answers[0] == answers[1]


def test_the_fast_routes_and_the_framework_routes_answer_alike(settings_for, contract):
    """The raw-ASGI fast path and the FastAPI routes share handlers; their answers match."""
    records = sample_records(contract, 4, seed=11)
    app = create_app(settings_for())
    with TestClient(app) as fast:
        framework = TestClient(app.api)  # the FastAPI app alone; the service is already started
        for path, body in (("/predict", {"records": records}), ("/predict", {"records": []})):
            one, two = fast.post(path, json=body), framework.post(path, json=body)
            assert one.status_code == two.status_code
            one_body, two_body = one.json(), two.json()
            for answer in (one_body, two_body):
                answer.pop("request_id", None)
                if "predictions" in answer:
                    answer["predictions"] = scored(answer["predictions"])
            assert one_body == two_body
        infer = infer_body(contract, records)
        one = fast.post(f"/v2/models/{MODEL_NAME}/infer", json=infer).json()
        two = framework.post(f"/v2/models/{MODEL_NAME}/infer", json=infer).json()
        assert one["outputs"] == two["outputs"]
        assert (
            framework.post("/predict", content=b"{", headers={"content-type": "text/plain"}).status_code
            == 415
        )


# -- feedback, metrics, OpenAPI ----------------------------------------------------------------------
def test_feedback_records_labels_against_the_prediction(settings_for, contract, tmp_path):
    settings = settings_for()
    with TestClient(create_app(settings)) as client:
        answer = client.post("/predict", json={"records": sample_records(contract, 2)}).json()
        request_id = answer["request_id"]
        first, second = (prediction["feedback_token"] for prediction in answer["predictions"])
        one, two = true_labels(contract, 2)
        single = client.post("/feedback", json={"feedback_token": first, "label": one})
        several = client.post("/feedback", json=[{"feedback_token": second, "label": two}])
    assert single.status_code == 202 and single.json() == {"recorded": 1}
    assert several.status_code == 202
    feedback = [row for row in read_capture(Path(settings.capture_uri)) if row["kind"] == "feedback"]
    assert {(row["prediction_id"], row["label"]) for row in feedback} == {
        (f"{request_id}:0", one),
        (f"{request_id}:1", two),
    }


def test_metrics_count_requests_predicted_classes_scores_and_the_model_version(client, contract, model_file):
    client.post("/predict", json={"records": sample_records(contract, 5)})
    client.post("/predict", json={"records": []})
    text = client.get("/metrics").text
    assert 'http_requests_total{method="POST",route="/predict",status="200"} 1.0' in text
    assert 'http_requests_total{method="POST",route="/predict",status="422"} 1.0' in text
    assert 'http_request_duration_seconds_count{route="/predict"} 2.0' in text
    if contract.target.is_classification:
        counted = {
            line.split('"')[1]: float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith("model_predictions_total")
        }
        assert list(counted) == list(contract.target.class_keys) and sum(counted.values()) == 5
        assert "model_score_count 5.0" in text
    else:
        assert "model_value_count 5.0" in text
    assert f'model_version="{model_file.parent.name}"' in text
    assert "model_ready 1.0" in text
    assert "capture_buffered_rows" in text


def test_metrics_route_labels_stay_bounded(client):
    for name in ("a", "b", "c"):
        client.get(f"/v2/models/{name}")
    client.get("/no/such/path")
    text = client.get("/metrics").text
    assert 'route="/v2/models/{name}"' in text
    assert 'route="other"' in text
    assert 'route="/v2/models/a"' not in text


def test_the_openapi_schema_shows_every_record_field_from_the_contract(client, contract):
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    record = body["properties"]["records"]["items"]
    assert record["required"] == contract.feature_names
    assert record["additionalProperties"] is False
    for feature in contract.features:
        field = record["properties"][feature.name]
        field = field["anyOf"][0] if feature.nullable else field
        if feature.is_numeric:
            assert field["minimum"] == feature.min and field["maximum"] == feature.max
        else:
            assert field["enum"] == list(feature.categories)
    assert "/v2/models/{name}/infer" in schema["paths"]


# -- a model that cannot be served --------------------------------------------------------------------
def assert_not_ready_but_alive(client: TestClient, reason: str) -> None:
    assert client.get("/v2/health/live").status_code == 200
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 503
    assert reason in ready.json()["error"]
    predict = client.post("/predict", json={"records": [{}]})
    assert predict.status_code == 503 and "error" in predict.json()
    infer = client.post(f"/v2/models/{MODEL_NAME}/infer", json={"inputs": []})
    assert infer.status_code == 503 and "error" in infer.json()
    assert client.get(f"/v2/models/{MODEL_NAME}/ready").status_code == 503


def model_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno >= logging.ERROR and record.name == "app"]


def test_a_missing_model_keeps_the_service_up_but_not_ready_with_one_log_line(settings_for, tmp_path, caplog):
    with TestClient(create_app(settings_for(model_path=tmp_path / "nowhere" / "model.onnx"))) as client:
        assert_not_ready_but_alive(client, "no model at")
    assert len(model_errors(caplog)) == 1


def test_a_corrupt_model_keeps_the_service_up_but_not_ready_with_one_log_line(settings_for, tmp_path, caplog):
    broken = tmp_path / "model.onnx"
    broken.write_bytes(b"this is not an onnx model")
    with TestClient(create_app(settings_for(model_path=broken))) as client:
        assert_not_ready_but_alive(client, "cannot be loaded")
    [line] = model_errors(caplog)
    assert str(broken) in line.getMessage()


def test_a_model_trained_under_another_contract_is_refused_in_production_only(
    settings_for, tmp_path, model_file
):
    import onnx

    model = onnx.load(str(model_file))
    properties = {entry.key: entry.value for entry in model.metadata_props}
    onnx.helper.set_model_props(model, properties | {"contract_sha256": "0" * 64})
    other = tmp_path / "other.onnx"
    onnx.save(model, str(other))
    with TestClient(create_app(settings_for(model_path=other))) as client:
        assert_not_ready_but_alive(client, "contract")
    with TestClient(create_app(settings_for(model_path=other, app_env="development"))) as client:
        assert client.get("/v2/health/ready").status_code == 200


def test_a_model_whose_inputs_differ_from_the_contract_is_refused(settings_for, tmp_path, model_file):
    import onnx

    model = onnx.load(str(model_file))
    renamed = model.graph.input[0].name
    for node in model.graph.node:
        node.input[:] = ["renamed" if name == renamed else name for name in node.input]
    model.graph.input[0].name = "renamed"
    broken = tmp_path / "renamed.onnx"
    onnx.save(model, str(broken))
    with TestClient(create_app(settings_for(model_path=broken, app_env="development"))) as client:
        assert_not_ready_but_alive(client, "differ from the contract features")


def test_the_model_path_may_be_the_file_the_version_folder_or_the_latest_pointer(settings_for, model_file):
    latest = model_file.parent.parent / "latest"
    for path in (model_file, model_file.parent, latest, latest / "model.onnx"):
        with TestClient(create_app(settings_for(model_path=path))) as client:
            assert client.get("/v2/health/ready").status_code == 200, path


def test_python_m_app_serves_on_port_and_stops_on_sigterm(model_file, contract_path, tmp_path):
    """The real server process: uvicorn with uvloop and httptools, on PORT."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = os.environ | {
        "PORT": str(port),
        "MODEL_PATH": str(model_file),
        "CONTRACT_PATH": str(contract_path),
        "CAPTURE_URI": str(tmp_path / "capture"),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "app"],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1) as answer:
                    assert answer.status == 200
                    break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
                assert time.monotonic() < deadline, "the server did not become ready"
                time.sleep(0.1)
    finally:
        server.send_signal(signal.SIGTERM)
        _, errors = server.communicate(timeout=30)
    assert server.returncode in (0, -signal.SIGTERM), errors.decode()  # uvicorn re-raises the signal
    assert b"Application shutdown complete" in errors
