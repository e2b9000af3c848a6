"""Monitoring of every supervised task, whatever task this project was baked for.

Each task runs on a real dataset scikit-learn ships (tests/support/datasets.py): wine
(multiclass, string classes), diabetes (regression) and breast cancer (binary, word labels,
positive class "malignant"), scored by a small ONNX model with the serving interface and
captured as serving writes capture lines. So the reader's types, the prediction drift, the
window's metrics and bias, the decision's direction, the retraining snapshot and the report
are checked per task in a bake of any task.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
import yaml
from sklearn import metrics as sk

from governance.core import policy as policy_file
from governance.core.capture import prediction_line
from governance.core.contract import Contract
from governance.core.contract import load as load_contract
from governance.core.encoding import Scorer, Scores
from governance.core.paths import Paths
from governance.core.policy import BiasPolicy, ModelPolicy, Policy
from governance.core.records import Performance, sha256_of
from governance.core.tasks import BINARY, MULTICLASS, REGRESSION, higher_is_better, worsening
from monitoring import dataset, reference, report
from monitoring.capture import CaptureError, read_window
from monitoring.decision import decide
from monitoring.detectors import prediction_drift
from monitoring.performance import evaluate
from monitoring.predictions import from_scores, from_window, signal_columns
from tests.support.datasets import TASK_DATASETS, TaskData, onnx_model
from tests.support.drift import drift_summary, registry_entry, write_capture

BASE_POLICY = policy_file.load()
# The policy metric each task is judged on here (both directions appear: rmse is lower-is-better).
PRIMARY = {BINARY: ("roc_auc", 0.7), MULTICLASS: ("f1_macro", 0.6), REGRESSION: ("rmse", 70.0)}
BIAS = {BINARY: "selection_rate", MULTICLASS: "selection_rate", REGRESSION: "mae"}
GROUP = "group"  # the sensitive attribute the tests add to each dataset's contract


def policy_for(
    task: str, metric: str | None = None, bound: float | None = None, bias: str | None = None
) -> Policy:
    """This project's policy with the model and bias sections of `task` (a reviewed edit of policy.yaml)."""
    default_metric, default_bound = PRIMARY[task]
    metric, bound = metric or default_metric, default_bound if bound is None else bound
    side = "min_primary_metric" if higher_is_better(metric) else "max_primary_metric"
    model = ModelPolicy(primary_metric=metric, max_regression_vs_champion=0.02, **{side: bound})
    drift = BASE_POLICY.drift.model_copy(update={"min_labelled_rows": 20, "min_window_rows": 20})
    update = {"model": model, "bias": BiasPolicy(metric=bias or BIAS[task], max_gap=0.15), "drift": drift}
    policy = BASE_POLICY.model_copy(update=update)
    policy_file.check_task(policy, task)
    return policy


@dataclass(frozen=True)
class Case:
    """One task's dataset (with a sensitive attribute added), its ONNX model and its answers."""

    task: str
    data: TaskData
    contract: Contract
    frame: pd.DataFrame
    model: Path
    scores: Scores

    @property
    def target(self):
        return self.contract.target


def with_group(data: TaskData, folder: Path) -> tuple[Contract, pd.DataFrame]:
    """The dataset's contract plus a sensitive attribute `group` (a/b, alternating rows)."""
    raw = yaml.safe_load(data.contract_path.read_text())
    raw["sensitive_attribute"] = {"name": GROUP, "categories": ["a", "b"]}
    path = folder / f"{data.name}-grouped-contract.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    frame = data.frame.copy()
    frame[GROUP] = np.where(np.arange(len(frame)) % 2 == 0, "a", "b")
    return load_contract(path), frame


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict[str, Case]:
    """Each task's case, built once per module on first use."""

    class Built(dict):
        def __missing__(self, task: str) -> Case:
            folder = tmp_path_factory.mktemp(task)
            data = TASK_DATASETS[task](folder)
            model = onnx_model(data, folder / "model.onnx")
            contract, frame = with_group(data, folder)
            columns = {name: frame[name].to_numpy() for name in contract.feature_names}
            self[task] = Case(
                task, data, contract, frame, model, Scorer(model).score_columns(columns, contract)
            )
            return self[task]

    return Built()


@pytest.fixture(params=list(TASK_DATASETS))
def case(request, cases) -> Case:
    return cases[request.param]


@pytest.fixture
def binary(cases) -> Case:
    return cases[BINARY]


