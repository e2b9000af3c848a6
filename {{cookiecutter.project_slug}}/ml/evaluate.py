"""Held-out task metrics and bias metrics across the sensitive attribute.

Everything is computed on the test split only, from the positive-class probability and the
label the model serves. Labels are recoded to 1 = the contract's positive class. Bias is
measured with fairlearn's MetricFrame: the metric per group and the largest gap between
groups, which is what the policy's bias gate compares to its maximum.
"""

from __future__ import annotations

import math
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
from sklearn.metrics import accuracy_score, f1_score, log_loss, precision_score, recall_score, roc_auc_score

from governance.core.contract import Contract
from governance.core.records import Bias

# Per-group metrics the policy's bias gate may name (governance.core.policy.GROUP_METRICS).
GROUP_METRICS = {
    "selection_rate": selection_rate,
    "accuracy": accuracy_score,
    "true_positive_rate": true_positive_rate,
    "false_positive_rate": false_positive_rate,
}
MISSING_GROUP = "missing"


def _number(value: Any) -> float | None:
    """JSON has no NaN: an undefined metric (e.g. a group with one class) becomes null."""
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value


def task_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, positive_proba: np.ndarray
) -> dict[str, float | None]:
    """Task metrics on binary indicators (1 = positive class)."""
    both_classes = len(np.unique(y_true)) == 2
    return {
        "roc_auc": _number(roc_auc_score(y_true, positive_proba)) if both_classes else None,
        "accuracy": _number(accuracy_score(y_true, y_pred)),
        "f1": _number(f1_score(y_true, y_pred, zero_division=0)),
        "precision": _number(precision_score(y_true, y_pred, zero_division=0)),
        "recall": _number(recall_score(y_true, y_pred, zero_division=0)),
        "log_loss": _number(log_loss(y_true, np.clip(positive_proba, 1e-15, 1 - 1e-15), labels=[0, 1])),
        "positive_rate": _number(y_pred.mean()),
        "base_rate": _number(y_true.mean()),
        "rows": len(y_true),
    }


def groups(df: pd.DataFrame, contract: Contract) -> pd.Series | None:
    """The sensitive attribute as strings (missing as its own group), or None when there is none."""
    if contract.sensitive is None:
        return None
    name = contract.sensitive.name
    if name not in df.columns:
        return None
    column = df[name]
    return column.astype("object").where(column.notna(), MISSING_GROUP).map(str).rename(name)


def bias_metrics(y_true: np.ndarray, y_pred: np.ndarray, sensitive: pd.Series | None, metric: str) -> Bias:
    """Per-group metrics, the gap for each and the headline fairness differences."""
    if sensitive is None:
        return Bias(metric=metric, note="no sensitive attribute in the data contract")
    frame = MetricFrame(
        metrics={**GROUP_METRICS, "count": count},
        y_true=y_true,
        y_pred=y_pred,
        sensitive_features=sensitive.to_numpy(),
    )
    by_group = {
        str(group): {name: _number(value) for name, value in row.items()}
        for group, row in frame.by_group.to_dict(orient="index").items()
    }
    gaps = {name: _number(value) for name, value in frame.difference(method="between_groups").items()}
    gaps.pop("count", None)
    features = sensitive.to_numpy()
    return Bias(
        sensitive_attribute=str(sensitive.name),
        metric=metric,
        largest_gap=gaps.get(metric),
        gaps=gaps,
        by_group=by_group,
        demographic_parity_difference=_number(
            demographic_parity_difference(y_true, y_pred, sensitive_features=features)
        ),
        equalized_odds_difference=_number(
            equalized_odds_difference(y_true, y_pred, sensitive_features=features)
        ),
    )


def evaluate(
    test: pd.DataFrame,
    y_true: np.ndarray,
    predicted: np.ndarray,
    proba: np.ndarray,
    classes: list[int],
    contract: Contract,
    bias_metric: str,
) -> tuple[dict[str, float | None], Bias]:
    """What metrics.json holds about model quality: task metrics and bias.

    `proba` has one column per entry of `classes` (the fitted model's class order);
    `predicted` holds the served labels (class values).
    """
    positive_class = contract.target.positive_class
    positive = proba[:, list(classes).index(positive_class)]
    truth = (np.asarray(y_true) == positive_class).astype(np.int64)
    chosen = (np.asarray(predicted) == positive_class).astype(np.int64)
    return task_metrics(truth, chosen, positive), bias_metrics(
        truth, chosen, groups(test, contract), bias_metric
    )
