"""The OIP infer call as real clients send it: no Content-Type, and the binary tensor data extension.

NVIDIA's tritonclient sends JSON without a Content-Type and, by default, a JSON header of
`Inference-Header-Content-Length` bytes followed by raw little-endian tensors, asking for its
outputs the same way. The bodies here are built by hand from the extension's description
(numpy's `tobytes` and explicit 4-byte prefixes), not with the service's own encoder.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.main import create_app
from governance.core.contract import Contract
from tests.support.serving import MODEL_NAME, infer_body, read_capture, sample_records

INFER = f"/v2/models/{MODEL_NAME}/infer"
NUMPY_TYPES = {"FP32": "<f4", "FP64": "<f8", "INT64": "<i8", "INT32": "<i4", "BOOL": "u1"}


def exact_records(contract: Contract, rows: int, seed: int = 0) -> list[dict[str, Any]]:
    """Valid records whose numbers an FP32 tensor holds exactly (quarters), so every route sends the same."""
    records = sample_records(contract, rows, seed=seed, sensitive=False)
    for record in records:
        for feature in contract.features:
            if feature.is_numeric and feature.dtype != "int64":
                record[feature.name] = float(np.float32(round(record[feature.name] * 4) / 4))
    return records


def bytes_tensor(values: list[str]) -> bytes:
    return b"".join(struct.pack("<I", len(text.encode())) + text.encode() for text in values)


def binary_body(
    body: dict[str, Any], binary: set[str] | None = None, datatypes: dict[str, str] | None = None
) -> tuple[bytes, int]:
    """An infer body with the named inputs (all by default) moved to binary data: (body, header length)."""
    raw = []
    for tensor in body["inputs"]:
        if binary is not None and tensor["name"] not in binary:
            continue
        datatype = (datatypes or {}).get(tensor["name"], tensor["datatype"])
        data = tensor.pop("data")
        tensor["datatype"] = datatype
        if datatype == "BYTES":
            chunk = bytes_tensor(data)
        else:
            chunk = np.array(
                [math.nan if v is None else v for v in data], dtype=NUMPY_TYPES[datatype]
            ).tobytes()
        tensor.setdefault("parameters", {})["binary_data_size"] = len(chunk)
        raw.append(chunk)
    header = json.dumps(body).encode()
    return header + b"".join(raw), len(header)


def post_binary(client: TestClient, body: bytes, length: int | str, **headers: str) -> Any:
    return client.post(
        INFER, content=body, headers={"inference-header-content-length": str(length), **headers}
    )


def read_outputs(response: Any) -> dict[str, Any]:
    """The answer's outputs by name as flat lists, reading binary ones from after the JSON header."""
    length = response.headers.get("inference-header-content-length")
    content = response.content
    header = json.loads(content[: int(length)] if length else content)
    offset = int(length) if length else len(content)
    outputs = {}
    for tensor in header["outputs"]:
        size = tensor.get("parameters", {}).get("binary_data_size")
        if size is None:
            outputs[tensor["name"]] = tensor["data"]
            continue
        chunk = content[offset : offset + size]
        offset += size
        if tensor["datatype"] == "BYTES":
            values, at = [], 0
            while at < len(chunk):
                (n,) = struct.unpack_from("<I", chunk, at)
                values.append(chunk[at + 4 : at + 4 + n].decode())
                at += 4 + n
        else:
            values = np.frombuffer(chunk, dtype=NUMPY_TYPES[tensor["datatype"]]).tolist()
            if tensor["datatype"] == "BOOL":
                values = [bool(value) for value in values]
        assert len(values) == math.prod(tensor["shape"])
        outputs[tensor["name"]] = values
    assert offset == len(content), "every byte after the header belongs to an output"
    return outputs


def predicted(client: TestClient, records: list[dict[str, Any]]) -> dict[str, Any]:
    """/predict's answers for the records, as the OIP outputs would hold them."""
    answers = client.post("/predict", json={"records": records}).json()["predictions"]
    if "value" in answers[0]:
        return {"value": [answer["value"] for answer in answers]}
    return {
        "label": [answer["label"] for answer in answers],
        "probabilities": [p for answer in answers for p in answer["probabilities"].values()],
    }


