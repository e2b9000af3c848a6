"""Fit the model: contract-derived preprocessing plus the estimator named in ml/params.yaml.

Everything that could make two runs differ is pinned here: the estimator's seed, the
split's seed and stratification, and the row order (the snapshot's). Training twice on one
snapshot therefore yields the same fitted model, and so the same ONNX bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import ClassifierMixin
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from data_pipelines.contract import Contract
from governance.files import read_yaml_mapping
from ml.features import DataError, model_frame, preprocessor

PARAMS_PATH = Path(__file__).with_name("params.yaml")

# Only families whose ONNX conversion passes parity (tests/test_export_parity.py checks each).
# HistGradientBoostingClassifier is absent on purpose: skl2onnx cannot convert it at our opset.
FAMILIES: dict[str, type[ClassifierMixin]] = {
    "logistic_regression": LogisticRegression,
    "random_forest": RandomForestClassifier,
    "gradient_boosting": GradientBoostingClassifier,
}
SCALED_FAMILIES = frozenset({"logistic_regression"})  # see ml.features.preprocessor


class ParamsError(ValueError):
    """ml/params.yaml breaks a rule; the message names the key, the rule and the value."""


@dataclass(frozen=True)
class Params:
    model_name: str
    model_family: str
    seed: int
    test_size: float
    estimator: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Split:
    """The held-out split keeps the raw rows: evaluation needs the target and sensitive attribute."""

    train: pd.DataFrame
    test: pd.DataFrame


def load_params(path: Path | str = PARAMS_PATH) -> Params:
    """Read and check the training parameters before any work starts."""
    raw = read_yaml_mapping(path, ParamsError, "training parameters file")
    family = raw.get("model_family")
    if family not in FAMILIES:
        raise ParamsError(f"params 'model_family' must be one of {sorted(FAMILIES)} (got {family!r})")
    seed = raw.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ParamsError(f"params 'seed' must be a non-negative integer (got {seed!r})")
    test_size = raw.get("test_size")
    if not isinstance(test_size, float) or not 0.05 <= test_size <= 0.5:
        raise ParamsError(f"params 'test_size' must be a fraction between 0.05 and 0.5 (got {test_size!r})")
    name = raw.get("model_name")
    if not isinstance(name, str) or not name.isidentifier():
        raise ParamsError(f"params 'model_name' must be an identifier (got {name!r})")
    estimators = raw.get("estimators") or {}
    settings = estimators.get(family, {}) if isinstance(estimators, dict) else None
    if not isinstance(settings, dict):
        raise ParamsError(f"params 'estimators.{family}' must be a mapping (got {settings!r})")
    if "random_state" in settings:
        raise ParamsError(
            f"params 'estimators.{family}.random_state' is not allowed: the top-level seed sets it"
        )
    return Params(name, family, seed, test_size, dict(settings))


def build_estimator(params: Params) -> ClassifierMixin:
    """The configured estimator, seeded; an unknown setting is reported by its key."""
    cls = FAMILIES[params.model_family]
    try:
        return cls(random_state=params.seed, **params.estimator)
    except TypeError as error:
        raise ParamsError(
            f"params 'estimators.{params.model_family}' has a setting {cls.__name__} rejects: {error}"
        ) from None


def build_pipeline(contract: Contract, params: Params) -> Pipeline:
    scale = params.model_family in SCALED_FAMILIES
    return Pipeline(
        [("features", preprocessor(contract, scale_numeric=scale)), ("model", build_estimator(params))]
    )


def labels(df: pd.DataFrame, contract: Contract) -> np.ndarray:
    """The target as int64, refusing values outside the contract's two classes."""
    target = contract.target
    if target.name not in df.columns:
        raise DataError(f"the data has no target column '{target.name}'")
    values = df[target.name]
    if values.isna().any():
        raise DataError(f"target column '{target.name}' has {int(values.isna().sum())} missing value(s)")
    unexpected = sorted(set(values.unique()) - set(target.classes), key=str)
    if unexpected:
        raise DataError(
            f"target column '{target.name}' has values {unexpected[:5]} "
            f"outside the classes {list(target.classes)}"
        )
    return values.to_numpy().astype(np.int64)


def split(df: pd.DataFrame, contract: Contract, params: Params) -> Split:
    """A stratified split that depends only on the rows, their order and the seed."""
    y = labels(df, contract)
    if min(np.bincount(y, minlength=2)) < 2:
        raise DataError(f"target column '{contract.target.name}' needs at least two rows of each class")
    train, test = train_test_split(
        df, test_size=params.test_size, random_state=params.seed, stratify=y, shuffle=True
    )
    return Split(train, test)


def fit(train: pd.DataFrame, contract: Contract, params: Params) -> Pipeline:
    pipeline = build_pipeline(contract, params)
    pipeline.fit(model_frame(train, contract), labels(train, contract))
    return pipeline
