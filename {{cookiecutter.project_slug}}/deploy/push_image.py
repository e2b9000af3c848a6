"""Push the serving image and record its digest: the one identity deploy overlays may pin.

Why a record file: a tag can be moved, a digest cannot. `make pin-staging` reads the record
(artifacts/image.json) to register the model version with its image and to pin the digest in
deploy/overlays/staging, so what runs is byte for byte what CI built and tested. The model
version comes from the image's own label (set by `make image`), not from a guess.
Standard library only; `docker` is any Docker-API client (Docker, or podman's socket).
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from governance.core.errors import InputError

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
IMAGE = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)+$")
VERSION_LABEL = "org.opencontainers.image.version"


class PushError(InputError):
    """The push failed or its digest could not be determined."""


def docker(binary: str, *args: str) -> str:
    try:
        result = subprocess.run([binary, *args], capture_output=True, text=True, check=False)  # noqa: S603
    except OSError:
        raise PushError(
            f"no container engine: `{binary}` is not on PATH (DOCKER=<client> names another one)"
        ) from None
    if result.returncode != 0:
        raise PushError(
            f"`{binary} {' '.join(args)}` failed: {result.stderr.strip() or result.stdout.strip()}"
        )
    return result.stdout


def pushed_digest(image: str, push_output: str, inspect: dict) -> str:
    """The registry digest: the one the push reported (a local digest may differ), else RepoDigests."""
    found = DIGEST.findall(push_output)
    if found:
        return found[-1]
    for entry in inspect.get("RepoDigests") or []:
        name, _, digest = entry.partition("@")
        if name == image and DIGEST.fullmatch(digest):
            return digest
    raise PushError(f"no digest for {image} in `docker push` output or RepoDigests")


def push(image: str, tag: str, docker_cli: str, output: Path, say=print) -> dict[str, str]:
    """`make image-push`: push image:tag, then write the record with its registry digest to `output`."""
    if not IMAGE.match(image):
        raise PushError(f"--image must be a lowercase registry/repository path, got {image!r}")
    if not TAG.match(tag):
        raise PushError(f"--tag must be a valid image tag (letters, digits, _ . -), got {tag!r}")
    reference = f"{image}:{tag}"
    say(f"==> {docker_cli} push {reference}")
    if Path(docker_cli).name == "podman":  # it reports the registry's digest only in --digestfile
        with tempfile.TemporaryDirectory() as folder:
            digest_file = Path(folder) / "digest"
            pushed = docker(docker_cli, "push", "--digestfile", str(digest_file), reference)
            pushed += "\n" + digest_file.read_text()
    else:
        pushed = docker(docker_cli, "push", reference)
    (inspect,) = json.loads(docker(docker_cli, "image", "inspect", reference))
    digest = pushed_digest(image, pushed, inspect)
    labels = (inspect.get("Config") or {}).get("Labels") or {}
    record = {
        "image": image,
        "tag": tag,
        "digest": digest,
        "reference": f"{image}@{digest}",
        "model_version": labels.get(VERSION_LABEL, ""),
        "pushed_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(record, indent=2) + "\n")
    say(f"==> pushed {record['reference']} (model {record['model_version'] or 'unknown'}) -> {output}")
    return record
