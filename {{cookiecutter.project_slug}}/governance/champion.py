"""Fetch the champion's ONNX model out of its deployed image: `make champion`.

In this GitOps design the deployed image is the artifact store: the production overlay pins
the champion's image by digest and that image holds the model at /app/model/model.onnx.
CI checkouts have an empty artifacts/, so without this the regression gate in `make train`
could only compare the candidate with a metric the champion scored on another test split.
Here the model is copied out of exactly the pinned image, checked against the sha256 the
registry recorded, and put at the entry's artifact path, where the gate re-scores it on the
candidate's own test split.

A refusal (the image does not hold the registered model) is a failed check (exit 1); a
model that cannot be obtained (no container engine, pull denied, a broken registry or
overlay) is an error (exit 2), or with `--optional` a warning, and `make train`'s gate then
decides under `model.regression_fallback`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from governance import registry
from governance.core.errors import CheckFailed, InputError
from governance.core.paths import Paths
from governance.core.records import IMAGE_DIGEST

PLACEHOLDER_DIGEST = "sha256:" + "0" * 64
MODEL_IN_IMAGE = "/app/model/model.onnx"
PULL_TIMEOUT_S = 900
DOCKER_TIMEOUT_S = 120


class ChampionError(InputError):
    """The champion's model cannot be obtained; the message says what failed and what to do."""


class ChampionRefused(CheckFailed):
    """The image answered, but its model is not the registered one."""


@dataclass(frozen=True)
class Target:
    """What to fetch: the production entry's version and artifact, from the pinned image."""

    version: str
    artifact: Path
    sha256: str
    image: str
    digest: str

    @property
    def reference(self) -> str:
        return f"{self.image}@{self.digest}"


def production_overlay(paths: Paths) -> Path:
    """The kustomization that pins what production runs."""
    return paths.overlays / "production" / "kustomization.yaml"


def pinned_image(root: Path) -> tuple[str, str]:
    """The image name and digest the production overlay pins (what Argo CD runs)."""
    paths = Paths(root)
    path = production_overlay(paths)
    shown = paths.relative(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ChampionError(f"cannot read the production overlay {shown}: {error}") from None
    images = raw.get("images") if isinstance(raw, dict) else None
    if not isinstance(images, list) or len(images) != 1 or not isinstance(images[0], dict):
        raise ChampionError(f"{shown}: field 'images' must hold exactly one image (got {images!r})")
    image = images[0].get("newName") or images[0].get("name")
    digest = images[0].get("digest")
    if not isinstance(image, str) or not image:
        raise ChampionError(f"{shown}: field 'images[0].newName' must name the image (got {image!r})")
    if not isinstance(digest, str) or not re.match(IMAGE_DIGEST, digest):
        raise ChampionError(f"{shown}: field 'images[0].digest' must be sha256:<64 hex> (got {digest!r})")
    return image, digest


def locate(root: Path) -> tuple[Target | None, str]:
    """The champion to fetch, or None with the reason there is none yet."""
    paths = Paths(root)
    entry = registry.load(paths.registry).champion
    if entry is None:
        return None, f"no champion deployed yet: {paths.relative(paths.registry)} has no production entry"
    image, digest = pinned_image(root)
    if digest == PLACEHOLDER_DIGEST:
        return None, (
            f"no champion deployed yet: {paths.relative(production_overlay(paths))} still pins the "
            f"placeholder digest (registry production entry {entry.version} has no deployed image)"
        )
    registered = entry.image.digest if entry.image else None
    if registered and registered != digest:
        raise ChampionError(
            f"the production overlay pins {digest}, but registry entry {entry.version} records image "
            f"{registered}: the desired state and the registry disagree; fix them in one reviewed PR"
        )
    artifact = Path(entry.artifact.path)
    resolved = (root / artifact).resolve()
    if artifact.is_absolute() or not resolved.is_relative_to(root.resolve()):
        raise ChampionError(
            f"registry entry {entry.version}: field 'artifact.path' must be a path inside the project "
            f"(got {str(artifact)!r})"
        )
    return Target(entry.version, resolved, entry.artifact.sha256, image, digest), ""


def _docker(binary: str, *args: str, timeout: float = DOCKER_TIMEOUT_S) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(  # noqa: S603 - argument list, no shell
            [binary, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise ChampionError(
            f"no container engine: `{binary}` is not on PATH (DOCKER=<client> names another one)"
        ) from None
    except subprocess.TimeoutExpired:
        raise ChampionError(f"`{binary} {' '.join(args)}` did not finish within {timeout:.0f} s") from None


def _failed(result: subprocess.CompletedProcess, what: str, hint: str = "") -> ChampionError:
    detail = (result.stderr or result.stdout or "").strip().splitlines()
    reason = detail[-1] if detail else f"exit code {result.returncode}"
    return ChampionError(f"{what} failed: {reason}{hint}")


def fetch(target: Target, docker: str = "docker", say=print) -> Path:
    """Copy the model out of the pinned image and install it only if its sha256 is the registered one."""
    if target.artifact.is_file() and registry.sha256_of(target.artifact) == target.sha256:
        say(f"champion {target.version}: {target.artifact.name} is already here (sha256 verified)")
        return target.artifact
    if _docker(docker, "image", "inspect", target.reference).returncode == 0:
        say(f"==> {target.reference} is present locally: not pulling")
    else:
        say(f"==> {docker} pull {target.reference}")
        result = _docker(docker, "pull", target.reference, timeout=PULL_TIMEOUT_S)
        if result.returncode != 0:
            raise _failed(
                result,
                f"`{docker} pull {target.reference}`",
                "; log in with `make registry-login` (REGISTRY_USER, REGISTRY_TOKEN) "
                "or load the image locally",
            )
    created = _docker(docker, "create", target.reference)
    if created.returncode != 0 or not created.stdout.strip():
        raise _failed(created, f"`{docker} create {target.reference}`")
    container = created.stdout.strip().splitlines()[-1]
    target.artifact.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".champion-", dir=target.artifact.parent))
    try:
        copied = staging / "model.onnx"
        result = _docker(docker, "cp", f"{container}:{MODEL_IN_IMAGE}", str(copied))
        if result.returncode != 0 or not copied.is_file():
            raise _failed(result, f"`{docker} cp {container}:{MODEL_IN_IMAGE}`")
        actual = registry.sha256_of(copied)
        if actual != target.sha256:
            raise ChampionRefused(
                f"refused: {MODEL_IN_IMAGE} in {target.reference} has sha256 {actual}, but registry entry "
                f"{target.version} records {target.sha256}: the deployed image does not hold the "
                "registered champion, so it is not used as one"
            )
        os.replace(copied, target.artifact)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        _docker(docker, "rm", container)
    say(f"champion {target.version}: {MODEL_IN_IMAGE} from {target.reference} -> {target.artifact}")
    say(f"    sha256 {target.sha256} (as registered)")
    return target.artifact


def fetch_champion(paths: Paths, docker: str = "docker", optional: bool = False, say=print) -> Path | None:
    """`make champion`: the champion's model in place, None when no champion is deployed yet.

    With `optional`, a model that cannot be obtained is a warning: `make train` then follows
    model.regression_fallback in governance/policy.yaml. A refusal is never optional.
    """
    try:
        target, reason = locate(paths.root)
        if target is None:
            say(reason)
            return None
        return fetch(target, docker, say)
    except ChampionRefused:
        raise
    except (ChampionError, registry.RegistryError) as error:
        if not optional:
            raise
        say(
            f"warning: {error}\n  without the champion's model, `make train` follows "
            "model.regression_fallback in governance/policy.yaml"
        )
        return None
