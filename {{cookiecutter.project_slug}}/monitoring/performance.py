"""Task metric and bias gap on a capture window, next to the champion's registered values.

The metric definitions are training's own (`ml.evaluate`), so "the metric dropped" compares
like with like. The task metric needs ground truth: it is computed on the labelled rows only
(labels come back through /feedback, often days later). A selection-rate gap needs only the
predictions, so it uses every row of the window and is known before any label arrives;
other per-group metrics (accuracy, true positive rate, mae, ...) use the labelled rows.

Every task goes through the same steps: the captured class values (predicted and true) become
class indices with the contract's `target.class_indices`, as training fits them; regression
keeps its numbers. Per task, the bias metric is (governance/core/tasks.py GROUP_METRICS):
binary rates of the positive class; multiclass accuracy, or the rate of predicting each class
with the largest gap over the classes; regression mae/rmse with the gap relative to the
window's overall value.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from governance.core.contract import Contract, Target
from governance.core.policy import Policy
from governance.core.records import Performance, RegistryEntry
from governance.core.tasks import BINARY, MULTICLASS, REGRESSION
from ml.evaluate import GROUP_FUNCTIONS, MISSING_GROUP, groups, task_metrics
from monitoring.predictions import from_window, signal_columns


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
    target = contract.target
    notes: list[str] = []
    # Only the columns read here: the row selections below then copy these, not the whole window.
    wanted = [target.name, "predicted_label", *signal_columns(target)]
    wanted += [contract.sensitive.name] if contract.sensitive else []
    window = answered(window[[name for name in wanted if name in window]], target, notes)
    labelled = window[window[target.name].notna()] if target.name in window else window.iloc[0:0]
    labelled = known_labels(labelled, target, notes)
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
        metrics = window_metrics(
            target, truth(labelled, target), predicted(labelled, target), probabilities(labelled, target)
        )
        value = metrics.get(metric)
        if value is None:
            notes.append(f"{metric} is undefined on these labelled rows (e.g. one class only)")
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


# -- the window's answers and labels as training's arrays ------------------------------------------------


def answered(window: pd.DataFrame, target: Target, notes: list[str]) -> pd.DataFrame:
    """The rows whose served answer is usable: a contract class (classification) or a number."""
    if not target.is_classification:
        keep = window["predicted_label"].notna()
    else:
        keep = window["predicted_label"].isin(target.classes)
    if keep.all():
        return window  # no copy of a window that may hold millions of rows
    notes.append(f"{int((~keep).sum())} captured answer(s) are not classes of the contract: left out")
    return window[keep]


def known_labels(labelled: pd.DataFrame, target: Target, notes: list[str]) -> pd.DataFrame:
    """Labelled rows whose label the contract knows (a class of it, or a finite number)."""
    column = labelled[target.name]
    if target.is_classification:
        keep = column.isin(target.classes)
    else:
        keep = pd.Series(np.isfinite(pd.to_numeric(column).to_numpy(dtype=np.float64)), index=labelled.index)
    if keep.all():
        return labelled
    shown = sorted({repr(value) for value in column[~keep].tolist()})[:5]
    notes.append(
        f"{int((~keep).sum())} feedback label(s) outside target '{target.name}' "
        f"({', '.join(shown)}): left out"
    )
    return labelled[keep]


def truth(rows: pd.DataFrame, target: Target) -> np.ndarray:
    """Ground truth as training sees it: class indices, or the observed numbers."""
    if target.is_classification:
        return target.class_indices(rows[target.name])
    return pd.to_numeric(rows[target.name]).to_numpy(dtype=np.float64)


def predicted(rows: pd.DataFrame, target: Target) -> np.ndarray:
    """The served answers: class indices, or the predicted numbers."""
    if target.is_classification:
        return target.class_indices(rows["predicted_label"])
    return pd.to_numeric(rows["predicted_label"]).to_numpy(dtype=np.float64)


def probabilities(rows: pd.DataFrame, target: Target) -> np.ndarray | None:
    """Class probabilities [N, classes] in contract order; None for regression."""
    if not target.is_classification:
        return None
    signal = from_window(rows, target)
    if target.task == MULTICLASS:  # captured as JSON from float32: renormalise the rounding away
        return signal / signal.sum(axis=1, keepdims=True)
    matrix = np.empty((len(rows), 2), dtype=np.float64)
    matrix[:, target.positive_index] = signal[:, 0]
    matrix[:, 1 - target.positive_index] = 1 - signal[:, 0]
    return matrix


# -- the calls into ml/evaluate.py (training's metric definitions) -------------------------------------


def window_metrics(
    target: Target, truth: np.ndarray, predicted: np.ndarray, probabilities: np.ndarray | None
) -> dict[str, Any]:
    """The task's metrics, by training's own definitions (`ml.evaluate.task_metrics`)."""
    extra = {"positive_index": target.positive_index} if target.task == BINARY else {}
    return task_metrics(truth, predicted, probabilities, task=target.task, **extra)


def group_function(metric: str, task: str = BINARY) -> Any:
    """Training's per-group metric (truth, prediction) -> value for `task`."""
    return GROUP_FUNCTIONS[task][metric]


