"""act runs the generated workflows green on a baked default project, offline.

`make ci` runs every job of pr.yml (lint + tests, data validation, training with its gates,
candidate vs champion, the image build and its test, the PR comment, the final gate);
`make ci-drift` runs drift.yml on a capture folder with injected drift and must end with a
retraining pull request opened against a stand-in of GitHub's REST API; post-deploy.yml, on a
live window that shifted from the production model's shadow phase, opens one rollback pull request.

Jobs run on this machine (act's self-hosted mode); the image job needs a Docker-API engine,
which scripts/container-engine.sh provides where no Docker daemon runs (podman's socket),
with a base image built from Debian packages because no registry can be reached.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, project_env
from cookiecutter.main import cookiecutter

pytestmark = pytest.mark.slow

JOB_END = re.compile(
    r"^\[(?P<workflow>[^/\]]+)/(?P<job>[^\]]+?)\s*\]\s+🏁\s+Job (?P<outcome>succeeded|failed)", re.M
)


def act_env(extra: dict[str, str]) -> dict[str, str]:
    """A baked project's environment for act, whose jobs run on this machine (self-hosted mode)."""
    return project_env(ACT_MODE="self-hosted", **extra)


def bake_installed(output: Path) -> Path:
    """The defaults baked into `output` as a git repository, `make install` done; the project."""
    baked = Path(
        cookiecutter(str(ROOT), no_input=True, output_dir=str(output), extra_context={"git_init": "yes"})
    )
    installed = subprocess.run(
        ["make", "install"], cwd=baked, env=act_env({}), capture_output=True, text=True
    )
    assert installed.returncode == 0, installed.stderr
    return baked


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bake_installed(tmp_path_factory.mktemp("act"))


def run_make(project: Path, target: str, env: dict[str, str], log: Path) -> tuple[int, str]:
    """Run a make target with its output in a log file (act prints a lot); returns (code, log)."""
    with log.open("w") as handle:
        code = subprocess.run(
            ["make", target], cwd=project, env=env, stdout=handle, stderr=subprocess.STDOUT, timeout=3000
        ).returncode
    return code, log.read_text()


def job_outcomes(log: str) -> dict[str, str]:
    return {match["job"].strip(): match["outcome"] for match in JOB_END.finditer(log)}


def load_jobs(project: Path) -> dict:
    return yaml.safe_load((project / ".github" / "workflows" / "pr.yml").read_text())["jobs"]


def job_names(workflow: Path) -> set[str]:
    jobs = yaml.safe_load(workflow.read_text())["jobs"]
    return {job.get("name", job_id) for job_id, job in jobs.items()}


def failure_report(log: str, outcomes: dict[str, str], lines: int = 60) -> str:
    """The last lines of each failed job (act interleaves jobs), else the end of the log."""
    failed = [job for job, outcome in outcomes.items() if outcome != "succeeded"]
    if not failed:
        return "\n".join(log.splitlines()[-lines:])
    parts = []
    for job in failed:
        own = [line for line in log.splitlines() if re.match(rf"^\[[^/\]]+/{re.escape(job)}\s*\]", line)]
        parts.append(f"--- {job} ---\n" + "\n".join(own[-lines:]))
    return "\n".join(parts)


def test_make_ci_runs_every_pull_request_job_green(project, engine, tmp_path):
    code, log = run_make(project, "ci", act_env(engine), tmp_path / "ci.log")
    outcomes = job_outcomes(log)
    failed = sorted(job for job, outcome in outcomes.items() if outcome != "succeeded")
    assert code == 0 and not failed, f"failed jobs: {failed}\n{failure_report(log, outcomes)}"
    assert set(outcomes) == job_names(project / ".github" / "workflows" / "pr.yml")
    artifacts = project / "reports" / "act" / "pr"
    assert any((artifacts / "data-docs").rglob("*.html")), "the Data Docs artifact is missing"
    comment = (artifacts / "pr-comment" / "pr-comment.md").read_text()
    assert "❌" not in comment and "### Metrics" in comment, comment
    # The lint-test job is the default combination's `make lint test` (test_baked_projects skips it).
    # (pytest colours its summary: "\x1b[32m814 passed" has no word boundary before the count)
    assert re.search(r"\d+ passed\b", log), "the project's own tests did not run in the lint-test job"


