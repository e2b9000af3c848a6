"""Which inputs the model relies on, and how its answer moves with them: the card's "Explanations".

Permutation importance (scikit-learn's `permutation_importance`) shuffles one raw contract column
at a time on the test split and measures how much the policy's primary metric worsens. The
columns shuffled are the pipeline's inputs, so a categorical feature is one column here, not one
per one-hot code. The champion's ONNX model is scored on the same rows with the same shuffles
(one seed), so the two rankings sit side by side on equal terms. Partial dependence
(`partial_dependence`, grid averaged) of the candidate's top features shows the average answer
as one feature sweeps a grid; the champion is swept over the same grid through onnxruntime.

What it costs: permutation importance scores the whole test split REPEATS times per column;
partial dependence scores DEPENDENCE_ROWS rows (a seeded sample of the test split, the same for
both models) GRID_POINTS times per top feature. `bench/explain` measures the step against the
rest of `make train`'s work on the same snapshot.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.inspection import partial_dependence, permutation_importance
from sklearn.pipeline import Pipeline

from governance.core.contract import Contract
from governance.core.encoding import Scorer
from governance.core.records import Baseline, Dependence, Explanations, FeatureImportance, Importance
from governance.core.tasks import BINARY, MULTICLASS, REGRESSION, higher_is_better
from ml.evaluate import METRIC_FUNCTIONS, Answers
from ml.features import onnx_inputs

REPEATS = 3  # shuffles per column: the spread over them is the importance's `std`
TOP_FEATURES = 3  # partial dependence is drawn for this many of the candidate's most important features
GRID_POINTS = 10  # numeric grid: evenly spaced between the 5th and 95th percentile of the test rows
DEPENDENCE_ROWS = 1000  # partial dependence averages over at most this many test rows (a seeded sample)
PERCENTILES = (5.0, 95.0)


class ExplainedModel:
    """A model as permutation importance sees it: answers (class index and probabilities, or a value)
    for a frame of raw contract columns (`ml.features.model_frame`)."""

    def fit(self, *_: Any) -> ExplainedModel:
        raise NotImplementedError("an explained model is already trained; explanations never refit it")

    def answers(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
        raise NotImplementedError


@dataclass
class PipelineModel(ExplainedModel):
    """The candidate: the fitted scikit-learn pipeline."""

    pipeline: Pipeline
    classification: bool

    def answers(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
        if not self.classification:
            return self.pipeline.predict(frame), None
        proba = self.pipeline.predict_proba(frame)  # classes are fitted as indices 0..K-1: argmax is predict
        return proba.argmax(axis=1), proba


@dataclass
class OnnxModel(ExplainedModel):
    """The champion: its ONNX model through the ground layer's scorer, fed like serving feeds it."""

    scorer: Scorer
    contract: Contract

    def answers(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
        scores = self.scorer.score(onnx_inputs(frame, self.contract))
        return scores.predicted, scores.probabilities

    def average(self, frame: pd.DataFrame) -> np.ndarray:
        """The mean answer over the rows: per class probability [K], or the value [1]."""
        predicted, proba = self.answers(frame)
        values = np.asarray(predicted if proba is None else proba, dtype=np.float64)
        return values.reshape(len(frame), -1).mean(axis=0)


def metric_scorer(
    contract: Contract, metric: str
) -> Callable[[ExplainedModel, pd.DataFrame, np.ndarray], float]:
    """scikit-learn scorer protocol (greater is better) for the policy's primary metric.

    A lower-is-better metric (log_loss, rmse) is negated, so importance is always "how much worse
    the metric gets", positive when the model uses the feature.
    """
    positive = contract.target.positive_index if contract.task == BINARY else 1
    sign = 1.0 if higher_is_better(metric) else -1.0
    compute = METRIC_FUNCTIONS[metric]  # only the primary metric: it is computed once per shuffle

    def score(model: ExplainedModel, frame: pd.DataFrame, y_true: np.ndarray) -> float:
        predicted, proba = model.answers(frame)
        try:
            value = float(compute(Answers(np.asarray(y_true), predicted, proba, positive)))
        except ValueError:  # undefined on these rows (one class only)
            return math.nan
        return sign * value

    return score


def importance(
    model: ExplainedModel,
    version: str,
    frame: pd.DataFrame,
    y_true: np.ndarray,
    contract: Contract,
    metric: str,
    seed: int,
) -> Importance:
    """Permutation importance of every contract column, most important first (ties: contract order)."""
    result = permutation_importance(
        model, frame, y_true, scoring=metric_scorer(contract, metric), n_repeats=REPEATS, random_state=seed
    )
    sign = 1.0 if higher_is_better(metric) else -1.0
    baseline = metric_scorer(contract, metric)(model, frame, y_true)
    features = [
        FeatureImportance(feature=name, mean=_finite(mean), std=_finite(std))
        for name, mean, std in zip(
            frame.columns, result.importances_mean, result.importances_std, strict=True
        )
    ]
    ranked = sorted(features, key=lambda item: -item.mean)  # stable: equal importances keep contract order
    return Importance(
        version=version,
        score=None if math.isnan(baseline) else _finite(sign * baseline),
        features=tuple(ranked),
    )


def _finite(value: float) -> float:
    """Six significant digits (the registry keeps them; documents show four); a metric undefined on
    the shuffled rows (one class left) measures no importance: 0."""
    return float(f"{float(value):.6g}") if math.isfinite(float(value)) else 0.0


def grid(frame: pd.DataFrame, contract: Contract, name: str) -> list[float] | list[str]:
    """The values one feature sweeps: evenly spaced between its 5th and 95th percentile on the test
    rows (its distinct values when there are fewer), or the contract's categories present in them."""
    feature = contract.feature(name)
    column = frame[name]
    if feature.is_numeric:
        values = column.to_numpy(dtype=np.float64)
        values = values[np.isfinite(values)]
        if len(values) == 0:
            return []
        distinct = np.unique(values)
        if len(distinct) <= GRID_POINTS:
            return [float(f"{value:.6g}") for value in distinct]
        low, high = np.percentile(values, PERCENTILES)
        return sorted({float(f"{value:.6g}") for value in np.linspace(low, high, GRID_POINTS)})
    present = set(column.tolist())
    return [str(category) for category in feature.categories if str(category) in present]


def output_names(contract: Contract) -> tuple[str, ...]:
    """What a dependence curve is the average of: P(positive class), P(each class) or the prediction."""
    target = contract.target
    if contract.task == REGRESSION:
        return ("prediction",)
    if contract.task == BINARY:
        return (f"P({target.class_keys[target.positive_index]})",)
    return tuple(f"P({key})" for key in target.class_keys)


def candidate_dependence(
    pipeline: Pipeline, frame: pd.DataFrame, contract: Contract, name: str, values: list
) -> tuple[tuple[float, ...], ...]:
    """scikit-learn's partial dependence of the candidate over `values`, one row per output."""
    categorical = [feature.name for feature in contract.categorical]
    result = partial_dependence(
        pipeline,
        frame,
        [name],
        categorical_features=categorical or None,
        custom_values={name: values},
        kind="average",
        method="brute",
        response_method="auto" if contract.task == REGRESSION else "predict_proba",
    )
    average = np.asarray(result["average"], dtype=np.float64)  # [outputs, grid]
    if contract.task == BINARY and contract.target.positive_index == 0:
        average = 1.0 - average  # scikit-learn averages P(class index 1); the card speaks of the positive one
    if contract.task == MULTICLASS and average.shape[0] != len(contract.target.classes):
        raise ValueError(f"partial dependence of {name!r} has {average.shape[0]} outputs, not one per class")
    return _rows(average)


def champion_dependence(
    model: OnnxModel, frame: pd.DataFrame, contract: Contract, name: str, values: list
) -> tuple[tuple[float, ...], ...]:
    """The champion over the same grid, computed the way scikit-learn's brute method does it:
    set the feature to each value on every row and average the answers."""
    columns = []
    for value in values:
        swept = frame.copy()
        swept[name] = np.full(len(frame), value, dtype=frame[name].dtype)
        columns.append(model.average(swept))
    average = np.column_stack(columns)  # [K or 1, grid]
    if contract.task == BINARY:
        average = average[[contract.target.positive_index]]
    return _rows(average)


def _rows(average: np.ndarray) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(round(float(value), 6) for value in row) for row in average)


