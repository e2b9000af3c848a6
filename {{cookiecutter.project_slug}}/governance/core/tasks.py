"""The supervised tasks this project handles and the metrics that judge each one.

One table says, for every metric, which tasks compute it and whether higher or lower is better.
Training (ml/evaluate.py implements exactly these names; a test holds them equal), the policy's
gates, the champion comparison, the PR comment and the drift decision all read the direction
from here, so "better" means the same thing at every stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Task = Literal["binary_classification", "multiclass_classification", "regression"]
TASKS: tuple[Task, ...] = ("binary_classification", "multiclass_classification", "regression")
BINARY, MULTICLASS, REGRESSION = TASKS
CLASSIFICATION = (BINARY, MULTICLASS)


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    tasks: tuple[str, ...]
    description: str
    low: float | None = 0.0  # the range any value of the metric lies in (None: unbounded)
    high: float | None = 1.0

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"


METRICS: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        Metric(
            "roc_auc",
            True,
            (BINARY, MULTICLASS),
            "area under the ROC curve (one-vs-rest macro for multiclass)",
        ),
        Metric("accuracy", True, CLASSIFICATION, "share of rows whose predicted class is right"),
        Metric("balanced_accuracy", True, CLASSIFICATION, "mean recall over the classes"),
        Metric("f1", True, (BINARY,), "F1 of the positive class"),
        Metric("precision", True, (BINARY,), "precision of the positive class"),
        Metric("recall", True, (BINARY,), "recall of the positive class"),
        Metric("f1_macro", True, (MULTICLASS,), "F1 averaged over classes, each class counting equally"),
        Metric("f1_weighted", True, (MULTICLASS,), "F1 averaged over classes, weighted by their rows"),
        Metric("log_loss", False, CLASSIFICATION, "cross-entropy of the predicted probabilities", high=None),
        Metric("rmse", False, (REGRESSION,), "root mean squared error, in target units", high=None),
        Metric("mae", False, (REGRESSION,), "mean absolute error, in target units", high=None),
        Metric("r2", True, (REGRESSION,), "coefficient of determination (1 is perfect)", low=None),
    )
}

# The primary metric a freshly baked project gates on (governance/policy.yaml says which is used).
DEFAULT_PRIMARY: dict[str, str] = {BINARY: "roc_auc", MULTICLASS: "f1_macro", REGRESSION: "r2"}

# Per-group metrics the bias gate may compare across the sensitive attribute, per task. For
# regression the gap is relative (largest minus smallest group value, over the overall value),
# so one policy limit means the same at any scale of the target.
GROUP_METRICS: dict[str, tuple[str, ...]] = {
    BINARY: ("selection_rate", "accuracy", "true_positive_rate", "false_positive_rate"),
    MULTICLASS: ("selection_rate", "accuracy"),
    REGRESSION: ("mae", "rmse"),
}
DEFAULT_GROUP_METRIC: dict[str, str] = {BINARY: "selection_rate", MULTICLASS: "accuracy", REGRESSION: "mae"}


def metrics_of(task: str) -> list[str]:
    """The metric names training computes for `task`, in table order."""
    return [name for name, metric in METRICS.items() if task in metric.tasks]


def higher_is_better(metric: str) -> bool:
    return METRICS[metric].higher_is_better


def worsening(metric: str, candidate: float, reference: float) -> float:
    """How much worse `candidate` is than `reference` on `metric` (negative: it is better)."""
    return reference - candidate if higher_is_better(metric) else candidate - reference


def is_classification(task: str) -> bool:
    return task in CLASSIFICATION
