"""Export the fitted pipeline to ONNX, check it, stamp it, and prove parity with scikit-learn.

The ONNX file is what serving and monitoring run, so it must be reproducible byte for
byte: its version is derived from its own content (and the snapshot's time), never from
the clock at export time, and every other metadata value is an input of training.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import numpy as np
import onnx
import pandas as pd
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.pipeline import Pipeline

from governance.core.contract import Contract
from governance.core.encoding import Scorer, outputs_for
from governance.core.errors import CheckFailed
from governance.core.records import Parity
from ml import feature_graph
from ml.features import onnx_inputs


class ExportError(CheckFailed):
    """The converted model does not have the interface serving relies on."""


def input_types(contract: Contract) -> list[tuple[str, Any]]:
    """One [N, 1] input per feature, in contract order: float for numeric, string for categorical."""
    return [
        (feature.name, FloatTensorType([None, 1]) if feature.is_numeric else StringTensorType([None, 1]))
        for feature in contract.features
    ]


def convert(pipeline: Pipeline, contract: Contract, opset: int, name: str) -> onnx.ModelProto:
    """skl2onnx conversion at the policy's opset, with the outputs serving reads for the task.

    The preprocessing `preprocessor` builds becomes ml/feature_graph.py's lean graph in front
    of the estimator's skl2onnx conversion (batch scoring runs it on every row); any other
    preprocessing is converted by skl2onnx with the estimator.
    A classifier keeps skl2onnx's `label` (the class index) and `probabilities` (a plain tensor:
    ZipMap off); a regressor's one output is named `value`. Two things skl2onnx leaves to chance
    are pinned so the bytes are reproducible: the graph name (a random UUID by default) and the
    order of the opset imports (it follows set iteration order, which changes with Python's
    string hash seed).
    """
    estimator = pipeline.steps[-1][1]
    expected = outputs_for(contract.task)
    if contract.target.is_classification:
        fitted = [int(value) for value in getattr(estimator, "classes_", [])]
        if fitted != list(range(len(contract.target.classes))):
            raise ExportError(
                f"the classifier was fitted on classes {fitted}, the contract's class indices are "
                f"{list(range(len(contract.target.classes)))}: fit on target.class_indices of every class"
            )
        extra: dict[str, Any] = {"options": {id(estimator): {"zipmap": False}}}
    else:
        extra = {"final_types": [("value", FloatTensorType([None, 1]))]}
    steps = feature_graph.plan(pipeline.steps[0][1], contract) if len(pipeline.steps) == 2 else None
    if steps is None:  # preprocessing of your own: skl2onnx converts the whole pipeline
        model = convert_sklearn(
            pipeline, name=name, initial_types=input_types(contract), target_opset=opset, **extra
        )
    else:
        features = [(feature_graph.FEATURES, FloatTensorType([None, steps.width]))]
        model = feature_graph.compose(
            steps,
            convert_sklearn(estimator, name=name, initial_types=features, target_opset=opset, **extra),
            contract,
        )
    imports = sorted({(entry.domain, entry.version) for entry in model.opset_import})
    del model.opset_import[:]
    model.opset_import.extend(onnx.helper.make_opsetid(domain, version) for domain, version in imports)
    outputs = tuple(output.name for output in model.graph.output)
    if outputs != expected:
        raise ExportError(
            f"the converted model's outputs are {list(outputs)}, serving expects {list(expected)}"
        )
    inputs = [graph_input.name for graph_input in model.graph.input]
    if inputs != contract.feature_names:
        raise ExportError(f"the converted model's inputs {inputs} differ from the contract order")
    return model


def version_stamp(snapshot_created_at: str) -> str:
    """yyyymmddHHMMSS (UTC) of the moment the training data was frozen, so versions sort by data age."""
    try:
        moment = datetime.fromisoformat(snapshot_created_at.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        raise ExportError(
            f"snapshot manifest 'created_at' is not an ISO 8601 time (got {snapshot_created_at!r})"
        ) from None
    if moment.tzinfo is not None:  # a naive time is taken as UTC already
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y%m%d%H%M%S")


def stamp(model: onnx.ModelProto, properties: dict[str, str], snapshot_created_at: str) -> tuple[bytes, str]:
    """Attach metadata and the content-derived version; return the final bytes and the version.

    The version is `<snapshot time>-<sha8 of the model without its version>`: unique per
    model content, sortable by data age, and identical when the same snapshot is trained
    twice, so the artifact's sha256 is reproducible.
    """
    onnx.helper.set_model_props(model, dict(sorted(properties.items())))
    fingerprint = hashlib.sha256(model.SerializeToString()).hexdigest()[:8]
    version = f"{version_stamp(snapshot_created_at)}-{fingerprint}"
    onnx.helper.set_model_props(model, dict(sorted({**properties, "version": version}.items())))
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString(), version


def metadata(model_name: str, model_family: str, contract: Contract, data_sha256: str) -> dict[str, str]:
    """The metadata props serving and monitoring read (all strings, JSON for lists).

    `classes` are the contract's class values in index order ([] for regression): the model's
    `label` output is a position in this list.
    """
    return {
        "model_name": model_name,
        "model_family": model_family,
        "contract_sha256": contract.digest,
        "feature_order": json.dumps(contract.feature_names),
        "task": contract.task,
        "classes": json.dumps(list(contract.target.classes)),
        "data_sha256": data_sha256,
    }


def parity(
    scorer: Scorer,
    pipeline: Pipeline,
    frame: pd.DataFrame,
    contract: Contract,
    tolerance: float,
    version: str,
) -> Parity:
    """onnxruntime versus scikit-learn on every row given (the whole test split).

    Classification: the largest absolute difference of a class probability, and the labels must
    be equal. Regression: the largest |onnx - sklearn| / (1 + |sklearn|), a difference relative to
    the value's size (float32 inference rounds large targets by more than small ones).
    """
    scored = scorer.score(onnx_inputs(frame, contract))
    if contract.target.is_classification:
        diff = np.abs(scored.probabilities.astype(np.float64) - pipeline.predict_proba(frame))
        mismatched = int(np.sum(scored.label != pipeline.predict(frame)))
    else:
        expected = np.asarray(pipeline.predict(frame), dtype=np.float64).reshape(-1)
        diff = np.abs(scored.value.astype(np.float64) - expected) / (1.0 + np.abs(expected))
        mismatched = 0
    max_abs_diff = float(diff.max()) if diff.size else 0.0
    return Parity(
        version=version,
        rows=len(frame),
        max_abs_diff=max_abs_diff,
        mean_abs_diff=float(diff.mean()) if diff.size else 0.0,
        labels_equal=mismatched == 0,
        mismatched_labels=mismatched,
        tolerance=tolerance,
        passed=mismatched == 0 and max_abs_diff <= tolerance,
    )