@pytest.fixture(params=[BINARY, MULTICLASS])
def classification(request, cases) -> Case:
    return cases[request.param]


def subset(scores: Scores, rows: np.ndarray) -> Scores:
    pick = lambda array: None if array is None else array[rows]  # noqa: E731
    return Scores(
        label=pick(scores.label), probabilities=pick(scores.probabilities), value=pick(scores.value)
    )


def capture(case: Case, root: Path, rows: np.ndarray | None = None, feedback_every: int = 1) -> pd.DataFrame:
    """Capture lines of `rows` of the case as serving writes them, read back as a window."""
    rows = np.arange(len(case.frame)) if rows is None else rows
    frame = case.frame.iloc[rows].reset_index(drop=True)
    write_capture(root, frame, case.contract, subset(case.scores, rows), feedback_every=feedback_every)
    return read_window(str(root), contract=case.contract)


# -- the capture reader -------------------------------------------------------------------------------------


def test_the_reader_types_answers_and_labels_as_the_contract_does(case, tmp_path):
    window = capture(case, tmp_path, feedback_every=2)
    target = case.target
    assert len(window) == len(case.frame)
    labelled = window[target.name].notna()
    assert labelled.sum() == math.ceil(len(case.frame) / 2)
    truth = case.frame[target.name].to_numpy()[labelled.to_numpy()]
    if target.is_classification:
        # class values of the contract's own type (words stay words), in the window and its labels
        assert set(window["predicted_label"].astype(object)) <= set(target.classes)
        expected = target.class_values(case.scores.label)
        assert window["predicted_label"].astype(object).tolist() == expected
        assert window[target.name][labelled].astype(object).tolist() == truth.tolist()
        assert all(isinstance(value, str) for value in window[target.name][labelled].astype(object))
    else:
        assert window["predicted_label"].dtype == np.float64 and window[target.name].dtype == np.float64
        assert np.allclose(window["predicted_label"], case.scores.value, rtol=1e-6)
        assert np.allclose(window[target.name][labelled], truth)
    # the prediction signal: what the reference side computes from the scorer's answers
    assert list(signal_columns(target)) == [c for c in window.columns if c.startswith("score")]
    assert np.allclose(from_window(window, target), from_scores(case.scores, target), rtol=1e-6)


def test_the_reader_reads_boolean_and_integer_classes_as_their_type(binary, tmp_path):
    case = binary
    for coding, classes in (("bool", [False, True]), ("int", [0, 1])):
        raw = yaml.safe_load(case.data.contract_path.read_text())
        raw["target"].update({"classes": classes, "positive_class": classes[1]})
        path = tmp_path / f"{coding}.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        contract = load_contract(path)
        frame = case.data.frame.copy()
        frame[contract.target.name] = np.where(frame["diagnosis"] == "malignant", classes[1], classes[0])
        write_capture(tmp_path / coding, frame, contract, case.scores, feedback_every=1)
        window = read_window(str(tmp_path / coding), contract=contract)
        assert {type(value) for value in window[contract.target.name].astype(object)} == {type(classes[0])}
        assert window["predicted_label"].astype(object).tolist() == contract.target.class_values(
            case.scores.label
        )
        assert window[contract.target.name].astype(object).tolist() == frame[contract.target.name].tolist()


def test_a_classifier_line_without_one_score_per_class_names_the_file_and_the_field(classification, tmp_path):
    case = classification
    features = {name: float(case.frame[name].iloc[0]) for name in case.contract.feature_names}
    line = prediction_line(
        request_id="r",
        row=0,
        timestamp="2024-05-01T00:00:00+00:00",
        model_name="m",
        model_version="v",
        features=features,
        sensitive={},
        label=case.target.classes[0],
        scores=[1.0],
    )
    folder = tmp_path / "date=2024-05-01"
    folder.mkdir()
    (folder / "s.jsonl").write_bytes(orjson.dumps(line) + b"\n")
    with pytest.raises(CaptureError, match=r"s\.jsonl.*field 'scores'.*'r:0' has 1"):
        read_window(str(tmp_path), contract=case.contract)
    wrong = {**line, "scores": [1.0] + [0.0] * (len(case.target.classes) - 1), "label": 3.5}
    (folder / "s.jsonl").write_bytes(orjson.dumps(wrong) + b"\n")
    with pytest.raises(CaptureError, match=r"s\.jsonl does not match the capture format"):
        read_window(str(tmp_path), contract=case.contract)


# -- prediction drift -------------------------------------------------------------------------------------


