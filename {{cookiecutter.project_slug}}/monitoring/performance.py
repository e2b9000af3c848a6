"""Task metric and bias gap on a capture window, next to the champion's registered values.

The metric definitions are training's own (`ml.evaluate`), so "the metric dropped" compares
like with like. The task metric needs ground truth: it is computed on the labelled rows only
(labels come back through /feedback, often days later). A selection-rate gap needs only the
predictions, so it uses every row of the window and is known before any label arrives;
other per-group metrics (true positive rate, ...) use the labelled rows.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from governance.core.contract import Contract
from governance.core.policy import Policy
from governance.core.records import Performance, RegistryEntry
from ml.evaluate import GROUP_METRICS, groups, task_metrics


def _indicators(values: pd.Series, positive: int) -> np.ndarray:
    return (values.to_numpy(dtype=np.int64) == positive).astype(np.int64)


def champion_bias_gap(champion: RegistryEntry | None, metric: str) -> float | None:
    """The champion's registered largest gap between groups, if it was measured with the same metric."""
    if champion is None or champion.bias.metric != metric:
        return None
    return champion.bias.largest_gap


def evaluate(
    window: pd.DataFrame, contract: Contract, policy: Policy, champion: RegistryEntry | None
) -> Performance:
    """Performance and bias of the window; a value stays None (with a note saying why) when unknowable."""
    metric, bias_metric = policy.model.primary_metric, policy.bias.metric
    min_labelled_rows = policy.drift.min_labelled_rows
    target, positive = contract.target.name, contract.target.positive_class
    labelled = window[window[target].notna()] if target in window else window.iloc[0:0]
    notes: list[str] = []
    champion_value = (champion.metrics if champion else {}).get(metric)
    if not isinstance(champion_value, int | float) or isinstance(champion_value, bool):
        champion_value = None
        notes.append(f"the champion has no registered {metric}: the metric drop is unknown")
    enough = len(labelled) >= min_labelled_rows
    metrics: dict[str, Any] = {}
    value = None
    if not enough:
        notes.append(
            f"{len(labelled)} labelled rows, fewer than drift.min_labelled_rows={min_labelled_rows}: "
            f"{metric} not computed"
        )
    else:
        truth = _indicators(labelled[target], positive)
        metrics = task_metrics(
            truth,
            _indicators(labelled["predicted_label"], positive),
            labelled["score"].to_numpy(dtype=np.float64),
        )
        value = metrics.get(metric)
        if value is None:
            notes.append(f"{metric} is undefined on these labelled rows (one class only)")
    bias_rows, rates, gap = _bias(window, labelled if enough else None, contract, bias_metric, notes)
    return Performance(
        metric=metric,
        labelled_rows=len(labelled),
        value=value,
        champion_value=float(champion_value) if champion_value is not None else None,
        metrics=metrics,
        bias_metric=bias_metric,
        bias_rows=bias_rows,
        group_rates=rates,
        bias_gap=gap,
        champion_bias_gap=champion_bias_gap(champion, bias_metric),
        notes=tuple(notes),
    )


def _bias(
    window: pd.DataFrame, labelled: pd.DataFrame | None, contract: Contract, metric: str, notes: list[str]
) -> tuple[int, dict[str, float], float | None]:
    """(rows used, the metric per group, the largest gap) of the sensitive attribute, or notes why not."""
    if contract.sensitive is None:
        notes.append("the contract declares no sensitive attribute: no bias gap")
        return 0, {}, None
    name, positive = contract.sensitive.name, contract.target.positive_class
    if name not in window or window[name].isna().all():
        notes.append(f"no captured row carries the sensitive attribute {name!r}: no bias gap")
        return 0, {}, None
    if metric == "selection_rate":
        rows = window[window[name].notna()]
        predicted = _indicators(rows["predicted_label"], positive)
        truth = predicted  # selection rate reads only the predictions
    elif labelled is not None:
        rows = labelled[labelled[name].notna()]
        predicted = _indicators(rows["predicted_label"], positive)
        truth = _indicators(rows[contract.target.name], positive)
    else:
        notes.append(f"{metric} by group needs labels: too few labelled rows, no bias gap")
        return 0, {}, None
    rates = by_group(truth, predicted, groups(rows, contract), metric)
    if len(rates) < 2:
        notes.append(f"fewer than two groups of {name!r} in the window: no bias gap")
        return len(rows), rates, None
    return len(rows), rates, max(rates.values()) - min(rates.values())


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
