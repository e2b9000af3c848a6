"""The container engine `make demo` packages and runs the model with, found or set up.

Why a module: the demo must work on a laptop with Docker, on a GitHub runner, and on a
machine with only the docker CLI and no daemon (the template's CI machine), where
scripts/container-engine.sh gives podman's Docker-API socket and scripts/base-image.sh a
base image built from Debian packages, because no registry can be reached there. When no
engine can be had at all, the demo says so and serves the model as a process instead.
"""

# docker, bash and the template's scripts are run with argument lists, never through a shell.

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

LOCAL_BASE_IMAGE = "localhost/python-base:3.11"
PODMAN_SOCKET = Path("/run/podman/podman.sock")


@dataclass
class Engine:
    """What the demo's make calls need in their environment to reach the engine."""

    kind: str  # docker | podman | none
    env: dict[str, str] = field(default_factory=dict)
    note: str = ""

    @property
    def available(self) -> bool:
        return self.kind != "none"


def _run(command: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def answers(env: dict[str, str]) -> bool:
    """`docker info` works with this environment (a Docker daemon or podman's API service)."""
    if shutil.which("docker", path=env.get("PATH")) is None:
        return False
    try:
        return _run(["docker", "info"], env, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _is_podman(env: dict[str, str]) -> bool:
    if "podman" in env.get("DOCKER_HOST", ""):
        return True
    version = _run(["docker", "version", "--format", "{{json .Server}}"], env)
    return "podman" in version.stdout.lower()


def _set_up_podman(root: Path, env: dict[str, str], log) -> dict[str, str]:
    """Run scripts/container-engine.sh (idempotent); returns the variables it exports."""
    log(f"no Docker engine answers: setting up podman's Docker API ({root / 'scripts'}/container-engine.sh)")
    result = _run(["bash", str(root / "scripts" / "container-engine.sh")], env, timeout=900)
    log(result.stderr.strip())
    if result.returncode != 0:
        return {}
    return dict(re.findall(r"^export (\w+)=(.*)$", result.stdout, re.MULTILINE))


def _image_exists(reference: str, env: dict[str, str]) -> bool:
    return _run(["docker", "image", "inspect", reference], env).returncode == 0


def find(root: Path, base_env: dict[str, str], log) -> Engine:
    """The engine to use, set up when this machine can have one; kind 'none' otherwise.

    Order: whatever `docker info` reaches already (DOCKER_HOST or the default socket); then,
    on Linux, podman's API service through scripts/container-engine.sh (it installs podman
    when run as root, and re-uses a running service); else none.
    """
    env = dict(base_env)
    extra: dict[str, str] = {}
    if not answers(env):
        can_set_up = sys.platform.startswith("linux") and (
            PODMAN_SOCKET.exists() or shutil.which("podman") or os.geteuid() == 0
        )
        if not can_set_up:
            return Engine("none", note="no container engine answers `docker info`")
        extra = _set_up_podman(root, env, log)
        env.update(extra)
        if not extra or not answers(env):
            return Engine("none", note="no container engine: scripts/container-engine.sh could not start one")
    kind = "podman" if _is_podman(env) else "docker"
    if env.get("BASE_IMAGE"):
        extra["BASE_IMAGE"] = env["BASE_IMAGE"]
    elif kind == "podman":
        # podman here reaches no registry: build on the Debian-based image (skipped when it exists).
        if not _image_exists(LOCAL_BASE_IMAGE, env):
            log(f"building {LOCAL_BASE_IMAGE} with scripts/base-image.sh (about a minute, once)")
            built = _run(
                ["bash", str(root / "scripts" / "base-image.sh")],
                {**env, "BASE_IMAGE": LOCAL_BASE_IMAGE},
                timeout=1800,
            )
            log(built.stderr.strip())
            if built.returncode != 0:
                return Engine("none", note=f"podman answers but {LOCAL_BASE_IMAGE} could not be built")
        extra["BASE_IMAGE"] = LOCAL_BASE_IMAGE
    where = env.get("DOCKER_HOST") or "the default socket"
    base = extra.get("BASE_IMAGE") or "the Dockerfile's default base image"
    return Engine(kind, extra, f"{kind} through {where}, base image {base}")
