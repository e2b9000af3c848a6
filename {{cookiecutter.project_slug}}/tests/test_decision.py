"""The governance decision: the policy's rules, each one recorded, and the monitoring history."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from data_pipelines.example import example_contract
from monitoring.config import ConfigError, load_policy
from monitoring.decision import (
    INSUFFICIENT,
    NO_RETRAIN,
    RETRAIN,
    append_history,
    decide,
    read_history,
)
from monitoring.detectors import make_detector, score_drift
from monitoring.performance import evaluate
from tests.drift_fixtures import INJECTED, ToyModel, example, inject, write_capture

CONTRACT = example_contract()
POLICY = load_policy()


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return example(4000, seed=0)


@pytest.fixture(scope="module")
def model(reference) -> ToyModel:
    return ToyModel(CONTRACT, reference)


@pytest.fixture(scope="module")
def champion(model) -> dict:
    """The champion's registered metric: measured on held-out rows of the reference distribution."""
    held_out = example(4000, seed=99)
    return {"roc_auc": evaluate(score(held_out, model), CONTRACT, "roc_auc", 100).value}


def score(frame: pd.DataFrame, model: ToyModel) -> pd.DataFrame:
    frame = frame.copy()
    frame["score"] = model.scores(frame)
    frame["predicted_label"] = (frame["score"] >= 0.5).astype(np.int64)
    frame["defaulted"] = pd.array(frame["defaulted"], dtype="Int64")
    return frame


def window(model: ToyModel, n_rows: int, seed: int, *, degrade: float = 0.0) -> pd.DataFrame:
    """A captured window: the model's scores, true labels, and (with degrade) labels it gets wrong."""
    frame = score(example(n_rows, seed=seed), model)
    rng = np.random.default_rng(seed)
    flip = rng.random(n_rows) < degrade
    truth = frame["defaulted"].to_numpy().copy()
    truth[flip] = rng.integers(0, 2, flip.sum())
    frame["defaulted"] = pd.array(truth, dtype="Int64")
    return frame


def run(current: pd.DataFrame, reference: pd.DataFrame, model: ToyModel, champion: dict):
    drift = make_detector("scipy", CONTRACT, POLICY.p_value, POLICY.correction).fit(reference).check(current)
    scores = score_drift(model.scores(reference), current["score"].to_numpy(), POLICY.p_value)
    performance = evaluate(current, CONTRACT, POLICY.primary_metric, POLICY.min_labelled_rows, champion, 0.05)
    return decide(POLICY, len(current), drift, scores, performance), performance


def test_a_healthy_window_does_not_retrain(reference, model, champion):
    decision, performance = run(window(model, 2000, seed=3), reference, model, champion)
    assert decision.status == NO_RETRAIN, decision.reasons
    assert abs(performance.drop) < 0.03
    assert {check.name for check in decision.checks} == {
        "drifted_feature_share",
        "score_drift",
        "metric_drop",
        "min_primary_metric",
        "bias_gap",
    }


def test_a_labelled_window_with_degraded_accuracy_triggers_retraining(reference, model, champion):
    decision, performance = run(window(model, 2000, seed=3, degrade=0.5), reference, model, champion)
    assert decision.status == RETRAIN
    assert performance.drop > POLICY.max_metric_drop
    assert any(reason.startswith("metric_drop") for reason in decision.reasons)
    assert not any(reason.startswith("drifted_feature_share") for reason in decision.reasons)


def test_feature_drift_beyond_the_policy_share_triggers_retraining(reference, model, champion):
    decision, _ = run(score(inject(example(2000, seed=4)), model), reference, model, champion)
    assert decision.retrain
    share = next(check for check in decision.checks if check.name == "drifted_feature_share")
    assert share.triggered and share.value == pytest.approx(len(INJECTED) / len(CONTRACT.features))
    assert all(name in share.detail for name in INJECTED)


def test_a_bias_gap_beyond_the_policy_triggers_retraining(reference, model, champion):
    current = window(model, 2000, seed=5)
    current["predicted_label"] = (current["sex"] == "male").astype(np.int64)
    decision, performance = run(current, reference, model, champion)
    assert performance.bias_gap == pytest.approx(1.0)
    assert any(reason.startswith("bias_gap") for reason in decision.reasons)


def test_too_few_rows_give_no_decision(reference):
    decision = decide(POLICY, POLICY.min_window_rows - 1, None, None, None)
    assert decision.status == INSUFFICIENT and not decision.retrain
    assert "min_window_rows" in decision.notes[0]


def test_too_few_labels_leave_the_metric_unknown_with_a_note(model, champion):
    current = window(model, 500, seed=6)
    current["defaulted"] = pd.array([pd.NA] * 450 + [1, 0] * 25, dtype="Int64")
    performance = evaluate(current, CONTRACT, "roc_auc", 100, champion, None)
    assert performance.value is None and performance.labelled_rows == 50
    assert "fewer than drift.min_labelled_rows=100" in performance.notes[0]


