"""Records are validated once where they are read; a broken one names its field, rule and value."""

from __future__ import annotations

import pytest

from governance.core.capture import COLUMNS, FeedbackRecord, PredictionRecord, feedback_line, prediction_line
from governance.core.records import (
    Decision,
    DriftSummary,
    RecordError,
    ReferenceInfo,
    Registry,
    Window,
    parse,
    read_drift_summary,
    write_json,
)


def entry(version: str, stage: str = "candidate", passed: bool = True) -> dict:
    return {
        "version": version,
        "model_name": "m",
        "model_family": "linear",
        "stage": stage,
        "artifact": {"path": f"artifacts/models/{version}/model.onnx", "sha256": "a" * 64},
        "data": {"snapshot_id": "abc", "sha256": "b" * 64},
        "contract_sha256": "c" * 64,
        "code_commit": "unknown",
        "metrics": {"roc_auc": 0.8},
        "bias": {"metric": "selection_rate"},
        "gates": {"primary_metric": {"passed": passed}},
        "parity": {"max_abs_diff": 0.0, "labels_equal": True},
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
    }


def test_a_registry_with_one_champion_reads_back():
    registry = parse(
        Registry, {"version": 1, "models": [entry("v1", "production"), entry("v2")]}, "registry.yaml"
    )
    assert registry.champion is not None and registry.champion.version == "v1"
    assert registry.get("v2").stage == "candidate"


@pytest.mark.parametrize(
    ("models", "message"),
    [
        ([entry("v1", "production"), entry("v2", "production")], "at most one entry in stage 'production'"),
        ([entry("v1"), entry("v1")], "each version once"),
        ([entry("v1", passed=False)], "only with an override reason"),
        ([{**entry("v1"), "stage": "live"}], "field 'models[0].stage'"),
        ([{**entry("v1"), "colour": "red"}], "field 'models[0].colour' is not a known field"),
    ],
)
def test_a_broken_registry_is_refused_with_the_reason(models, message):
    with pytest.raises(RecordError) as refusal:
        parse(Registry, {"version": 1, "models": models}, "registry.yaml")
    assert message in str(refusal.value) and str(refusal.value).startswith("registry.yaml: field")


def test_a_drift_summary_round_trips_through_drift_json(tmp_path):
    summary = DriftSummary(
        run_at="2026-01-01T00:00:00+00:00",
        detector="scipy",
        policy={"p_value": 0.05},
        window=Window(uri="capture", rows=10, labelled_rows=2),
        reference=ReferenceInfo(snapshot_id="abc", rows=5),
        decision=Decision(status="insufficient_data", notes=("too few rows",)),
    )
    path = write_json(summary, tmp_path / "drift.json")
    assert '"history_record"' in path.read_text()  # written for readers, derived again on load
    assert read_drift_summary(path) == summary


def test_the_capture_lines_are_the_capture_records():
    """Serving writes lines with these two functions; monitoring reads the COLUMNS they share."""
    prediction = prediction_line(
        request_id="r",
        row=0,
        timestamp="2026-01-01T00:00:00.000000+00:00",
        model_name="m",
        model_version="v",
        features={"age": 30},
        sensitive={},
        label=1,
        scores=[0.2, 0.8],
    )
    feedback = feedback_line(request_id="r", row=0, label=1, timestamp="2026-01-02T00:00:00.000000+00:00")
    assert list(prediction) == list(PredictionRecord.model_fields)
    assert list(feedback) == list(FeedbackRecord.model_fields)
    PredictionRecord.model_validate(prediction)
    FeedbackRecord.model_validate(feedback)
    assert set(COLUMNS) == set(PredictionRecord.model_fields) | set(FeedbackRecord.model_fields)
    assert feedback["prediction_id"] == prediction["prediction_id"]