# -- bias across the sensitive attribute ----------------------------------------------------------------


def _bias(
    window: pd.DataFrame, labelled: pd.DataFrame | None, contract: Contract, metric: str, notes: list[str]
) -> tuple[int, dict[str, float], float | None]:
    """(rows used, the metric per group, the largest gap) of the sensitive attribute, or notes why not."""
    if contract.sensitive is None:
        notes.append("the contract declares no sensitive attribute: no bias gap")
        return 0, {}, None
    name, target = contract.sensitive.name, contract.target
    if name not in window or window[name].isna().all():
        notes.append(f"no captured row carries the sensitive attribute {name!r}: no bias gap")
        return 0, {}, None
    if metric == "selection_rate":
        rows = window[window[name].notna()]
        answers = predicted(rows, target)
        labels = answers  # selection rate reads only the predictions
    elif labelled is not None:
        rows = labelled[labelled[name].notna()]
        answers, labels = predicted(rows, target), truth(rows, target)
    else:
        notes.append(f"{metric} by group needs labels: too few labelled rows, no bias gap")
        return 0, {}, None
    sensitive = window_groups(rows, contract)
    if target.task == BINARY:
        positive = target.positive_index
        rates = by_group(
            (labels == positive).astype(np.int64), (answers == positive).astype(np.int64), sensitive, metric
        )
    elif target.task == MULTICLASS and metric == "selection_rate":
        return len(rows), *class_selection_gaps(answers, sensitive, target, notes)
    else:
        rates = by_group(labels, answers, sensitive, metric, target.task)
    if len(rates) < 2:
        notes.append(f"fewer than two groups of {name!r} in the window: no bias gap")
        return len(rows), rates, None
    gap = max(rates.values()) - min(rates.values())
    if target.task == REGRESSION:  # relative to the overall value, so one limit fits any target scale
        overall = float(group_function(metric, target.task)(labels, answers))
        if overall == 0:
            notes.append(f"the window's overall {metric} is 0: the relative bias gap is undefined")
            return len(rows), rates, None
        gap /= overall
    return len(rows), rates, gap


def class_selection_gaps(
    answers: np.ndarray, sensitive: pd.Series, target: Target, notes: list[str]
) -> tuple[dict[str, float], float | None]:
    """Multiclass selection rate: how often each group is predicted each class; the largest gap.

    The rates are keyed `<group> -> <class>`, so the report shows which class separates the groups.
    """
    rates: dict[str, float] = {}
    gaps: list[float] = []
    for index, key in enumerate(target.class_keys):
        chosen = (answers == index).astype(np.int64)
        per_group = by_group(chosen, chosen, sensitive, "selection_rate")
        rates.update({f"{group} -> {key}": rate for group, rate in per_group.items()})
        if len(per_group) >= 2:
            gaps.append(max(per_group.values()) - min(per_group.values()))
    if not gaps:
        notes.append(f"fewer than two groups of {sensitive.name!r} in the window: no bias gap")
        return rates, None
    return rates, max(gaps)


def window_groups(rows: pd.DataFrame, contract: Contract) -> pd.Series:
    """Training's groups (`ml.evaluate.groups`: the values as text, missing as a group of its own),
    kept categorical when the window's column is: millions of rows, a few groups."""
    assert contract.sensitive is not None
    column = rows[contract.sensitive.name]
    if not isinstance(column.dtype, pd.CategoricalDtype):
        found = groups(rows, contract)
        assert found is not None
        return found
    named = column.cat.rename_categories([str(value) for value in column.cat.categories])
    if MISSING_GROUP not in named.cat.categories:
        named = named.cat.add_categories([MISSING_GROUP])
    return named.fillna(MISSING_GROUP)


def by_group(
    truth: np.ndarray, predicted: np.ndarray, sensitive: pd.Series, metric: str, task: str = BINARY
) -> dict[str, float]:
    """Training's per-group metric (`group_function`), group by group.

    The same numbers as fairlearn's MetricFrame.by_group, whose between-groups difference is
    max - min; computed directly because MetricFrame with training's full metric set takes
    minutes on a million-row window, and monitoring needs one metric.
    """
    function = group_function(metric, task)
    codes, found = pd.factorize(sensitive)  # a categorical's own codes: no comparison of strings per row
    rates: dict[str, float] = {}
    for code, group in sorted(enumerate(found.tolist()), key=lambda item: item[1]):
        members = codes == code
        value = float(function(truth[members], predicted[members]))
        if not math.isnan(value):
            rates[str(group)] = value
    return rates
