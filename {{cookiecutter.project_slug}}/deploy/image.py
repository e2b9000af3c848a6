"""`make image` and `make image-batch`: stage a small build context and build an image with any
Docker-API engine.

The serving image's context holds only what deploy/Dockerfile copies: the service (app/), the
ground layer it imports (governance/core/), the policy and the data contract, the serving lock,
one model and (for offline builds) the wheelhouse. The batch image's (deploy/batch/Dockerfile)
holds governance/ and monitoring/, the contract, the batch lock, one model and its own
wheelhouse. Either is made world-readable, so the image runs under any uid even when the
checkout's umask is strict.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from governance.core.errors import InputError
from governance.core.paths import Paths
from governance.registry import git_commit

IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc")


def model_version(paths: Paths, requested: str = "latest") -> str:
    """The version folder a name points at: a version, `latest` (pointer file) or a link."""
    candidate = paths.models / requested
    if candidate.is_symlink():
        return candidate.resolve().name
    if candidate.is_file():
        return candidate.read_text().strip()
    return requested


DOCKERFILES = {"serve": Path("deploy") / "Dockerfile", "batch": Path("deploy") / "batch" / "Dockerfile"}


def stage_context(paths: Paths, version: str, wheelhouse: Path | None, kind: str = "serve") -> Path:
    model = paths.models / version / "model.onnx"
    if not model.is_file():
        raise InputError(f"no model at {paths.relative(model)}: run `make data train` first")
    context = paths.root / "build" / ("image" if kind == "serve" else f"image-{kind}") / "context"
    shutil.rmtree(context, ignore_errors=True)
    (context / "governance").mkdir(parents=True)
    (context / "data_pipelines").mkdir()
    shutil.copy2(paths.contract, context / "data_pipelines" / "contract.yaml")
    (context / "requirements").mkdir()
    if kind == "serve":
        shutil.copytree(paths.root / "app", context / "app", ignore=IGNORED)
        shutil.copy2(paths.root / "governance" / "__init__.py", context / "governance")
        shutil.copytree(paths.root / "governance" / "core", context / "governance" / "core", ignore=IGNORED)
        shutil.copy2(paths.policy, context / "governance" / "policy.yaml")
        shutil.copy2(paths.root / "requirements" / "serve.txt", context / "requirements")
        (context / "artifacts" / "models" / version).mkdir(parents=True)
        shutil.copy2(model, context / "artifacts" / "models" / version / "model.onnx")
    else:  # the batch image: the command line, the monitoring code and the model it scores with
        shutil.copytree(paths.root / "governance", context / "governance", ignore=IGNORED, dirs_exist_ok=True)
        shutil.copytree(paths.root / "monitoring", context / "monitoring", ignore=IGNORED)
        shutil.copy2(paths.root / "requirements" / "batch.txt", context / "requirements")
        (context / "model").mkdir()
        shutil.copy2(model, context / "model" / "model.onnx")
    if wheelhouse is not None:
        target = context / "build" / "wheelhouse"
        try:
            shutil.copytree(wheelhouse, target, copy_function=os.link)
        except OSError:
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(wheelhouse, target)
    for folder, _, files in os.walk(context):  # world-readable: the image may run under any uid
        os.chmod(folder, 0o755)  # noqa: S103
        for name in files:
            os.chmod(Path(folder) / name, 0o644)
    return context


def build(
    paths: Paths,
    *,
    image: str,
    tag: str,
    base_image: str = "",
    version: str = "latest",
    wheelhouse: Path | None = None,
    docker: str = "docker",
    kind: str = "serve",
    say=print,
) -> str:
    """Build image:tag (`kind`: serve or batch) from the staged context; returns the reference."""
    if kind not in DOCKERFILES:
        raise InputError(
            f"--kind: {kind!r} is not an image this project builds (one of {', '.join(DOCKERFILES)})"
        )
    chosen = model_version(paths, version)
    say(f"==> staging the {kind} image's build context (model {chosen})")
    context = stage_context(paths, chosen, wheelhouse, kind)
    reference = f"{image}:{tag}"
    say(f"==> {docker} build {reference}{f' on {base_image}' if base_image else ''}")
    started = time.monotonic()
    command = [docker, "build", "--file", str(paths.root / DOCKERFILES[kind]), "--tag", reference]
    if base_image:
        command += ["--build-arg", f"BASE_IMAGE={base_image}"]
    command += [
        "--build-arg",
        f"MODEL_VERSION={chosen}",
        "--build-arg",
        f"GIT_COMMIT={git_commit(paths.root)}",
        str(context),
    ]
    try:
        result = subprocess.run(command, check=False)  # noqa: S603 - argument list, no shell
    except FileNotFoundError:
        raise InputError(
            f"no container engine: `{docker}` is not on PATH (DOCKER=<client> names another one)"
        ) from None
    if result.returncode != 0:
        raise InputError(f"`{docker} build` failed with exit code {result.returncode} (its output is above)")
    say(f"==> built {reference} in {time.monotonic() - started:.0f} s")
    return reference
