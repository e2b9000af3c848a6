"""What the current window is compared with: the champion, its training snapshot, its scores.

The champion is the registry entry in stage `production`. Its entry names the snapshot it
was trained on (the feature reference) and its ONNX file; running that file over the
snapshot with the ground scorer gives the reference scores, the same computation serving
does, so score drift compares like with like. Which numbers of the answer are compared
depends on the task (monitoring/predictions.py): the positive-class probability, every
class probability, or the predicted value.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data_pipelines import ingest, snapshot
from governance import registry
from governance.core import progress
from governance.core.contract import Contract
from governance.core.encoding import Scorer, Scores, feeds
from governance.core.errors import InputError
from governance.core.paths import Paths
from governance.core.records import ReferenceInfo, RegistryEntry
from monitoring.predictions import from_scores

GIT_TIMEOUT_S = 60


class NoReferenceError(InputError):
    """No usable reference: the message says what is missing and which command produces it."""


def champion(paths: Paths) -> tuple[RegistryEntry | None, list[str]]:
    """The production entry; before the first promotion, the newest registered entry (with a note)."""
    models = registry.load(paths.registry)
    entry = models.champion
    notes: list[str] = []
    if entry is None and models.models:
        entry = max(models.models, key=lambda item: (item.created_at, item.version))
        notes.append(
            f"no model is in stage production: compared with the newest registered version "
            f"{entry.version} (stage {entry.stage})"
        )
    if entry is None:
        return None, ["the registry holds no model: no champion metrics, no reference scores"]
    return entry, notes


def model_path(paths: Paths, entry: RegistryEntry) -> Path:
    path = Path(entry.artifact.path)
    return path if path.is_absolute() else paths.root / path


def model_scores(path: Path, frame: pd.DataFrame, contract: Contract) -> Scores:
    """The ONNX model's answers on `frame` (any task), fed exactly as serving feeds it."""
    columns: dict[str, Any] = {}
    for feature in contract.features:
        column = frame[feature.name]
        if feature.is_numeric:
            columns[feature.name] = pd.to_numeric(column).to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            columns[feature.name] = column.astype("object").to_numpy(dtype=object, na_value=None)
    return Scorer(path).score(feeds(columns, contract))


@dataclass
class Reference:
    frame: pd.DataFrame
    snapshot_id: str | None
    manifest: dict[str, Any]
    champion: RegistryEntry | None

    def describe(self) -> ReferenceInfo:
        return ReferenceInfo(
            snapshot_id=self.snapshot_id,
            rows=len(self.frame),
            model_name=self.champion.model_name if self.champion else None,
            model_version=self.champion.version if self.champion else None,
            stage=self.champion.stage if self.champion else None,
        )


def load_reference(paths: Paths, champion: RegistryEntry | None, override: str | None = None) -> Reference:
    """The champion's training snapshot (or an explicitly named one) as the feature reference.

    Snapshots are not in git, and on main after a retraining merge `make data` builds the
    request's snapshot, not necessarily the one the champion was trained on. So a missing
    champion snapshot is rebuilt (see `restore_snapshot`) before giving up.
    """
    requested = override or (champion.data.snapshot_id if champion else None)
    if requested is None:
        raise NoReferenceError(
            "no reference data: the registry holds no model (run `make data train register`) "
            "and no --reference snapshot was given"
        )
    tried: list[str] = []
    if override is None and not (paths.snapshots / requested).is_dir():
        tried = restore_snapshot(paths, requested)
    try:
        frame, manifest = snapshot.load(requested, root=paths.snapshots)
    except (FileNotFoundError, LookupError, ValueError, InputError) as error:
        if tried:
            raise NoReferenceError(
                f"reference snapshot {requested!r} (the training data of champion "
                f"{champion.version if champion else '?'}) is not in {paths.snapshots} "
                "and could not be rebuilt:\n"
                + "".join(f"  - {line}\n" for line in tried)
                + f"Restore artifacts/snapshots/{requested}/ from where that model was trained (the CI "
                "run's uploaded artifacts), or pass --reference <snapshot> to compare with another one"
            ) from None
        raise NoReferenceError(
            f"reference snapshot {requested!r} cannot be loaded ({error}); snapshots are not in git: "
            "rebuild it with `make data` (same input, same id) or pass --reference"
        ) from None
    return Reference(frame, str(manifest.get("snapshot_id", requested)), manifest, champion)


