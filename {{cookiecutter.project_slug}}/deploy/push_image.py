"""Push the serving image and record its digest: the one identity deploy overlays may pin.

Why a record file: a tag can be moved, a digest cannot. `make pin-staging` reads the record
(artifacts/image.json) to register the model version with its image and to pin the digest in
deploy/overlays/staging, so what runs is byte for byte what CI built and tested. The model
version comes from the image's own label (set by `make image`), not from a guess.
Standard library only; `docker` is any Docker-API client (Docker, or podman's socket).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
IMAGE = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)+$")
VERSION_LABEL = "org.opencontainers.image.version"


class PushError(RuntimeError):
    """The push failed or its digest could not be determined."""


def docker(binary: str, *args: str) -> str:
    result = subprocess.run([binary, *args], capture_output=True, text=True, check=False)  # noqa: S603
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", required=True, help="repository, e.g. ghcr.io/owner/project")
    parser.add_argument("--tag", required=True, help="tag to push, e.g. the commit sha")
    parser.add_argument("--docker", default="docker", help="docker-compatible client")
    parser.add_argument("--output", type=Path, default=Path("artifacts/image.json"))
    args = parser.parse_args(argv)
    if not IMAGE.match(args.image):
        parser.error(f"--image must be a lowercase registry/repository path, got {args.image!r}")
    if not TAG.match(args.tag):
        parser.error(f"--tag must be a valid image tag (letters, digits, _ . -), got {args.tag!r}")
    reference = f"{args.image}:{args.tag}"
    try:
        print(f"==> {args.docker} push {reference}", flush=True)
        if Path(args.docker).name == "podman":  # it reports the registry's digest only in --digestfile
            with tempfile.TemporaryDirectory() as folder:
                digest_file = Path(folder) / "digest"
                output = docker(args.docker, "push", "--digestfile", str(digest_file), reference)
                output += "\n" + digest_file.read_text()
        else:
            output = docker(args.docker, "push", reference)
        (inspect,) = json.loads(docker(args.docker, "image", "inspect", reference))
        digest = pushed_digest(args.image, output, inspect)
    except PushError as error:
        print(f"image-push: {error}", file=sys.stderr)
        return 1
    labels = (inspect.get("Config") or {}).get("Labels") or {}
    record = {
        "image": args.image,
        "tag": args.tag,
        "digest": digest,
        "reference": f"{args.image}@{digest}",
        "model_version": labels.get(VERSION_LABEL, ""),
        "pushed_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2) + "\n")
    print(f"==> pushed {record['reference']} (model {record['model_version'] or 'unknown'}) -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
