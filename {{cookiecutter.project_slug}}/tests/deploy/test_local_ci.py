"""The workflows are valid and hardened, and `make ci` can run them offline with act.

These checks run in the project's own test suite so that an edit to a workflow (or a new
action) is caught here, before a push: GitHub's schema, zizmor, SHA pins, a committed
stand-in for every remote action, and the act runner's command line.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from governance.core.paths import PATHS

ROOT = PATHS.root
BIN = Path(sys.executable).parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
ACTIONS = sorted((ROOT / ".github").glob("**/action.yml"))
STAND_INS = ROOT / ".github" / "act" / "actions" / "actions"


def load_runner():
    spec = importlib.util.spec_from_file_location("run_act", ROOT / ".github" / "act" / "run_act.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


run_act = load_runner()


def test_workflows_match_githubs_schema():
    result = subprocess.run(
        [BIN / "check-jsonschema", "--builtin-schema", "vendor.github-workflows", *WORKFLOWS],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_finds_nothing():
    result = subprocess.run(
        [BIN / "zizmor", "--offline", "--format", "json", "--no-progress", ROOT / ".github"],
        capture_output=True,
        text=True,
    )
    findings = json.loads(result.stdout or "[]")
    assert result.returncode == 0 and findings == [], [f"{f['ident']}: {f['desc']}" for f in findings]


def test_every_remote_action_is_pinned_and_has_a_stand_in():
    actions = run_act.remote_actions([*WORKFLOWS, *ACTIONS], ROOT)
    assert {action.repository for action in actions} >= {"actions/upload-artifact", "actions/setup-python"}
    for action in actions:
        assert re.fullmatch(r"[0-9a-f]{40}", action.ref), f"{action.source}: pin {action.repository} to a SHA"
        assert (action.stand_in / "action.yml").is_file(), (
            f"{action.source}: no stand-in for {action.repository}"
        )


def test_a_new_remote_action_without_a_stand_in_is_named(tmp_path):
    workflow = tmp_path / "new.yml"
    workflow.write_text("    steps:\n      - uses: example/new-action@" + "c" * 40 + " # v1.2.3\n")
    with pytest.raises(run_act.ActSetupError, match="example/new-action"):
        run_act.local_repository_flags(run_act.remote_actions([workflow], tmp_path))


def command(environ: dict[str, str], event: str = "pull_request", workflow: str = ".github/workflows/pr.yml"):
    args = run_act.argparse.Namespace(event=event, workflow=workflow, job=None, input=None)
    environ = {"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **environ}
    return run_act.build_command(args, ROOT, environ)[0]


def test_self_hosted_mode_runs_jobs_on_this_machine():
    line = command({"ACT_MODE": "self-hosted"})
    assert line[line.index("-P") + 1] == "ubuntu-latest=-self-hosted"
    assert "--container-options" not in line
    assert line[line.index("--eventpath") + 1].endswith("pull_request.json")


def engine(monkeypatch, *, answers: bool, images: tuple[str, ...] = ()) -> None:
    """This machine's container engine as the runner sees it: whether it answers, which images it has."""

    def docker_succeeds(*args: str, timeout: float = 20) -> bool:
        if args == ("info",):
            return answers
        return answers and args[:2] == ("image", "inspect") and args[2] in images

    monkeypatch.setattr(run_act, "docker_succeeds", docker_succeeds)


def test_container_mode_shares_the_artifact_folder_with_the_jobs(monkeypatch):
    engine(monkeypatch, answers=True, images=("localhost/runner:1",))
    line = command({"ACT_MODE": "container", "ACT_IMAGE": "localhost/runner:1"})
    assert line[line.index("-P") + 1] == "ubuntu-latest=localhost/runner:1"
    assert "--pull=false" in line
    volume = line[line.index("--container-options") + 1]
    assert volume.startswith("--volume ") and "reports/act/pr" in volume


def test_the_token_is_passed_by_name_and_capture_as_an_absolute_variable():
    line = command(
        {"ACT_MODE": "self-hosted", "GITHUB_TOKEN": "secret-value", "CAPTURE_URI": "artifacts/capture"}
    )
    assert "secret-value" not in " ".join(line)
    assert line[line.index("--secret") + 1] == "GITHUB_TOKEN"
    capture = line[line.index("--var") + 1]
    assert capture == f"CAPTURE_URI={(Path.cwd() / 'artifacts' / 'capture').resolve()}"


