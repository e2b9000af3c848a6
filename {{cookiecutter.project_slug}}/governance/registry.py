"""The model registry: governance/registry.yaml, one validated `RegistryEntry` per model version.

The registry lives in git, so every change to it is a reviewed diff. Code changes it only
through this module, which validates the whole file (`governance.core.records.Registry`)
and the artifact's bytes against their sha256 before anything is written, and writes
atomically, so a crash never leaves a half-written registry.
"""

from __future__ import annotations

import subprocess
from datetime import datetime
from pathlib import Path

import yaml

from governance.core import recording
from governance.core.errors import CheckFailed, InputError
from governance.core.paths import Paths
from governance.core.records import (
    Explanations,
    GateReport,
    Parity,
    Quality,
    Registry,
    RegistryEntry,
    TrackedRun,
    TrainingRecord,
    now,
    parse,
    read_json,
    read_yaml,
    sha256_of,
    write_atomically,
)

HEADER = (
    "# The model registry: one entry per model version, written by `make register` (validated,\n"
    "# atomic). The champion is the entry whose stage is `production`.\n"
)
STAGES = ("candidate", "staging", "production", "archived")
TRAIN_HINT = "run `make train` again"


class RegistryError(InputError):
    """A registry entry or file breaks a rule; the message names the entry, field, rule and value."""


def load(path: Path | str) -> Registry:
    return parse(Registry, read_yaml(path, "registry file", RegistryError), str(path), RegistryError)


class _Dumper(yaml.SafeDumper):
    """Lists of plain values (partial-dependence grids, class lists) on one line each, so an
    entry stays short enough to review in a pull request; nested structures stay in block style."""

    def represent_list(self, data: list) -> yaml.Node:  # type: ignore[override]
        flat = all(not isinstance(item, dict | list) for item in data)
        return self.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flat)


_Dumper.add_representer(list, _Dumper.represent_list)


def save(registry: Registry, path: Path | str) -> None:
    """Validate, then replace the file atomically: readers see the old or the new registry, never half."""
    registry = parse(Registry, registry.model_dump(mode="json"), str(path), RegistryError)
    document = {"version": registry.version, "models": [entry.as_yaml() for entry in registry.models]}
    write_atomically(
        Path(path),
        HEADER + yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110),
    )


def get(version: str, path: Path | str) -> RegistryEntry:
    entry = load(path).get(version)
    if entry is None:
        raise RegistryError(f"registry has no model version {version!r}")
    return entry


def verify_artifact(entry: RegistryEntry, root: Path) -> None:
    """The artifact on disk must be exactly the bytes the entry names."""
    path = Path(entry.artifact.path)
    path = path if path.is_absolute() else root / path
    if not path.is_file():
        raise RegistryError(
            f"registry entry {entry.version!r}: field 'artifact.path' must name an existing file "
            f"(got {str(path)!r})"
        )
    actual = sha256_of(path)
    if actual != entry.artifact.sha256:
        raise RegistryError(
            f"registry entry {entry.version!r}: field 'artifact.sha256' must match the file's "
            f"sha256 {actual} "
            f"(got {entry.artifact.sha256!r})"
        )


def _replace(path: Path | str, registry: Registry, models: list[RegistryEntry]) -> None:
    save(registry.model_copy(update={"models": tuple(models)}), path)


def append(entry: RegistryEntry, path: Path | str, root: Path) -> RegistryEntry:
    """Add a new version after checking it, including that its artifact's sha256 is right."""
    verify_artifact(entry, root)
    registry = load(path)
    if registry.get(entry.version) is not None:
        raise RegistryError(f"registry entry {entry.version!r}: field 'version' is already registered")
    _replace(path, registry, [*registry.models, entry])
    return entry


def update(version: str, changes: dict, path: Path | str) -> RegistryEntry:
    """Change fields of an entry (e.g. its image digest); its identity and artifact stay fixed."""
    frozen = sorted({"version", "artifact", "created_at"} & set(changes))
    if frozen:
        raise RegistryError(
            f"registry entry {version!r}: field '{frozen[0]}' cannot be changed after registration"
        )
    registry = load(path)
    current = registry.get(version)
    if current is None:
        raise RegistryError(f"registry has no model version {version!r}")
    if _same(current, changes):
        return current  # a re-run of the same change: the file (and its updated_at) stay as they are
    models = []
    changed = None
    for entry in registry.models:
        if entry.version == version:
            raw = {**entry.model_dump(mode="json"), **changes, "updated_at": now()}
            entry = changed = parse(RegistryEntry, raw, f"registry entry {version!r}", RegistryError)
        models.append(entry)
    _replace(path, registry, models)
    assert changed is not None
    return changed