def assert_same_answers(outputs: dict[str, Any], expected: dict[str, Any]) -> None:
    assert set(outputs) == set(expected)
    for name, values in expected.items():
        if name == "label":
            assert outputs[name] == values and [type(v) for v in outputs[name]] == [type(v) for v in values]
        else:
            assert outputs[name] == pytest.approx(values, rel=1e-6, abs=1e-6)  # FP32: ~7 digits


# -- what tritonclient sends ----------------------------------------------------------------------
def test_server_metadata_lists_the_binary_tensor_data_extension(client):
    assert "binary_tensor_data" in client.get("/v2").json()["extensions"]


def test_json_infer_without_a_content_type_is_scored_but_a_wrong_one_is_415(client, contract):
    records = exact_records(contract, 2)
    body = json.dumps(infer_body(contract, records)).encode()
    response = client.post(INFER, content=body)  # httpx sets no Content-Type for raw content
    assert "content-type" not in response.request.headers
    assert response.status_code == 200, response.text
    assert_same_answers(read_outputs(response), predicted(client, records))
    refused = client.post(INFER, content=body, headers={"content-type": "text/plain"})
    assert refused.status_code == 415 and refused.json()["field"] == "content-type"
    assert "text/plain" in refused.json()["error"]


def test_predict_still_needs_its_json_content_type(client, contract):
    body = orjson.dumps({"records": exact_records(contract, 1)})
    response = client.post("/predict", content=body)
    assert response.status_code == 415 and response.json()["rule"] == "media_type"