def test_batch_scoring_reaches_cd_yml_as_the_repository_variable_only_when_set():
    line = command({"ACT_MODE": "self-hosted", "BATCH_SCORING": "true"})
    assert line[line.index("--var") + 1] == "BATCH_SCORING=true"
    assert "--var" not in command({"ACT_MODE": "self-hosted"})


def test_pytests_own_options_reach_the_jobs_only_when_set():
    line = command({"ACT_MODE": "self-hosted", "PYTEST_ADDOPTS": "-x tests/app"})
    assert "PYTEST_ADDOPTS=-x tests/app" in line
    assert not [part for part in command({"ACT_MODE": "self-hosted"}) if part.startswith("PYTEST_ADDOPTS")]


def test_an_engine_without_the_runner_image_runs_the_jobs_here_and_says_why(monkeypatch, capsys):
    engine(monkeypatch, answers=True, images=())
    line = command({"ACT_IMAGE": "example/runner:1"})
    assert line[line.index("-P") + 1] == "ubuntu-latest=-self-hosted"
    assert "runner image example/runner:1 is not on this machine" in capsys.readouterr().err


def test_container_mode_without_the_runner_image_says_how_to_get_it(monkeypatch):
    engine(monkeypatch, answers=True, images=())
    with pytest.raises(run_act.ActSetupError, match=r"docker pull example/runner:1"):
        command({"ACT_MODE": "container", "ACT_IMAGE": "example/runner:1"})


def test_container_mode_without_an_engine_is_refused(monkeypatch):
    engine(monkeypatch, answers=False)
    with pytest.raises(run_act.ActSetupError, match="none answers `docker info`"):
        command({"ACT_MODE": "container"})


def test_an_unknown_mode_is_refused_by_name():
    with pytest.raises(run_act.ActSetupError, match="ACT_MODE"):
        command({"ACT_MODE": "docker"})


def stand_in(kind: str, cwd: Path, store: Path, **inputs: str) -> subprocess.CompletedProcess:
    environ = {
        **os.environ,
        "ACT_ARTIFACTS_DIR": str(store),
        "GITHUB_OUTPUT": str(cwd / "output.txt"),
        **inputs,
    }
    script = STAND_INS / f"{kind}-artifact" / f"{kind}.py"
    return subprocess.run([sys.executable, script], cwd=cwd, env=environ, capture_output=True, text=True)


def test_artifact_stand_ins_hand_files_from_one_job_to_the_next(tmp_path):
    store, first, second = tmp_path / "store", tmp_path / "job1", tmp_path / "job2"
    (first / "artifacts" / "models" / "v1").mkdir(parents=True)
    (first / "artifacts" / "models" / "v1" / "model.onnx").write_bytes(b"onnx")
    (first / "reports").mkdir()
    (first / "reports" / "metrics.json").write_text("{}")
    second.mkdir()
    uploaded = stand_in(
        "upload", first, store, ARTIFACT_NAME="train-results", ARTIFACT_PATHS="artifacts/\nreports/"
    )
    assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
    downloaded = stand_in(
        "download", second, store, ARTIFACT_PATTERN="*-results", MERGE="true", DESTINATION="."
    )
    assert downloaded.returncode == 0, downloaded.stdout + downloaded.stderr
    assert (second / "artifacts" / "models" / "v1" / "model.onnx").read_bytes() == b"onnx"
    assert (second / "reports" / "metrics.json").is_file()


def test_a_missing_artifact_fails_the_download_and_an_empty_upload_can_fail(tmp_path):
    (tmp_path / "store").mkdir()
    missing = stand_in("download", tmp_path, tmp_path / "store", ARTIFACT_NAME="nothing-here")
    assert missing.returncode == 1 and "nothing-here" in missing.stdout
    empty = stand_in("upload", tmp_path, tmp_path / "store", ARTIFACT_PATHS="nope/", IF_NO_FILES="error")
    assert empty.returncode == 1 and "no files match" in empty.stdout


def test_a_push_run_names_the_checked_out_branch_as_github_would(tmp_path):
    """After a fast-forward merge two branches point at HEAD; act alone may pick the wrong one."""

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "--quiet", "--initial-branch=main")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "--allow-empty", "-m", "x")
    git("branch", "retrain/auto")  # same commit as main, and sorts before it
    event = run_act.push_event(tmp_path)
    assert json.loads(event.read_text()) == {"ref": "refs/heads/main"}