CAPTURE_SCRIPT = """
import sys
from pathlib import Path
from governance.core.contract import load
from tests.support.drift import example, fake_scores, inject, write_capture

contract = load()
frame = inject(example(3000, seed=7))
write_capture(Path(sys.argv[1]), frame, contract, fake_scores(frame, contract))
"""


def project_python(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(project / ".venv" / "bin" / "python"), *args], cwd=project, capture_output=True, text=True
    )


def git(project: Path, *args: str) -> None:
    identity = ["-c", "user.name=test", "-c", "user.email=test@example.com"]
    done = subprocess.run(["git", *identity, *args], cwd=project, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def registered(project, tmp_path_factory) -> tuple[str, Path]:
    """A registered model committed to git, and a bare `origin` that plays GitHub's git side."""
    trained = subprocess.run(
        ["make", "data", "train", "register"],
        cwd=project,
        env=act_env({}),
        capture_output=True,
        text=True,
    )
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    git(project, "add", "governance")
    git(project, "commit", "--quiet", "--message", "Register the first model")
    origin = tmp_path_factory.mktemp("remote") / "origin.git"
    git(project, "init", "--quiet", "--bare", str(origin))
    git(project, "remote", "add", "origin", str(origin))
    git(project, "push", "--quiet", "origin", "main")
    version = (project / "artifacts" / "models" / "latest").read_text().strip()
    return version, origin


@pytest.fixture
def github_stand_in(project, registered, tmp_path):
    """The project's fake GitHub REST API on loopback, for the length of one test."""
    _, origin = registered
    state = tmp_path / "github-state.json"
    options = ["--repository", "acme/model", "--state", str(state), "--git-dir", str(origin)]
    server = subprocess.Popen(
        [str(project / ".venv" / "bin" / "python"), "-m", "tests.support.github_standin", *options],
        cwd=project,
        stdout=subprocess.PIPE,
        text=True,
    )
    url = server.stdout.readline().strip()
    assert url.startswith("http://127.0.0.1:"), url
    yield {"GITHUB_API_URL": url, "GITHUB_REPOSITORY": "acme/model", "GITHUB_TOKEN": "stand-in-token"}, state
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=10)


def open_pulls(state: Path) -> list[dict]:
    return [pull for pull in json.loads(state.read_text())["pulls"] if pull["state"] == "open"]


def test_make_ci_drift_opens_a_retraining_pr_on_drifted_capture(
    project, registered, github_stand_in, tmp_path
):
    _, origin = registered
    api, state = github_stand_in
    capture = tmp_path / "capture"
    written = project_python(project, "-c", CAPTURE_SCRIPT, str(capture))
    assert written.returncode == 0, written.stderr
    env = act_env({**api, "CAPTURE_URI": str(capture)})
    code, log = run_make(project, "ci-drift", env, tmp_path / "drift.log")
    outcomes = job_outcomes(log)
    assert code == 0 and set(outcomes.values()) == {"succeeded"}, failure_report(log, outcomes)
    assert set(outcomes) == job_names(project / ".github" / "workflows" / "drift.yml")
    (pull,) = open_pulls(state)
    pushed = subprocess.run(
        ["git", "--git-dir", str(origin), "rev-parse", "--verify", f"refs/heads/{pull['head']}"],
        capture_output=True,
    )
    assert pushed.returncode == 0, f"the PR's branch {pull['head']} was not pushed"
    # A run that acted (a retraining PR) needs no person: the alert job opens no issue.
    assert "alert: nothing to report" in log and json.loads(state.read_text())["issues"] == []


STAGE_SCRIPT = """
import sys
from governance import registry
from governance.core.paths import PATHS
registry.update(sys.argv[1], {"image": {"digest": "sha256:" + "ab" * 32}}, PATHS.registry)
registry.set_stage(sys.argv[1], "staging", PATHS.registry)
"""


