"""The Open Inference Protocol over gRPC: a real grpc.aio server on a free port, a real channel.

The server runs on the event loop of the REST app's TestClient, as `python -m app` runs it on
uvicorn's: one Service behind both transports, so the tests can compare their answers and the
rows they capture. Every client mistake must come back as INVALID_ARGUMENT (NOT_FOUND for an
unknown model) naming the field and the rule, never as INTERNAL.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from fastapi.testclient import TestClient
from grpc_health.v1 import health_pb2, health_pb2_grpc

from app import grpc_predict_v2_pb2 as pb
from app import grpc_predict_v2_pb2_grpc as pb_grpc
from app import grpc_server
from app.main import create_app
from governance.core.contract import Contract
from tests.support.serving import MODEL_NAME, read_capture, sample_records, served_outputs, wait_until_ready

ROOT = Path(__file__).resolve().parents[2]

Tensor = pb.ModelInferRequest.InferInputTensor


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Served:
    """A started app: its REST TestClient, a gRPC stub to the same Service, and its capture folder."""

    def __init__(self, rest: TestClient, channel: grpc.Channel, capture: Path, app: Any) -> None:
        self.rest = rest
        self.channel = channel
        self.stub = pb_grpc.GRPCInferenceServiceStub(channel)
        self.health = health_pb2_grpc.HealthStub(channel)
        self.capture = capture
        self.app = app


@pytest.fixture
def served(settings_for: Any, tmp_path: Path) -> Iterator[Served]:
    settings = settings_for(grpc_port=free_port())
    app = create_app(settings)
    with TestClient(app) as rest:
        server = rest.portal.call(grpc_server.start, app.service, settings)
        try:
            with grpc.insecure_channel(f"127.0.0.1:{settings.grpc_port}") as channel:
                yield Served(rest, channel, tmp_path / "capture", app)
        finally:
            rest.portal.call(server.stop, None)


def typed_request(contract: Contract, records: list[dict[str, Any]], **fields: Any) -> pb.ModelInferRequest:
    """The records as typed contents, exactly the JSON values: whole numbers INT64, others FP64."""
    inputs = []
    for name, numeric in columns(contract):
        values = [record[name] for record in records]
        if numeric and all(type(value) is int for value in values):
            contents = pb.InferTensorContents(int64_contents=values)
            inputs.append(Tensor(name=name, datatype="INT64", shape=[len(values), 1], contents=contents))
        elif numeric:
            contents = pb.InferTensorContents(fp64_contents=values)
            inputs.append(Tensor(name=name, datatype="FP64", shape=[len(values), 1], contents=contents))
        else:
            contents = pb.InferTensorContents(bytes_contents=[value.encode() for value in values])
            inputs.append(Tensor(name=name, datatype="BYTES", shape=[len(values), 1], contents=contents))
    return pb.ModelInferRequest(model_name=MODEL_NAME, inputs=inputs, **fields)


def raw_request(contract: Contract, records: list[dict[str, Any]]) -> pb.ModelInferRequest:
    """The records as raw contents, as tritonclient sends numpy arrays: FP32 and prefixed BYTES."""
    inputs, raw = [], []
    for name, numeric in columns(contract):
        values = [record[name] for record in records]
        if numeric:
            inputs.append(Tensor(name=name, datatype="FP32", shape=[len(values), 1]))
            raw.append(np.asarray(values, dtype="<f4").tobytes())
        else:
            inputs.append(Tensor(name=name, datatype="BYTES", shape=[len(values), 1]))
            raw.append(b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values))
    return pb.ModelInferRequest(model_name=MODEL_NAME, inputs=inputs, raw_input_contents=raw)


def columns(contract: Contract) -> list[tuple[str, bool]]:
    found = [(feature.name, feature.is_numeric) for feature in contract.features]
    if contract.sensitive is not None:
        found.append((contract.sensitive.name, False))
    return found


def typed_outputs(response: pb.ModelInferResponse) -> dict[str, Any]:
    found = {}
    for tensor in response.outputs:
        contents = tensor.contents
        if tensor.datatype == "BYTES":
            found[tensor.name] = [value.decode() for value in contents.bytes_contents]
        elif tensor.datatype == "FP32":
            found[tensor.name] = np.asarray(contents.fp32_contents).reshape(tuple(tensor.shape)).tolist()
        elif tensor.datatype == "INT64":
            found[tensor.name] = list(contents.int64_contents)
        else:
            found[tensor.name] = list(contents.bool_contents)
    return found


def raw_outputs(response: pb.ModelInferResponse) -> dict[str, Any]:
    found = {}
    for tensor, raw in zip(response.outputs, response.raw_output_contents, strict=True):
        if tensor.datatype == "BYTES":
            values, offset = [], 0
            while offset < len(raw):
                (length,) = struct.unpack_from("<I", raw, offset)
                values.append(raw[offset + 4 : offset + 4 + length].decode())
                offset += 4 + length
            found[tensor.name] = values
        else:
            kind = {"FP32": "<f4", "INT64": "<i8", "BOOL": "?"}[tensor.datatype]
            found[tensor.name] = np.frombuffer(raw, kind).reshape(tuple(tensor.shape)).tolist()
    return found


def rest_answers(served: Served, records: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """/predict's answers for the records, in the shape of the OIP outputs."""
    answer = served.rest.post("/predict", json={"records": records})
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    if "value" in predictions[0]:
        return answer.json()["request_id"], {"value": [item["value"] for item in predictions]}
    return answer.json()["request_id"], {
        "label": [item["label"] for item in predictions],
        "probabilities": [list(item["probabilities"].values()) for item in predictions],
    }


