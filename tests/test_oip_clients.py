"""A served default bake answers NVIDIA's tritonclient, used with its defaults, as it answers /predict.

The Open Inference Protocol promises that KServe-, Seldon- and Triton-style clients work
unchanged. tritonclient is the most common of them, and its defaults are the demanding case:
it sends JSON without a Content-Type, and tensors as binary data (a JSON header of
`Inference-Header-Content-Length` bytes, then raw little-endian bytes), asking for its outputs
the same way. This bakes the defaults, runs `make data train`, starts `make serve` and drives it
with `tritonclient.http.InferenceServerClient` as its documentation shows, no header or option
set by hand, and its gRPC port (GRPC_PORT) with `tritonclient.grpc.InferenceServerClient`, whose
numpy inputs travel as `raw_input_contents`; the answers must equal `/predict`'s for the same rows,
and capture must hold them whichever transport scored them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient  # both from requirements/template.txt
import tritonclient.http as httpclient
import yaml
from conftest import bake_defaults, call_json, free_port, run_make, serving

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Served:
    """A baked project with `make serve` running: REST at `base`, gRPC on `grpc_port`."""

    project: Path
    base: str
    grpc_port: int
    model: str
    contract: dict

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The default bake, trained and served (`make serve`, REST and gRPC); stopped after the module."""
    project = bake_defaults(tmp_path_factory.mktemp("oip"))
    outcome = run_make(project, "install", "data", "train")
    assert outcome.returncode == 0, outcome.stdout[-3000:] + outcome.stderr[-3000:]
    grpc_port = free_port()
    with serving(project, project / "serve.log", GRPC_PORT=str(grpc_port)) as base:
        contract = yaml.safe_load((project / "data_pipelines" / "contract.yaml").read_text())
        status, answer = call_json(f"{base}/predict", {"records": rows(contract, 1)})
        assert status == 200, answer
        yield Served(project, base, grpc_port, answer["model_name"], contract)


def rows(contract: dict, count: int, seed: int = 0) -> list[dict]:
    """Valid records of the contract whose numbers an FP32 tensor holds exactly (quarters)."""
    rng = np.random.default_rng(seed)
    records = []
    for _ in range(count):
        record = {}
        for feature in contract["features"]:
            if feature["kind"] == "numeric":
                low, high = feature.get("min", 0), feature.get("max", 100)
                value = float(rng.uniform(low, high))
                record[feature["name"]] = (
                    min(max(round(value), int(np.ceil(low))), int(high))
                    if feature.get("dtype") == "int64"
                    else min(max(round(value * 4) / 4, low), high)
                )
            else:
                record[feature["name"]] = str(rng.choice(feature["categories"]))
        records.append(record)
    return records


def infer_inputs(contract: dict, records: list[dict], client=httpclient, **options) -> list:
    """One InferInput per feature, [N, 1], typed as the model metadata declares it, filled from numpy
    (`options` empty: the client's defaults, binary tensor data over HTTP, raw contents over gRPC)."""
    inputs = []
    for feature in contract["features"]:
        values = [record[feature["name"]] for record in records]
        numeric = feature["kind"] == "numeric"
        tensor = client.InferInput(feature["name"], [len(records), 1], "FP32" if numeric else "BYTES")
        tensor.set_data_from_numpy(
            np.array(values, dtype=np.float32 if numeric else object).reshape(-1, 1), **options
        )
        inputs.append(tensor)
    return inputs


def assert_matches_predict(served: Served, records: list[dict], result) -> None:
    """tritonclient's decoded outputs equal /predict's answers for the same rows."""
    status, answer = call_json(f"{served.base}/predict", {"records": records})
    assert status == 200, answer
    predictions = answer["predictions"]
    labels = result.as_numpy("label")
    probabilities = result.as_numpy("probabilities")
    assert labels.shape == (len(records),)
    assert probabilities.shape == (len(records), len(served.contract["target"]["classes"]))
    decoded = [label.decode() if isinstance(label, bytes) else label.item() for label in labels]
    assert decoded == [prediction["label"] for prediction in predictions]
    expected = [list(prediction["probabilities"].values()) for prediction in predictions]
    np.testing.assert_allclose(probabilities, np.array(expected), atol=1e-6)