def promote(project: Path, version: str, api: dict[str, str], log_path: Path) -> None:
    """promote.yml through act, as the workflow_dispatch a release manager starts; it must succeed."""
    runner = [str(project / ".venv" / "bin" / "python"), ".github/act/run_act.py"]
    with log_path.open("w") as log_file:
        code = subprocess.run(
            [*runner, "workflow_dispatch", ".github/workflows/promote.yml", "--input", f"version={version}"],
            cwd=project,
            env=act_env(api),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            timeout=900,
        ).returncode
    log = log_path.read_text()
    outcomes = job_outcomes(log)
    assert code == 0 and set(outcomes.values()) == {"succeeded"}, failure_report(log, outcomes)


def test_promote_workflow_opens_the_production_gitops_pr_and_a_rerun_changes_nothing(
    project, registered, github_stand_in, tmp_path
):
    version, origin = registered
    api, state = github_stand_in
    staged = project_python(project, "-c", STAGE_SCRIPT, version)
    assert staged.returncode == 0, staged.stderr
    git(project, "commit", "--quiet", "--all", "--message", f"Deploy {version} to staging")
    promote(project, version, api, tmp_path / "promote.log")
    (pull,) = open_pulls(state)
    assert pull["head"] == "gitops/production" and pull["title"] == f"Promote {version} to production"
    branch = json.loads(state.read_text())["branches"]["gitops/production"]
    assert {"governance/registry.yaml", "deploy/overlays/production/kustomization.yaml"} <= set(branch)

    def ahead() -> int:
        """Commits the GitOps branch holds over main: one per update, never a pile of them."""
        count = subprocess.run(
            ["git", "--git-dir", str(origin), "rev-list", "--count", "main..refs/heads/gitops/production"],
            capture_output=True,
            text=True,
            check=True,
        )
        return int(count.stdout)

    comments = json.loads(state.read_text()).get("comments", {})
    assert ahead() == 1
    promote(project, version, api, tmp_path / "promote-again.log")  # a re-run, as a retried job would
    (again,) = open_pulls(state)
    assert again["number"] == pull["number"], "a re-run must not open a second pull request"
    assert ahead() == 1, "a re-run replaces the branch's one commit, it does not stack another"
    assert json.loads(state.read_text())["branches"]["gitops/production"] == branch
    assert json.loads(state.read_text()).get("comments", {}) == comments, "nor add a comment"


def test_a_candidate_that_fails_a_gate_turns_the_required_check_red(project, engine, tmp_path):
    """Gates that gate: a policy the candidate cannot meet fails training, and so the one required
    check (`all-green`), while the data checks, which do not read the model policy, stay green."""
    policy_path = project / "governance" / "policy.yaml"
    original = policy_path.read_text()
    policy = yaml.safe_load(original)
    policy["model"]["min_primary_metric"] = 0.999
    policy_path.write_text(yaml.safe_dump(policy, sort_keys=False))
    try:  # the lint-test job is not what this checks: one module of it (the whole suite ran above)
        env = act_env({**engine, "PYTEST_ADDOPTS": "tests/test_project_shape.py"})
        code, log = run_make(project, "ci", env, tmp_path / "ci-red.log")
    finally:
        policy_path.write_text(original)
    outcomes = job_outcomes(log)
    names = {job_id: job.get("name", job_id) for job_id, job in load_jobs(project).items()}
    assert code != 0, "make ci must fail when a gate fails"
    assert outcomes[names["train"]] == "failed", outcomes
    assert outcomes[names["all-green"]] == "failed", outcomes
    assert outcomes[names["data"]] == "succeeded", outcomes  # the data checks do not read the model policy
    assert "FAIL primary_metric" in log


# --- post-deploy.yml: a breached live window opens the rollback pull request, once --------------