def assert_same(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert set(got) == set(want)
    for name, values in want.items():
        if name == "label":
            assert got[name] == values
        else:
            assert np.allclose(got[name], values, rtol=0, atol=1e-6), name


def rejected(served: Served, request: pb.ModelInferRequest) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        served.stub.ModelInfer(request)
    return caught.value


# -- health and metadata ----------------------------------------------------------------------------
def test_live_ready_and_health(served: Served) -> None:
    assert served.stub.ServerLive(pb.ServerLiveRequest()).live is True
    assert served.stub.ServerReady(pb.ServerReadyRequest()).ready is True
    assert served.stub.ModelReady(pb.ModelReadyRequest(name=MODEL_NAME)).ready is True
    serving = health_pb2.HealthCheckResponse.SERVING
    assert served.health.Check(health_pb2.HealthCheckRequest(service="")).status == serving
    check = health_pb2.HealthCheckRequest(service=grpc_server.SERVICE)
    assert served.health.Check(check).status == serving


def test_readiness_follows_the_service(served: Served) -> None:
    """A service that cannot take requests is NOT_SERVING for readiness and stays live."""
    served.app.service.problem, model = "model not loaded: test", served.app.service.model
    served.app.service.model = None
    try:
        assert served.stub.ServerReady(pb.ServerReadyRequest()).ready is False
        assert served.stub.ModelReady(pb.ModelReadyRequest(name=MODEL_NAME)).ready is False
        check = health_pb2.HealthCheckRequest(service=grpc_server.SERVICE)
        assert served.health.Check(check).status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert served.health.Check(health_pb2.HealthCheckRequest()).status == 1  # SERVING: live
        with pytest.raises(grpc.RpcError) as caught:
            served.stub.ModelInfer(pb.ModelInferRequest(model_name=MODEL_NAME))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        served.app.service.model = model


def test_metadata_matches_rest(served: Served, contract: Contract) -> None:
    server = served.stub.ServerMetadata(pb.ServerMetadataRequest())
    assert (server.name, server.version) == (
        served.rest.get("/v2").json()["name"],
        served.rest.get("/v2").json()["version"],
    )
    model = served.stub.ModelMetadata(pb.ModelMetadataRequest(name=MODEL_NAME))
    rest = served.rest.get(f"/v2/models/{MODEL_NAME}").json()
    assert (model.name, list(model.versions), model.platform) == (
        rest["name"],
        rest["versions"],
        rest["platform"],
    )
    as_dicts = [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in model.inputs]
    assert as_dicts == rest["inputs"]
    outputs = {
        t.name: {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in model.outputs
    }
    assert outputs == served_outputs(contract)


def test_unknown_model_is_not_found(served: Served, contract: Contract) -> None:
    infer = typed_request(contract, sample_records(contract, 1))
    infer.model_name = "other"
    for call, request in (
        (served.stub.ModelReady, pb.ModelReadyRequest(name="other")),
        (served.stub.ModelMetadata, pb.ModelMetadataRequest(name="other")),
        (served.stub.ModelInfer, infer),
        (served.stub.ModelMetadata, pb.ModelMetadataRequest(name=MODEL_NAME, version="999")),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            call(request)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND, caught.value.details()
        assert "is not served" in caught.value.details()


# -- inference: the same answers and captured rows as REST -------------------------------------------
@pytest.mark.parametrize("rows", [1, 37])
def test_typed_infer_answers_and_captures_like_predict(served: Served, contract: Contract, rows: int) -> None:
    records = sample_records(contract, rows, seed=rows)
    request_id, want = rest_answers(served, records)
    response = served.stub.ModelInfer(typed_request(contract, records, id="mine"))
    assert response.id == "mine" and response.model_name == MODEL_NAME
    assert not response.raw_output_contents
    assert_same(typed_outputs(response), want)
    tokens = response.parameters["feedback_tokens"].string_param.split(",")
    assert len(tokens) == rows and all(tokens)
    grpc_id = response.parameters["request_id"].string_param
    served.app.service.capture.close(timeout=5)
    captured = {}
    for row in read_capture(served.capture):
        if row["kind"] == "prediction":
            captured.setdefault(row["request_id"], []).append(row)
    strip = ("request_id", "prediction_id", "timestamp", "ts")
    rest_rows = [{k: v for k, v in row.items() if k not in strip} for row in captured[request_id]]
    grpc_rows = [{k: v for k, v in row.items() if k not in strip} for row in captured[grpc_id]]
    assert len(grpc_rows) == rows
    assert grpc_rows == rest_rows


def test_raw_infer_answers_in_raw_outputs(served: Served, contract: Contract) -> None:
    records = sample_records(contract, 25, seed=7)
    _, want = rest_answers(served, records)
    response = served.stub.ModelInfer(raw_request(contract, records))
    assert len(response.raw_output_contents) == len(response.outputs)
    assert all(not tensor.HasField("contents") for tensor in response.outputs)
    assert_same(raw_outputs(response), want)


def test_requested_outputs(served: Served, contract: Contract) -> None:
    first = next(iter(served_outputs(contract)))
    request = typed_request(contract, sample_records(contract, 2))
    request.outputs.add(name=first)
    response = served.stub.ModelInfer(request)
    assert [tensor.name for tensor in response.outputs] == [first]
    request.outputs.add(name="nonsense")
    error = rejected(served, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "outputs[1].name" in error.details() and "unknown_output" in error.details()


def test_infer_is_counted_in_metrics(served: Served, contract: Contract) -> None:
    served.stub.ModelInfer(typed_request(contract, sample_records(contract, 1)))
    text = served.rest.get("/metrics").text
    assert 'route="/inference.GRPCInferenceService/ModelInfer"' in text


# -- client mistakes: INVALID_ARGUMENT naming the field, the rule and the value -------------------------
def first_numeric(contract: Contract) -> int:
    """The first numeric column of a float type (typed_request sends it as FP64)."""
    floats = {
        feature.name for feature in contract.features if feature.is_numeric and feature.dtype != "int64"
    }
    index = next((i for i, (name, _) in enumerate(columns(contract)) if name in floats), None)
    if index is None:
        pytest.skip("the contract has no float column")
    return index


def first_text(contract: Contract) -> int | None:
    return next((i for i, (_, numeric) in enumerate(columns(contract)) if not numeric), None)


def assert_invalid(error: grpc.RpcError, *fragments: str) -> None:
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())
    for fragment in fragments:
        assert fragment in error.details(), (fragment, error.details())
    metadata = dict(error.trailing_metadata() or ())
    assert metadata.get("field") and metadata.get("rule")


def test_wrong_datatype(served: Served, contract: Contract) -> None:
    request = typed_request(contract, sample_records(contract, 1))
    tensor = request.inputs[first_numeric(contract)]
    tensor.datatype, tensor.contents.bytes_contents[:] = "BYTES", [b"12"]
    del tensor.contents.fp64_contents[:]
    assert_invalid(rejected(served, request), f"inputs[{tensor.name}].datatype", "datatype", "BYTES")


def test_datatype_in_the_wrong_contents_field(served: Served, contract: Contract) -> None:
    request = typed_request(contract, sample_records(contract, 1))
    tensor = request.inputs[first_numeric(contract)]
    tensor.datatype = "FP32"  # the values stay in fp64_contents
    assert_invalid(rejected(served, request), f"inputs[{tensor.name}].contents.fp32_contents", "shape")


def test_value_out_of_the_contract(served: Served, contract: Contract) -> None:
    request = typed_request(contract, sample_records(contract, 1))
    index = first_numeric(contract)
    request.inputs[index].contents.fp64_contents[0] = 1e30
    name = request.inputs[index].name
    assert_invalid(rejected(served, request), f"inputs[{name}].data[0]", "maximum", "1e+30")


def test_nan_is_a_missing_value(served: Served, contract: Contract) -> None:
    """NaN stands for null: refused where the contract forbids nulls, scored where it allows them."""
    for feature in contract.features:
        if not feature.is_numeric or feature.dtype == "int64":
            continue
        request = typed_request(contract, sample_records(contract, 1))
        tensor = next(t for t in request.inputs if t.name == feature.name)
        tensor.contents.fp64_contents[0] = float("nan")
        if feature.nullable:
            assert served.stub.ModelInfer(request).outputs
        else:
            assert_invalid(rejected(served, request), f"inputs[{feature.name}].data[0]", "not_null")


def test_raw_byte_count_must_match_the_shape(served: Served, contract: Contract) -> None:
    request = raw_request(contract, sample_records(contract, 3))
    index = first_numeric(contract)
    request.raw_input_contents[index] = request.raw_input_contents[index][:-1]
    assert_invalid(rejected(served, request), f"raw_input_contents[{index}]", "rule: size", "is 11 bytes")


def test_raw_count_must_match_the_inputs(served: Served, contract: Contract) -> None:
    request = raw_request(contract, sample_records(contract, 1))
    request.raw_input_contents.append(b"")
    assert_invalid(rejected(served, request), "raw_input_contents", "count")


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (b"\x05\x00", "has no 4-byte length at byte 0"),
        (b"\xff\xff\xff\x7fabc", "declares 2147483647 bytes at byte 0, past the tensor's end (7 bytes)"),
        (struct.pack("<I", 1) + b"a" + b"extra", "is 10 bytes, but its 1 elements end at byte 5"),
        (struct.pack("<I", 2) + b"\xff\xfe", "is not UTF-8 text"),
    ],
)
def test_broken_bytes_prefixes(served: Served, contract: Contract, broken: bytes, message: str) -> None:
    index = first_text(contract)
    if index is None:
        pytest.skip("the contract has no text column")
    request = raw_request(contract, sample_records(contract, 1))
    request.raw_input_contents[index] = broken
    assert_invalid(rejected(served, request), message)


def test_unknown_input(served: Served, contract: Contract) -> None:
    request = typed_request(contract, sample_records(contract, 1))
    request.inputs[0].name = "not_a_feature"
    assert_invalid(rejected(served, request), "inputs[0].name", "unknown_input", "not_a_feature")


def test_too_many_rows_refused_from_the_shape(served: Served, contract: Contract) -> None:
    """A shape past MAX_BATCH_ROWS is refused before its values are looked at (there are none here)."""
    limit = served.app.settings.max_batch_rows
    request = raw_request(contract, sample_records(contract, 1))
    for tensor in request.inputs:
        tensor.shape[0] = 10**12
    assert_invalid(rejected(served, request), ".shape", "max_rows", str(limit))


def test_bad_shape(served: Served, contract: Contract) -> None:
    request = typed_request(contract, sample_records(contract, 2))
    request.inputs[0].shape[:] = [1, 2]
    assert_invalid(rejected(served, request), ".shape", "shape", "[1, 2]")


@pytest.mark.parametrize("payload", [b"\xff\xff\xff", b"\x1a\x02\xff\xfe"])  # garbage; an id of bad UTF-8
def test_a_malformed_message_is_invalid_argument(served: Served, payload: bytes) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        served.channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")(payload)
    assert_invalid(caught.value, "request: is not a valid ModelInferRequest", "protobuf")


def test_message_size_follows_the_body_limit(served: Served, contract: Contract) -> None:
    limit = served.app.service.body_limit
    request = typed_request(contract, sample_records(contract, 1))
    request.parameters["padding"].string_param = "x" * (limit + 1)
    error = rejected(served, request)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_settings_grpc_port(settings_for: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings_for(grpc_port="").grpc_port is None
    monkeypatch.delenv("GRPC_PORT")
    assert settings_for().grpc_port == 8081
    monkeypatch.setenv("GRPC_PORT", "")
    assert settings_for().grpc_port is None
    with pytest.raises(ValueError, match="GRPC_PORT=8080 is PORT too"):
        settings_for(grpc_port=8080)


# -- python -m app: both servers in one process ----------------------------------------------------------
def start_app(model_file: Path, contract_path: Path, tmp_path: Path, grpc_port: int) -> subprocess.Popen:
    env = os.environ | {
        "PORT": str(free_port()),
        "GRPC_PORT": str(grpc_port),
        "MODEL_PATH": str(model_file),
        "CONTRACT_PATH": str(contract_path),
        "CAPTURE_URI": str(tmp_path / "capture"),
        "ORT_INTRA_OP_THREADS": "1",
    }
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "app"], cwd=ROOT, env=env, stderr=log)
    process.port = int(env["PORT"])  # type: ignore[attr-defined]
    return process


def test_python_m_app_serves_grpc_beside_rest_and_stops_cleanly(
    model_file: Path, contract_path: Path, tmp_path: Path
) -> None:
    grpc_port = free_port()
    process = start_app(model_file, contract_path, tmp_path, grpc_port)
    try:
        wait_until_ready(process, process.port, lambda: (tmp_path / "server.log").read_text())
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            assert stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready is True
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
    log = (tmp_path / "server.log").read_text()
    # uvicorn re-raises the SIGTERM it handled once it has stopped, as it did before gRPC was added.
    assert code in (0, -signal.SIGTERM), log
    assert "Finished server process" in log and "ERROR" not in log


def test_python_m_app_exits_when_the_grpc_port_is_taken(
    model_file: Path, contract_path: Path, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        # Another process asking to share the port (as a second gRPC server would) is not let in.
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = start_app(model_file, contract_path, tmp_path, port)
        code = process.wait(timeout=60)
    log = (tmp_path / "server.log").read_text()
    assert code == 1, log
    assert f"cannot listen for gRPC on 127.0.0.1:{port}" in log
