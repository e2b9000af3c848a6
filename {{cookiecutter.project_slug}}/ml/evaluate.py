"""Held-out task metrics, diagnostics, and bias metrics across the sensitive attribute.

Everything is computed on the test split only, from what the model serves: for a classifier
the class index (position in the contract's `target.classes`) and one probability per class in
that order, for a regressor the predicted number. The metric names are exactly
`governance.core.tasks.metrics_of(task)` (a test holds them equal), so the policy, the gates and
monitoring can name any of them. Bias is measured with fairlearn's MetricFrame: the metric per
group and the largest gap between groups, which is what the policy's bias gate compares to its
maximum.

Monitoring re-uses `task_metrics`, `bias_metrics`, `groups` and `GROUP_FUNCTIONS`, so a metric
means the same in production as in training.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from fairlearn.metrics import (
    MetricFrame,
    count,
    demographic_parity_difference,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn import metrics as sk

from governance.core.contract import Contract
from governance.core.records import Bias, ClassReport, Diagnostics, ResidualBin, Residuals
from governance.core.tasks import BINARY, MULTICLASS, REGRESSION, metrics_of

MISSING_GROUP = "missing"
RESIDUAL_BINS = 10  # boxes of the model card's residual plot (by predicted value)


def _number(value: Any) -> float | None:
    """JSON has no NaN: an undefined metric (e.g. a group with one class) becomes null."""
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value


@dataclass(frozen=True)
class Answers:
    """Truth and answers of one batch: class indices and [N, K] probabilities, or numbers."""

    truth: np.ndarray
    predicted: np.ndarray
    probabilities: np.ndarray | None
    positive_index: int

    @property
    def positive(self) -> np.ndarray:
        """Binary: the positive-class probability."""
        proba = self.probabilities
        return proba if proba.ndim == 1 else proba[:, self.positive_index]

    @property
    def hits(self) -> tuple[np.ndarray, np.ndarray]:
        """Binary: truth and prediction as indicators (1 = the positive class)."""
        return (
            (self.truth == self.positive_index).astype(np.int64),
            (self.predicted == self.positive_index).astype(np.int64),
        )

    @property
    def distribution(self) -> np.ndarray:
        """[N, K] probabilities renormalised (float32 ONNX outputs may miss a sum of 1 by 1e-7)."""
        proba = np.asarray(self.probabilities, dtype=np.float64)
        if proba.ndim == 1:
            proba = (
                np.column_stack([1 - proba, proba])
                if self.positive_index == 1
                else np.column_stack([proba, 1 - proba])
            )
        proba = np.clip(proba, 1e-15, 1.0)
        return proba / proba.sum(axis=1, keepdims=True)


def _roc_auc(a: Answers) -> float:
    if a.distribution.shape[1] == 2:
        return sk.roc_auc_score(a.hits[0], a.positive)
    k = a.distribution.shape[1]
    return sk.roc_auc_score(
        a.truth, a.distribution, multi_class="ovr", average="macro", labels=list(range(k))
    )


def _log_loss(a: Answers) -> float:
    return sk.log_loss(a.truth, a.distribution, labels=list(range(a.distribution.shape[1])))


def _binary(score: Callable[..., float]) -> Callable[[Answers], float]:
    return lambda a: score(*a.hits, zero_division=0)


def _averaged(average: str) -> Callable[[Answers], float]:
    return lambda a: sk.f1_score(a.truth, a.predicted, average=average, zero_division=0)


# How each metric of governance/core/tasks.py METRICS is computed; a metric whose inputs cannot
# define it (one class only in the truth) is None.
METRIC_FUNCTIONS: dict[str, Callable[[Answers], float]] = {
    "roc_auc": _roc_auc,
    "accuracy": lambda a: sk.accuracy_score(a.truth, a.predicted),
    "balanced_accuracy": lambda a: sk.balanced_accuracy_score(a.truth, a.predicted),
    "f1": _binary(sk.f1_score),
    "precision": _binary(sk.precision_score),
    "recall": _binary(sk.recall_score),
    "f1_macro": _averaged("macro"),
    "f1_weighted": _averaged("weighted"),
    "log_loss": _log_loss,
    "rmse": lambda a: sk.root_mean_squared_error(a.truth, a.predicted),
    "mae": lambda a: sk.mean_absolute_error(a.truth, a.predicted),
    "r2": lambda a: sk.r2_score(a.truth, a.predicted),
}


def task_metrics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    probabilities: np.ndarray | None = None,
    task: str = BINARY,
    positive_index: int = 1,
) -> dict[str, float | int | None]:
    """The task's metrics (`metrics_of(task)`) plus `rows`.

    Classification: `y_true`/`y_pred` are class indices and `probabilities` is [N, K] in contract
    class order (for binary a 1-D positive-class probability is accepted too; `positive_index` is
    the contract's positive class). Regression: numbers, and `probabilities` is None.
    """
    answers = Answers(
        np.asarray(y_true),
        np.asarray(y_pred),
        None if probabilities is None else np.asarray(probabilities),
        positive_index,
    )
    if task != REGRESSION and answers.probabilities is None:
        raise ValueError(f"task {task} needs the class probabilities")
    values: dict[str, float | int | None] = {}
    one_class = task != REGRESSION and len(np.unique(answers.truth)) < 2
    for name in metrics_of(task):
        if one_class and name in ("roc_auc", "log_loss"):
            values[name] = None
            continue
        try:
            values[name] = _number(METRIC_FUNCTIONS[name](answers))
        except ValueError:  # undefined on these rows (e.g. r2 of one row)
            values[name] = None
    values["rows"] = len(answers.truth)
    return values


def diagnostics(
    task: str, y_true: np.ndarray, y_pred: np.ndarray, class_keys: tuple[str, ...] = ()
) -> Diagnostics:
    """What the model card draws: per-class precision/recall and the confusion matrix, or residuals."""
    if task == REGRESSION:
        return Diagnostics(task=task, residuals=residuals(y_true, y_pred))
    indices = list(range(len(class_keys)))
    precision, recall, _, support = sk.precision_recall_fscore_support(
        y_true, y_pred, labels=indices, zero_division=0
    )
    return Diagnostics(
        task=task,
        classes=tuple(class_keys),
        per_class={
            key: ClassReport(precision=float(p), recall=float(r), support=int(s))
            for key, p, r, s in zip(class_keys, precision, recall, support, strict=True)
        },
        confusion=tuple(
            tuple(int(cell) for cell in row) for row in sk.confusion_matrix(y_true, y_pred, labels=indices)
        ),
    )


def residuals(y_true: np.ndarray, y_pred: np.ndarray, bins: int = RESIDUAL_BINS) -> Residuals:
    """Residuals (truth - prediction) summarised per bin of predicted value: a box plot's numbers.

    A few quantiles per bin show bias (median off zero) and spread that grows with the value,
    and stay small enough to keep in the registry and draw deterministically in the model card.
    """
    truth, predicted = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    residual = truth - predicted
    order = np.argsort(predicted, kind="stable")
    boxes = []
    for chunk in np.array_split(order, min(bins, len(order))):
        low, q1, median, q3, high = np.percentile(residual[chunk], [5, 25, 50, 75, 95])
        boxes.append(
            ResidualBin(
                predicted=float(np.median(predicted[chunk])),
                rows=len(chunk),
                p5=float(low),
                p25=float(q1),
                p50=float(median),
                p75=float(q3),
                p95=float(high),
            )
        )
    return Residuals(mean=float(residual.mean()), bins=tuple(boxes))


def groups(df: pd.DataFrame, contract: Contract) -> pd.Series | None:
    """The sensitive attribute as strings (missing as its own group), or None when there is none."""
    if contract.sensitive is None:
        return None
    name = contract.sensitive.name
    if name not in df.columns:
        return None
    column = df[name]
    return column.astype("object").where(column.notna(), MISSING_GROUP).map(str).rename(name)


def _rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return sk.root_mean_squared_error(y_true, y_pred)


# Per-group metric functions (truth, prediction) -> value, per task: the names of
# governance/core/tasks.py GROUP_METRICS. Binary ones take indicators (1 = positive class);
# multiclass ones class indices (selection_rate is expanded per class in `bias_metrics`).
GROUP_FUNCTIONS: dict[str, dict[str, Callable[[np.ndarray, np.ndarray], float]]] = {
    BINARY: {
        "selection_rate": selection_rate,
        "accuracy": sk.accuracy_score,
        "true_positive_rate": true_positive_rate,
        "false_positive_rate": false_positive_rate,
    },
    MULTICLASS: {"accuracy": sk.accuracy_score},
    REGRESSION: {"mae": sk.mean_absolute_error, "rmse": _rmse},
}


def _class_rate(index: int) -> Callable[[np.ndarray, np.ndarray], float]:
    return lambda y_true, y_pred: float(np.mean(y_pred == index))


def bias_metrics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    sensitive: pd.Series | None,
    metric: str,
    task: str = BINARY,
    class_keys: tuple[str, ...] = (),
    positive_index: int = 1,
) -> Bias:
    """Per-group metrics, the gap for each (the policy's bias gate reads `gaps[metric]`).

    Inputs as for `task_metrics`. Binary: the tables of `GROUP_FUNCTIONS[BINARY]` on positive-class
    indicators, plus the demographic parity and equalized odds differences. Multiclass: accuracy,
    and `selection_rate` = the largest gap over classes of the rate of predicting that class
    (per class in `by_group` as `selection_rate[<class>]`). Regression: mae and rmse, each gap
    relative to the overall value (max - min) / overall, so one limit fits any target scale.
    """
    if sensitive is None:
        return Bias(metric=metric, note="no sensitive attribute in the data contract")
    truth, predicted = np.asarray(y_true), np.asarray(y_pred)
    if task == BINARY:
        truth = (truth == positive_index).astype(np.int64)
        predicted = (predicted == positive_index).astype(np.int64)
    functions = dict(GROUP_FUNCTIONS[task])
    if task == MULTICLASS:
        keys = class_keys or tuple(str(index) for index in range(int(max(truth.max(), predicted.max())) + 1))
        functions.update({f"selection_rate[{key}]": _class_rate(index) for index, key in enumerate(keys)})
    features = sensitive.to_numpy()
    frame = MetricFrame(
        metrics={**functions, "count": count}, y_true=truth, y_pred=predicted, sensitive_features=features
    )
    by_group = {
        str(group): {name: _number(value) for name, value in row.items()}
        for group, row in frame.by_group.to_dict(orient="index").items()
    }
    gaps = {name: _number(value) for name, value in frame.difference(method="between_groups").items()}
    gaps.pop("count", None)
    extra: dict[str, float | None] = {}
    if task == MULTICLASS:
        per_class = [gaps.pop(name) for name in list(gaps) if name.startswith("selection_rate[")]
        known = [gap for gap in per_class if gap is not None]
        gaps["selection_rate"] = max(known) if known else None
    elif task == REGRESSION:
        for name in list(gaps):
            overall = _number(frame.overall[name])
            gaps[name] = None if gaps[name] is None or not overall else gaps[name] / overall
    else:
        extra = {
            "demographic_parity_difference": _number(
                demographic_parity_difference(truth, predicted, sensitive_features=features)
            ),
            "equalized_odds_difference": _number(
                equalized_odds_difference(truth, predicted, sensitive_features=features)
            ),
        }
    return Bias(
        sensitive_attribute=str(sensitive.name),
        metric=metric,
        largest_gap=gaps.get(metric),
        gaps=gaps,
        by_group=by_group,
        **extra,
    )


def evaluate(
    test: pd.DataFrame,
    y_true: np.ndarray,
    predicted: np.ndarray,
    proba: np.ndarray | None,
    contract: Contract,
    bias_metric: str,
) -> tuple[dict[str, float | int | None], Bias, Diagnostics]:
    """What metrics.json holds about model quality: task metrics, bias and the card's diagnostics.

    `y_true`/`predicted` are class indices (or numbers for regression); `proba` is [N, K] in the
    contract's class order, None for regression.
    """
    target, task = contract.target, contract.task
    positive = target.positive_index if task == BINARY else 1
    return (
        task_metrics(y_true, predicted, proba, task, positive),
        bias_metrics(
            y_true, predicted, groups(test, contract), bias_metric, task, target.class_keys, positive
        ),
        diagnostics(task, y_true, predicted, target.class_keys),
    )
