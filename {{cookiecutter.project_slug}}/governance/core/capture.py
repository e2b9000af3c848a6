"""The capture record: what serving writes for every scored row and every label fed back.

One schema, two sides: the service builds each line with `prediction_line` / `feedback_line`
(plain dicts, serialised by orjson on the writer thread: a model object per row would cost
more than scoring it), and monitoring derives its reader's column types from the same two
records (`COLUMNS`). Capture lives under CAPTURE_URI as
`date=YYYY-MM-DD/<stream>.jsonl`, one JSON object per line.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from governance.core.records import Record

Value = float | int | str | None
Answer = bool | int | float | str  # a class value of the contract's type, or a regression value


class PredictionRecord(Record):
    """One scored row."""

    kind: Literal["prediction"] = "prediction"
    prediction_id: str = Field(description="<request_id>:<row>, the key feedback refers to")
    request_id: str
    row: int = Field(ge=0)
    timestamp: str = Field(description="ISO 8601, UTC, microseconds")
    model_name: str
    model_version: str
    features: dict[str, Value] = Field(description="the model inputs, by contract name")
    sensitive: dict[str, str | None] = Field(default_factory=dict, description="bias-only columns sent")
    label: Answer = Field(description="the predicted class (a contract class value), or the predicted value")
    scores: list[float] = Field(
        description="class probabilities in the contract's class order; empty for regression"
    )


class FeedbackRecord(Record):
    """A ground-truth label for an earlier prediction.

    Serving writes one only for a prediction named by the feedback token its answer carried
    (app/feedback.py), and never rewrites one: a second label for the same prediction is a new
    line, so every relabel stays in the capture; `governance/policy.yaml` (`feedback.relabel`)
    says which label the reader keeps.
    """

    kind: Literal["feedback"] = "feedback"
    request_id: str
    row: int = Field(ge=0)
    prediction_id: str = Field(description="<request_id>:<row> of the prediction the token named")
    label: Answer = Field(description="the true class (a contract class value), or the observed value")
    timestamp: str
    labelled_by: str | None = Field(
        None, description="fingerprint of the API key that sent it (FEEDBACK_API_KEYS_FILE), else null"
    )


class ShadowRecord(Record):
    """The challenger's answer to a row the champion answered (SHADOW_MODEL_PATH set).

    Written off the response path after the champion's `PredictionRecord`, under the same
    `prediction_id`, so `make compare` joins both answers, and the labels fed back for the
    champion's prediction, on that key. Monitoring's drift and performance readers skip this kind.
    """

    kind: Literal["shadow"] = "shadow"
    prediction_id: str = Field(description="<request_id>:<row> of the champion's prediction")
    request_id: str
    row: int = Field(ge=0)
    timestamp: str = Field(description="ISO 8601, UTC, microseconds (when the challenger scored it)")
    model_name: str
    model_version: str = Field(description="the challenger's version")
    champion_version: str
    label: Answer = Field(description="the challenger's class or value")
    scores: list[float] = Field(description="the challenger's class probabilities; empty for regression")
    latency_ms: float = Field(
        ge=0,
        description="the challenger's scoring time for the request: its rows' share of the batched "
        "challenger call that scored it (app/shadow.py)",
    )
    champion_latency_ms: float = Field(ge=0, description="the champion's scoring time for the request")


# Logical column types of a capture line (both kinds share one file, so one column set).
# "features" and "sensitive" are structs typed from the data contract by the reader.
COLUMNS: dict[str, str] = {
    "kind": "string",
    "prediction_id": "string",
    "request_id": "string",
    "row": "integer",
    "timestamp": "timestamp",
    "model_name": "string",
    "model_version": "string",
    "features": "features",
    "sensitive": "sensitive",
    "label": "target",  # typed from the contract's target (class values, or numbers for regression)
    "scores": "scores",
    "labelled_by": "string",
}


def prediction_id(request_id: str, row: int) -> str:
    return f"{request_id}:{row}"


def prediction_line(
    *,
    request_id: str,
    row: int,
    timestamp: str,
    model_name: str,
    model_version: str,
    features: dict[str, Any],
    sensitive: dict[str, Any],
    label: Answer,
    scores: list[float],
) -> dict[str, Any]:
    """A `PredictionRecord` as the dict the writer serialises (fields in the record's order)."""
    return {
        "kind": "prediction",
        "prediction_id": prediction_id(request_id, row),
        "request_id": request_id,
        "row": row,
        "timestamp": timestamp,
        "model_name": model_name,
        "model_version": model_version,
        "features": features,
        "sensitive": sensitive,
        "label": label,
        "scores": scores,
    }


def shadow_line(
    *,
    request_id: str,
    row: int,
    timestamp: str,
    model_name: str,
    model_version: str,
    champion_version: str,
    label: Answer,
    scores: list[float],
    latency_ms: float,
    champion_latency_ms: float,
) -> dict[str, Any]:
    """A `ShadowRecord` as the dict the writer serialises (fields in the record's order)."""
    return {
        "kind": "shadow",
        "prediction_id": prediction_id(request_id, row),
        "request_id": request_id,
        "row": row,
        "timestamp": timestamp,
        "model_name": model_name,
        "model_version": model_version,
        "champion_version": champion_version,
        "label": label,
        "scores": scores,
        "latency_ms": latency_ms,
        "champion_latency_ms": champion_latency_ms,
    }


def feedback_line(
    *, request_id: str, row: int, label: Answer, timestamp: str, labelled_by: str | None = None
) -> dict[str, Any]:
    """A `FeedbackRecord` as the dict the writer serialises."""
    return {
        "kind": "feedback",
        "request_id": request_id,
        "row": row,
        "prediction_id": prediction_id(request_id, row),
        "label": label,
        "timestamp": timestamp,
        "labelled_by": labelled_by,
    }