@pytest.mark.parametrize("content_type", [None, "application/octet-stream", "application/json"])
def test_binary_inputs_and_outputs_answer_what_predict_answers(client, contract, content_type):
    records = exact_records(contract, 5, seed=3)
    document = infer_body(contract, records)
    document["parameters"] = {"binary_data_output": True}
    body, length = binary_body(document)
    headers = {"content-type": content_type} if content_type else {}
    response = post_binary(client, body, length, **headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    header = json.loads(response.content[: int(response.headers["inference-header-content-length"])])
    assert all(
        "data" not in tensor and tensor["parameters"]["binary_data_size"] > 0 for tensor in header["outputs"]
    )
    assert header["id"] == "req-1" and header["parameters"]["request_id"] == response.headers["x-request-id"]
    assert_same_answers(read_outputs(response), predicted(client, records))


def test_inputs_may_mix_binary_and_json_and_each_output_chooses_its_form(client, contract):
    records = exact_records(contract, 3, seed=4)
    document = infer_body(contract, records)
    names = [tensor["name"] for tensor in document["inputs"]]
    first, *rest = list(predicted(client, records))
    document["outputs"] = [{"name": first, "parameters": {"binary_data": True}}] + [
        {"name": name, "parameters": {"binary_data": False}} for name in rest
    ]
    body, length = binary_body(document, binary=set(names[::2]))
    response = post_binary(client, body, length)
    assert response.status_code == 200, response.text
    header = json.loads(response.content[: int(response.headers["inference-header-content-length"])])
    forms = {tensor["name"]: "data" in tensor for tensor in header["outputs"]}
    assert forms == {first: False, **dict.fromkeys(rest, True)}
    assert_same_answers(read_outputs(response), predicted(client, records))


def test_json_inputs_may_ask_for_binary_outputs_and_binary_inputs_for_json_outputs(client, contract):
    records = exact_records(contract, 2, seed=6)
    document = infer_body(contract, records)
    document["parameters"] = {"binary_data_output": True}
    response = client.post(INFER, json=document)
    assert response.status_code == 200 and "inference-header-content-length" in response.headers
    assert_same_answers(read_outputs(response), predicted(client, records))
    body, length = binary_body(infer_body(contract, records))
    response = post_binary(client, body, length)
    assert response.status_code == 200 and "inference-header-content-length" not in response.headers
    assert response.headers["content-type"] == "application/json"
    assert_same_answers(read_outputs(response), predicted(client, records))


def test_the_vendor_media_type_may_carry_the_header_length(client, contract):
    records = exact_records(contract, 2, seed=7)
    body, length = binary_body(infer_body(contract, records))
    media = f"application/vnd.sagemaker-triton.binary+json;json-header-size={length}"
    response = client.post(INFER, content=body, headers={"content-type": media})
    assert response.status_code == 200, response.text
    assert_same_answers(read_outputs(response), predicted(client, records))


def test_any_numeric_datatype_is_read_little_endian(client, contract):
    records = exact_records(contract, 3, seed=8)
    numeric = [feature.name for feature in contract.features if feature.is_numeric]
    if not numeric:
        pytest.skip("the contract has no numeric feature")
    types = {name: ("FP64" if index % 2 else "INT64") for index, name in enumerate(numeric)}
    bounds = {f.name: (f.min, f.max) for f in contract.features}
    for record in records:  # INT64 tensors carry whole numbers, within the contract's range
        for name, datatype in types.items():
            if datatype == "INT64":
                low, high = bounds[name]
                whole = max(int(record[name]), math.ceil(low) if low is not None else -(2**31))
                if high is not None and whole > high:
                    pytest.skip(f"{name} holds no whole number in its range")
                record[name] = whole
    body, length = binary_body(infer_body(contract, records), datatypes=types)
    response = post_binary(client, body, length)
    assert response.status_code == 200, response.text
    assert_same_answers(read_outputs(response), predicted(client, records))


def test_a_nan_in_a_binary_number_is_a_null(client, contract):
    nullable = [f.name for f in contract.features if f.is_numeric and f.nullable]
    required = [f.name for f in contract.features if f.is_numeric and not f.nullable]
    if not nullable or not required:
        pytest.skip("the contract needs a nullable and a required numeric feature")
    records = exact_records(contract, 2, seed=9)
    records[1][nullable[0]] = None
    response = post_binary(client, *binary_body(infer_body(contract, records)))
    assert response.status_code == 200, response.text
    assert_same_answers(read_outputs(response), predicted(client, records))
    records[0][required[0]] = None
    response = post_binary(client, *binary_body(infer_body(contract, records)))
    assert response.status_code == 400
    assert response.json()["field"] == f"inputs[{required[0]}].data[0]"
    assert response.json()["rule"] == "not_null"


def test_the_framework_route_reads_and_answers_binary_data_as_the_fast_route(settings_for, contract):
    """The FastAPI infer route (the one /docs describes) shares the handler and the headers."""
    records = exact_records(contract, 3, seed=12)
    app = create_app(settings_for())
    with TestClient(app) as fast:
        framework = TestClient(app.api)  # the FastAPI app alone; the service is already started
        document = infer_body(contract, records)
        document["parameters"] = {"binary_data_output": True}
        body, length = binary_body(document)
        one, two = post_binary(fast, body, length), post_binary(framework, body, length)
        assert one.status_code == two.status_code == 200, two.text
        for response in (one, two):
            assert response.headers["content-type"] == "application/octet-stream"
        assert read_outputs(one) == read_outputs(two)
        plain = json.dumps(infer_body(contract, records)).encode()
        assert framework.post(INFER, content=plain).status_code == 200
        refused = framework.post(INFER, content=plain, headers={"content-type": "text/plain"})
        assert refused.status_code == 415 and refused.json()["field"] == "content-type"


# -- capture -------------------------------------------------------------------------------------
def test_the_captured_rows_are_the_same_whichever_route_scored_them(settings_for, contract):
    settings = settings_for()
    records = exact_records(contract, 4, seed=10)
    for record in records:  # whole numbers in float features, as a client may write them
        for feature in contract.features:
            if feature.is_numeric and feature.dtype != "int64":
                record[feature.name] = float(round(record[feature.name]))
    with TestClient(create_app(settings)) as client:
        plain = client.post("/predict", json={"records": [dict(record) for record in records]})
        as_json = client.post(INFER, json=infer_body(contract, records))
        as_binary = post_binary(client, *binary_body(infer_body(contract, records)))
        sent_as_ints = [
            {k: int(v) if isinstance(v, float) else v for k, v in record.items()} for record in records
        ]
        as_int_json = client.post("/predict", json={"records": sent_as_ints})
    ids = [response.headers["x-request-id"] for response in (plain, as_json, as_binary, as_int_json)]
    assert all(response.status_code == 200 for response in (plain, as_json, as_binary, as_int_json))
    rows = [row for row in read_capture(Path(settings.capture_uri)) if row["kind"] == "prediction"]
    by_request = {
        request_id: [
            orjson.dumps({key: row[key] for key in ("features", "sensitive", "label", "scores")})
            for row in sorted(rows, key=lambda row: row["row"])
            if row["request_id"] == request_id
        ]
        for request_id in ids
    }
    first = by_request[ids[0]]
    assert len(first) == 4
    for request_id in ids[1:]:
        assert by_request[request_id] == first  # byte for byte: values and their JSON types
    for line, record in zip(first, records, strict=True):
        features = orjson.loads(line)["features"]
        for feature in contract.features:
            if feature.is_numeric:
                want = int if feature.dtype == "int64" else float
                assert type(features[feature.name]) is want, (feature.name, features[feature.name])
        assert features == record


# -- hostile bodies ------------------------------------------------------------------------------
def hostile_cases(contract: Contract) -> list[tuple[str, Any, str, str]]:
    """(case, body builder, field, rule): each a 400 naming the field."""
    numeric = next(f.name for f in contract.features if f.is_numeric)
    text = next((f.name for f in contract.features if not f.is_numeric), None)

    def valid() -> tuple[dict[str, Any], bytes, int]:
        document = infer_body(contract, exact_records(contract, 2))
        body, length = binary_body(document)
        return json.loads(body[:length]), body, length

    def header_not_a_number() -> tuple[bytes, str]:
        _, body, _ = valid()
        return body, "12abc"

    def header_past_the_body() -> tuple[bytes, str]:
        _, body, _ = valid()
        return body, str(len(body) + 1)

    def sizes_not_summing_to_the_body() -> tuple[bytes, str]:
        _, body, length = valid()
        return body + b"\x00\x00\x00\x00", str(length)

    def resized(name: str, delta: int, shape: list[int] | None = None) -> tuple[bytes, str]:
        header, body, length = valid()
        raw = body[length:]
        for tensor in header["inputs"]:
            if tensor["name"] == name:
                tensor["parameters"]["binary_data_size"] += delta
                if shape is not None:
                    tensor["shape"] = shape
        # keep the total right by taking the bytes from the last input
        header["inputs"][-1]["parameters"]["binary_data_size"] -= delta
        new = json.dumps(header).encode()
        return new + raw, str(len(new))

    def negative_size() -> tuple[bytes, str]:
        header, body, length = valid()
        header["inputs"][0]["parameters"]["binary_data_size"] = -4
        new = json.dumps(header).encode()
        return new + body[length:], str(len(new))

    def data_and_binary() -> tuple[bytes, str]:
        header, body, length = valid()
        header["inputs"][0]["data"] = [1, 2]
        new = json.dumps(header).encode()
        return new + body[length:], str(len(new))

    def reshaped(shape: list[int]) -> tuple[bytes, str]:
        header, body, length = valid()
        header["inputs"][0]["shape"] = shape
        new = json.dumps(header).encode()
        return new + body[length:], str(len(new))

    def replaced(name: str, chunk: bytes) -> tuple[bytes, str]:
        """The valid body with one input's bytes swapped for `chunk` (its size updated)."""
        header, body, length = valid()
        offset, parts = length, []
        for tensor in header["inputs"]:
            size = tensor["parameters"]["binary_data_size"]
            if tensor["name"] == name:
                parts.append(chunk)
                tensor["parameters"]["binary_data_size"] = len(chunk)
            else:
                parts.append(body[offset : offset + size])
            offset += size
        new = json.dumps(header).encode()
        return new + b"".join(parts), str(len(new))

    cases: list[tuple[str, Any, str, str]] = [
        ("header length not a number", header_not_a_number, "inference-header-content-length", "type"),
        ("header length past the body", header_past_the_body, "inference-header-content-length", "size"),
        (
            "sizes not summing to the body",
            sizes_not_summing_to_the_body,
            "inputs.parameters.binary_data_size",
            "size",
        ),
        (
            "size not a whole element",
            lambda: resized(numeric, 2),
            f"inputs[{numeric}].parameters.binary_data_size",
            "size",
        ),
        (
            "size not the shape's",
            lambda: resized(numeric, 4),
            f"inputs[{numeric}].parameters.binary_data_size",
            "size",
        ),
        ("negative size", negative_size, f"inputs[{numeric}].parameters.binary_data_size", "type"),
        ("data and binary", data_and_binary, f"inputs[{numeric}].data", "binary_data"),
        ("negative shape", lambda: reshaped([-2, 1]), f"inputs[{numeric}].shape", "shape"),
        ("huge shape", lambda: reshaped([10**12, 1]), f"inputs[{numeric}].shape", "max_rows"),
        ("shape of many dims", lambda: reshaped([1] * 40), f"inputs[{numeric}].shape", "shape"),
    ]
    if text is not None:
        cases += [
            (
                "BYTES length past the end",
                lambda: replaced(text, b"\x05\x00\x00\x00ab"),
                f"inputs[{text}].data[0]",
                "bytes_prefix",
            ),
            (
                "BYTES prefix cut short",
                lambda: replaced(text, b"\x01\x00\x00\x00a\x00\x00"),
                f"inputs[{text}].data[1]",
                "bytes_prefix",
            ),
            (
                "BYTES trailing bytes",
                lambda: replaced(text, bytes_tensor(["a", "b"]) + b"x"),
                f"inputs[{text}].parameters.binary_data_size",
                "size",
            ),
            (
                "BYTES not UTF-8",
                lambda: replaced(text, b"\x01\x00\x00\x00\xff\x01\x00\x00\x00a"),
                f"inputs[{text}].data[0]",
                "utf8",
            ),
        ]
    return cases


def test_hostile_binary_bodies_get_400_naming_the_field(client, contract):
    for case, build, field, rule in hostile_cases(contract):
        body, length = build()
        response = post_binary(client, body, length)
        assert response.status_code == 400, (case, response.text)
        assert (response.json()["field"], response.json()["rule"]) == (field, rule), case


@pytest.mark.parametrize(
    ("value", "rule"),
    [("\u00b2".encode("latin-1"), "type"), (b"9" * 5000, "size"), (b"-1", "type"), (b"0012", None)],
)
def test_odd_header_lengths_are_400_never_a_server_error(client, contract, value, rule):
    """A latin-1 digit ("²" passes str.isdigit) or 5,000 digits (int() refuses them) is a 400."""
    body, length = binary_body(infer_body(contract, exact_records(contract, 1)))
    if rule is None:  # leading zeros are still the number
        body = body[:length] + body[length:]
        value = b"00" + str(length).encode()
    response = client.post(INFER, content=body, headers={"inference-header-content-length": value})
    if rule is None:
        assert response.status_code == 200, response.text
        return
    assert response.status_code == 400, response.text
    assert (response.json()["field"], response.json()["rule"]) == ("inference-header-content-length", rule)


@pytest.mark.parametrize("value", ["\u00b2".encode("latin-1"), b"9" * 5000])
def test_odd_content_lengths_are_4xx_never_a_server_error(settings_for, contract, value):
    """The Content-Length check before reading, straight through ASGI (HTTP clients fix the header)."""
    import asyncio

    app = create_app(settings_for())
    body = orjson.dumps(infer_body(contract, exact_records(contract, 1)))
    scope = {
        "type": "http",
        "method": "POST",
        "path": INFER,
        "headers": [(b"content-type", b"application/json"), (b"content-length", value)],
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] in (400, 413), sent
    assert orjson.loads(sent[1]["body"])["field"] in ("content-length", "body")


def test_the_body_limit_holds_for_binary_bodies(settings_for, contract):
    with TestClient(create_app(settings_for(max_batch_rows=10))) as client:
        records = exact_records(contract, 10)
        body, length = binary_body(infer_body(contract, records))
        assert post_binary(client, body, length).status_code == 200
        big = body + b"\x00" * (1 << 20)
        response = post_binary(client, big, length)
        assert response.status_code == 413 and response.json()["rule"] == "max_bytes"
        body, length = binary_body(infer_body(contract, exact_records(contract, 11)))
        response = post_binary(client, body, length)
        assert response.status_code == 400 and response.json()["rule"] == "max_rows"


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    cut=st.integers(min_value=0, max_value=400),
    length=st.integers(min_value=-5, max_value=2000).map(str) | st.sampled_from(["", "x", "1e3", "0x10"]),
    tail=st.binary(max_size=64),
)
def test_arbitrary_binary_bodies_never_cause_a_server_error(client, contract, cut, length, tail):
    body, _ = binary_body(infer_body(contract, exact_records(contract, 2)))
    mangled = body[:cut] + tail + body[cut + len(tail) :]
    response = post_binary(client, mangled, length)
    if response.status_code != 200:
        assert 400 <= response.status_code < 500, response.text
        assert "error" in response.json()
