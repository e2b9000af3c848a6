"""Per-feature drift tests behind one small interface, so the statistics backend can be swapped.

The contract decides the test for each feature (numeric -> two-sample Kolmogorov-Smirnov,
categorical -> Chi-squared on the category counts) and the policy decides the level and the
multiple-testing correction. Two backends implement the same tests:

- `alibi`: alibi-detect's TabularDrift (Business Source License 1.1: see monitoring/README.md);
- `scipy`: the same tests written directly on scipy.stats (BSD licence).

Both see the same encoded matrix: numeric missing values become -inf (rank-based KS then
also notices a change in how often a value is missing), categories become integer codes in
the contract's order with one extra code for an unseen category and one for a missing value.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import chi2_contingency, ks_2samp, kstwo

from governance.core.contract import Contract, Feature
from governance.core.errors import InputError
from governance.core.policy import CORRECTIONS
from governance.core.records import DriftResult, FeatureDrift
from monitoring.config import BACKENDS


class DriftError(InputError):
    """The detector cannot run as configured; the message names the setting and the value."""


def encode(frame: pd.DataFrame, contract: Contract) -> np.ndarray:
    """The contract's features as one float matrix both backends test (see the module docstring)."""
    missing = [name for name in contract.feature_names if name not in frame.columns]
    if missing:
        raise DriftError(f"data lacks the contract features {missing}")
    matrix = np.empty((len(frame), len(contract.features)), dtype=np.float64)
    for index, feature in enumerate(contract.features):
        matrix[:, index] = encode_feature(frame[feature.name], feature)
    return matrix


def encode_feature(column: pd.Series, feature: Feature) -> np.ndarray:
    """One column of `encode`: numbers with missing as -inf, or category codes."""
    if feature.is_numeric:
        values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        return np.where(np.isnan(values), -np.inf, values)
    return category_codes(column, feature.categories).astype(np.float64)


def category_codes(column: pd.Series, categories: tuple[str, ...]) -> np.ndarray:
    """Codes 0..k-1 in contract order; k for a value outside the contract, k+1 for missing."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        # A captured window's column (millions of rows): map its few categories, then index by
        # the row codes; a missing value's code -1 picks the table's last entry, k+1.
        known = {str(value): index for index, value in enumerate(categories)}
        table = [known.get(str(value), len(categories)) for value in column.cat.categories]
        return np.array([*table, len(categories) + 1], dtype=np.int64)[column.cat.codes.to_numpy()]
    as_strings = column.astype("string")
    codes = pd.Categorical(as_strings, categories=list(categories)).codes.astype(np.int64)
    unseen = (codes == -1) & as_strings.notna().to_numpy()
    codes[unseen] = len(categories)
    codes[codes == -1] = len(categories) + 1
    return codes


def correct(p_values: np.ndarray, level: float, method: str) -> tuple[float, np.ndarray]:
    """Multiple-testing correction: the threshold a p-value must fall below, and the drift flags.

    Bonferroni tests every feature at level/n. FDR is Benjamini-Hochberg: the largest k with
    p_(k) < level*k/n sets the threshold, so every p-value at or below p_(k) is flagged.
    """
    count = len(p_values)
    if count == 0:
        return level, np.zeros(0, dtype=bool)
    if method == "bonferroni":
        threshold = level / count
        return threshold, p_values < threshold
    steps = level * np.arange(1, count + 1) / count
    below = np.sort(p_values) < steps
    if not below.any():
        return level / count, np.zeros(count, dtype=bool)
    threshold = float(steps[np.flatnonzero(below).max()])
    return threshold, p_values < threshold


def ks(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Two-sided two-sample KS with the asymptotic p-value (what alibi-detect uses; exact is slow).

    A window larger than the reference is not sorted (scipy sorts both samples and looks every
    value up in both): `ks_counts` gives scipy's statistic from counts per reference value.
    """
    if len(current) <= len(reference) or not len(reference):
        result = ks_2samp(reference, current, alternative="two-sided", method="asymp")
        return float(result.statistic), float(result.pvalue)
    statistic = ks_counts(reference, current)
    m, n = sorted([float(len(reference)), float(len(current))], reverse=True)
    return statistic, float(kstwo.sf(statistic, np.round(m * n / (m + n))))


