"""Find, load and check the ONNX model; run it.

The service must never serve a model that disagrees with the data contract it validates
requests against, so loading checks the model's inputs and outputs against the contract
before the service turns ready. A model that fails any check is reported in one log line
by the caller and the service stays up but not ready (probes see 503, nothing is scored).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from governance.core.contract import Contract, Target
from governance.core.encoding import ONNX_INPUT_TYPES, OUTPUT_TYPES, Scorer, Scores, outputs_for

OIP_DATATYPES = {"tensor(float)": "FP32", "tensor(string)": "BYTES", "tensor(int64)": "INT64"}
# The OIP datatype of a served class label, by the contract's class type: the service answers
# class VALUES (the model's class index mapped back through `target.classes`).
LABEL_DATATYPES = {"string": "BYTES", "int64": "INT64", "bool": "BOOL"}


class ModelError(RuntimeError):
    """The model cannot be served; the message says which file and why."""


def resolve(path: Path) -> Path:
    """Turn MODEL_PATH into the model file.

    Accepted: the `.onnx` file; a version folder holding `model.onnx`; or a pointer file
    (like `artifacts/models/latest`) whose text names a version folder next to it. A path
    below a pointer (`latest/model.onnx`) is followed through the pointer too.
    """
    if path.is_dir():
        return path / "model.onnx"
    if path.is_file() and path.suffix != ".onnx":
        return _pointed(path) / "model.onnx"
    if not path.exists():
        for parent in path.parents:
            if parent.is_file():
                return _pointed(parent) / path.relative_to(parent)
    return path


def _pointed(pointer: Path) -> Path:
    """The version folder a pointer file names (its text: one folder name next to it)."""
    target = pointer.read_text(encoding="utf-8").strip()
    if not target or "\n" in target or "/" in target:
        raise ModelError(f"model pointer {pointer} must hold one version name, got {target[:80]!r}")
    return pointer.parent / target


@dataclass
class Model:
    """A loaded model and what the API reports about it."""

    name: str
    version: str
    path: Path
    scorer: Scorer
    metadata: dict[str, str]
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)

    def predict(self, feeds: dict[str, np.ndarray]) -> Scores:
        """One batch's class indices [N] + probabilities [N, classes], or values [N] (regression)."""
        return self.scorer.score(feeds)


def load(path: Path, contract: Contract, threads: int, name: str = "", strict: bool = True) -> Model:
    """Load the model at `path` (see `resolve`) and check it against the contract.

    strict: the model's `contract_sha256` must equal the contract's digest (production);
    otherwise a mismatch is allowed because the signature check below still holds.
    """
    try:
        file = resolve(path)
        data = file.read_bytes()
    except OSError as error:
        raise ModelError(f"no model at {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ModelError(f"model pointer {path} is not a text file naming a version") from None
    try:
        scorer = Scorer(data, threads)
    except Exception as error:  # onnxruntime raises several unrelated types for a bad file
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(f"model {file} cannot be loaded by onnxruntime: {first_line[:300]}") from None
    session = scorer.session
    metadata = scorer.metadata
    _check_signature(session, contract, file)
    digest = metadata.get("contract_sha256", "")
    if strict and digest != contract.digest:
        raise ModelError(
            f"model {file} was trained under contract sha256 {digest[:12] or '<none>'}, but the service "
            f"validates requests with {contract.digest[:12]} (set APP_ENV=development to serve it anyway)"
        )
    _check_metadata(metadata, contract, file)
    version = metadata.get("version") or hashlib.sha256(data).hexdigest()[:12]
    served_name = name or metadata.get("model_name") or "model"
    return Model(
        name=served_name,
        version=version,
        path=file,
        scorer=scorer,
        metadata=metadata,
        inputs=[_describe(node) for node in session.get_inputs()],
        outputs=served_outputs(contract.target),
    )


def served_outputs(target: Target) -> list[dict[str, Any]]:
    """The output tensors the service answers (OIP model metadata), per task.

    Not the ONNX outputs: the service maps the model's class index to the class value, so a
    label is BYTES, INT64 or BOOL by the contract's class type; a regressor's [N, 1] is answered [N].
    """
    if not target.is_classification:
        return [{"name": "value", "datatype": "FP32", "shape": [-1]}]
    return [
        {"name": "label", "datatype": LABEL_DATATYPES[target.dtype or "int64"], "shape": [-1]},
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(target.classes)]},
    ]


def _check_metadata(metadata: dict[str, str], contract: Contract, file: Path) -> None:
    """The model's declared `task` and `classes` (when present) must be the contract's.

    Classes compare as JSON, so the string class "1" differs from the integer 1 and true from 1:
    an index maps back to a class value only when both sides list the same values in one order.
    """
    task = metadata.get("task")
    if task is not None and task != contract.task:
        raise ModelError(
            f"model {file} was trained for task {task!r}, the contract's task is {contract.task!r}"
        )
    classes = metadata.get("classes")
    if classes is None:
        return
    try:
        declared = json.loads(classes)
    except ValueError:
        raise ModelError(f"model {file} metadata 'classes' is not a JSON list: {classes[:80]!r}") from None
    expected = json.dumps(list(contract.target.classes))
    if not isinstance(declared, list) or json.dumps(declared) != expected:
        raise ModelError(f"model {file} has classes {classes}, the contract {expected}")


def _describe(node: Any) -> dict[str, Any]:
    shape = [dim if isinstance(dim, int) else -1 for dim in node.shape]
    return {"name": node.name, "datatype": OIP_DATATYPES.get(node.type, node.type), "shape": shape}


def _check_signature(session: ort.InferenceSession, contract: Contract, file: Path) -> None:
    """Inputs: one per contract feature, [N, 1], float or string; outputs: those of the contract's task.

    A classifier answers `label` (int64 class index) and `probabilities` (one column per contract
    class); a regressor answers `value` (encoding.outputs_for).
    """
    inputs = {node.name: node for node in session.get_inputs()}
    expected = contract.feature_names
    if sorted(inputs) != sorted(expected):
        raise ModelError(
            f"model {file} inputs {sorted(inputs)} differ from the contract features {sorted(expected)}"
        )
    for feature in contract.features:
        node = inputs[feature.name]
        if node.type != ONNX_INPUT_TYPES[feature.kind]:
            raise ModelError(
                f"model {file} input {feature.name!r} is {node.type}, the contract says {feature.kind} "
                f"({ONNX_INPUT_TYPES[feature.kind]})"
            )
        if len(node.shape) != 2 or node.shape[1] != 1:
            raise ModelError(f"model {file} input {feature.name!r} has shape {node.shape}, expected [N, 1]")
    outputs = {node.name: node for node in session.get_outputs()}
    found = {key: node.type for key, node in outputs.items()}
    for name in outputs_for(contract.task):
        onnx_type = OUTPUT_TYPES[name]
        if name not in outputs or outputs[name].type != onnx_type:
            raise ModelError(
                f"model {file} needs output {name!r} of type {onnx_type} "
                f"for task {contract.task}; it has {found}"
            )
    if contract.target.is_classification:
        shape = outputs["probabilities"].shape
        classes = len(contract.target.classes)
        if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != classes):
            raise ModelError(
                f"model {file} output 'probabilities' has shape {shape}, the contract has {classes} classes"
            )