def _same(entry: RegistryEntry, changes: dict) -> bool:
    """Whether applying `changes` would leave the entry as it is (compared as parsed records)."""
    current = entry.model_dump(mode="json")
    after = parse(RegistryEntry, {**current, **changes}, f"registry entry {entry.version!r}", RegistryError)
    return after == entry


def set_stage(version: str, stage: str, path: Path | str) -> RegistryEntry:
    """Move a version to a stage; promoting to production archives the previous champion."""
    if stage not in STAGES:
        raise RegistryError(
            f"registry entry {version!r}: field 'stage' must be one of {', '.join(STAGES)} (got {stage!r})"
        )
    registry = load(path)
    current = registry.get(version)
    if current is None:
        raise RegistryError(f"registry has no model version {version!r}")
    if current.stage == stage:
        return current  # already there (promoting it archived any other champion then)
    stamp = now()
    models = []
    target = None
    for entry in registry.models:
        if entry.version == version:
            promoted = {"promoted_at": stamp} if stage == "production" else {}
            entry = target = entry.model_copy(update={"stage": stage, "updated_at": stamp, **promoted})
        elif stage == "production" and entry.stage == "production":
            entry = entry.model_copy(update={"stage": "archived", "updated_at": stamp})
        models.append(entry)
    _replace(path, registry, models)
    assert target is not None
    return target


def previous_production(registry: Registry) -> RegistryEntry | None:
    """The version production ran before the champion: the archived one promoted most recently."""
    earlier = [
        entry
        for entry in registry.models
        if entry.stage == "archived" and entry.promoted_at is not None and entry.image is not None
    ]
    return max(earlier, key=lambda entry: parse_time(entry.promoted_at), default=None)


def parse_time(stamp: str | None) -> datetime:
    return datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))


def git_commit(root: Path) -> str:
    """The code commit the model came from, or "unknown" outside a git checkout."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],  # noqa: S607 - git from PATH, fixed arguments
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() or "unknown"


def trained_version(paths: Paths, version: str | None) -> str:
    latest = paths.models / "latest"
    chosen = version or (latest.read_text().strip() if latest.is_file() else "")
    if not chosen or not (paths.models / chosen).is_dir():
        raise InputError(
            f"no trained model {chosen or ''} in {paths.relative(paths.models)}: run `make train` first"
        )
    return chosen


def candidate_entry(paths: Paths, version: str, override: str | None = None) -> RegistryEntry:
    """The registry entry of a trained version, from the records `make train` wrote.

    `override`: the reason someone registers a model whose gates failed (break glass). It is kept
    in the entry and shown on the model card, so the review of the pull request sees it.
    """
    out = paths.models / version
    gates = read_json(GateReport, out / "gates.json", TRAIN_HINT)
    if not gates.passed and not (override or "").strip():
        failed = [gate.name for gate in gates.gates if not gate.passed]
        raise CheckFailed(
            f"model {version} failed the policy gate(s) {failed} in training; it cannot be registered"
        )
    return RegistryEntry.from_training(
        read_json(TrainingRecord, out / "training.json", TRAIN_HINT),
        read_json(Quality, out / "metrics.json", TRAIN_HINT),
        read_json(Parity, out / "parity.json", TRAIN_HINT),
        gates,
        git_commit(paths.root),
        explained(out),
        tracked_run(out),
        override.strip() if override and not gates.passed else None,
    )


def tracked_run(model_folder: Path) -> TrackedRun | None:
    """The MLflow run `make train` recorded for this model (run.json), None with tracking off.

    The run is recorded in the background after training: a pending recording is waited for.
    """
    recording.wait(model_folder)
    path = model_folder / recording.RECORD
    return read_json(TrackedRun, path) if path.is_file() else None


def explained(out: Path) -> Explanations | None:
    """The version's explanations.json; None only for a model trained before explanations existed."""
    path = out / "explanations.json"
    return read_json(Explanations, path, TRAIN_HINT) if path.is_file() else None


def register(
    paths: Paths, version: str | None = None, override: str | None = None
) -> tuple[RegistryEntry, bool]:
    """Record a trained version as a `candidate`; returns the entry and whether it is new."""
    chosen = trained_version(paths, version)
    entry = candidate_entry(paths, chosen, override)
    existing = load(paths.registry).get(chosen)
    if existing is not None:
        if existing.artifact.sha256 != entry.artifact.sha256:
            raise RegistryError(f"version {chosen} is already registered with a different artifact sha256")
        return existing, False
    return append(entry, paths.registry, paths.root), True
