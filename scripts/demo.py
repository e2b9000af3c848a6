"""`make demo`: scaffold the defaults into build/demo/ and run the project's lifecycle.

Each step is one make target of the generated project (the same ones CI and act call),
timed and reported; the run stops at the first failing step and says which one.
Run twice, it starts from a fresh bake each time, so no stale state carries over.
The image is built and tested when a container engine answers (podman's Docker API is set
up on machines without a daemon); otherwise the demo says it skipped packaging.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import demo_engine
from cookiecutter.main import cookiecutter

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "demo"


@dataclass
class Step:
    name: str
    seconds: float = 0.0
    ok: bool = False
    note: str = ""


def git(project: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=project, check=True, capture_output=True)


def scaffold() -> Path:
    """Bake the defaults and give the project a local bare repository as `origin`."""
    shutil.rmtree(BUILD, ignore_errors=True)
    BUILD.mkdir(parents=True)
    project = Path(cookiecutter(str(ROOT), no_input=True, output_dir=str(BUILD)))
    origin = BUILD / "origin.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(origin)], check=True)
    git(project, "remote", "add", "origin", str(origin))
    git(project, "push", "--quiet", "origin", "main")
    return project


def make(project: Path, target: str, extra_env: dict[str, str]) -> None:
    env = {**os.environ, "GX_ANALYTICS_ENABLED": "false", **extra_env}
    log = project.parent / f"{target}.log"
    with log.open("w") as handle:
        result = subprocess.run(
            ["make", target], cwd=project, env=env, stdout=handle, stderr=subprocess.STDOUT
        )
    if result.returncode != 0:
        tail = log.read_text().splitlines()[-25:]
        raise RuntimeError(f"make {target} failed (full log: {log}):\n" + "\n".join(tail))


LIFECYCLE = ("install", "lint", "test", "data", "validate", "train", "register")


def main() -> int:
    steps: list[Step] = []
    project: Path | None = None
    engine = demo_engine.find(ROOT, dict(os.environ), lambda line: print(f"      {line}", flush=True))
    packaging = ("image", "image-test") if engine.available else ()
    plan = [("scaffold", None), *((target, target) for target in (*LIFECYCLE, *packaging))]
    for index, (name, target) in enumerate(plan, start=1):
        step = Step(name)
        steps.append(step)
        print(f"[{index}/{len(plan)}] {name} ...", flush=True)
        started = time.perf_counter()
        try:
            if target is None:
                project = scaffold()
                step.note = str(project.relative_to(ROOT))
            else:
                assert project is not None
                make(project, target, engine.env)
            step.ok = True
        except Exception as error:  # report which step failed, then stop
            step.note = str(error)
        step.seconds = time.perf_counter() - started
        print(f"      {'ok' if step.ok else 'FAILED'} in {step.seconds:.1f}s", flush=True)
        if not step.ok:
            break
    print("\n| step | result | seconds | note |\n|---|---|---|---|")
    for step in steps:
        note = step.note.splitlines()[0] if step.note else ""
        print(f"| {step.name} | {'ok' if step.ok else 'FAILED'} | {step.seconds:.1f} | {note} |")
    failed = [step for step in steps if not step.ok]
    if failed:
        print(f"\n{failed[0].note}", file=sys.stderr)
        return 1
    print(f"\ncontainer engine: {engine.note}")
    if not engine.available:
        print("packaging skipped: no container engine; `make serve` runs the service as a process")
    print(f"Data Docs:   {project}/reports/data_docs/index.html")
    print(f"model cards: {project}/governance/model_cards/")
    print(f"\nThe project is at {project}. Try: cd {project} && make help")
    return 0


if __name__ == "__main__":
    sys.exit(main())
