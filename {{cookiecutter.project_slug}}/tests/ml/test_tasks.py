"""Every supervised task trains end to end on a real dataset, whatever task this project was baked for:
binary with word labels, multiclass with string classes, regression on a number."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from governance.core.encoding import Scorer
from governance.core.paths import Paths
from governance.core.records import Parity, Quality, read_json
from governance.core.tasks import BINARY, MULTICLASS, REGRESSION, TASKS, metrics_of
from ml.evaluate import bias_metrics, task_metrics
from ml.features import DataError
from ml.pipeline import train
from ml.train import labels, split
from tests.support.training import make_task_workspace, small_params, task_data


@pytest.fixture(scope="module", params=TASKS)
def task_run(request, tmp_path_factory):
    """(task, paths, gate report) of one `train` run on the task's dataset."""
    task = request.param
    paths = Paths(make_task_workspace(tmp_path_factory.mktemp(task), task))
    return task, paths, train(paths)


def test_each_task_trains_passes_its_gates_and_writes_its_metrics(task_run):
    task, paths, report = task_run
    assert report.passed, report.failures()
    out = paths.models / report.version
    quality = read_json(Quality, out / "metrics.json")
    assert set(quality.metrics) == {*metrics_of(task), "rows"}
    assert all(quality.metrics[name] is not None for name in metrics_of(task))
    parity = read_json(Parity, out / "parity.json")
    assert parity.passed and parity.labels_equal and parity.rows == quality.metrics["rows"]
    details = quality.diagnostics
    assert details is not None and details.task == task
    if task == REGRESSION:
        assert 0.3 < quality.metrics["r2"] < 1 and quality.metrics["rmse"] >= quality.metrics["mae"] > 0
        assert details.residuals is not None and len(details.residuals.bins) == 10
        assert sum(box.rows for box in details.residuals.bins) == quality.metrics["rows"]
        assert not details.confusion
    else:
        assert quality.metrics["accuracy"] > 0.85 and quality.metrics["roc_auc"] > 0.9
        classes = task_data(task).contract.target.class_keys
        assert details.classes == classes and list(details.per_class) == list(classes)
        assert np.array(details.confusion).sum() == quality.metrics["rows"]
        assert [details.per_class[key].support for key in classes] == np.array(details.confusion).sum(
            axis=1
        ).tolist()


def test_the_exported_model_answers_in_the_contract_terms_of_its_task(task_run):
    task, paths, report = task_run
    scorer = Scorer(paths.models / report.version / "model.onnx")
    target = task_data(task).contract.target
    assert scorer.metadata["task"] == task
    assert json.loads(scorer.metadata["classes"]) == list(target.classes)
    assert scorer.is_regressor == (task == REGRESSION)


def test_a_primary_metric_where_lower_is_better_is_gated_at_most(tmp_path):
    paths = Paths(make_task_workspace(tmp_path, REGRESSION, primary="rmse"))
    report = train(paths)
    gate = next(gate for gate in report.gates if gate.name == "primary_metric")
    assert (
        gate.passed
        and gate.requirement == "model.max_primary_metric"
        and "(required: at most" in gate.message
    )


def test_a_class_with_one_row_is_refused_naming_it():
    data = task_data(MULTICLASS)
    target = data.contract.target.name
    rows = pd.concat(
        [data.frame[data.frame[target] != "barbera"], data.frame[data.frame[target] == "barbera"].iloc[:1]]
    )
    with pytest.raises(DataError, match=r"at least two rows of each class.*barbera"):
        split(rows, data.contract, small_params("linear", MULTICLASS))


def test_a_regression_target_that_is_not_a_finite_number_is_refused_with_its_count():
    data = task_data(REGRESSION)
    frame = data.frame.copy()
    frame.loc[frame.index[:3], "progression"] = np.inf
    with pytest.raises(DataError, match=r"'progression' has 3 value\(s\) that are not finite"):
        labels(frame, data.contract)
    frame.loc[frame.index[:2], "progression"] = np.nan
    with pytest.raises(DataError, match=r"'progression' has 2 missing value\(s\)"):
        labels(frame, data.contract)


def test_word_labels_are_learned_as_class_indices_and_unknown_words_are_refused():
    data = task_data(BINARY)
    y = labels(data.frame, data.contract)
    assert y.dtype == np.int64 and set(y.tolist()) == {0, 1}
    assert (y == 1).sum() == (data.frame["diagnosis"] == "malignant").sum()  # malignant is classes[1]
    frame = data.frame.copy()
    frame.loc[frame.index[0], "diagnosis"] = "benign-ish"
    with pytest.raises(DataError, match="benign-ish"):
        labels(frame, data.contract)


# --- the metric functions monitoring shares -------------------------------------------------------


def test_binary_metrics_follow_the_positive_class_wherever_it_sits():
    truth, predicted = np.array([0, 0, 1, 1, 0]), np.array([0, 1, 1, 0, 0])
    proba = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.7, 0.3], [0.6, 0.4]])
    first = task_metrics(truth, predicted, proba, BINARY, positive_index=1)
    # The same answers with the class order reversed and the positive class first.
    second = task_metrics(1 - truth, 1 - predicted, proba[:, ::-1], BINARY, positive_index=0)
    assert first == second
    assert first["precision"] == pytest.approx(0.5) and first["recall"] == pytest.approx(0.5)


def test_multiclass_roc_auc_is_one_vs_rest_macro():
    from sklearn.metrics import roc_auc_score

    truth = np.array([0, 1, 2, 2, 1, 0])
    proba = np.array(
        [[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.1, 0.3, 0.6], [0.3, 0.4, 0.3], [0.5, 0.4, 0.1], [0.3, 0.3, 0.4]]
    )
    metrics = task_metrics(truth, proba.argmax(axis=1), proba, MULTICLASS)
    expected = np.mean([roc_auc_score(truth == k, proba[:, k]) for k in range(3)])
    assert metrics["roc_auc"] == pytest.approx(expected)
    assert set(metrics) == {*metrics_of(MULTICLASS), "rows"}


def test_multiclass_selection_rate_gap_is_the_largest_over_the_classes():
    groups = pd.Series(["a"] * 4 + ["b"] * 4, name="g")
    predicted = np.array([0, 0, 1, 2, 0, 1, 1, 2])  # class 0: 0.5 vs 0.25, class 1: 0.25 vs 0.5
    truth = np.array([0, 0, 1, 2, 0, 1, 1, 2])
    bias = bias_metrics(truth, predicted, groups, "selection_rate", MULTICLASS, ("x", "y", "z"))
    assert bias.gaps["selection_rate"] == pytest.approx(0.25) and bias.largest_gap == pytest.approx(0.25)
    assert bias.by_group["a"]["selection_rate[x]"] == pytest.approx(0.5)
    assert bias.gaps["accuracy"] == pytest.approx(0.0)


def test_regression_group_gaps_are_relative_to_the_overall_value():
    groups = pd.Series(["a", "a", "b", "b"], name="g")
    truth = np.array([10.0, 10.0, 10.0, 10.0])
    predicted = np.array([9.0, 11.0, 7.0, 13.0])  # mae: a 1, b 3, overall 2
    bias = bias_metrics(truth, predicted, groups, "mae", REGRESSION)
    assert bias.by_group["a"]["mae"] == pytest.approx(1.0) and bias.by_group["b"]["mae"] == pytest.approx(3.0)
    assert bias.largest_gap == pytest.approx((3.0 - 1.0) / 2.0)