def test_every_run_appends_one_history_line(tmp_path):
    path = tmp_path / "governance" / "monitoring_history.jsonl"
    append_history(path, {"status": "no_retrain", "run_at": "t1"})
    append_history(path, {"status": "retrain", "run_at": "t2", "reasons": ["x"]})
    assert [record["status"] for record in read_history(path)] == ["no_retrain", "retrain"]
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_the_policy_file_is_checked_key_by_key(tmp_path):
    policy = tmp_path / "policy.yaml"
    text = (load_policy.__defaults__[0]).read_text()
    policy.write_text(text.replace("correction: bonferroni", "correction: holm"))
    with pytest.raises(ConfigError, match=r"drift.correction must be one of .* \(got 'holm'\)"):
        load_policy(policy)
    policy.write_text(text.replace("max_drifted_feature_share: 0.25", "max_drifted_feature_share: 2"))
    with pytest.raises(
        ConfigError, match=r"retrain.max_drifted_feature_share must be a number between 0 and 1"
    ):
        load_policy(policy)
    assert dataclasses.asdict(POLICY)["p_value"] == 0.05


# -- end to end: `python -m monitoring.cli drift` on a trained, registered workspace ---------------


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A project-shaped folder with a registered model (see tests/ml_support.py)."""
    from ml import cli as ml_cli
    from tests.ml_support import copy_workspace

    root, version = copy_workspace(tmp_path_factory, "monitoring")
    assert ml_cli.main(["register", "--root", str(root)]) == 0
    return root, version


def capture_from(root, frame, name: str):
    from monitoring import reference

    champion, _ = reference.champion(root=root)
    capture = root / "captures" / name
    write_capture(capture, frame, CONTRACT, reference.model_scores(champion.model_path, frame, CONTRACT))
    return capture


def drift_cli(root, capture, *extra: str) -> dict:
    from monitoring import cli

    code = cli.main(
        ["drift", "--root", str(root), "--capture-uri", str(capture), "--detector", "scipy", *extra]
    )
    assert code == 0
    return json.loads((root / "reports" / "drift" / "drift.json").read_text())


def test_the_cli_turns_a_degraded_labelled_window_into_a_validated_retraining_request(workspace):
    from monitoring import cli

    root, version = workspace
    snapshots_before = set((root / "artifacts" / "snapshots").iterdir())
    capture = capture_from(root, example(1200, seed=31, concept_drift=1.0), "degraded")
    summary = drift_cli(root, capture)
    decision = summary["decision"]
    assert decision["status"] == RETRAIN
    assert any(reason.startswith("metric_drop") for reason in decision["reasons"])
    assert summary["reference"]["model_version"] == version
    assert summary["window"]["labelled_rows"] == 600
    dataset = summary["dataset"]
    assert dataset["valid"] and dataset["manifest"]["rows"] == 600
    new = set((root / "artifacts" / "snapshots").iterdir()) - snapshots_before
    assert {path.name for path in new} >= {dataset["manifest"]["snapshot_id"]}
    for name in ("report.html", "summary.md", "drift.json"):
        assert (root / "reports" / "drift" / name).stat().st_size > 0
    history = read_history(root / "governance" / "monitoring_history.jsonl")
    assert (
        history[-1]["status"] == RETRAIN and history[-1]["snapshot_id"] == dataset["manifest"]["snapshot_id"]
    )

    assert cli.main(["retrain-pr", "--root", str(root), "--dry-run"]) == 0
    plan = json.loads((root / "reports" / "drift" / "retrain_pr.json").read_text())
    assert plan["branch"] == "retrain/auto"
    request = json.loads(plan["files"]["governance/retraining/request.json"])
    assert request["snapshot"]["snapshot_id"] == dataset["manifest"]["snapshot_id"]
    assert plan["files"]["governance/monitoring_history.jsonl"].count("\n") == len(history)


def test_a_window_that_fails_validation_is_reported_and_never_becomes_training_data(workspace, capsys):
    from monitoring import cli

    root, _ = workspace
    frame = example(1200, seed=32, concept_drift=1.0)
    frame.loc[frame.index[:40], "age"] = 150  # outside the contract's range
    snapshots_before = sorted((root / "artifacts" / "snapshots").iterdir())
    summary = drift_cli(root, capture_from(root, frame, "invalid"))
    assert summary["decision"]["status"] == "retrain_blocked"
    assert not summary["dataset"]["valid"]
    assert any("age" in error for error in summary["dataset"]["errors"])
    assert sorted((root / "artifacts" / "snapshots").iterdir()) == snapshots_before
    assert cli.main(["retrain-pr", "--root", str(root), "--dry-run"]) == 0
    assert "failed validation" in capsys.readouterr().out


def test_a_window_too_small_to_judge_is_recorded_without_a_decision(workspace):
    root, _ = workspace
    summary = drift_cli(root, capture_from(root, example(50, seed=33), "small"))
    assert summary["decision"]["status"] == INSUFFICIENT and summary["drift"] is None
    assert read_history(root / "governance" / "monitoring_history.jsonl")[-1]["status"] == INSUFFICIENT
