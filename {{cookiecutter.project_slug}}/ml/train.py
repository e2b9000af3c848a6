"""Fit the model: contract-derived preprocessing plus the estimator named in ml/params.yaml.

Everything that could make two runs differ is pinned here: the estimator's seed, the
split's seed and stratification, and the row order (the snapshot's). Training twice on one
snapshot therefore yields the same fitted model, and so the same ONNX bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from governance.core.contract import Contract
from governance.core.errors import InputError
from governance.core.records import IDENTIFIER, Record, parse, read_yaml
from ml.estimator import FAMILIES, build_estimator, needs_scaling
from ml.features import DataError, model_frame, preprocessor


class ParamsError(InputError):
    """ml/params.yaml breaks a rule; the message names the key, the rule and the value."""


class Params(Record):
    """ml/params.yaml: the training parameters (the estimator's settings live under its family)."""

    seed: int = Field(ge=0, strict=True)
    test_size: float = Field(ge=0.05, le=0.5, strict=True)
    model_name: str = Field(pattern=IDENTIFIER)
    model_family: str
    estimators: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @property
    def estimator(self) -> dict[str, Any]:
        """The chosen family's settings."""
        return dict(self.estimators.get(self.model_family) or {})


@dataclass(frozen=True)
class Split:
    """The held-out split keeps the raw rows: evaluation needs the target and sensitive attribute."""

    train: pd.DataFrame
    test: pd.DataFrame


def load_params(path: Path | str) -> Params:
    """Read and check the training parameters before any work starts."""
    params = parse(Params, read_yaml(path, "training parameters file", ParamsError), str(path), ParamsError)
    if params.model_family not in FAMILIES:
        raise ParamsError(
            f"{path}: field 'model_family' must be one of {sorted(FAMILIES)} (got {params.model_family!r})"
        )
    if "random_state" in params.estimator:
        raise ParamsError(
            f"{path}: field 'estimators.{params.model_family}.random_state' is not allowed: "
            "the top-level seed sets it"
        )
    return params


def build_pipeline(contract: Contract, params: Params) -> Pipeline:
    """The contract's preprocessing, then the estimator from the seam (ml/estimator.py) for its task."""
    try:
        estimator = build_estimator(params.model_family, params.estimator, params.seed, contract.task)
    except TypeError as error:
        raise ParamsError(
            f"params 'estimators.{params.model_family}' has a setting the estimator rejects: {error}"
        ) from None
    features = preprocessor(contract, scale_numeric=needs_scaling(estimator))
    return Pipeline([("features", features), ("model", estimator)])


def labels(df: pd.DataFrame, contract: Contract) -> np.ndarray:
    """What the model learns: class indices (positions in target.classes, any label type) or numbers.

    Classifiers are fitted on indices so the ONNX `label` output is the same int64 index for
    string, boolean or integer classes; serving maps it back to the contract's value.
    """
    target = contract.target
    if target.name not in df.columns:
        raise DataError(f"the data has no target column '{target.name}'")
    values = df[target.name]
    if values.isna().any():
        raise DataError(f"target column '{target.name}' has {int(values.isna().sum())} missing value(s)")
    if not target.is_classification:
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
        bad = int((~np.isfinite(numbers)).sum())
        if bad:
            raise DataError(f"target column '{target.name}' has {bad} value(s) that are not finite numbers")
        return numbers
    try:
        return target.class_indices(values)
    except ValueError as error:
        raise DataError(str(error)) from None


def split(df: pd.DataFrame, contract: Contract, params: Params) -> Split:
    """A split that depends only on the rows, their order and the seed; stratified for classes."""
    y = labels(df, contract)
    stratify = None
    if contract.target.is_classification:
        counts = np.bincount(y, minlength=len(contract.target.classes))
        scarce = [key for key, count in zip(contract.target.class_keys, counts, strict=True) if count < 2]
        if scarce:
            raise DataError(
                f"target column '{contract.target.name}' needs at least two rows of each class; "
                f"class(es) {scarce} have fewer"
            )
        stratify = y
    train, test = train_test_split(
        df, test_size=params.test_size, random_state=params.seed, stratify=stratify, shuffle=True
    )
    return Split(train, test)


def fit(train: pd.DataFrame, contract: Contract, params: Params) -> Pipeline:
    pipeline = build_pipeline(contract, params)
    pipeline.fit(model_frame(train, contract), labels(train, contract))
    return pipeline
