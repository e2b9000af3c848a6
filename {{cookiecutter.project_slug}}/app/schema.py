"""OpenAPI descriptions of the request and response bodies, derived from the data contract.

The validator (app/validation.py) enforces the same rules; this module only describes
them, so clients and generated SDKs see every feature with its type, range and categories.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from governance.core.contract import Contract, Feature


def feature_schema(feature: Feature, reject_unknown: bool) -> dict[str, Any]:
    if feature.is_numeric:
        schema: dict[str, Any] = {"type": "integer" if feature.dtype == "int64" else "number"}
        if feature.min is not None:
            schema["minimum"] = feature.min
        if feature.max is not None:
            schema["maximum"] = feature.max
    else:
        schema = {"type": "string"}
        if reject_unknown:
            schema["enum"] = list(feature.categories)
        else:
            schema["examples"] = list(feature.categories)
    if feature.nullable:
        schema = {"anyOf": [schema, {"type": "null"}]}
    schema["title"] = feature.name
    if feature.description:
        schema["description"] = feature.description
    return schema


def record_schema(contract: Contract, reject_unknown: bool) -> dict[str, Any]:
    """One record: every contract feature required, nothing else except the sensitive attribute."""
    properties = {feature.name: feature_schema(feature, reject_unknown) for feature in contract.features}
    if contract.sensitive is not None:
        sensitive: dict[str, Any] = {"type": "string"}
        if contract.sensitive.categories and reject_unknown:
            sensitive["enum"] = list(contract.sensitive.categories)
        if contract.sensitive.nullable:
            sensitive = {"anyOf": [sensitive, {"type": "null"}]}
        sensitive["description"] = "Optional; not a model input. Recorded for bias monitoring, never scored."
        properties[contract.sensitive.name] = sensitive
    return {
        "type": "object",
        "title": "Record",
        "properties": properties,
        "required": contract.feature_names,
        "additionalProperties": False,
    }


def predict_request(contract: Contract, max_rows: int, reject_unknown: bool) -> dict[str, Any]:
    return {
        "type": "object",
        "title": "PredictRequest",
        "properties": {
            "records": {
                "type": "array",
                "items": record_schema(contract, reject_unknown),
                "minItems": 1,
                "maxItems": max_rows,
            }
        },
        "required": ["records"],
        "additionalProperties": False,
    }


def infer_request(contract: Contract, max_rows: int) -> dict[str, Any]:
    """Open Inference Protocol request: one tensor per feature, [N, 1], FP32 or BYTES."""
    names = contract.feature_names + ([contract.sensitive.name] if contract.sensitive else [])
    return {
        "type": "object",
        "title": "InferenceRequest",
        "properties": {
            "id": {"type": "string", "description": "echoed in the response"},
            "parameters": {"type": "object"},
            "inputs": {
                "type": "array",
                "minItems": len(contract.feature_names),
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string", "enum": names},
                        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}, "maxItems": 2},
                        "datatype": {
                            "type": "string",
                            "description": "FP32 or another number type for numbers, BYTES for text",
                        },
                        "data": {"type": "array", "maxItems": max_rows},
                        "parameters": {"type": "object"},
                    },
                    "required": ["name", "shape", "datatype", "data"],
                    "additionalProperties": False,
                },
            },
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"name": {"type": "string", "enum": ["label", "probabilities"]}},
                    "required": ["name"],
                },
            },
        },
        "required": ["inputs"],
        "additionalProperties": False,
    }


def feedback_request() -> dict[str, Any]:
    label = {
        "type": "object",
        "properties": {
            "feedback_token": {
                "type": "string",
                "pattern": r"^[A-Za-z0-9_-]{1,128}\.(0|[1-9][0-9]{0,8})\.[A-Za-z0-9_-]{22}$",
                "description": "the feedback_token of the prediction (<request_id>.<row>.<tag>), as "
                "/predict or the OIP parameters.feedback_tokens answered it; a guessed or altered "
                "token is refused (403)",
            },
            "label": {"type": "integer", "description": "the true class"},
        },
        "required": ["feedback_token", "label"],
        "additionalProperties": False,
    }
    return {"anyOf": [label, {"type": "array", "items": label, "minItems": 1}], "title": "Feedback"}


def json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


class Error(BaseModel):
    error: str = Field(description="what is wrong: the field, the rule and the value")
    field: str | None = None
    rule: str | None = None


class Prediction(BaseModel):
    label: int
    probabilities: dict[str, float] = Field(description="class -> probability")
    feedback_token: str = Field(description="send it with the true label to POST /feedback")


class PredictResponse(BaseModel):
    request_id: str = Field(description="also in the x-request-id header, for logs and support")
    model_name: str
    model_version: str
    predictions: list[Prediction]


class OutputTensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[float]


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    parameters: dict[str, str] = Field(
        description="request_id; feedback_tokens: one token per row, comma-separated in row order, "
        "to send with the true label to POST /feedback"
    )
    outputs: list[OutputTensor]


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": Error, "description": text}
    for status, text in (
        (400, "malformed JSON or (OIP) invalid request"),
        (404, "unknown model or version"),
        (413, "body larger than MAX_BODY_BYTES"),
        (415, "not application/json"),
        (422, "a record breaks the data contract, or the batch is empty or over the limit"),
        (503, "model not loaded or capture unavailable"),
    )
}
FEEDBACK_ERRORS: dict[int | str, dict[str, Any]] = {
    **{status: ERRORS[status] for status in (400, 413, 415)},
    401: {"model": Error, "description": "FEEDBACK_API_KEYS_FILE is set, the Bearer key is missing or wrong"},
    403: {"model": Error, "description": "a feedback_token this service did not issue (forged or altered)"},
    422: {"model": Error, "description": "a missing or extra field, a malformed token, a label not a class"},
    503: {"model": Error, "description": "capture off or unavailable: the labels were not recorded"},
}
