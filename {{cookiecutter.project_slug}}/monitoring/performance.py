"""Task metric and bias gap on a capture window, next to the champion's registered values.

The metric definitions are training's own (`ml.evaluate`), so "the metric dropped" compares
like with like. The task metric needs ground truth: it is computed on the labelled rows only
(labels come back through /feedback, often days later). A selection-rate gap needs only the
predictions, so it uses every row of the window and is known before any label arrives;
other per-group metrics (true positive rate, ...) use the labelled rows.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from data_pipelines.contract import Contract
from ml.evaluate import GROUP_METRICS, HIGHER_IS_BETTER, groups, task_metrics


class PerformanceError(ValueError):
    """The policy names a metric this module cannot compute."""


@dataclass
class Performance:
    metric: str
    labelled_rows: int
    value: float | None = None
    champion_value: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    bias_metric: str = "selection_rate"
    bias_rows: int = 0
    group_rates: dict[str, float] = field(default_factory=dict)
    bias_gap: float | None = None
    champion_bias_gap: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def drop(self) -> float | None:
        """How far the metric fell below the champion's registered value (negative: it rose)."""
        if self.value is None or self.champion_value is None:
            return None
        return self.champion_value - self.value

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "drop": self.drop}


def _indicators(values: pd.Series, positive: int) -> np.ndarray:
    return (values.to_numpy(dtype=np.int64) == positive).astype(np.int64)


def evaluate(
    window: pd.DataFrame,
    contract: Contract,
    metric: str,
    min_labelled_rows: int,
    champion_metrics: dict[str, Any] | None = None,
    champion_bias_gap: float | None = None,
    bias_metric: str = "selection_rate",
) -> Performance:
    """Performance and bias of the window; a value stays None (with a note saying why) when unknowable."""
    if metric not in HIGHER_IS_BETTER:
        raise PerformanceError(
            f"policy model.primary_metric must be one of {HIGHER_IS_BETTER} (got {metric!r})"
        )
    if bias_metric not in GROUP_METRICS:
        raise PerformanceError(
            f"policy bias.metric must be one of {sorted(GROUP_METRICS)} (got {bias_metric!r})"
        )
    target, positive = contract.target.name, contract.target.positive_class
    labelled = window[window[target].notna()] if target in window else window.iloc[0:0]
    result = Performance(metric=metric, labelled_rows=len(labelled), bias_metric=bias_metric)
    champion_value = (champion_metrics or {}).get(metric)
    if isinstance(champion_value, int | float) and not isinstance(champion_value, bool):
        result.champion_value = float(champion_value)
    else:
        result.notes.append(f"the champion has no registered {metric}: the metric drop is unknown")
    result.champion_bias_gap = champion_bias_gap
    enough = len(labelled) >= min_labelled_rows
    if not enough:
        result.notes.append(
            f"{len(labelled)} labelled rows, fewer than drift.min_labelled_rows={min_labelled_rows}: "
            f"{metric} not computed"
        )
    else:
        truth = _indicators(labelled[target], positive)
        result.metrics = task_metrics(
            truth,
            _indicators(labelled["predicted_label"], positive),
            labelled["score"].to_numpy(dtype=np.float64),
        )
        result.value = result.metrics.get(metric)
        if result.value is None:
            result.notes.append(f"{metric} is undefined on these labelled rows (one class only)")
    _bias(result, window, labelled if enough else None, contract)
    return result


def _bias(
    result: Performance, window: pd.DataFrame, labelled: pd.DataFrame | None, contract: Contract
) -> None:
    if contract.sensitive is None:
        result.notes.append("the contract declares no sensitive attribute: no bias gap")
        return
    name, positive = contract.sensitive.name, contract.target.positive_class
    if name not in window or window[name].isna().all():
        result.notes.append(f"no captured row carries the sensitive attribute {name!r}: no bias gap")
        return
    if result.bias_metric == "selection_rate":
        rows = window[window[name].notna()]
        predicted = _indicators(rows["predicted_label"], positive)
        truth = predicted  # selection rate reads only the predictions
    elif labelled is not None:
        rows = labelled[labelled[name].notna()]
        predicted = _indicators(rows["predicted_label"], positive)
        truth = _indicators(rows[contract.target.name], positive)
    else:
        result.notes.append(f"{result.bias_metric} by group needs labels: too few labelled rows, no bias gap")
        return
    result.bias_rows = len(rows)
    result.group_rates = by_group(truth, predicted, groups(rows, contract), result.bias_metric)
    if len(result.group_rates) < 2:
        result.notes.append(f"fewer than two groups of {name!r} in the window: no bias gap")
        return
    result.bias_gap = max(result.group_rates.values()) - min(result.group_rates.values())


def by_group(truth: np.ndarray, predicted: np.ndarray, sensitive: pd.Series, metric: str) -> dict[str, float]:
    """Training's per-group metric (`ml.evaluate.GROUP_METRICS`), group by group.

    The same numbers as fairlearn's MetricFrame.by_group, whose between-groups difference is
    max - min; computed directly because MetricFrame with training's full metric set takes
    minutes on a million-row window, and monitoring needs one metric.
    """
    function = GROUP_METRICS[metric]
    labels = sensitive.to_numpy()
    rates: dict[str, float] = {}
    for group in sorted(set(labels.tolist())):
        members = labels == group
        value = float(function(truth[members], predicted[members]))
        if not math.isnan(value):
            rates[str(group)] = value
    return rates
