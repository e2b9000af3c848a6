"""MAKE IT YOURS (seam 2): the preprocessing between the contract's columns and the estimator.

`preprocessor` is derived from the data contract: impute (and scale) numeric features, impute
and one-hot encode categorical ones. Add your feature engineering here as scikit-learn
transformers that skl2onnx converts (the ONNX model must compute the same features from the
raw contract columns the service receives), then run `make train` and check the parity gate.
The preprocessing exactly as `preprocessor` builds it is exported as a lean hand-written ONNX
graph (ml/feature_graph.py: on the example model, session.run in under half the time of
skl2onnx's graph); any other preprocessing is converted by skl2onnx, slower per row and held
to the same parity gate.

The frame scikit-learn sees is built with the ground layer's ONNX encoder
(governance/core/encoding.py): numeric features as float32 with NaN for missing, categorical
ones as strings with "" for missing. Training, parity, serving and monitoring therefore all
encode a row the same way, and parity is a property of the converter, not of two encoders.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from governance.core.contract import Contract
from governance.core.encoding import MISSING_TEXT, encode_column, feeds
from governance.core.errors import InputError

MISSING_CATEGORY = "missing"  # what an absent categorical value is imputed to
MISSING_STRING = MISSING_TEXT  # how an absent categorical value travels in the ONNX input (and in training)


class DataError(InputError):
    """The data does not have what the contract promises; the message names the column."""


def model_frame(df: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    """The contract's features, in contract order, encoded exactly as the ONNX model receives them."""
    absent = [name for name in contract.feature_names if name not in df.columns]
    if absent:
        raise DataError(f"the data has no column for contract feature(s) {absent}")
    columns: dict[str, np.ndarray] = {}
    for feature in contract.features:
        column = df[feature.name]
        if feature.is_numeric:
            values = pd.to_numeric(column, errors="coerce").astype("float64").to_numpy(na_value=np.nan)
        else:
            values = column.astype("object").to_numpy(dtype=object, na_value=None)
        columns[feature.name] = encode_column(feature, values).ravel()
    return pd.DataFrame(columns, index=df.index)


def onnx_inputs(frame: pd.DataFrame, contract: Contract) -> dict[str, np.ndarray]:
    """onnxruntime feed for a frame made by `model_frame`: one [N, 1] array per feature."""
    return feeds({name: frame[name].to_numpy() for name in contract.feature_names}, contract)


def preprocessor(contract: Contract, scale_numeric: bool = True) -> ColumnTransformer:
    """Impute (and scale) numeric features; impute and one-hot encode categorical ones.

    Scaling is for linear models (their solver and regularisation need it). Tree ensembles
    split on the order of values, so scaling changes nothing for them, except that ONNX
    scales in float32 where scikit-learn uses float64: values then land on the other side
    of a split threshold now and then (measured on a random forest: max probability gap
    4.5e-3 with the scaler, 4e-7 without). So trees are trained without it.

    The one-hot categories come from the contract rather than from the training rows, so
    the encoding is the same for every snapshot; a value outside the contract (which
    validation and serving reject anyway) encodes as all zeros instead of failing.
    Columns are selected by name, which is what lets skl2onnx wire each ONNX input to them.
    """
    transformers = []
    if contract.numeric:
        steps = [("impute", SimpleImputer(strategy="median"))]
        if scale_numeric:
            steps.append(("scale", StandardScaler()))
        numeric = Pipeline(steps)
        transformers.append(("numeric", numeric, [feature.name for feature in contract.numeric]))
    if contract.categorical:
        categories = [
            [*feature.categories, *([] if MISSING_CATEGORY in feature.categories else [MISSING_CATEGORY])]
            for feature in contract.categorical
        ]
        categorical = Pipeline(
            [
                (
                    "impute",
                    SimpleImputer(
                        missing_values=MISSING_STRING, strategy="constant", fill_value=MISSING_CATEGORY
                    ),
                ),
                (
                    "encode",
                    OneHotEncoder(categories=categories, handle_unknown="ignore", sparse_output=False),
                ),
            ]
        )
        transformers.append(("categorical", categorical, [feature.name for feature in contract.categorical]))
    return ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)
