"""Bad input gets a 4xx that names the field and the rule; it is never scored nor captured.

One test per kind of bad input. The record-level cases are built from the data contract,
so they follow it when features change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.support.serving import MODEL_NAME, infer_body, read_capture, sample_records

INFER = f"/v2/models/{MODEL_NAME}/infer"


def valid_record(contract) -> dict[str, Any]:
    return sample_records(contract, 1, seed=1)[0]


def rejected(response, status: int, field: str, rule: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["field"] == field, body
    assert body["rule"] == rule, body
    assert field in body["error"]
    return body


def predict(client: TestClient, *records: dict[str, Any]):
    return client.post("/predict", json={"records": list(records)})


def first(features, predicate):
    for feature in features:
        if predicate(feature):
            return feature
    pytest.skip("the contract has no such feature")


# -- record-level rules (/predict, 422) ----------------------------------------------------------
def test_it_rejects_a_record_missing_a_feature(client, contract):
    record = valid_record(contract)
    name = contract.feature_names[0]
    del record[name]
    rejected(predict(client, record), 422, f"records[0].{name}", "required")


def test_it_rejects_a_record_with_a_feature_the_contract_does_not_have(client, contract):
    record = valid_record(contract) | {"favourite_colour": "blue"}
    rejected(predict(client, record), 422, "records[0].favourite_colour", "unknown_field")


def test_it_rejects_text_where_a_number_is_expected(client, contract):
    feature = contract.numeric[0]
    body = rejected(
        predict(client, valid_record(contract) | {feature.name: "41"}),
        422,
        f"records[0].{feature.name}",
        "type",
    )
    assert '"41"' in body["error"]


def test_it_rejects_a_boolean_where_a_number_is_expected(client, contract):
    feature = contract.numeric[0]
    rejected(
        predict(client, valid_record(contract) | {feature.name: True}),
        422,
        f"records[0].{feature.name}",
        "type",
    )


def test_it_rejects_a_number_where_a_category_is_expected(client, contract):
    feature = contract.categorical[0]
    rejected(
        predict(client, valid_record(contract) | {feature.name: 3}), 422, f"records[0].{feature.name}", "type"
    )


def test_it_rejects_null_in_a_feature_that_is_not_nullable(client, contract):
    feature = first(contract.features, lambda f: not f.nullable)
    rejected(
        predict(client, valid_record(contract) | {feature.name: None}),
        422,
        f"records[0].{feature.name}",
        "not_null",
    )


def test_it_rejects_nan_which_json_cannot_carry(client, contract):
    feature = contract.numeric[0]
    text = orjson.dumps({"records": [valid_record(contract)]}).decode()
    text = text.replace(f'"{feature.name}":', f'"{feature.name}":NaN,"x":', 1)
    response = client.post("/predict", content=text, headers={"content-type": "application/json"})
    rejected(response, 400, "body", "json")


def test_it_rejects_the_string_nan_in_a_numeric_feature(client, contract):
    feature = contract.numeric[0]
    rejected(
        predict(client, valid_record(contract) | {feature.name: "NaN"}),
        422,
        f"records[0].{feature.name}",
        "type",
    )


def test_it_rejects_a_number_above_the_contract_maximum(client, contract):
    feature = first(contract.numeric, lambda f: f.max is not None)
    body = rejected(
        predict(client, valid_record(contract), valid_record(contract) | {feature.name: feature.max + 1}),
        422,
        f"records[1].{feature.name}",
        "maximum",
    )
    assert f"{feature.max:g}" in body["error"]


def test_it_rejects_a_number_below_the_contract_minimum(client, contract):
    feature = first(contract.numeric, lambda f: f.min is not None)
    rejected(
        predict(client, valid_record(contract) | {feature.name: feature.min - 1}),
        422,
        f"records[0].{feature.name}",
        "minimum",
    )


def test_it_rejects_a_fraction_in_an_integer_feature(client, contract):
    feature = first(contract.numeric, lambda f: f.dtype == "int64" and (f.max or 100) - (f.min or 0) >= 2)
    value = (feature.min or 0) + 1.5
    rejected(
        predict(client, valid_record(contract) | {feature.name: value}),
        422,
        f"records[0].{feature.name}",
        "integer",
    )


def test_it_rejects_an_unseen_category_by_default(client, contract):
    feature = contract.categorical[0]
    body = rejected(
        predict(client, valid_record(contract) | {feature.name: "martian"}),
        422,
        f"records[0].{feature.name}",
        "category",
    )
    assert "martian" in body["error"] and feature.categories[0] in body["error"]


def test_it_rejects_an_unlisted_value_of_the_sensitive_attribute(client, contract):
    if contract.sensitive is None or not contract.sensitive.categories:
        pytest.skip("the contract has no sensitive attribute with categories")
    name = contract.sensitive.name
    rejected(predict(client, valid_record(contract) | {name: "other"}), 422, f"records[0].{name}", "category")


# -- batch and body rules ----------------------------------------------------------------------------
def test_it_rejects_an_empty_batch(client):
    rejected(client.post("/predict", json={"records": []}), 422, "records", "min_rows")


def test_it_rejects_a_batch_over_the_limit(settings_for, contract):
    with TestClient(create_app(settings_for(max_batch_rows=5))) as client:
        body = rejected(predict(client, *sample_records(contract, 6)), 422, "records", "max_rows")
    assert "5" in body["error"]


def test_it_rejects_malformed_json(client):
    response = client.post("/predict", content=b'{"records": [', headers={"content-type": "application/json"})
    rejected(response, 400, "body", "json")


def test_it_rejects_a_body_that_is_not_an_object(client, contract):
    rejected(client.post("/predict", json=[valid_record(contract)]), 422, "body", "type")


def test_it_rejects_a_body_without_records(client):
    rejected(client.post("/predict", json={"rows": []}), 422, "records", "required")


def test_it_rejects_records_that_are_not_a_list(client, contract):
    rejected(client.post("/predict", json={"records": valid_record(contract)}), 422, "records", "type")


def test_it_rejects_a_record_that_is_not_an_object(client):
    rejected(client.post("/predict", json={"records": [[1, 2, 3]]}), 422, "records[0]", "type")


def test_it_rejects_unknown_top_level_fields(client, contract):
    body = {"records": [valid_record(contract)], "debug": True}
    rejected(client.post("/predict", json=body), 422, "debug", "unknown_field")


def test_it_rejects_an_oversized_body_by_its_declared_length(settings_for, contract):
    with TestClient(create_app(settings_for(max_body_bytes=2048))) as client:
        response = client.post("/predict", json={"records": sample_records(contract, 50)})
    rejected(response, 413, "body", "max_bytes")


def test_it_rejects_an_oversized_body_sent_in_chunks_without_a_length(settings_for):
    def stream():
        for _ in range(10):
            yield b" " * 1024

    with TestClient(create_app(settings_for(max_body_bytes=4096))) as client:
        response = client.post("/predict", content=stream(), headers={"content-type": "application/json"})
    rejected(response, 413, "body", "max_bytes")


def test_it_rejects_a_body_that_is_not_json_by_content_type(client, contract):
    response = client.post(
        "/predict",
        content=orjson.dumps({"records": [valid_record(contract)]}),
        headers={"content-type": "text/csv"},
    )
    body = rejected(response, 415, "content-type", "media_type")
    assert "text/csv" in body["error"]


def test_it_rejects_a_form_post(client):
    rejected(client.post("/predict", data={"records": "x"}), 415, "content-type", "media_type")


def test_it_answers_405_to_the_wrong_method(client):
    response = client.get("/predict")
    assert response.status_code == 405
    assert "error" in response.json()


def test_rejected_requests_are_neither_scored_nor_captured(settings_for, contract):
    settings = settings_for()
    with TestClient(create_app(settings)) as client:
        predict(client, valid_record(contract) | {contract.feature_names[0]: "x"})
        client.post("/predict", json={"records": []})
        metrics = client.get("/metrics").text
    assert (
        "model_score_count 0.0" if contract.target.is_classification else "model_value_count 0.0"
    ) in metrics
    assert read_capture(Path(settings.capture_uri)) == []


# -- Open Inference Protocol (400 with {"error"}) ----------------------------------------------------
def infer_case(contract, change) -> dict[str, Any]:
    body = infer_body(contract, sample_records(contract, 2, sensitive=False))
    change(body, {tensor["name"]: tensor for tensor in body["inputs"]})
    return body


def set_in(tensor: dict[str, Any], **values: Any) -> None:
    tensor.update(values)


OIP_CASES = {
    "shape_disagrees_with_data": (lambda b, t: set_in(t["age"], shape=[3, 1]), "inputs[age].data", "shape"),
    "shape_not_one_column": (lambda b, t: set_in(t["age"], shape=[1, 2]), "inputs[age].shape", "shape"),
    "bytes_for_a_number": (
        lambda b, t: set_in(t["age"], datatype="BYTES"),
        "inputs[age].datatype",
        "datatype",
    ),
    "fp32_for_text": (
        lambda b, t: set_in(t["region"], datatype="FP32"),
        "inputs[region].datatype",
        "datatype",
    ),
    "unknown_datatype": (lambda b, t: set_in(t["age"], datatype="FLOAT"), "inputs[age].datatype", "datatype"),
    "text_in_fp32_data": (lambda b, t: set_in(t["age"], data=["41", 42]), "inputs[age].data[0]", "type"),
    "fraction_in_int64_data": (
        lambda b, t: set_in(t["age"], datatype="INT64", data=[41, 41.5]),
        "inputs[age].data[1]",
        "datatype",
    ),
    "nested_data": (lambda b, t: set_in(t["age"], data=[[41], [42]]), "inputs[age].data[0]", "type"),
    "out_of_range": (lambda b, t: set_in(t["age"], data=[41, 1000]), "inputs[age].data[1]", "maximum"),
    "unseen_category": (
        lambda b, t: set_in(t["region"], data=["north", "mars"]),
        "inputs[region].data[1]",
        "category",
    ),
    "unknown_input": (lambda b, t: set_in(t["age"], name="height"), "inputs[0].name", "unknown_input"),
    "missing_input": (lambda b, t: b["inputs"].pop(0), "inputs[age]", "required"),
    "duplicate_input": (lambda b, t: b["inputs"].append(dict(t["age"])), "inputs[9].name", "duplicate"),
    "rows_disagree": (
        lambda b, t: set_in(t["region"], shape=[1, 1], data=["north"]),
        "inputs[region].shape",
        "batch",
    ),
    "empty_batch": (
        lambda b, t: [set_in(tensor, shape=[0, 1], data=[]) for tensor in b["inputs"]],
        "inputs",
        "min_rows",
    ),
    "id_not_a_string": (lambda b, t: b.update(id=7), "id", "type"),
    "unknown_output": (
        lambda b, t: b.update(outputs=[{"name": "logits"}]),
        "outputs[0].name",
        "unknown_output",
    ),
    "unknown_field": (lambda b, t: b.update(extra=1), "extra", "unknown_field"),
    "no_inputs": (lambda b, t: b.pop("inputs"), "inputs", "required"),
}


@pytest.mark.parametrize("case", list(OIP_CASES))
def test_oip_infer_rejects_a_malformed_request_with_400(client, contract, case):
    if {"age", "region"} - set(contract.feature_names):
        pytest.skip("these cases name the example contract's features")
    change, field, rule = OIP_CASES[case]
    response = client.post(INFER, json=infer_case(contract, change))
    rejected(response, 400, field, rule)


def test_oip_infer_rejects_malformed_json_with_400(client):
    response = client.post(INFER, content=b"{inputs:", headers={"content-type": "application/json"})
    rejected(response, 400, "body", "json")


def test_oip_infer_of_an_unknown_model_is_404(client, contract):
    response = client.post("/v2/models/other/infer", json=infer_body(contract, sample_records(contract, 1)))
    rejected(response, 404, "model", "unknown_model")


def test_oip_infer_of_an_unknown_version_is_404(client, contract):
    path = f"/v2/models/{MODEL_NAME}/versions/1999/infer"
    rejected(
        client.post(path, json=infer_body(contract, sample_records(contract, 1))),
        404,
        "model_version",
        "unknown_version",
    )


# -- /feedback -------------------------------------------------------------------------------------------
TOKEN = "req.0.AAAAAAAAAAAAAAAAAAAAAA"  # noqa: S105 shaped like a feedback token, never issued


VALID = "<a valid label of the contract's task>"


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ({"feedback_token": "", "label": VALID}, "body.feedback_token", "format"),
        ({"label": VALID}, "body.feedback_token", "required"),
        ({"feedback_token": TOKEN, "label": VALID, "note": "x"}, "body.note", "unknown_field"),
        ({"request_id": "r", "row": 0, "label": VALID}, "body.request_id", "unknown_field"),
        ([], "body", "min_rows"),
        ([{"feedback_token": TOKEN}], "[0].label", "label"),
    ],
    ids=["empty_token", "no_token", "extra_field", "request_id_instead_of_a_token", "empty_list", "no_label"],
)
def test_feedback_rejects_labels_that_cannot_be_joined(client, labels, contract, body, field, rule):
    items = body if isinstance(body, list) else [body]
    for item in items:
        if item.get("label") == VALID:
            item["label"] = labels[0]
    rule = rule if rule != "label" else ("category" if contract.target.is_classification else "type")
    rejected(client.post("/feedback", json=body), 422, field, rule)


def wrong_labels(contract) -> list[object]:
    """Labels of the wrong value or JSON type for the contract's target (1 is not "1", true is not 1)."""
    target = contract.target
    if not target.is_classification:
        return ["1.5", True, None, [1.0], {"value": 1}]
    first = target.classes[0]
    if target.dtype == "string":
        others = [1, True, "not-" + first]
    elif target.dtype == "int64":
        others = [True, str(first), first + 0.5, max(target.classes) + 1]
    else:  # bool
        others = [1, 0, "true"]
    return [*others, None, [first]]


def test_feedback_refuses_a_label_that_is_not_a_class_or_a_number_naming_it(client, contract):
    for label in wrong_labels(contract):
        response = client.post("/feedback", json={"feedback_token": TOKEN, "label": label})
        rule = "category" if contract.target.is_classification else "type"
        rejected(response, 422, "body.label", rule)
        shown = orjson.dumps(label).decode() if not isinstance(label, list | dict) else type(label).__name__
        assert f"(got {shown})" in response.json()["error"], (label, response.json())
