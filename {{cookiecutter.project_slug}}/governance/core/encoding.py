"""The one ONNX feed encoder and the one scorer: parity (ml), serving (app), re-scoring (monitoring).

The model takes one [N, 1] input per contract feature, in contract order: numbers as float32
with NaN for a missing value, categories as strings with "" for a missing value. Training
feeds scikit-learn exactly these values too (ml/features.py builds its frame with this
encoder), so ONNX parity is a property of the converter, never of two encoders that disagree.
numpy and onnxruntime only: the serving image imports this.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from governance.core.contract import Contract, Feature

OUTPUTS = ("label", "probabilities")
ONNX_INPUT_TYPES = {"numeric": "tensor(float)", "categorical": "tensor(string)"}
MISSING_TEXT = ""  # how a missing categorical value travels into the model


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def encode_column(feature: Feature, values: Any) -> np.ndarray:
    """One feature's values (a list of JSON values or a numpy array) as the model's [N, 1] input."""
    if feature.is_numeric:
        array = values if isinstance(values, np.ndarray) else None
        if array is None or array.dtype == object:
            items = values.tolist() if array is not None else values
            if any(item is None for item in items):
                items = [math.nan if item is None else item for item in items]
            return np.array(items, dtype=np.float32).reshape(-1, 1)
        return array.astype(np.float32, copy=False).reshape(-1, 1)
    items = values.tolist() if isinstance(values, np.ndarray) else values
    if set(map(type, items)) != {str}:
        items = [MISSING_TEXT if _missing(item) else str(item) for item in items]
    return np.array(items, dtype=object).reshape(-1, 1)


def feeds(columns: Mapping[str, Any], contract: Contract) -> dict[str, np.ndarray]:
    """The onnxruntime feed for a batch given as columns ({feature name: values})."""
    return {feature.name: encode_column(feature, columns[feature.name]) for feature in contract.features}


def session_options(threads: int = 1) -> ort.SessionOptions:
    """CPU execution with `threads` intra-op threads and no busy-waiting.

    Spinning worker threads would compete with the event loop (serving) or the other jobs
    (training) for the same few cores while they wait for work.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


class Scorer:
    """An ONNX model ready to score feeds: labels [N] and class probabilities [N, classes]."""

    def __init__(self, model: bytes | Path | str, threads: int = 1) -> None:
        content = model if isinstance(model, bytes) else Path(model).read_bytes()
        self.session = ort.InferenceSession(
            content, sess_options=session_options(threads), providers=["CPUExecutionProvider"]
        )

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self.session.get_modelmeta().custom_metadata_map)

    def score(self, feed: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        label, probabilities = self.session.run(list(OUTPUTS), dict(feed))
        return label, probabilities

    def score_columns(self, columns: Mapping[str, Any], contract: Contract) -> tuple[np.ndarray, np.ndarray]:
        return self.score(feeds(columns, contract))
