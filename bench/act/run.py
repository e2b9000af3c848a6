"""The pull-request pipeline under act: time to green, cold then warm, next to plain make.

Why: `make ci` runs `.github/workflows/pr.yml` locally with act, so a contributor sees the
PR's checks before pushing. What that costs is act's per-job overhead (a fresh copy of the
tree and a fresh `make install` per job, jobs ordered by `needs`) on top of the work itself.
The baseline is the same work without act: the make targets the jobs call, run in order
in the already installed project (lint, test, data, validate, train, register, image,
image-test, pr-comment). Both run in one go on one machine, so the ratio is comparable.

Each way runs twice, in the order direct, act, act, direct: "cold" is each one's first run
on the project (first image build, first imports), "warm" the second. Both act runs must end
green; a red run is reported and the benchmark exits 1.

Usage:
    python bench/act/run.py [--project DIR]
--project is a generated project with `.venv`, a trained model and a git commit (the
benchmark runner `bench/run_all.py` shares one); without it the template's defaults are
baked into build/bench/act/ and installed there. Needs a Docker-API engine for the image
job (scripts/container-engine.sh provides one where Docker is missing).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import demo_engine  # the engine finder `make demo` uses (scripts/demo_engine.py)

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "build" / "bench" / "act"

JOB_END = re.compile(
    r"^\[(?P<workflow>[^/\]]+)/(?P<job>[^\]]+?)\s*\]\s+🏁\s+Job (?P<outcome>succeeded|failed)", re.M
)
# What pr.yml's jobs run, in their order, without act: the baseline.
DIRECT_TARGETS = (
    "lint",
    "test",
    "data",
    "validate",
    "train",
    "register",
    "image",
    "image-test",
    "pr-comment",
)
# The caller's variables that would steer the project's targets elsewhere (a real GitHub token above all).
DROPPED = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "VIRTUAL_ENV", "CAPTURE_URI", "IMAGE", "TAG")


def environment(engine_env: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DROPPED and not k.startswith("GITHUB_")}
    env.update(engine_env)
    env["GX_ANALYTICS_ENABLED"] = "false"
    env.setdefault("ACT_MODE", "self-hosted")
    uv = env.get("UV") or shutil.which("uv") or str(ROOT / ".venv" / "bin" / "uv")
    env["UV"] = uv
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env['PATH']}"
    return env


def timed(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> tuple[float, int, str]:
    """(seconds, exit code, output); the output also goes to log."""
    print(f"==> {' '.join(command)}  (log: {log})", flush=True)
    started = time.perf_counter()
    with log.open("w") as handle:
        code = subprocess.run(command, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - started
    print(f"    exit {code} in {seconds:.0f} s", flush=True)
    return seconds, code, log.read_text(errors="replace")


def baked_project(project: str | None, env: dict[str, str]) -> Path:
    if project:
        path = Path(project).resolve()
        if not (path / ".venv" / "bin" / "python").exists() or not (path / ".git").is_dir():
            raise SystemExit(f"bench/act: {path} needs a .venv (`make install`) and a git repository")
        return path
    out = WORK / "bake"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cookiecutter = ROOT / ".venv" / "bin" / "cookiecutter"
    subprocess.run([str(cookiecutter), "--no-input", "-o", str(out), str(ROOT), "git_init=yes"], check=True)
    path = next(out.iterdir())
    subprocess.run(["make", "install"], cwd=path, env=env, check=True)
    return path


def direct_run(project: Path, env: dict[str, str], label: str) -> dict:
    seconds, code, _ = timed(["make", *DIRECT_TARGETS], project, env, WORK / f"direct-{label}.log")
    if code != 0:
        raise SystemExit(f"bench/act: the direct make targets failed (log: {WORK / f'direct-{label}.log'})")
    return {"seconds": round(seconds, 1)}


def act_run(project: Path, env: dict[str, str], label: str) -> dict:
    seconds, code, output = timed(["make", "ci"], project, env, WORK / f"ci-{label}.log")
    jobs = {match["job"].strip(): match["outcome"] for match in JOB_END.finditer(output)}
    green = code == 0 and bool(jobs) and all(outcome == "succeeded" for outcome in jobs.values())
    return {"seconds": round(seconds, 1), "green": green, "jobs": jobs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--project", help="a generated project with .venv and a git commit (default: bake one)"
    )
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    engine = demo_engine.find(ROOT, dict(os.environ), lambda text: print(text, file=sys.stderr))
    if not engine.available:
        raise SystemExit(f"bench/act: pr.yml's image job needs a container engine: {engine.note}")
    env = environment(engine.env)
    project = baked_project(args.project, env)
    print(f"bench/act on {project} ({engine.note}; act mode {env['ACT_MODE']})", flush=True)

    # Cold, then warm, each way: the direct targets first (the first image build and first
    # imports happen here), act's first run, act's second run, then the direct targets again.
    # The headline compares warm with warm; cold with cold is printed next to it.
    direct_env = {**env, "PYTEST_ADDOPTS": ""}
    result: dict = {"project": str(project), "engine": engine.note, "targets": list(DIRECT_TARGETS)}
    result["direct_cold"] = direct_run(project, direct_env, "cold")
    result["act_cold"] = act_run(project, env, "cold")
    result["act_warm"] = act_run(project, env, "warm")
    result["direct_warm"] = direct_run(project, direct_env, "warm")
    (WORK / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print("\n| run | cold s | warm s | green |\n|---|---:|---:|---|")
    print(
        f"| make {' '.join(DIRECT_TARGETS)} (no act) | {result['direct_cold']['seconds']:.0f} | "
        f"{result['direct_warm']['seconds']:.0f} | yes |"
    )
    green = result["act_cold"]["green"] and result["act_warm"]["green"]
    jobs = "yes" if green else f"NO: {result['act_cold']['jobs']} / {result['act_warm']['jobs']}"
    cold, warm = result["act_cold"]["seconds"], result["act_warm"]["seconds"]
    print(f"| make ci (act) | {cold:.0f} | {warm:.0f} | {jobs} |")
    return 0 if green else 1


if __name__ == "__main__":
    sys.exit(main())
