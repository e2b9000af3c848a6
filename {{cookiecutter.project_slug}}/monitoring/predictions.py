"""What the model answered, as the numbers prediction drift compares, for every task.

One definition for both sides of the comparison: the capture reader puts these columns in the
window (from the served `scores` / `label`), and the reference gets the same columns by
re-scoring the champion's training snapshot with the ground scorer (`Scores`). Per task:

- binary: `score`, the positive-class probability (one KS test);
- multiclass: `score[<class>]`, one probability per class in the contract's order (one KS test
  per class, corrected for multiple testing: monitoring/detectors.py says why);
- regression: `score`, the predicted value (one KS test).

Contract column names are identifiers, so `score[...]` can never clash with one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from governance.core.contract import Target
from governance.core.encoding import Scores
from governance.core.tasks import BINARY, MULTICLASS

SCORE = "score"
# How the prediction signal is named in reports and decisions, per task.
DESCRIPTION = {
    "binary_classification": "positive-class probability",
    "multiclass_classification": "class probabilities",
    "regression": "predicted value",
}


def signal_columns(target: Target) -> tuple[str, ...]:
    """The window's prediction-signal columns for this target (see the module docstring)."""
    if target.task == MULTICLASS:
        return tuple(f"{SCORE}[{key}]" for key in target.class_keys)
    return (SCORE,)


def describe(target: Target) -> str:
    return DESCRIPTION[target.task]


def from_scores(scores: Scores, target: Target) -> np.ndarray:
    """The signal of a scored batch as an [N, columns] float matrix."""
    if not target.is_classification:
        if scores.value is None:
            raise ValueError(f"the model is a classifier, target '{target.name}' is a regression target")
        return np.asarray(scores.value, dtype=np.float64).reshape(-1, 1)
    if scores.probabilities is None:
        raise ValueError(f"the model is a regressor, target '{target.name}' is a {target.task} target")
    probabilities = np.asarray(scores.probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[1] != len(target.classes):
        raise ValueError(
            f"the model answers {probabilities.shape[-1]} class probabilities, "
            f"target '{target.name}' has {len(target.classes)} classes {list(target.classes)}"
        )
    if target.task == BINARY:
        return probabilities[:, [target.positive_index]]
    return probabilities


def from_window(window: pd.DataFrame, target: Target) -> np.ndarray:
    """The signal of a capture window (the columns the reader wrote) as an [N, columns] float matrix."""
    return np.column_stack(
        [
            pd.to_numeric(window[name]).to_numpy(dtype=np.float64, na_value=np.nan)
            for name in signal_columns(target)
        ]
    ).reshape(len(window), -1)
