"""MAKE IT YOURS (seam 1): the model.

`build_estimator` returns the scikit-learn estimator `make train` fits after the contract's
preprocessing (ml/features.py). The three families below are examples, chosen because each
converts to ONNX with verified parity for every task; ml/params.yaml picks one (`model_family`)
and holds its settings (`estimators.<family>`). The contract's task picks the classifier or the
regressor of the family. To use your own model, return it here (a classifier with
`predict_proba`, or a regressor, that skl2onnx converts; register custom converters with skl2onnx
if needed), add its settings to params.yaml, then run `make train` and read the parity gate in
its output: the export refuses a model whose ONNX answers differ from scikit-learn's.
"""

from __future__ import annotations

from typing import Any

from sklearn.base import BaseEstimator
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge

from governance.core.tasks import BINARY, REGRESSION

# family -> (classifier, regressor). HistGradientBoosting* is absent on purpose: skl2onnx cannot
# convert it at our opset.
FAMILIES: dict[str, tuple[type[BaseEstimator], type[BaseEstimator]]] = {
    "linear": (LogisticRegression, Ridge),
    "random_forest": (RandomForestClassifier, RandomForestRegressor),
    "gradient_boosting": (GradientBoostingClassifier, GradientBoostingRegressor),
}


def estimator_class(family: str, task: str) -> type[BaseEstimator]:
    """The family's regressor for a regression task, its classifier for any classification task."""
    classifier, regressor = FAMILIES[family]
    return regressor if task == REGRESSION else classifier


def build_estimator(family: str, settings: dict[str, Any], seed: int, task: str = BINARY) -> BaseEstimator:
    """The estimator for `family` and `task` with its settings from params.yaml, seeded (reproducible)."""
    return estimator_class(family, task)(random_state=seed, **settings)


def needs_scaling(estimator: BaseEstimator) -> bool:
    """Whether numeric inputs are standardised before the estimator (see ml.features.preprocessor).

    Linear and distance-based models need it; tree ensembles split on the order of values, and
    scaling them only adds float32 rounding in ONNX that moves rows across split thresholds.
    """
    return not type(estimator).__module__.startswith(("sklearn.tree", "sklearn.ensemble"))