def captured(served: Served, request_id: str) -> list[dict]:
    """The captured features of one request, in row order (waits for the writer's next flush)."""
    deadline = time.monotonic() + 10
    while True:
        lines = [
            json.loads(line)
            for file in sorted((served.project / "artifacts" / "capture").glob("date=*/*.jsonl"))
            for line in file.read_text().splitlines()
            if line
        ]
        found = sorted(
            (line for line in lines if line.get("request_id") == request_id and line["kind"] == "prediction"),
            key=lambda line: line["row"],
        )
        if found or time.monotonic() > deadline:
            return [line["features"] for line in found]
        time.sleep(0.3)


def test_health_and_metadata_through_tritonclient(served: Served):
    client = httpclient.InferenceServerClient(f"127.0.0.1:{served.port}")
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(served.model)
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    metadata = client.get_model_metadata(served.model)
    assert [tensor["name"] for tensor in metadata["inputs"]] == [
        f["name"] for f in served.contract["features"]
    ]
    assert {tensor["name"] for tensor in metadata["outputs"]} == {"label", "probabilities"}


@pytest.mark.parametrize("count", [1, 20])
def test_infer_with_the_clients_defaults_answers_as_predict_and_is_captured(served: Served, count: int):
    client = httpclient.InferenceServerClient(f"127.0.0.1:{served.port}")
    records = rows(served.contract, count, seed=count)
    result = client.infer(served.model, infer_inputs(served.contract, records))  # binary in, binary out
    assert_matches_predict(served, records, result)
    outputs = [httpclient.InferRequestedOutput("label"), httpclient.InferRequestedOutput("probabilities")]
    result = client.infer(served.model, infer_inputs(served.contract, records), outputs=outputs)
    assert_matches_predict(served, records, result)
    assert captured(served, result.get_response()["parameters"]["request_id"]) == records


def test_infer_in_json_answers_as_predict_and_is_captured(served: Served):
    client = httpclient.InferenceServerClient(f"127.0.0.1:{served.port}")
    records = rows(served.contract, 5, seed=7)
    outputs = [
        httpclient.InferRequestedOutput("label", binary_data=False),
        httpclient.InferRequestedOutput("probabilities", binary_data=False),
    ]
    inputs = infer_inputs(served.contract, records, binary_data=False)
    result = client.infer(served.model, inputs, outputs=outputs)
    response = result.get_response()
    assert all("data" in tensor for tensor in response["outputs"]), "asked for JSON outputs"
    assert_matches_predict(served, records, result)
    assert captured(served, response["parameters"]["request_id"]) == records


def test_tritons_grpc_client_with_its_defaults_answers_as_predict_and_is_captured(served: Served):
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{served.grpc_port}")
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(served.model)
    server = client.get_server_metadata(as_json=True)
    assert server["name"] and server["version"]
    metadata = client.get_model_metadata(served.model, as_json=True)
    assert metadata["platform"] == "onnxruntime_onnx"
    assert [tensor["name"] for tensor in metadata["inputs"]] == [
        f["name"] for f in served.contract["features"]
    ]
    for count in (1, 100):
        records = rows(served.contract, count, seed=100 + count)
        result = client.infer(served.model, infer_inputs(served.contract, records, grpcclient))
        assert_matches_predict(served, records, result)
        request_id = result.get_response().parameters["request_id"].string_param
        assert captured(served, request_id) == records


def test_tritons_grpc_client_hears_which_field_is_wrong(served: Served):
    """A client mistake is INVALID_ARGUMENT naming the field; an unknown model is NOT_FOUND."""
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{served.grpc_port}")
    records = rows(served.contract, 1)
    first = next(f["name"] for f in served.contract["features"] if f["kind"] == "numeric")
    records[0][first] = 1e30
    with pytest.raises(grpcclient.InferenceServerException) as caught:
        client.infer(served.model, infer_inputs(served.contract, records, grpcclient))
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT", caught.value.message()
    assert f"inputs[{first}].data[0]" in caught.value.message()
    with pytest.raises(grpcclient.InferenceServerException) as caught:
        client.is_model_ready("not-this-model")
    assert caught.value.status() == "StatusCode.NOT_FOUND"
