"""Image size: the onnxruntime serving image beside a scikit-learn-based one, built the same way.

Why: serving an ONNX export instead of the scikit-learn pipeline is meant to keep the image
small (and fast); this measures by how much, on one machine, in one run. The onnxruntime
image is the generated project's own (`make image`); the baseline swaps onnxruntime for
scikit-learn + pandas + joblib (the plain way to serve a pickled pipeline) and is built by
bench/image/Dockerfile.sklearn with the same base image, the same hashed-wheelhouse venv
and the same generic trims. App code and model weigh well under 1 MB in either image.

Usage (needs a Docker API engine: Docker, or `eval "$(scripts/container-engine.sh)"`):
    python bench/image/run.py [--base-image localhost/python-base:3.11] [--project DIR]
Without --project it bakes the template's defaults into build/bench/image/ and runs
`make install data train` there to get a model.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "build" / "bench" / "image"
HERE = Path(__file__).resolve().parent
PIP_DOWNLOADER = "pip==26.3"  # the same pinned downloader as the project's `make wheelhouse`
SERVING_RUNTIME = "onnxruntime"
PLAIN_WAY = ["scikit-learn", "pandas", "joblib"]
ONNX_TAG = "localhost/bench-image-onnxruntime:bench"
BASELINE_TAG = "localhost/bench-image-sklearn:bench"


def run(
    command: list[str], cwd: Path | None = None, env: dict[str, str] | None = None, quiet: bool = False
) -> str:
    """Run one step, say what it is and how long it took; stop the benchmark if it fails."""
    print(f"==> {' '.join(command)}", flush=True)
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, text=True, capture_output=quiet)
    if result.returncode != 0:
        if quiet:
            print(result.stdout[-3000:], result.stderr[-3000:], sep="\n", file=sys.stderr)
        raise SystemExit(f"bench/image: step failed ({result.returncode}): {' '.join(command)}")
    print(f"    ({time.perf_counter() - started:.0f} s)", flush=True)
    return result.stdout if quiet else ""


def uv() -> str:
    found = os.environ.get("UV") or shutil.which("uv") or str(ROOT / ".venv" / "bin" / "uv")
    if not Path(found).exists() and not shutil.which(found):
        raise SystemExit("bench/image: uv not found: run `make install` in the template first")
    return found


def baked_project(project: str | None) -> Path:
    """A generated project with a trained model: the one given, or a fresh bake of the defaults."""
    if project:
        path = Path(project).resolve()
        if not (path / "artifacts" / "models" / "latest").exists():
            raise SystemExit(f"bench/image: {path} has no model: run make data train there first")
        return path
    out = WORK / "bake"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cookiecutter = ROOT / ".venv" / "bin" / "cookiecutter"
    run([str(cookiecutter), "--no-input", "-o", str(out), str(ROOT), "git_init=no"])
    path = next(out.iterdir())
    run(["make", "install", "data", "train"], cwd=path, env={**os.environ, "UV": uv()})
    return path


def image_size_mb(docker: str, reference: str) -> float:
    found = subprocess.run([docker, "image", "inspect", reference], capture_output=True, text=True)
    if found.returncode != 0:
        raise SystemExit(f"bench/image: image {reference} not found")
    return json.loads(found.stdout)[0]["Size"] / 1e6


def baseline_requirements(project: Path, python_version: str) -> Path:
    """The serving dependencies with onnxruntime swapped for scikit-learn + pandas + joblib.

    Resolved with the project's own lock as constraints, so both images share every version.
    """
    metadata = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    wanted = [*metadata["dependencies"], *metadata["optional-dependencies"]["serve"]]
    wanted = [spec for spec in wanted if not spec.startswith(SERVING_RUNTIME)] + PLAIN_WAY
    out = WORK / "sklearn" / "requirements.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    (WORK / "sklearn" / "requirements.in").write_text("\n".join(wanted) + "\n")
    machine = platform.machine().replace("arm64", "aarch64")
    run(
        [
            uv(), "pip", "compile", str(WORK / "sklearn" / "requirements.in"),
            "-c", str(project / "requirements" / "dev.txt"),
            "--python-version", python_version, "--python-platform", f"{machine}-manylinux_2_28",
            "--generate-hashes", "--quiet", "-o", str(out),
        ]
    )  # fmt: skip
    return out


def download_wheels(requirements: Path, dest: Path, python_version: str) -> None:
    """The project's `make wheelhouse` step, for another requirements file."""
    machine = platform.machine().replace("arm64", "aarch64")
    platforms = [f"manylinux_2_{glibc}_{machine}" for glibc in (28, 27, 26, 25, 24, 17)]
    platforms.append(f"manylinux2014_{machine}")
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    command = [
        uv(), "tool", "run", "--quiet", "--from", PIP_DOWNLOADER, "pip", "download", "--quiet",
        "--disable-pip-version-check", "--require-hashes", "--no-deps", "--only-binary=:all:",
        "--implementation", "cp", "--python-version", python_version, "--dest", str(dest),
        "-r", str(requirements),
    ]  # fmt: skip
    for tag in platforms:
        command += ["--platform", tag]
    run(command, quiet=True)


def report(sizes: dict[str, float], base: str, docker: str) -> None:
    """Print the sizes, what each adds over the base, and the ratios; keep them as JSON."""
    base_mb, onnx_mb, sklearn_mb = sizes.values()
    print(f"\nImage sizes on {base} ({platform.machine()}, `{docker}` engine; MB = 10^6 bytes):")
    for name, size in sizes.items():
        added = f"  (+{size - base_mb:.0f} over the base)" if size != base_mb else ""
        print(f"  {name:<42} {size:6.0f} MB{added}")
    print(
        f"  ratio baseline / onnxruntime: {sklearn_mb / onnx_mb:.2f}x the image, "
        f"{(sklearn_mb - base_mb) / (onnx_mb - base_mb):.2f}x what each adds to the base"
    )
    result = {"base_image": base, "machine": platform.machine(), "sizes_mb": sizes}
    (WORK / "result.json").write_text(json.dumps(result, indent=2) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", help="a generated project with a trained model (default: bake one)")
    parser.add_argument("--base-image", default=os.environ.get("BASE_IMAGE", ""), help="base image for both")
    parser.add_argument("--docker", default=os.environ.get("DOCKER", "docker"))
    args = parser.parse_args()

    project = baked_project(args.project)
    python_version = (project / ".python-version").read_text().split()[0]
    base = args.base_image or f"python:{python_version}-slim"

    image, tag = ONNX_TAG.rsplit(":", 1)
    make_image = ["make", "image", f"IMAGE={image}", f"TAG={tag}", f"DOCKER={args.docker}"]
    run([*make_image, f"BASE_IMAGE={args.base_image}"] if args.base_image else make_image, cwd=project)

    requirements = baseline_requirements(project, python_version)
    context = requirements.parent
    download_wheels(requirements, context / "wheelhouse", python_version)
    shutil.copy(HERE / "Dockerfile.sklearn", context / "Dockerfile")
    build = [args.docker, "build", "--quiet", "--tag", BASELINE_TAG, "--build-arg", f"BASE_IMAGE={base}"]
    run([*build, str(context)])

    sizes = {
        "base image": image_size_mb(args.docker, base),
        "onnxruntime serving image (make image)": image_size_mb(args.docker, ONNX_TAG),
        "scikit-learn + pandas + joblib baseline": image_size_mb(args.docker, BASELINE_TAG),
    }
    report(sizes, base, args.docker)
    return 0


if __name__ == "__main__":
    sys.exit(main())