PROMOTED_SCRIPT = """
import sys
from datetime import timedelta
from pathlib import Path

from governance import gitops, registry
from governance.core.contract import load
from governance.core.paths import PATHS
from governance.core.records import ImageRef, Registry
from tests.support.drift import START, ToyModel, example, registry_entry, write_capture
from tests.support.shadow import write_shadow

contract = load()
promoted = START + timedelta(days=3)
old, new = "sha256:" + "a" * 64, "sha256:" + "b" * 64
entries = (
    registry_entry("v1", stage="archived").model_copy(
        update={"image": ImageRef(digest=old), "promoted_at": "2024-01-01T00:00:00Z"}
    ),
    registry_entry("v2", stage="production").model_copy(
        update={"image": ImageRef(digest=new), "promoted_at": promoted.isoformat()}
    ),
)
registry.save(Registry(version=1, models=entries), PATHS.registry)
gitops.pin_digest(PATHS.overlays / "production", new)
v1, v2 = ToyModel(contract, example(4000, seed=0)), ToyModel(contract, example(4000, seed=1))
capture = Path(sys.argv[1])
before = example(1000, seed=3)
write_capture(capture, before, contract, v1.scores(before), model_version="v1", stream="old")
write_shadow(capture, before, contract, v2.scores(before), version="v2", stream="old")
after = example(1000, seed=4, covariate_drift=1.0)
write_capture(capture, after, contract, v2.scores(after), model_version="v2", start=promoted, stream="new")
"""


@pytest.fixture(scope="module")
def promoted(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(project, capture, origin): v2 replaced v1 in production and answers live rows that shifted
    away from its shadow phase; committed and pushed to a bare `origin` (GitHub's git side)."""
    output = tmp_path_factory.mktemp("post-deploy")
    project = bake_installed(output)
    capture = output / "capture"
    written = project_python(project, "-c", PROMOTED_SCRIPT, str(capture))
    assert written.returncode == 0, written.stderr
    git(project, "add", "governance", "deploy")
    git(project, "commit", "--quiet", "--message", "Promote v2")
    origin = output / "origin.git"
    git(project, "init", "--quiet", "--bare", str(origin))
    git(project, "remote", "add", "origin", str(origin))
    git(project, "push", "--quiet", "origin", "main")
    return project, capture, origin


def test_post_deploy_opens_one_rollback_pr_restoring_the_previous_digest(promoted, tmp_path):
    project, capture, origin = promoted
    state = tmp_path / "github-state.json"
    options = ["--repository", "acme/model", "--state", str(state), "--git-dir", str(origin)]
    server = subprocess.Popen(
        [str(project / ".venv" / "bin" / "python"), "-m", "tests.support.github_standin", *options],
        cwd=project,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = server.stdout.readline().strip()
        api = {"GITHUB_API_URL": url, "GITHUB_REPOSITORY": "acme/model", "GITHUB_TOKEN": "stand-in-token"}
        runner = [str(project / ".venv" / "bin" / "python"), ".github/act/run_act.py"]
        for run in range(2):  # the schedule fires again before anyone merged the first PR
            log_path = tmp_path / f"post-deploy-{run}.log"
            with log_path.open("w") as log_file:
                subprocess.run(
                    [*runner, "schedule", ".github/workflows/post-deploy.yml"],
                    cwd=project,
                    env=act_env({**api, "CAPTURE_URI": str(capture)}),
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    timeout=900,
                )
            log = log_path.read_text()
            outcomes = job_outcomes(log)
            # the check fails on a breach (that is the alert); the bot job runs after it and succeeds
            assert outcomes == {"live window vs shadow phase": "failed", "rollback PR": "succeeded"}, (
                failure_report(log, outcomes)
            )
            assert "score_shift" in log and "breaks promotion.max_score_distance" in log
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)
    (pull,) = open_pulls(state)
    assert pull["head"] == "rollback/production" and pull["title"] == "Roll production back from v2 to v1"
    branch_overlay = "rollback/production:deploy/overlays/production/kustomization.yaml"
    overlay = subprocess.run(
        ["git", "--git-dir", str(origin), "show", branch_overlay], capture_output=True, text=True
    ).stdout
    assert yaml.safe_load(overlay)["images"][0]["digest"] == "sha256:" + "a" * 64
