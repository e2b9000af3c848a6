"""Property tests: no request body, however odd, makes the service answer 5xx.

The valid bodies are drawn from the service's own OpenAPI schema (which the data contract
generates), so the schema and the validator are checked against each other: whatever the
schema allows must score (200). Broken variants of valid bodies and arbitrary JSON and bytes
must get a 4xx with an {"error"} body.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.main import create_app
from app.settings import Settings
from tests.support.serving import MODEL_NAME, infer_body

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
POST_ROUTES = ["/predict", f"/v2/models/{MODEL_NAME}/infer", "/feedback"]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values valid under the JSON-schema subset the service's OpenAPI document uses."""
    if "anyOf" in schema:
        return st.one_of([from_schema(option) for option in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "null":
        return st.none()
    if kind == "integer":
        low, high = schema.get("minimum"), schema.get("maximum")
        return st.integers(
            min_value=None if low is None else int(low), max_value=None if high is None else int(high)
        )
    if kind == "number":
        return st.floats(
            min_value=schema.get("minimum"),
            max_value=schema.get("maximum"),
            allow_nan=False,
            allow_infinity=False,
        )
    if kind == "string":
        return st.text(max_size=20)
    if kind == "array":
        return st.lists(
            from_schema(schema["items"]),
            min_size=schema.get("minItems", 0),
            max_size=min(schema.get("maxItems", 5), 5),
        )
    if kind == "object":
        required = set(schema.get("required", []))
        properties = schema.get("properties", {})
        return st.fixed_dictionaries(
            {name: from_schema(sub) for name, sub in properties.items() if name in required},
            optional={name: from_schema(sub) for name, sub in properties.items() if name not in required},
        )
    raise ValueError(f"schema construct not covered: {schema}")


@pytest.fixture(scope="module")
def fuzz_client(model_file, contract_path, tmp_path_factory) -> Iterator[TestClient]:
    settings = Settings(
        model_path=model_file,
        contract_path=contract_path,
        capture_uri=str(tmp_path_factory.mktemp("capture")),
        ort_intra_op_threads=1,
        max_batch_rows=20,
        max_body_bytes=64 * 1024,
    )
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture(scope="module")
def predict_schema(fuzz_client) -> dict[str, Any]:
    document = fuzz_client.get("/openapi.json").json()
    return document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]


def assert_client_error_or_success(response, body: Any = None) -> None:
    assert response.status_code < 500, (body, response.text)
    if response.status_code >= 400:
        assert "error" in response.json(), response.text


def test_every_body_the_openapi_schema_allows_is_scored(fuzz_client, predict_schema):
    @FUZZ
    @given(body=from_schema(predict_schema))
    def check(body: dict[str, Any]) -> None:
        response = fuzz_client.post("/predict", json=body)
        assert response.status_code == 200, (body, response.text)
        assert len(response.json()["predictions"]) == len(body["records"])

    check()


def test_broken_variants_of_valid_bodies_never_cause_a_server_error(fuzz_client, predict_schema):
    record_schema = predict_schema["properties"]["records"]["items"]

    @FUZZ
    @given(
        record=from_schema(record_schema),
        key=st.sampled_from([*record_schema["properties"], "unexpected"]),
        value=json_values,
        drop=st.booleans(),
    )
    def check(record: dict[str, Any], key: str, value: Any, drop: bool) -> None:
        if drop:
            record.pop(key, None)
        else:
            record[key] = value
        body = {"records": [record]}
        response = fuzz_client.post("/predict", json=body)
        assert_client_error_or_success(response, body)

    check()


def test_broken_oip_requests_never_cause_a_server_error(fuzz_client, contract, predict_schema):
    record_schema = predict_schema["properties"]["records"]["items"]

    @FUZZ
    @given(
        records=st.lists(from_schema(record_schema), min_size=1, max_size=3),
        position=st.integers(min_value=0, max_value=len(contract.features) - 1),
        field=st.sampled_from(["name", "shape", "datatype", "data", "parameters", "other"]),
        value=json_values,
    )
    def check(records: list[dict[str, Any]], position: int, field: str, value: Any) -> None:
        body = infer_body(contract, records)
        body["inputs"][position][field] = value
        response = fuzz_client.post(f"/v2/models/{MODEL_NAME}/infer", json=body)
        assert_client_error_or_success(response, body)
        if response.status_code >= 400:
            assert response.status_code in (400, 413), response.text

    check()


@pytest.mark.parametrize("route", POST_ROUTES)
def test_arbitrary_json_never_causes_a_server_error(fuzz_client, route):
    @FUZZ
    @given(body=json_values)
    def check(body: Any) -> None:
        response = fuzz_client.post(
            route, content=json.dumps(body), headers={"content-type": "application/json"}
        )
        assert_client_error_or_success(response, body)

    check()


@pytest.mark.parametrize("route", POST_ROUTES)
def test_arbitrary_bytes_and_content_types_never_cause_a_server_error(fuzz_client, route):
    @FUZZ
    @given(
        body=st.binary(max_size=300),
        content_type=st.sampled_from(
            ["application/json", "application/json; charset=utf-8", "text/plain", ""]
        ),
    )
    def check(body: bytes, content_type: str) -> None:
        headers = {"content-type": content_type} if content_type else {}
        response = fuzz_client.post(route, content=body, headers=headers)
        assert_client_error_or_success(response, body)

    check()


def test_made_up_feedback_tokens_are_refused_with_403_or_422_never_recorded(fuzz_client, labels):
    """Token-shaped strings (what a guesser sends) get 403, anything else 422; none is a 2xx or 5xx."""
    from app.feedback import TOKEN

    @FUZZ
    @given(token=st.from_regex(TOKEN, fullmatch=True) | st.text(max_size=60), label=st.sampled_from(labels))
    def check(token: str, label: object) -> None:
        response = fuzz_client.post("/feedback", json={"feedback_token": token, "label": label})
        expected = 403 if TOKEN.fullmatch(token) else 422
        assert response.status_code == expected, (token, response.text)
        assert response.json()["field"] == "body.feedback_token"

    check()
