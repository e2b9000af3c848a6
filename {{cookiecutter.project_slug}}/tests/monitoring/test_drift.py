"""Drift detection: injected drift is found and named, no-drift windows rarely alarm, backends agree."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp

from data_pipelines.example import example_contract
from monitoring.detectors import DriftError, category_codes, correct, ks, make_detector, score_drift
from tests.support.drift import INJECTED, example, inject

CONTRACT = example_contract()
LEVEL = 0.05
needs_alibi = pytest.mark.skipif(
    importlib.util.find_spec("alibi_detect") is None, reason="alibi-detect is not installed (detector: scipy)"
)


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return example(5000, seed=0)


@pytest.fixture(scope="module")
def pool() -> pd.DataFrame:
    """Fresh rows from the reference distribution, cut into independent windows."""
    return example(100 * 500, seed=1)


@pytest.fixture(scope="module")
def alibi(reference):
    if importlib.util.find_spec("alibi_detect") is None:
        return None
    return make_detector("alibi", CONTRACT, LEVEL, "bonferroni").fit(reference)


@pytest.mark.parametrize("backend", ["scipy", pytest.param("alibi", marks=needs_alibi)])
def test_injected_drift_is_detected_and_the_drifted_features_are_named(backend, reference, alibi):
    detector = (
        alibi if backend == "alibi" else make_detector(backend, CONTRACT, LEVEL, "bonferroni").fit(reference)
    )
    result = detector.check(inject(example(1000, seed=7)))
    assert set(result.drifted_features) == INJECTED
    assert result.threshold == pytest.approx(LEVEL / len(CONTRACT.features))
    by_name = {feature.name: feature for feature in result.features}
    assert by_name["income"].test == "ks" and by_name["employment_type"].test == "chi2"
    assert not detector.check(example(1000, seed=8)).drifted_features


def test_the_example_downturn_moves_the_inputs_it_describes(reference):
    result = (
        make_detector("scipy", CONTRACT, LEVEL, "fdr")
        .fit(reference)
        .check(example(2000, 9, covariate_drift=1.0))
    )
    assert {"income", "loan_amount", "debt_to_income", "employment_type", "region"} <= set(
        result.drifted_features
    )
    assert result.drifted_share > 0.5


def test_windows_from_the_reference_distribution_stay_within_the_level(reference, pool, alibi):
    """100 seeded no-drift windows: the family-wise false-alarm rate must stay at the policy level.

    With a true rate of 5 %, 100 runs show 9 or more alarms with probability below 7 %
    (binomial); KS on integer features is conservative, so the observed count is lower.
    """
    windows = [pool.iloc[start : start + 500] for start in range(0, len(pool), 500)]
    for correction in ("bonferroni", "fdr"):
        detector = make_detector("scipy", CONTRACT, LEVEL, correction).fit(reference)
        alarms = sum(bool(detector.check(window).drifted_features) for window in windows)
        assert alarms <= 8, f"{alarms} false alarms in 100 runs with {correction}"
    if alibi is not None:  # the alibi-detect backend raises the same alarms on a subset
        scipy = make_detector("scipy", CONTRACT, LEVEL, "bonferroni").fit(reference)
        for window in windows[:10]:
            assert alibi.check(window).drifted_features == scipy.check(window).drifted_features


@needs_alibi
@pytest.mark.parametrize("correction", ["bonferroni", "fdr"])
def test_both_backends_agree_on_clear_cases(reference, correction):
    scipy = make_detector("scipy", CONTRACT, LEVEL, correction).fit(reference)
    alibi = make_detector("alibi", CONTRACT, LEVEL, correction).fit(reference)
    for current in (
        example(3000, seed=11, covariate_drift=1.0),
        inject(example(3000, 12)),
        example(3000, 13),
    ):
        ours, theirs = scipy.check(current), alibi.check(current)
        assert ours.drifted_features == theirs.drifted_features
        assert ours.threshold == pytest.approx(theirs.threshold)
        assert np.allclose(
            [feature.p_value for feature in ours.features],
            [feature.p_value for feature in theirs.features],
            rtol=1e-4,
            atol=1e-7,
        )


def test_a_jump_in_missing_values_and_unseen_categories_count_as_drift(reference):
    current = example(2000, seed=5)
    current.loc[current.index[:600], "income"] = np.nan
    current["region"] = current["region"].where(current.index % 3 != 0, "atlantis")
    result = make_detector("scipy", CONTRACT, LEVEL, "bonferroni").fit(reference).check(current)
    assert set(result.drifted_features) == {"income", "region"}


def test_category_codes_keep_unseen_and_missing_apart():
    codes = category_codes(pd.Series(["b", None, "zzz", "a"]), ("a", "b"))
    assert codes.tolist() == [1, 3, 2, 0]


def test_a_categorical_column_as_the_capture_reader_gives_it_codes_like_text():
    values = pd.Series(["b", None, "zzz", "a", "b", None])
    window_column = values.astype("category")  # the reader's dtype for a window's text features
    assert category_codes(window_column, ("a", "b")).tolist() == category_codes(values, ("a", "b")).tolist()
    numbers = pd.Series([1, None, 3], dtype="Int64").astype("category")  # numbers compare as their text
    assert category_codes(numbers, ("1", "2")).tolist() == [0, 3, 2]


def test_ks_on_a_window_larger_than_the_reference_is_scipys_test_to_the_last_bit():
    """Large windows take the counting path (no sort of the window); it must be scipy's KS exactly,
    ties, missing values (coded -inf) and disjoint samples included."""
    rng = np.random.default_rng(1)
    samples = {
        "continuous": lambda size: rng.normal(0.1, size=size),
        "ties": lambda size: rng.integers(0, 12, size).astype(float),
        "missing": lambda size: np.where(rng.random(size) < 0.3, -np.inf, rng.integers(0, 5, size) * 1.0),
        "disjoint": lambda size: rng.integers(0, 3, size) + 5.0 * (size > 500),
    }
    for name, draw in samples.items():
        for reference_size, window_size in ((40, 41), (300, 5000), (1000, 20000)):
            reference, window = draw(reference_size), draw(window_size)
            expected = ks_2samp(reference, window, method="asymp")
            assert ks(reference, window) == (expected.statistic, expected.pvalue), (name, reference_size)


def test_bonferroni_and_benjamini_hochberg_thresholds():
    p_values = np.array([0.001, 0.008, 0.039, 0.041, 0.9])
    threshold, flags = correct(p_values, 0.05, "bonferroni")
    assert threshold == pytest.approx(0.01) and flags.tolist() == [True, True, False, False, False]
    threshold, flags = correct(p_values, 0.05, "fdr")
    assert threshold == pytest.approx(0.02) and flags.tolist() == [True, True, False, False, False]
    threshold, flags = correct(np.array([0.2, 0.3]), 0.05, "fdr")
    assert not flags.any()


def test_score_drift_compares_the_positive_class_scores():
    rng = np.random.default_rng(0)
    reference = rng.beta(2, 5, 5000)
    assert not score_drift(reference, rng.beta(2, 5, 1000), LEVEL).drifted
    shifted = score_drift(reference, rng.beta(3, 4, 1000), LEVEL)
    assert shifted.drifted and shifted.name == "score" and shifted.p_value < 1e-6


def test_bad_detector_settings_are_rejected_with_their_value(reference):
    with pytest.raises(DriftError, match="backend must be one of"):
        make_detector("evidently", CONTRACT, LEVEL, "bonferroni")
    with pytest.raises(DriftError, match=r"drift.p_value .* \(got 1.5\)"):
        make_detector("scipy", CONTRACT, 1.5, "bonferroni")
    with pytest.raises(DriftError, match=r"drift\.correction"):
        make_detector("scipy", CONTRACT, LEVEL, "holm")
    with pytest.raises(DriftError, match="lacks the contract features"):
        make_detector("scipy", CONTRACT, LEVEL, "bonferroni").fit(reference.drop(columns=["age"]))