def test_prediction_drift_is_found_in_a_shifted_window_and_not_in_an_unshifted_one(case, tmp_path):
    rng = np.random.default_rng(0)
    order = rng.permutation(len(case.frame))
    half = len(order) // 2
    reference_rows, current_rows = order[:half], order[half:]
    target = case.target
    signal = from_scores(subset(case.scores, reference_rows), target)
    level, correction = BASE_POLICY.drift.p_value, BASE_POLICY.drift.correction

    same = capture(case, tmp_path / "same", current_rows)
    summary, per_class = prediction_drift(
        signal, from_window(same, target), signal_columns(target), level, correction
    )
    assert not summary.drifted, summary
    assert len(per_class) == (len(target.classes) if case.task == MULTICLASS else 0)

    # the same model on a population of one kind: the rows of one class, or the highest targets
    if target.is_classification:
        kept = current_rows[case.frame[target.name].to_numpy()[current_rows] == target.classes[0]]
    else:
        kept = current_rows[
            case.frame[target.name].to_numpy()[current_rows] > case.frame[target.name].median()
        ]
    shifted = capture(case, tmp_path / "shifted", kept)
    summary, per_class = prediction_drift(
        signal, from_window(shifted, target), signal_columns(target), level, correction
    )
    assert summary.drifted and summary.p_value < level
    if case.task == MULTICLASS:
        assert [row.name for row in per_class] == [f"score[{key}]" for key in target.class_keys]
        assert any(row.drifted for row in per_class)
        assert summary.p_value == pytest.approx(
            min(1.0, min(row.p_value for row in per_class) * len(per_class))
        )


def test_the_champion_rescores_its_reference_into_the_windows_signal(case, tmp_path):
    champion = registry_entry(artifact=str(case.model), artifact_sha256=sha256_of(case.model))
    ref = reference.Reference(case.frame, "snap", {}, champion)
    scores, note = reference.reference_scores(Paths(tmp_path), champion, ref, case.contract)
    assert note is None and scores.shape == (len(case.frame), len(signal_columns(case.target)))
    assert np.allclose(scores, from_window(capture(case, tmp_path / "c"), case.target), rtol=1e-6)


# -- performance, bias and the decision ------------------------------------------------------------------


def expected_metric(case: Case, metric: str) -> float:
    """The metric straight from scikit-learn on the true classes or values and the model's answers."""
    target = case.target
    if not target.is_classification:
        truth, answer = case.frame[target.name].to_numpy(), case.scores.value
        return {"rmse": sk.root_mean_squared_error, "mae": sk.mean_absolute_error, "r2": sk.r2_score}[metric](
            truth, answer
        )
    truth = target.class_indices(case.frame[target.name])
    if metric == "f1_macro":
        return sk.f1_score(truth, case.scores.label, average="macro")
    if metric == "accuracy":
        return sk.accuracy_score(truth, case.scores.label)
    assert metric == "roc_auc" and case.task == BINARY
    return sk.roc_auc_score(
        truth == target.positive_index, case.scores.probabilities[:, target.positive_index]
    )


def test_the_windows_metrics_are_the_tasks_metrics_on_its_labelled_rows(case, tmp_path):
    window = capture(case, tmp_path)
    policy = policy_for(case.task)
    performance = evaluate(window, case.contract, policy, None)
    assert performance.labelled_rows == len(case.frame)
    assert performance.value == pytest.approx(expected_metric(case, policy.model.primary_metric), rel=1e-5)
    other = {BINARY: "accuracy", MULTICLASS: "accuracy", REGRESSION: "r2"}[case.task]
    assert performance.metrics[other] == pytest.approx(expected_metric(case, other), rel=1e-5)


def test_a_group_the_model_treats_differently_shows_as_the_tasks_bias_gap(case, tmp_path):
    window = capture(case, tmp_path)
    target = case.target
    group_a = (window[GROUP] == "a").to_numpy()
    policy = policy_for(case.task)
    fair = evaluate(window, case.contract, policy, None)
    assert set(fair.group_rates) >= {"a", "b"} or any(key.startswith("a -> ") for key in fair.group_rates)
    if target.is_classification:
        # the service answers group a one class and group b another
        answers = np.where(group_a, target.classes[0], target.classes[1])
        window["predicted_label"] = pd.Series(answers, dtype=window["predicted_label"].dtype)
        unfair = evaluate(window, case.contract, policy, None)
        assert unfair.bias_gap == pytest.approx(1.0)
        if case.task == MULTICLASS:
            assert unfair.group_rates[f"a -> {target.class_keys[0]}"] == 1.0
    else:
        # exact for group a, off by 10 for group b: mae 0 vs 10 over an overall mae of 5
        truth = window[target.name].to_numpy()
        window["predicted_label"] = np.where(group_a, truth, truth + 10)
        unfair = evaluate(window, case.contract, policy, None)
        assert unfair.group_rates == pytest.approx({"a": 0.0, "b": 10.0})
        assert unfair.bias_gap == pytest.approx(10.0 / 5.0)
    assert unfair.bias_gap > fair.bias_gap
    decision = decide(policy, len(window), None, None, unfair)
    assert any(reason.startswith("bias_gap") for reason in decision.reasons)


