"""Real tabular datasets for every task, from the copies scikit-learn installs (no network).

Each function returns a data contract for the dataset (as `make contract` would write it,
held in memory) and its rows, so a test of any task runs in a bake of any task:
wine (multiclass, three string classes), diabetes (regression), breast cancer (binary, its
0/1 coded as the words malignant/benign, the positive class a word) and iris.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from sklearn import datasets

from governance.core.contract import Contract
from governance.core.contract import load as load_contract


@dataclass(frozen=True)
class TaskData:
    name: str
    contract: Contract
    frame: pd.DataFrame
    contract_path: Path


def _columns(frame: pd.DataFrame, names: list[str]) -> list[dict]:
    """Numeric features with ranges a little wider than the data (as `make contract` drafts them)."""
    features = []
    for name in names:
        low, high = float(frame[name].min()), float(frame[name].max())
        margin = (high - low) * 0.5 or 1.0
        features.append(
            {"name": name, "kind": "numeric", "dtype": "float64", "min": low - margin, "max": high + margin}
        )
    return features


def _write(folder: Path, name: str, target: dict, frame: pd.DataFrame, features: list[str]) -> TaskData:
    raw = {"version": 1, "dataset": name, "target": target, "features": _columns(frame, features)}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-contract.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return TaskData(name, load_contract(path), frame.reset_index(drop=True), path)


def _clean(names: list[str]) -> list[str]:
    return ["".join(ch if ch.isalnum() else "_" for ch in name.lower()).strip("_") for name in names]


def wine(folder: Path) -> TaskData:
    """178 wines, 13 measurements, three cultivars named as strings."""
    bunch = datasets.load_wine(as_frame=True)
    frame = bunch.frame.copy()
    frame.columns = [*_clean(list(bunch.feature_names)), "cultivar"]
    frame["cultivar"] = np.array(["barolo", "grignolino", "barbera"])[bunch.target.to_numpy()]
    target = {
        "name": "cultivar",
        "task": "multiclass_classification",
        "classes": ["barolo", "grignolino", "barbera"],
    }
    return _write(folder, "wine", target, frame, _clean(list(bunch.feature_names)))


def diabetes(folder: Path) -> TaskData:
    """442 patients, 10 baseline measurements, disease progression after a year (a number)."""
    bunch = datasets.load_diabetes(as_frame=True, scaled=False)
    frame = bunch.frame.rename(columns={"target": "progression"})
    features = [name for name in frame.columns if name != "progression"]
    frame[features] = frame[features].astype("float64")
    target = {"name": "progression", "task": "regression", "dtype": "float64"}
    return _write(folder, "diabetes", target, frame, features)


def breast_cancer(folder: Path) -> TaskData:
    """569 tumours, 30 measurements, diagnosis as words (malignant is the positive class)."""
    bunch = datasets.load_breast_cancer(as_frame=True)
    names = _clean(list(bunch.feature_names))
    frame = bunch.frame.copy()
    frame.columns = [*names, "diagnosis"]
    frame["diagnosis"] = np.array(["malignant", "benign"])[bunch.target.to_numpy()]
    target = {
        "name": "diagnosis",
        "task": "binary_classification",
        "classes": ["benign", "malignant"],
        "positive_class": "malignant",
    }
    return _write(folder, "breast_cancer", target, frame, names)


TASK_DATASETS = {
    "multiclass_classification": wine,
    "regression": diabetes,
    "binary_classification": breast_cancer,
}


def onnx_model(data: TaskData, path: Path) -> Path:
    """A small model of `data`'s task as the ONNX file serving and monitoring expect, written to `path`.

    Classifiers answer `label` (the class index in the contract's order) and `probabilities`;
    regressors answer `value`. Metadata carries the task, the class values and the contract digest,
    as ml/export.py writes them, so app and monitoring tests of any task need no training run.
    """
    import json

    import onnx
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    contract, target = data.contract, data.contract.target
    names = contract.feature_names
    x = data.frame[names].astype("float32")
    estimator = LogisticRegression(max_iter=500) if target.is_classification else Ridge()
    pipeline = Pipeline(
        [("features", ColumnTransformer([("scale", StandardScaler(), names)])), ("model", estimator)]
    )
    y = target.class_indices(data.frame[target.name]) if target.is_classification else data.frame[target.name]
    pipeline.fit(x, y)
    options = {id(estimator): {"zipmap": False}} if target.is_classification else None
    final = None if target.is_classification else [("value", FloatTensorType([None, 1]))]
    model = convert_sklearn(
        pipeline,
        initial_types=[(name, FloatTensorType([None, 1])) for name in names],
        target_opset=17,
        options=options,
        final_types=final,
    )
    onnx.helper.set_model_props(
        model,
        {
            "model_name": data.name,
            "model_family": "linear",
            "task": contract.task,
            "classes": json.dumps(list(target.classes)),
            "contract_sha256": contract.digest,
            "feature_order": json.dumps(names),
            "version": f"test-{data.name}",
        },
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path
