"""What the current window is compared with: the champion, its training snapshot, its scores.

The champion is the registry entry in stage `production`. Its entry names the snapshot it
was trained on (the feature reference) and its ONNX file; running that file over the
snapshot with onnxruntime gives the reference scores, the same computation serving does,
so score drift compares like with like.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data_pipelines.contract import Contract

ROOT = Path(__file__).resolve().parents[1]


class NoReferenceError(LookupError):
    """No usable reference: the message says what is missing and which command produces it."""


@dataclass(frozen=True)
class Champion:
    """The registry entry the window is judged against (see `champion`)."""

    version: str
    model_name: str
    stage: str
    model_path: Path
    model_sha256: str
    snapshot_id: str
    metrics: dict[str, Any] = field(default_factory=dict)
    bias: dict[str, Any] = field(default_factory=dict)


def champion(registry_path: Path | None = None, root: Path = ROOT) -> tuple[Champion | None, list[str]]:
    """The production entry; before the first promotion, the newest registered entry (with a note)."""
    from governance import registry

    path = registry_path or root / "governance" / "registry.yaml"
    models = registry.load(path)["models"]
    notes: list[str] = []
    entry = registry.champion(path)
    if entry is None and models:
        entry = max(models, key=lambda item: (item["created_at"], item["version"]))
        notes.append(
            f"no model is in stage production: compared with the newest registered version "
            f"{entry['version']} (stage {entry['stage']})"
        )
    if entry is None:
        return None, ["the registry holds no model: no champion metrics, no reference scores"]
    model_path = Path(entry["artifact"]["path"])
    return (
        Champion(
            version=entry["version"],
            model_name=entry["model_name"],
            stage=entry["stage"],
            model_path=model_path if model_path.is_absolute() else root / model_path,
            model_sha256=entry["artifact"]["sha256"],
            snapshot_id=entry["data"]["snapshot_id"],
            metrics=dict(entry.get("metrics") or {}),
            bias=dict(entry.get("bias") or {}),
        ),
        notes,
    )


def champion_bias_gap(champion: Champion | None, metric: str) -> float | None:
    """The champion's registered largest gap between groups, if it was measured with the same metric."""
    if champion is None or champion.bias.get("metric") != metric:
        return None
    gap = champion.bias.get("largest_gap")
    return float(gap) if isinstance(gap, int | float) else None


def model_scores(model_path: Path, frame: pd.DataFrame, contract: Contract) -> np.ndarray:
    """Positive-class probabilities from the ONNX model (one input per feature, as serving feeds it)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    feeds: dict[str, np.ndarray] = {}
    for feature in contract.features:
        column = frame[feature.name]
        if feature.is_numeric:
            values = pd.to_numeric(column).to_numpy(dtype=np.float32, na_value=np.nan)
        else:
            values = column.astype("string").fillna("").to_numpy(dtype=object)
        feeds[feature.name] = values.reshape(-1, 1)
    outputs = [output.name for output in session.get_outputs()]
    if "probabilities" not in outputs:
        raise NoReferenceError(f"model {model_path} has no 'probabilities' output (outputs: {outputs})")
    probabilities = session.run(["probabilities"], feeds)[0]
    return np.asarray(probabilities, dtype=np.float64)[
        :, contract.target.classes.index(contract.target.positive_class)
    ]


@dataclass
class Reference:
    frame: pd.DataFrame
    snapshot_id: str | None
    manifest: dict[str, Any]
    champion: Champion | None

    def describe(self) -> dict[str, Any]:
        return {
            "snapshot_id": self.snapshot_id,
            "rows": len(self.frame),
            "model_name": self.champion.model_name if self.champion else None,
            "model_version": self.champion.version if self.champion else None,
            "stage": self.champion.stage if self.champion else None,
        }


def load_reference(champion: Champion | None, override: str | None = None, root: Path = ROOT) -> Reference:
    """The champion's training snapshot (or an explicitly named one) as the feature reference."""
    from data_pipelines import snapshot

    requested = override or (champion.snapshot_id if champion else None)
    if requested is None:
        raise NoReferenceError(
            "no reference data: the registry holds no model (run `make data train register`) "
            "and no --reference snapshot was given"
        )
    try:
        frame, manifest = snapshot.load(requested, root=root / "artifacts" / "snapshots")
    except (FileNotFoundError, LookupError, ValueError) as error:
        raise NoReferenceError(
            f"reference snapshot {requested!r} cannot be loaded ({error}); snapshots are not in git: "
            "rebuild it with `make data` (same input, same id) or pass --reference"
        ) from None
    return Reference(frame, str(manifest.get("snapshot_id", requested)), manifest, champion)


def reference_scores(
    champion: Champion | None, reference: Reference, contract: Contract
) -> tuple[np.ndarray | None, str | None]:
    """The champion's positive-class scores on its reference data, or None with the reason."""
    if champion is None:
        return None, "score drift not checked: no registered model to score the reference with"
    if not champion.model_path.is_file():
        return None, (
            f"score drift not checked: the champion's model file {champion.model_path} is missing "
            "(artifacts are not in git: restore it, or retrain with `make train`)"
        )
    from governance.registry import sha256_of

    if sha256_of(champion.model_path) != champion.model_sha256:
        return None, (
            f"score drift not checked: {champion.model_path} is not the registered artifact of "
            f"{champion.version} (sha256 differs)"
        )
    return model_scores(champion.model_path, reference.frame, contract), None