def restore_snapshot(paths: Paths, snapshot_id: str) -> list[str]:
    """Rebuild a missing snapshot into artifacts/snapshots/; returns what was tried when it fails.

    Snapshots are content-addressed, so a rebuild either yields exactly `snapshot_id` or is
    discarded. Tried in order: (1) the configured source, ignoring any retraining request in
    the checkout; (2) every retraining request git history holds that names the snapshot, from
    its committed Parquet file. Each build goes to a temporary folder, so `latest` and the
    snapshots already here are never touched.
    """
    tried: list[str] = []
    progress.note(f"reference snapshot {snapshot_id} is not here: rebuilding it from the configured source")
    outcome = _rebuild(paths, snapshot_id, ignore_request=True)
    if outcome is None:
        return []
    tried.append(f"the configured source (`mlops data --ignore-request`): {outcome}")
    commits, reason = _request_commits(paths, snapshot_id)
    if not commits:
        tried.append(reason)
        return tried
    for commit, folder in commits:
        progress.note(f"rebuilding {snapshot_id} from the retraining request committed in {commit[:12]}")
        with tempfile.TemporaryDirectory(prefix="reference-request-") as temporary:
            exported = _export_request(paths.root, commit, folder, Path(temporary))
            if isinstance(exported, str):
                tried.append(f"request in commit {commit[:12]}: {exported}")
                continue
            outcome = _rebuild(paths, snapshot_id, request=exported)
        if outcome is None:
            return []
        tried.append(f"request in commit {commit[:12]}: {outcome}")
    return tried


def _rebuild(
    paths: Paths, snapshot_id: str, *, ignore_request: bool = False, request: Path | None = None
) -> str | None:
    """Build a snapshot into a temporary root; None when it produced `snapshot_id` (then moved in place)."""
    with tempfile.TemporaryDirectory(prefix="reference-rebuild-") as temporary:
        try:
            built = ingest.build_snapshot(
                paths, ignore_request=ignore_request, request=request, snapshots=Path(temporary)
            )
        except (InputError, ingest.DataRefused) as error:
            lines = str(error).strip().splitlines()
            return f"failed ({lines[-1] if lines else type(error).__name__})"
        if built.name != snapshot_id:
            return f"yields snapshot {built.name}, not {snapshot_id}"
        paths.snapshots.mkdir(parents=True, exist_ok=True)
        if not (paths.snapshots / snapshot_id).exists():
            shutil.move(str(built), paths.snapshots / snapshot_id)
    progress.note(f"rebuilt reference snapshot {snapshot_id} into {paths.snapshots / snapshot_id}")
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


def _request_commits(paths: Paths, snapshot_id: str) -> tuple[list[tuple[str, str]], str]:
    """Commits (newest first) whose retraining request names `snapshot_id`, with the request folder."""
    folder = paths.relative(paths.retraining)
    try:
        listed = _git(
            paths.root,
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
    found = [
        (commit, folder)
        for commit in listed.stdout.split()
        if _names_snapshot(paths.root, commit, folder, snapshot_id)
    ]
    if not found:
        shallow = _git(paths.root, "rev-parse", "--is-shallow-repository").stdout.strip() == "true"
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
    for name in (snapshot.REQUEST_MANIFEST, snapshot.REQUEST_DATA):
        shown = _git(root, "show", f"{commit}:{folder}/{name}", text=False)
        if shown.returncode != 0:
            return f"{folder}/{name} is not in that commit"
        (target / name).write_bytes(shown.stdout)
    return target


def reference_scores(
    paths: Paths, champion: RegistryEntry | None, reference: Reference, contract: Contract
) -> tuple[np.ndarray | None, str | None]:
    """The champion's prediction signal on its reference data [rows, signal columns], or None and why."""
    if champion is None:
        return None, "score drift not checked: no registered model to score the reference with"
    path = model_path(paths, champion)
    if not path.is_file():
        return None, (
            f"score drift not checked: the champion's model file {path} is missing "
            "(artifacts are not in git: restore it, or retrain with `make train`)"
        )
    if registry.sha256_of(path) != champion.artifact.sha256:
        return None, (
            f"score drift not checked: {path} is not the registered artifact of "
            f"{champion.version} (sha256 differs)"
        )
    try:
        return from_scores(model_scores(path, reference.frame, contract), contract.target), None
    except ValueError as error:  # a model of another task or class list than the contract's
        return (
            None,
            f"score drift not checked: the champion's model {path} does not fit the contract ({error})",
        )
