"""The committed gRPC modules are what `make proto` writes from app/grpc_predict_v2.proto.

Why: an edit to the .proto without regenerating would serve the old messages while the file
says otherwise; regenerating with another grpcio-tools than the locked one shows here too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROTO = "app/grpc_predict_v2.proto"
GENERATED = ("app/grpc_predict_v2_pb2.py", "app/grpc_predict_v2_pb2.pyi", "app/grpc_predict_v2_pb2_grpc.py")


def test_generated_modules_match_the_proto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from grpc_tools import protoc

    monkeypatch.chdir(ROOT)  # the Makefile's `proto` target runs from the project root, with these flags
    out = str(tmp_path)
    code = protoc.main(
        ["protoc", "-I", ".", f"--python_out={out}", f"--grpc_python_out={out}", f"--pyi_out={out}", PROTO]
    )
    assert code == 0
    stale = [name for name in GENERATED if (tmp_path / name).read_bytes() != (ROOT / name).read_bytes()]
    assert not stale, f"{stale} do not match {PROTO}: run `make proto` and commit the result"


def test_the_service_is_the_specification_s() -> None:
    """The names clients call: package `inference`, service GRPCInferenceService, its six methods."""
    from app import grpc_predict_v2_pb2 as pb

    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert service.full_name == "inference.GRPCInferenceService"
    assert {method.name for method in service.methods} == {
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
    }
    request = pb.ModelInferRequest.DESCRIPTOR.fields_by_name
    assert (request["inputs"].number, request["outputs"].number, request["raw_input_contents"].number) == (
        5,
        6,
        7,
    )
    assert pb.ModelInferResponse.DESCRIPTOR.fields_by_name["raw_output_contents"].number == 6