@pytest.mark.parametrize(
    ("metric", "bound", "value", "triggered"),
    [
        ("rmse", 50.0, 60.0, True),
        ("rmse", 50.0, 40.0, False),
        ("r2", 0.3, 0.2, True),
        ("r2", 0.3, 0.4, False),
    ],
)
def test_the_primary_metric_is_held_to_its_bound_in_its_direction(metric, bound, value, triggered):
    policy = policy_for(REGRESSION, metric, bound)
    performance = Performance(metric=metric, labelled_rows=100, value=value)
    check = next(
        c for c in decide(policy, 500, None, None, performance).checks if c.name.endswith("primary_metric")
    )
    assert check.name == ("min_primary_metric" if metric == "r2" else "max_primary_metric")
    assert check.triggered is triggered and check.limit == bound


@pytest.mark.parametrize(
    ("metric", "champion", "value", "triggered"),
    [
        ("rmse", 50.0, 51.0, True),
        ("rmse", 50.0, 45.0, False),
        ("r2", 0.5, 0.4, True),
        ("r2", 0.5, 0.6, False),
    ],
)
def test_the_metric_drop_against_the_champion_is_worsening_in_the_metrics_direction(
    metric, champion, value, triggered
):
    policy = policy_for(REGRESSION, metric, 1000.0 if metric == "rmse" else 0.0)
    performance = Performance(metric=metric, labelled_rows=100, value=value, champion_value=champion)
    assert performance.drop == pytest.approx(worsening(metric, value, champion))
    check = next(c for c in decide(policy, 500, None, None, performance).checks if c.name == "metric_drop")
    assert check.triggered is triggered
    assert check.value == pytest.approx(value - champion if metric == "rmse" else champion - value)


# -- the retraining snapshot and the report ---------------------------------------------------------------


def test_the_retraining_rows_carry_the_target_as_the_contract_writes_it(case, tmp_path):
    window = capture(case, tmp_path, feedback_every=3)
    rows = dataset.labelled_rows(window, case.contract)
    target = case.target
    labelled = case.frame.iloc[::3]
    assert len(rows) == len(labelled)
    if target.is_classification:
        assert rows[target.name].tolist() == labelled[target.name].tolist()
        assert {type(value) for value in rows[target.name]} == {type(target.classes[0])}
    else:
        # numbers (data_pipelines/snapshot.py's conform decides int64 vs float64 for whole numbers)
        assert pd.api.types.is_numeric_dtype(rows[target.name])
        assert np.allclose(rows[target.name], labelled[target.name])


def test_the_report_shows_the_tasks_prediction_drift_and_metrics_with_their_direction(case, tmp_path):
    target = case.target
    order = np.random.default_rng(1).permutation(len(case.frame))  # the files are sorted by class
    half = len(order) // 2
    window = capture(case, tmp_path / "capture", order[half:])
    signal = from_scores(subset(case.scores, order[:half]), target)
    columns = signal_columns(target)
    score, per_class = prediction_drift(signal, from_window(window, target), columns, 0.05, "bonferroni")
    policy = policy_for(case.task)
    performance = evaluate(window, case.contract, policy, None)
    summary = drift_summary(score_drift=score, prediction_drift=per_class, performance=performance)
    written = report.write(summary, tmp_path / "out", case.frame, window, case.contract, signal)
    html, markdown = written["html"].read_text(), written["markdown"].read_text()
    assert 'alt="score"' in html, "the model's answers are always plotted"
    metric = policy.model.primary_metric
    direction = "higher is better" if higher_is_better(metric) else "lower is better"
    assert f"<td><strong>{metric}</strong>" in html and f"<td>{direction}</td>" in html
    for name in columns if case.task == MULTICLASS else ("score",):
        assert f"| {name} |" in markdown
