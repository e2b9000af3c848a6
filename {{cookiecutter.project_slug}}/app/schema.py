"""OpenAPI descriptions of the request and response bodies, derived from the data contract.

The validator (app/validation.py) enforces the same rules; this module only describes
them, so clients and generated SDKs see every feature with its type, range and categories.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from app.model import LABEL_DATATYPES
from governance.core.contract import Contract, Feature, Target
from governance.core.encoding import outputs_for

JSON_TYPES = {"string": "string", "int64": "integer", "bool": "boolean", "float64": "number"}


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


def label_schema(target: Target, description: str) -> dict[str, Any]:
    """A class value (JSON type of the contract's classes, listed) or, for regression, a number."""
    if not target.is_classification:
        return {"type": "number", "description": description}
    return {
        "type": JSON_TYPES[target.dtype or "int64"],
        "enum": list(target.classes),
        "description": description,
    }


def infer_request(contract: Contract, max_rows: int) -> dict[str, Any]:
    """Open Inference Protocol request: one tensor per feature, [N, 1], FP32 or BYTES.

    The JSON form; with the binary tensor data extension the same object is the body's header
    and an input's `data` is replaced by `parameters.binary_data_size` (app/binary_tensors.py).
    """
    names = contract.feature_names + ([contract.sensitive.name] if contract.sensitive else [])
    return {
        "type": "object",
        "title": "InferenceRequest",
        "properties": {
            "id": {"type": "string", "description": "echoed in the response"},
            "parameters": {
                "type": "object",
                "properties": {
                    "binary_data_output": {
                        "type": "boolean",
                        "description": "answer every output as binary tensor data (default false)",
                    }
                },
            },
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
                        "parameters": {
                            "type": "object",
                            "properties": {
                                "binary_data_size": {
                                    "type": "integer",
                                    "minimum": 0,
                                    "description": "binary tensor data: instead of data, the tensor's bytes "
                                    "follow the JSON header (Inference-Header-Content-Length) in input order",
                                }
                            },
                        },
                    },
                    "required": ["name", "shape", "datatype"],
                    "additionalProperties": False,
                },
            },
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string", "enum": list(outputs_for(contract.task))},
                        "parameters": {
                            "type": "object",
                            "properties": {
                                "binary_data": {
                                    "type": "boolean",
                                    "description": "answer this output as binary tensor data "
                                    "(overrides binary_data_output)",
                                }
                            },
                        },
                    },
                    "required": ["name"],
                },
            },
        },
        "required": ["inputs"],
        "additionalProperties": False,
    }


def feedback_request(target: Target) -> dict[str, Any]:
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
            "label": label_schema(
                target,
                "the true class (one of the contract's classes, of their JSON type)"
                if target.is_classification
                else "the observed value (a finite number)",
            ),
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


def predict_response(target: Target) -> dict[str, Any]:
    """The /predict answer per task: a class value + probabilities per class, or a value."""
    token = {"type": "string", "description": "send it with the true label to POST /feedback"}
    if target.is_classification:
        keys = list(target.class_keys)
        prediction = {
            "type": "object",
            "title": "Prediction",
            "properties": {
                "label": label_schema(target, "the predicted class (a contract class value)"),
                "probabilities": {
                    "type": "object",
                    "description": "class -> probability, every class in the contract's order "
                    '(keys: string classes as they are, others as JSON, e.g. "0", "true")',
                    "properties": {key: {"type": "number", "minimum": 0, "maximum": 1} for key in keys},
                    "required": keys,
                    "additionalProperties": False,
                },
                "feedback_token": token,
            },
            "required": ["label", "probabilities", "feedback_token"],
        }
    else:
        prediction = {
            "type": "object",
            "title": "Prediction",
            "properties": {
                "value": {"type": "number", "description": "the predicted value"},
                "feedback_token": token,
            },
            "required": ["value", "feedback_token"],
        }
    return {
        "type": "object",
        "title": "PredictResponse",
        "properties": {
            "request_id": {
                "type": "string",
                "description": "also in the x-request-id header, for logs and support",
            },
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "predictions": {"type": "array", "items": prediction},
        },
        "required": ["request_id", "model_name", "model_version", "predictions"],
    }


def infer_response(target: Target) -> dict[str, Any]:
    """The OIP answer per task: outputs as the model metadata declares them (app/model.py served_outputs)."""
    if target.is_classification:
        label_type = LABEL_DATATYPES[target.dtype or "int64"]
        described = (
            f"label: {label_type} [N], the predicted class values; "
            f"probabilities: FP32 [N, {len(target.classes)}], row-major, "
            f"classes {list(target.classes)} in order"
        )
        data: dict[str, Any] = {"type": "array", "items": {"type": ["number", "string", "boolean"]}}
    else:
        described = "value: FP32 [N], the predicted values"
        data = {"type": "array", "items": {"type": "number"}}
    tensor = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "enum": list(outputs_for(target.task))},
            "shape": {"type": "array", "items": {"type": "integer"}},
            "datatype": {"type": "string"},
            "data": data,
        },
        "required": ["name", "shape", "datatype", "data"],
        "description": described,
    }
    return {
        "type": "object",
        "title": "InferResponse",
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "parameters": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "request_id; feedback_tokens: one token per row, comma-separated in "
                "row order, to send with the true label to POST /feedback",
            },
            "outputs": {"type": "array", "items": tensor},
        },
        "required": ["model_name", "model_version", "parameters", "outputs"],
    }


def json_response(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": Error, "description": text}
    for status, text in (
        (400, "malformed JSON or (OIP) invalid request"),
        (404, "unknown model or version"),
        (408, "the body did not arrive within BODY_TIMEOUT_SECONDS"),
        (413, "body larger than MAX_BATCH_ROWS rows can take (capped by MAX_BODY_BYTES)"),
        (415, "not application/json (the OIP infer call also takes none, or application/octet-stream)"),
        (422, "a record breaks the data contract, or the batch is empty or over the limit"),
        (503, "model not loaded, capture unavailable, or MAX_CONCURRENT_REQUESTS busy (Retry-After)"),
    )
}
FEEDBACK_ERRORS: dict[int | str, dict[str, Any]] = {
    **{status: ERRORS[status] for status in (400, 408, 413, 415)},
    401: {"model": Error, "description": "FEEDBACK_API_KEYS_FILE is set, the Bearer key is missing or wrong"},
    403: {"model": Error, "description": "a feedback_token this service did not issue (forged or altered)"},
    422: {"model": Error, "description": "a missing or extra field, a malformed token, a label not a class"},
    503: {
        "model": Error,
        "description": "capture off or unavailable (the labels were not recorded), or too many requests",
    },
}
