"""What the current window is compared with: the champion, its training snapshot, its scores.

The champion is the registry entry in stage `production`. Its entry names the snapshot it
was trained on (the feature reference) and its ONNX file; running that file over the
snapshot with onnxruntime gives the reference scores, the same computation serving does,
so score drift compares like with like.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data_pipelines.contract import Contract

ROOT = Path(__file__).resolve().parents[1]
GIT_TIMEOUT_S = 60
REBUILD_TIMEOUT_S = 600


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
    """The champion's training snapshot (or an explicitly named one) as the feature reference.

    Snapshots are not in git, and on main after a retraining merge `make data` builds the
    request's snapshot, not necessarily the one the champion was trained on. So a missing
    champion snapshot is rebuilt (see `restore_snapshot`) before giving up.
    """
    from data_pipelines import snapshot

    requested = override or (champion.snapshot_id if champion else None)
    if requested is None:
        raise NoReferenceError(
            "no reference data: the registry holds no model (run `make data train register`) "
            "and no --reference snapshot was given"
        )
    snapshots = root / "artifacts" / "snapshots"
    tried: list[str] = []
    if override is None and not (snapshots / requested).is_dir():
        tried = restore_snapshot(requested, root)
    try:
        frame, manifest = snapshot.load(requested, root=snapshots)
    except (FileNotFoundError, LookupError, ValueError) as error:
        if tried:
            raise NoReferenceError(
                f"reference snapshot {requested!r} (the training data of champion "
                f"{champion.version if champion else '?'}) is not in {snapshots} and could not be rebuilt:\n"
                + "".join(f"  - {line}\n" for line in tried)
                + f"Restore artifacts/snapshots/{requested}/ from where that model was trained (the CI "
                "run's uploaded artifacts), or pass --reference <snapshot> to compare with another one"
            ) from None
        raise NoReferenceError(
            f"reference snapshot {requested!r} cannot be loaded ({error}); snapshots are not in git: "
            "rebuild it with `make data` (same input, same id) or pass --reference"
        ) from None
    return Reference(frame, str(manifest.get("snapshot_id", requested)), manifest, champion)


def restore_snapshot(snapshot_id: str, root: Path = ROOT) -> list[str]:
    """Rebuild a missing snapshot into artifacts/snapshots/; returns what was tried when it fails.

    Snapshots are content-addressed, so a rebuild either yields exactly `snapshot_id` or is
    discarded. Tried in order: (1) the configured source, ignoring any retraining request in
    the checkout; (2) every retraining request git history holds that names the snapshot, from
    its committed Parquet file. Each build goes to a temporary folder, so `latest` and the
    snapshots already here are never touched.
    """
    tried: list[str] = []
    _progress(f"reference snapshot {snapshot_id} is not here: rebuilding it from the configured source")
    outcome = _rebuild(snapshot_id, root, ["--ignore-request"])
    if outcome is None:
        return []
    tried.append(f"`python -m data_pipelines.cli data --ignore-request`: {outcome}")
    commits, reason = _request_commits(snapshot_id, root)
    if not commits:
        tried.append(reason)
        return tried
    for commit, folder in commits:
        _progress(f"rebuilding {snapshot_id} from the retraining request committed in {commit[:12]}")
        with tempfile.TemporaryDirectory(prefix="reference-request-") as temporary:
            exported = _export_request(root, commit, folder, Path(temporary))
            if isinstance(exported, str):
                tried.append(f"request in commit {commit[:12]}: {exported}")
                continue
            outcome = _rebuild(snapshot_id, root, ["--request", str(exported)])
        if outcome is None:
            return []
        tried.append(f"request in commit {commit[:12]} (`data --request`): {outcome}")
    return tried


def _progress(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def _rebuild(snapshot_id: str, root: Path, arguments: list[str]) -> str | None:
    """Run `data_pipelines.cli data` into a temporary root; None when it produced `snapshot_id`."""
    snapshots = root / "artifacts" / "snapshots"
    with tempfile.TemporaryDirectory(prefix="reference-rebuild-") as temporary:
        command = [sys.executable, "-m", "data_pipelines.cli", "data", *arguments, "--snapshots", temporary]
        try:
            result = subprocess.run(  # noqa: S603 - argument list, no shell
                command, cwd=root, capture_output=True, text=True, timeout=REBUILD_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"could not run ({error})"
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).strip().splitlines()
            return f"failed ({lines[-1] if lines else f'exit code {result.returncode}'})"
        built = Path(temporary) / snapshot_id
        if not (built / "manifest.json").is_file():
            others = sorted(path.name for path in Path(temporary).iterdir() if path.is_dir())
            return f"yields snapshot {', '.join(others) or 'none'}, not {snapshot_id}"
        snapshots.mkdir(parents=True, exist_ok=True)
        if not (snapshots / snapshot_id).exists():
            shutil.move(str(built), snapshots / snapshot_id)
    _progress(f"rebuilt reference snapshot {snapshot_id} into {snapshots / snapshot_id}")
    return None


def _git(root: Path, *arguments: str, text: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603 - argument list, no shell
        ["git", *arguments],  # noqa: S607 - git from PATH
        cwd=root,
        capture_output=True,
        text=text,
        timeout=GIT_TIMEOUT_S,
        check=False,
    )


def _request_commits(snapshot_id: str, root: Path) -> tuple[list[tuple[str, str]], str]:
    """Commits (newest first) whose retraining request names `snapshot_id`, with the request folder."""
    from data_pipelines import snapshot
    from data_pipelines.cli import request_dir

    folder = request_dir(root).resolve().relative_to(root.resolve()).as_posix()
    try:
        listed = _git(
            root,
            "log",
            "--format=%H",
            "--",
            f"{folder}/request.json",
            f"{folder}/{snapshot.REQUEST_MANIFEST}",
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return [], f"git history: git could not run ({error})"
    if listed.returncode != 0:
        lines = listed.stderr.strip().splitlines()
        return [], f"git history: not available ({lines[-1] if lines else 'git log failed'})"
    found = []
    for commit in listed.stdout.split():
        if _names_snapshot(root, commit, folder, snapshot_id):
            found.append((commit, folder))
    if not found:
        shallow = _git(root, "rev-parse", "--is-shallow-repository").stdout.strip() == "true"
        return [], (
            f"git history: no commit's {folder}/request.json names snapshot {snapshot_id}"
            + (
                " (this clone is shallow: check out with full history, e.g. fetch-depth: 0)"
                if shallow
                else ""
            )
        )
    return found, ""


def _names_snapshot(root: Path, commit: str, folder: str, snapshot_id: str) -> bool:
    from data_pipelines import snapshot

    for name, key in (
        ("request.json", ("snapshot", "snapshot_id")),
        (snapshot.REQUEST_MANIFEST, ("snapshot_id",)),
    ):
        shown = _git(root, "show", f"{commit}:{folder}/{name}")
        if shown.returncode != 0:
            continue
        try:
            value: Any = json.loads(shown.stdout)
            for part in key:
                value = value.get(part) if isinstance(value, dict) else None
        except ValueError:
            continue
        if value == snapshot_id:
            return True
    return False


def _export_request(root: Path, commit: str, folder: str, target: Path) -> Path | str:
    """The request's snapshot files as committed in `commit`, written under `target` (or why not)."""
    from data_pipelines import snapshot

    for name in (snapshot.REQUEST_MANIFEST, snapshot.REQUEST_DATA):
        shown = _git(root, "show", f"{commit}:{folder}/{name}", text=False)
        if shown.returncode != 0:
            return f"{folder}/{name} is not in that commit"
        (target / name).write_bytes(shown.stdout)
    return target


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
