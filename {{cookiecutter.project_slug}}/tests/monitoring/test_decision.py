"""The governance decision: the policy's rules, each one recorded, and the monitoring history.

On the example data of this project's task (the contract says which); tests/monitoring/test_tasks.py
checks every task's directions on real datasets.
"""

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
from governance.core.tasks import higher_is_better
from monitoring.decision import append_history, decide, read_history
from monitoring.detectors import make_detector, prediction_drift
from monitoring.performance import evaluate
from monitoring.predictions import from_scores, from_window, signal_columns
from tests.support.drift import INJECTED, ToyModel, example, inject, registry_entry

CONTRACT = example_contract()
TARGET = CONTRACT.target
POLICY = policy_file.load(task=CONTRACT.task)


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
    return model.window(frame)


def window(model: ToyModel, n_rows: int, seed: int, *, degrade: float = 0.0) -> pd.DataFrame:
    """A captured window: the model's answers, true labels, and (with degrade) labels it gets wrong.

    A degraded row's label is drawn at random: any class, or any observed value (regression).
    """
    frame = score(example(n_rows, seed=seed), model)
    rng = np.random.default_rng(seed)
    flip = rng.random(n_rows) < degrade
    truth = frame[TARGET.name].to_numpy(dtype=object).copy()
    pool = np.array(TARGET.classes if TARGET.is_classification else truth, dtype=object)
    truth[flip] = rng.choice(pool, flip.sum())
    frame[TARGET.name] = pd.Series(truth, index=frame.index).astype(frame[TARGET.name].dtype)
    return frame


def run(current: pd.DataFrame, reference: pd.DataFrame, model: ToyModel, champion: RegistryEntry):
    rules = POLICY.drift
    drift = make_detector("scipy", CONTRACT, rules.p_value, rules.correction).fit(reference).check(current)
    scores, _ = prediction_drift(
        from_scores(model.scores(reference), TARGET),
        from_window(current, TARGET),
        signal_columns(TARGET),
        rules.p_value,
        rules.correction,
    )
    performance = evaluate(current, CONTRACT, POLICY, champion)
    return decide(POLICY, len(current), drift, scores, performance), performance


def test_a_healthy_window_does_not_retrain(reference, model, champion):
    decision, performance = run(window(model, 2000, seed=3), reference, model, champion)
    assert decision.status == "no_retrain", decision.reasons
    assert not decision.retrain
    assert abs(performance.drop) < 0.05, "a window like the champion's test split scores like it"
    assert performance.drop < POLICY.retrain.max_metric_drop
    assert performance.champion_value == champion.metrics[POLICY.model.primary_metric]
    assert performance.champion_bias_gap == champion.bias.largest_gap
    bound = "min_primary_metric" if higher_is_better(POLICY.model.primary_metric) else "max_primary_metric"
    assert {check.name for check in decision.checks} == {
        "drifted_feature_share",
        "score_drift",
        "metric_drop",
        bound,
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


def unfair(current: pd.DataFrame) -> tuple[pd.Series, float]:
    """Answers that treat men and women differently under the policy's bias metric, and the gap."""
    male = (current["sex"] == "male").to_numpy()
    truth = current[TARGET.name]
    if not TARGET.is_classification:  # exact for women, 10 off for men: mae 0 vs 10 over a mean of 5*share
        answers = np.where(male, truth.to_numpy(dtype=float) + 10, truth.to_numpy(dtype=float))
        return pd.Series(answers, index=current.index), 10 / (10 * male.mean())
    if POLICY.bias.metric == "selection_rate":  # men always get one class, women always another
        chosen = (
            TARGET.classes[TARGET.positive_index] if TARGET.positive_class is not None else TARGET.classes[0]
        )
        rest = next(value for value in TARGET.classes if value != chosen)
        answers = np.where(male, np.array(chosen, dtype=object), np.array(rest, dtype=object))
    else:  # right for women, wrong for men
        wrong = [TARGET.classes[(TARGET.classes.index(value) + 1) % len(TARGET.classes)] for value in truth]
        answers = np.where(male, np.array(wrong, dtype=object), truth.to_numpy(dtype=object))
    return pd.Series(answers, index=current.index).astype(current["predicted_label"].dtype), 1.0


def test_a_bias_gap_beyond_the_policy_triggers_retraining(reference, model, champion):
    current = window(model, 2000, seed=5)
    current["predicted_label"], gap = unfair(current)
    decision, performance = run(current, reference, model, champion)
    assert performance.bias_gap == pytest.approx(gap)
    assert any(reason.startswith("bias_gap") for reason in decision.reasons)


def test_too_few_rows_give_no_decision():
    policy = with_rules(POLICY, min_window_rows=300)
    decision = decide(policy, 299, None, None, None)
    assert decision.status == "insufficient_data" and not decision.retrain and not decision.checks
    assert "fewer than drift.min_window_rows=300" in decision.notes[0]
    assert decide(policy, 300, None, None, None).status == "no_retrain"


def test_too_few_labels_leave_the_metric_unknown_with_a_note(model, champion):
    current = window(model, 500, seed=6)
    current.loc[current.index[:450], TARGET.name] = None
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
