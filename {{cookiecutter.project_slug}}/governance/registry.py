"""The model registry: governance/registry.yaml, one validated entry per model version.

The registry lives in git, so every change to it is a reviewed diff. Code changes it only
through this module, which checks every entry against the schema (and the artifact's bytes
against its sha256) before anything is written, and writes atomically (a temporary file
in the same folder, then os.replace) so a crash never leaves a half-written registry.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from governance.files import read_yaml_mapping

ROOT = Path(__file__).resolve().parents[1]
REGISTRY_PATH = ROOT / "governance" / "registry.yaml"
SCHEMA_VERSION = 1
STAGES = ("candidate", "staging", "production", "archived")
HEADER = (
    "# The model registry: one entry per model version, written by `make register` (validated,\n"
    "# atomic). The champion is the entry whose stage is `production`.\n"
)

SHA256 = re.compile(r"^[0-9a-f]{64}$")
COMMIT = re.compile(r"^([0-9a-f]{40}|[0-9a-f]{64}|unknown)$")
IMAGE_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,127}$")
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
REQUIRED = (
    "version",
    "model_name",
    "model_family",
    "stage",
    "artifact",
    "data",
    "contract_sha256",
    "code_commit",
    "metrics",
    "bias",
    "gates",
    "parity",
    "created_at",
    "updated_at",
)
OPTIONAL = ("image",)


class RegistryError(ValueError):
    """A registry entry or file breaks a rule; the message names the entry, field, rule and value."""


def now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fail(version: Any, field: str, rule: str, value: Any) -> None:
    raise RegistryError(f"registry entry {version!r}: field '{field}' {rule} (got {value!r})")


def _timestamp(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def validate_entry(entry: Any) -> None:
    """Check one entry against the schema; raise RegistryError naming the first problem."""
    if not isinstance(entry, dict):
        raise RegistryError(f"a registry entry must be a mapping (got {type(entry).__name__})")
    version = entry.get("version")
    for key in REQUIRED:
        if key not in entry:
            _fail(version, key, "is required", None)
    unknown = sorted(set(entry) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        _fail(
            version,
            unknown[0],
            f"is not a registry field (allowed: {', '.join(REQUIRED + OPTIONAL)})",
            entry[unknown[0]],
        )
    if not isinstance(version, str) or not VERSION.match(version):
        _fail(version, "version", "must be letters, digits, '.', '_' or '-' (at most 128)", version)
    for key in ("model_name", "model_family"):
        if not isinstance(entry[key], str) or not IDENTIFIER.match(entry[key]):
            _fail(version, key, "must be an identifier", entry[key])
    if entry["stage"] not in STAGES:
        _fail(version, "stage", f"must be one of {', '.join(STAGES)}", entry["stage"])
    artifact = entry["artifact"]
    if not isinstance(artifact, dict) or not isinstance(artifact.get("path"), str) or not artifact["path"]:
        _fail(version, "artifact.path", "must be a non-empty path", artifact)
    if not isinstance(artifact.get("sha256"), str) or not SHA256.match(artifact["sha256"]):
        _fail(version, "artifact.sha256", "must be 64 lowercase hex digits", artifact.get("sha256"))
    data = entry["data"]
    if not isinstance(data, dict) or not isinstance(data.get("snapshot_id"), str) or not data["snapshot_id"]:
        _fail(version, "data.snapshot_id", "must be a non-empty string", data)
    if not isinstance(data.get("sha256"), str) or not SHA256.match(data["sha256"]):
        _fail(version, "data.sha256", "must be 64 lowercase hex digits", data.get("sha256"))
    if not isinstance(entry["contract_sha256"], str) or not SHA256.match(entry["contract_sha256"]):
        _fail(version, "contract_sha256", "must be 64 lowercase hex digits", entry["contract_sha256"])
    if not isinstance(entry["code_commit"], str) or not COMMIT.match(entry["code_commit"]):
        _fail(version, "code_commit", "must be a full git commit id or 'unknown'", entry["code_commit"])
    metrics = entry["metrics"]
    if not isinstance(metrics, dict) or not metrics:
        _fail(version, "metrics", "must be a non-empty mapping", metrics)
    for name, value in metrics.items():
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
            _fail(version, f"metrics.{name}", "must be a number or null", value)
    if not isinstance(entry["bias"], dict):
        _fail(version, "bias", "must be a mapping", entry["bias"])
    gates = entry["gates"]
    if not isinstance(gates, dict) or not gates:
        _fail(version, "gates", "must be a non-empty mapping of gate name to result", gates)
    for name, result in gates.items():
        if not isinstance(result, dict) or not isinstance(result.get("passed"), bool):
            _fail(version, f"gates.{name}.passed", "must be true or false", result)
        if not result["passed"]:
            _fail(
                version,
                f"gates.{name}.passed",
                "must be true: a model that failed a gate is never registered",
                False,
            )
    parity = entry["parity"]
    if not isinstance(parity, dict) or not isinstance(parity.get("labels_equal"), bool):
        _fail(version, "parity.labels_equal", "must be true or false", parity)
    diff = parity.get("max_abs_diff")
    if not isinstance(diff, int | float) or isinstance(diff, bool) or diff < 0:
        _fail(version, "parity.max_abs_diff", "must be a non-negative number", diff)
    for key in ("created_at", "updated_at"):
        if not _timestamp(entry[key]):
            _fail(version, key, "must be an ISO 8601 timestamp", entry[key])
    if "image" in entry:
        image = entry["image"]
        if (
            not isinstance(image, dict)
            or not isinstance(image.get("digest"), str)
            or not IMAGE_DIGEST.match(image["digest"])
        ):
            _fail(version, "image.digest", "must be 'sha256:' followed by 64 lowercase hex digits", image)


def validate(registry: Any) -> None:
    """Check the whole file: its schema version, every entry, unique versions, one champion."""
    if not isinstance(registry, dict):
        raise RegistryError(
            f"the registry must be a mapping with 'version' and 'models' (got {type(registry).__name__})"
        )
    if registry.get("version") != SCHEMA_VERSION:
        raise RegistryError(
            f"registry field 'version' must be {SCHEMA_VERSION} (got {registry.get('version')!r})"
        )
    models = registry.get("models")
    if not isinstance(models, list):
        raise RegistryError(f"registry field 'models' must be a list (got {type(models).__name__})")
    seen: set[str] = set()
    for entry in models:
        validate_entry(entry)
        if entry["version"] in seen:
            _fail(entry["version"], "version", "must be unique in the registry", entry["version"])
        seen.add(entry["version"])
    champions = [entry["version"] for entry in models if entry["stage"] == "production"]
    if len(champions) > 1:
        raise RegistryError(f"at most one entry may be in stage 'production' (found {champions})")


def verify_artifact(entry: dict[str, Any], root: Path) -> None:
    """The artifact on disk must be exactly the bytes the entry names."""
    path = Path(entry["artifact"]["path"])
    path = path if path.is_absolute() else root / path
    if not path.is_file():
        _fail(entry["version"], "artifact.path", "must name an existing file", str(path))
    actual = sha256_of(path)
    if actual != entry["artifact"]["sha256"]:
        _fail(
            entry["version"],
            "artifact.sha256",
            f"must match the file's sha256 {actual}",
            entry["artifact"]["sha256"],
        )


def load(path: Path | str = REGISTRY_PATH) -> dict[str, Any]:
    raw = read_yaml_mapping(path, RegistryError, "registry file")
    validate(raw)
    return raw


def save(registry: dict[str, Any], path: Path | str = REGISTRY_PATH) -> None:
    """Validate, then replace the file atomically: readers see the old or the new registry, never half."""
    validate(registry)
    path = Path(path)
    text = HEADER + yaml.safe_dump(registry, sort_keys=False, allow_unicode=True, width=110)
    temporary: Path | None = None
    try:
        with tempfile.NamedTemporaryFile(
            "w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
        ) as handle:
            temporary = Path(handle.name)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        # A temporary file is private (0600); keep the registry's own permissions instead.
        os.chmod(temporary, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        os.replace(temporary, path)
    except BaseException:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
        raise


@contextmanager
def _editing(path: Path | str) -> Iterator[dict[str, Any]]:
    registry = load(path)
    yield registry
    save(registry, path)


def get(version: str, path: Path | str = REGISTRY_PATH) -> dict[str, Any]:
    for entry in load(path)["models"]:
        if entry["version"] == version:
            return entry
    raise RegistryError(f"registry has no model version {version!r}")


def champion(path: Path | str = REGISTRY_PATH) -> dict[str, Any] | None:
    """The production entry, or None before the first promotion."""
    for entry in load(path)["models"]:
        if entry["stage"] == "production":
            return entry
    return None


def append(
    entry: dict[str, Any], path: Path | str = REGISTRY_PATH, root: Path | str | None = None
) -> dict[str, Any]:
    """Add a new version after checking it, including that its artifact's sha256 is right.

    `root` is the folder relative artifact paths start from (default: the registry's project).
    """
    path = Path(path)
    validate_entry(entry)
    verify_artifact(entry, Path(root) if root is not None else path.resolve().parents[1])
    with _editing(path) as registry:
        if any(existing["version"] == entry["version"] for existing in registry["models"]):
            _fail(entry["version"], "version", "is already registered", entry["version"])
        registry["models"].append(entry)
    return entry


def update(version: str, changes: dict[str, Any], path: Path | str = REGISTRY_PATH) -> dict[str, Any]:
    """Change fields of an entry (e.g. its image digest); its identity and artifact stay fixed."""
    frozen = {"version", "artifact", "created_at"} & set(changes)
    if frozen:
        _fail(version, sorted(frozen)[0], "cannot be changed after registration", changes[sorted(frozen)[0]])
    with _editing(path) as registry:
        for entry in registry["models"]:
            if entry["version"] == version:
                entry.update(changes)
                entry["updated_at"] = now()
                validate_entry(entry)
                return entry
        raise RegistryError(f"registry has no model version {version!r}")


def set_stage(version: str, stage: str, path: Path | str = REGISTRY_PATH) -> dict[str, Any]:
    """Move a version to a stage; promoting to production archives the previous champion."""
    if stage not in STAGES:
        _fail(version, "stage", f"must be one of {', '.join(STAGES)}", stage)
    with _editing(path) as registry:
        target = next((entry for entry in registry["models"] if entry["version"] == version), None)
        if target is None:
            raise RegistryError(f"registry has no model version {version!r}")
        stamp = now()
        if stage == "production":
            for entry in registry["models"]:
                if entry["stage"] == "production" and entry is not target:
                    entry["stage"] = "archived"
                    entry["updated_at"] = stamp
        target["stage"] = stage
        target["updated_at"] = stamp
        return target