def ks_counts(reference: np.ndarray, current: np.ndarray) -> float:
    """The two-sample KS statistic, sup |F_ref - F_cur|, from where each current value falls among
    the reference's distinct values: O(n log k) for n current values and k distinct reference ones.

    Both ECDFs are steps; between two reference values F_ref is flat and F_cur only rises, so the
    supremum is reached at a reference value, or (F_cur above F_ref) at the largest current value
    before the next one. Counting the current values per gap and those equal to each reference
    value gives both, the same arithmetic scipy's `ks_2samp` does on the sorted samples.
    """
    values = np.unique(reference)  # sorted distinct
    below_ref = np.searchsorted(np.sort(reference), values, side="right")  # count(reference <= value)
    slot = np.searchsorted(values, current, side="left")  # values < current
    equal = slot < len(values)
    equal[equal] = values[slot[equal]] == current[equal]
    gap = slot + equal  # reference values <= current: current lies in gap `gap`
    in_gap = np.bincount(gap, minlength=len(values) + 1)
    at_value = np.bincount(slot[equal], minlength=len(values))
    upto_gap = np.cumsum(in_gap)  # count(current in this gap or an earlier one)
    # At reference value j: count(current <= value) = count(gap <= j) + the ones equal to it.
    f_ref = below_ref / len(reference)
    f_cur = (upto_gap[:-1] + at_value) / len(current)
    above = f_ref - f_cur
    # The largest current value of each non-empty gap: F_cur = upto_gap, F_ref = the gap's floor.
    floors = np.concatenate([[0.0], f_ref])
    filled = in_gap > 0
    below = upto_gap[filled] / len(current) - floors[filled]
    return float(max(above.max(initial=0.0), -above.min(initial=0.0), below.max(initial=0.0), 0.0))


