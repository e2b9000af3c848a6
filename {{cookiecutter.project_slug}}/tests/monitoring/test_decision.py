"""The governance decision: the policy's rules, each one recorded, and the monitoring history."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from data_pipelines.example import example_contract
from governance.core import policy as policy_file
from governance.core.paths import PATHS
from governance.core.policy import Policy, PolicyError
from governance.core.records import HistoryRecord, RegistryEntry
from monitoring.decision import append_history, decide, read_history
from monitoring.detectors import make_detector, score_drift
from monitoring.performance import evaluate
from tests.support.drift import INJECTED, ToyModel, example, inject, registry_entry

CONTRACT = example_contract()
POLICY = policy_file.load()


def with_rules(policy: Policy, **drift: object) -> Policy:
    """The policy with some drift.* values changed (a reviewed edit of governance/policy.yaml)."""
    return policy.model_copy(update={"drift": policy.drift.model_copy(update=drift)})


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return example(4000, seed=0)


@pytest.fixture(scope="module")
def model(reference) -> ToyModel:
    return ToyModel(CONTRACT, reference)


@pytest.fixture(scope="module")
def champion(model) -> RegistryEntry:
    """The champion's registry entry: its metric measured on held-out rows of the reference distribution."""
    held_out = evaluate(score(example(4000, seed=99), model), CONTRACT, POLICY, None)
    return registry_entry(
        metrics={POLICY.model.primary_metric: held_out.value},
        bias_metric=POLICY.bias.metric,
        bias_gap=held_out.bias_gap,
    )


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


def run(current: pd.DataFrame, reference: pd.DataFrame, model: ToyModel, champion: RegistryEntry):
    rules = POLICY.drift
    drift = make_detector("scipy", CONTRACT, rules.p_value, rules.correction).fit(reference).check(current)
    scores = score_drift(model.scores(reference), current["score"].to_numpy(), rules.p_value)
    performance = evaluate(current, CONTRACT, POLICY, champion)
    return decide(POLICY, len(current), drift, scores, performance), performance


def test_a_healthy_window_does_not_retrain(reference, model, champion):
    decision, performance = run(window(model, 2000, seed=3), reference, model, champion)
    assert decision.status == "no_retrain", decision.reasons
    assert not decision.retrain
    assert abs(performance.drop) < 0.03
    assert performance.champion_value == champion.metrics[POLICY.model.primary_metric]
    assert performance.champion_bias_gap == champion.bias.largest_gap
    assert {check.name for check in decision.checks} == {
        "drifted_feature_share",
        "score_drift",
        "metric_drop",
        "min_primary_metric",
        "bias_gap",
    }


def test_a_labelled_window_with_degraded_accuracy_triggers_retraining(reference, model, champion):
    decision, performance = run(window(model, 2000, seed=3, degrade=0.5), reference, model, champion)
    assert decision.status == "retrain" and decision.retrain
    assert performance.drop > POLICY.retrain.max_metric_drop
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


def test_too_few_rows_give_no_decision():
    policy = with_rules(POLICY, min_window_rows=300)
    decision = decide(policy, 299, None, None, None)
    assert decision.status == "insufficient_data" and not decision.retrain and not decision.checks
    assert "fewer than drift.min_window_rows=300" in decision.notes[0]
    assert decide(policy, 300, None, None, None).status == "no_retrain"


def test_too_few_labels_leave_the_metric_unknown_with_a_note(model, champion):
    current = window(model, 500, seed=6)
    current["defaulted"] = pd.array([pd.NA] * 450 + [1, 0] * 25, dtype="Int64")
    performance = evaluate(current, CONTRACT, with_rules(POLICY, min_labelled_rows=51), champion)
    assert performance.value is None and performance.drop is None and performance.labelled_rows == 50
    assert "50 labelled rows, fewer than drift.min_labelled_rows=51" in performance.notes[0]
    assert evaluate(current, CONTRACT, with_rules(POLICY, min_labelled_rows=50), champion).value is not None


def history_record(run_at: str, status: str, *reasons: str) -> HistoryRecord:
    return HistoryRecord(
        run_at=run_at,
        status=status,
        reasons=reasons,
        detector="scipy",
        window={"uri": "file://capture", "rows": 10},
        reference={"snapshot_id": "0123", "rows": 100},
    )


def test_every_run_appends_one_history_line(tmp_path):
    path = tmp_path / "governance" / "monitoring_history.jsonl"
    first, second = history_record("t1", "no_retrain"), history_record("t2", "retrain", "x")
    append_history(path, first)
    before = path.read_text()
    append_history(path, second)
    assert path.read_text().startswith(before), "past records are never rewritten"
    assert read_history(path) == [first, second]
    assert [json.loads(line)["status"] for line in path.read_text().splitlines()] == ["no_retrain", "retrain"]


def test_the_drift_and_retrain_rules_of_the_policy_are_checked_key_by_key(tmp_path):
    policy = tmp_path / "policy.yaml"
    text = PATHS.policy.read_text()
    assert policy_file.load(PATHS.policy) == POLICY
    policy.write_text(text.replace("correction: bonferroni", "correction: holm"))
    with pytest.raises(PolicyError, match=r"field 'drift\.correction' .*\(got 'holm'\)"):
        policy_file.load(policy)
    policy.write_text(text.replace("max_drifted_feature_share: 0.25", "max_drifted_feature_share: 2"))
    with pytest.raises(
        PolicyError, match=r"field 'retrain\.max_drifted_feature_share' .*less than or equal to 1 \(got 2\)"
    ):
        policy_file.load(policy)