def champion_model(
    baseline: Baseline | None, artifact: Path | None, contract: Contract
) -> tuple[OnnxModel | None, str | None]:
    """The champion's ONNX model when the regression gate re-scored it on these rows, else why not."""
    if baseline is None:
        return None, "No champion in production yet: the candidate is explained alone."
    if not baseline.comparable or artifact is None or not artifact.is_file():
        return None, (
            f"Champion {baseline.version} is not explained: it was not re-scored on this test split "
            f"({baseline.basis})."
        )
    return OnnxModel(Scorer(artifact), contract), None


def explain(
    pipeline: Pipeline,
    frame: pd.DataFrame,
    y_true: np.ndarray,
    contract: Contract,
    metric: str,
    seed: int,
    version: str,
    baseline: Baseline | None = None,
    champion_artifact: Path | None = None,
) -> Explanations:
    """Importance of the candidate (and the champion), then partial dependence of the top features."""
    candidate = PipelineModel(pipeline, contract.target.is_classification)
    ranking = importance(candidate, version, frame, y_true, contract, metric, seed)
    champion, note = champion_model(baseline, champion_artifact, contract)
    champion_ranking = (
        importance(champion, baseline.version, frame, y_true, contract, metric, seed)
        if champion is not None and baseline is not None
        else None
    )
    sample = frame.sample(n=DEPENDENCE_ROWS, random_state=seed) if len(frame) > DEPENDENCE_ROWS else frame
    curves = []
    for item in ranking.features[:TOP_FEATURES]:
        values = grid(frame, contract, item.feature)
        if not values:
            continue
        curves.append(
            Dependence(
                feature=item.feature,
                kind=contract.feature(item.feature).kind,
                grid=tuple(values),
                outputs=output_names(contract),
                candidate=candidate_dependence(pipeline, sample, contract, item.feature, values),
                champion=None
                if champion is None
                else champion_dependence(champion, sample, contract, item.feature, values),
            )
        )
    return Explanations(
        version=version,
        metric=metric,
        rows=len(frame),
        dependence_rows=len(sample),
        repeats=REPEATS,
        seed=seed,
        candidate=ranking,
        champion=champion_ranking,
        champion_note=note,
        dependence=tuple(curves),
    )