def chi2(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Chi-squared on the counts of every code seen in either sample (a 2 x k contingency table)."""
    reference, current = reference.astype(np.int64), current.astype(np.int64)
    size = int(max(reference.max(initial=0), current.max(initial=0))) + 1
    table = np.vstack([np.bincount(reference, minlength=size), np.bincount(current, minlength=size)])
    table = table[:, table.sum(axis=0) > 0]
    result = chi2_contingency(table)
    return float(result.statistic), float(result.pvalue)


class Detector(ABC):
    """Fit on the reference once, then check any number of current windows against it."""

    name = "base"

    def __init__(self, contract: Contract, level: float = 0.05, correction: str = "bonferroni") -> None:
        if not 0 < level < 1:
            raise DriftError(f"policy drift.p_value must be between 0 and 1 (got {level!r})")
        if correction not in CORRECTIONS:
            raise DriftError(f"policy drift.correction must be one of {CORRECTIONS} (got {correction!r})")
        self.contract = contract
        self.level = level
        self.correction = correction
        self.reference: np.ndarray | None = None

    def fit(self, reference: pd.DataFrame) -> Detector:
        if len(reference) == 0:
            raise DriftError("the reference data set is empty")
        self.reference = encode(reference, self.contract)
        self._fit(self.reference)
        return self

    def check(self, current: pd.DataFrame) -> DriftResult:
        if self.reference is None:
            raise DriftError("call fit(reference) before check(current)")
        if len(current) == 0:
            raise DriftError("the current window is empty")
        missing = [name for name in self.contract.feature_names if name not in current.columns]
        if missing:
            raise DriftError(f"data lacks the contract features {missing}")
        statistics, p_values, threshold, flags = self._check(current)
        features = tuple(
            FeatureDrift(
                name=feature.name,
                kind=feature.kind,
                test="ks" if feature.is_numeric else "chi2",
                statistic=float(statistics[index]),
                p_value=float(p_values[index]),
                drifted=bool(flags[index]),
            )
            for index, feature in enumerate(self.contract.features)
        )
        return DriftResult(
            backend=self.name,
            correction=self.correction,
            level=self.level,
            threshold=float(threshold),
            reference_rows=len(self.reference),
            current_rows=len(current),
            features=features,
        )

    def _fit(self, reference: np.ndarray) -> None:  # noqa: B027 - optional hook
        """Backends that precompute something from the reference do it here."""

    @abstractmethod
    def _check(self, current: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
        """Return statistics, p-values, the corrected threshold and per-feature drift flags."""


class ScipyDetector(Detector):
    """KS and Chi-squared from scipy.stats with the shared correction: permissively licensed."""

    name = "scipy"

    def _check(self, current: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
        """One feature at a time, each encoded just before its test: a window of millions of rows
        never holds the whole float matrix (10 M rows x 9 features: 720 MB)."""
        assert self.reference is not None
        statistics = np.zeros(len(self.contract.features))
        p_values = np.ones(len(self.contract.features))
        for index, feature in enumerate(self.contract.features):
            test = ks if feature.is_numeric else chi2
            column = encode_feature(current[feature.name], feature)
            statistics[index], p_values[index] = test(self.reference[:, index], column)
        threshold, flags = correct(p_values, self.level, self.correction)
        return statistics, p_values, threshold, flags


class AlibiDetector(Detector):
    """alibi-detect's TabularDrift: KS on numeric columns, Chi-squared on the contract's categoricals."""

    name = "alibi"

    def _fit(self, reference: np.ndarray) -> None:
        # transformers (an alibi-detect dependency) warns on import that no deep-learning
        # framework is installed; none is needed for tabular tests.
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        try:
            from alibi_detect.cd import TabularDrift  # ~5 s to import: only for this backend
        except ImportError as error:
            raise DriftError(
                f"detector 'alibi' needs alibi-detect installed ({error}); "
                "install the monitor requirements or use detector: scipy"
            ) from None
        categorical = {
            index: None for index, feature in enumerate(self.contract.features) if not feature.is_numeric
        }
        self._detector = TabularDrift(
            reference,
            p_val=self.level,
            categories_per_feature=categorical or None,
            correction=self.correction,
        )

    def _check(self, current: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
        prediction = self._detector.predict(
            encode(current, self.contract), drift_type="batch", return_p_val=True, return_distance=True
        )
        data = prediction["data"]
        p_values = np.asarray(data["p_val"], dtype=np.float64)
        threshold = data["threshold"]
        if np.ndim(threshold):  # FDR without any rejection returns every step's threshold
            threshold = float(np.min(threshold))
        flags = p_values < threshold if data["is_drift"] else np.zeros(len(p_values), dtype=bool)
        return np.asarray(data["distance"], dtype=np.float64), p_values, float(threshold), flags


def make_detector(backend: str, contract: Contract, level: float, correction: str) -> Detector:
    """The configured backend (monitoring/monitoring.yaml `detector`, or DETECTOR in the environment)."""
    classes = {"alibi": AlibiDetector, "scipy": ScipyDetector}
    if backend not in classes:
        raise DriftError(f"detector backend must be one of {BACKENDS} (got {backend!r})")
    return classes[backend](contract, level=level, correction=correction)


def score_drift(
    reference: np.ndarray, current: np.ndarray, level: float, name: str = "score"
) -> FeatureDrift:
    """KS on one prediction signal (e.g. the positive-class scores): one test, at the policy level."""
    reference = np.asarray(reference, dtype=np.float64)
    current = np.asarray(current, dtype=np.float64)
    reference, current = reference[~np.isnan(reference)], current[~np.isnan(current)]
    if len(reference) == 0 or len(current) == 0:
        raise DriftError("score drift needs scores in both the reference and the current window")
    statistic, p_value = ks(reference, current)
    return FeatureDrift(
        name=name, kind="score", test="ks", statistic=statistic, p_value=p_value, drifted=p_value < level
    )


def prediction_drift(
    reference: np.ndarray,
    current: np.ndarray,
    columns: Sequence[str],
    level: float,
    correction: str = "bonferroni",
    name: str = "score",
) -> tuple[FeatureDrift, tuple[FeatureDrift, ...]]:
    """Drift of the model's answers: the decision's one row, and one row per signal column.

    The signal is monitoring/predictions.py's: one column (the positive-class probability, or
    the predicted value) is one KS test at the policy level, and the per-column rows are empty.
    Multiclass has one probability per class: each gets a KS test and the policy's correction
    across them, and the family drifts when any class does. KS per class rather than
    Chi-squared on the predicted-class counts: a model growing unsure moves its probabilities
    long before the winning class changes, and the rows say which class moved. The summary
    row carries the largest statistic and the family's corrected p-value (Bonferroni: K times
    the smallest; FDR: Benjamini-Hochberg's smallest adjusted value), so `p < level` is the
    same verdict as the per-class flags.
    """
    reference = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    current = np.asarray(current, dtype=np.float64).reshape(len(current), -1)
    if reference.shape[1] != len(columns) or current.shape[1] != len(columns):
        raise DriftError(
            f"prediction drift needs the signal columns {list(columns)} on both sides "
            f"(reference has {reference.shape[1]}, current {current.shape[1]})"
        )
    if len(columns) == 1:
        return score_drift(reference[:, 0], current[:, 0], level, name), ()
    rows = [
        score_drift(reference[:, index], current[:, index], level, column)
        for index, column in enumerate(columns)
    ]
    p_values = np.array([row.p_value for row in rows])
    _, flags = correct(p_values, level, correction)
    if correction == "bonferroni":
        family = min(1.0, float(p_values.min()) * len(rows))
    else:
        ordered = np.sort(p_values)
        family = min(1.0, float((ordered * len(rows) / np.arange(1, len(rows) + 1)).min()))
    per_class = tuple(
        row.model_copy(update={"drifted": bool(flag)}) for row, flag in zip(rows, flags, strict=True)
    )
    summary = FeatureDrift(
        name=name,
        kind="score",
        test=f"ks x{len(rows)} ({correction})",
        statistic=max(row.statistic for row in rows),
        p_value=family,
        drifted=bool(flags.any()),
    )
    return summary, per_class
