"""The retraining pull request, against a local stand-in of GitHub's REST API and a bare git origin."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from data_pipelines import snapshot
from data_pipelines.example import example_contract, generate
from governance.core.paths import Paths
from governance.core.records import DriftSummary
from monitoring import retrain_pr
from monitoring.config import load_settings
from monitoring.retrain_pr import Git, RetrainPRError, make_plan, open_or_update, write_dry_run
from tests.support.drift import drift_summary, project_checkout
from tests.support.github_standin import FakeGitHub

OWNER, NAME, BRANCH = "acme", "loans", "retrain/auto"
TOKEN = "test-token-not-a-secret"  # noqa: S105 - what the stand-in API accepts
WRONG_TOKEN = "revoked-token"  # noqa: S105
REPOSITORY = f"{OWNER}/{NAME}"
CONTRACT = example_contract()


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A working clone whose `origin` is a local bare repository with a `main` branch."""
    origin, work = tmp_path / "origin.git", tmp_path / "work"
    git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(origin))
    git(tmp_path, "init", "--quiet", "--initial-branch=main", str(work))
    git(work, "config", "user.name", "Test")
    git(work, "config", "user.email", "test@example.com")
    (work / "README.md").write_text("project\n")
    git(work, "add", "README.md")
    git(work, "commit", "--quiet", "-m", "first")
    git(work, "remote", "add", "origin", str(origin))
    git(work, "push", "--quiet", "origin", "main")
    return work


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A snapshot root with two small snapshots, standing in for what `make drift` built."""
    root = tmp_path_factory.mktemp("snapshots")
    for seed in (1, 2):
        snapshot.create(generate(60, seed=seed), {"kind": "test", "seed": seed}, contract=CONTRACT, root=root)
    return root


def manifests(store: Path) -> list[dict[str, Any]]:
    """The two snapshots' manifests, in a fixed order (by seed)."""
    found = [json.loads(path.read_text()) for path in store.glob("*/manifest.json")]
    return sorted(found, key=lambda manifest: manifest["source"]["seed"])


def plan_for(store: Path, which: int = 0, max_data_mb: float = 50.0):
    return make_plan(
        drift_summary(manifests(store)[which]),
        BRANCH,
        None,
        "governance/retraining",
        None,
        "history.jsonl",
        snapshots_root=store,
        max_data_mb=max_data_mb,
    )


class Api(NamedTuple):
    """The stand-in of GitHub's API (its state is what the tests inspect) and where it listens."""

    fake: FakeGitHub
    url: str


@pytest.fixture
def github(repo: Path) -> Iterator[Api]:
    """The project's GitHub stand-in on loopback; its git side is the bare `origin` the bot pushes to."""
    fake = FakeGitHub(repository=REPOSITORY, git_dir=repo.parent / "origin.git", token=TOKEN)
    url, stop = fake.serve()
    yield Api(fake, url)
    stop()


def run_bot(github: Api, repo: Path, store: Path, token: str = TOKEN, which: int = 0, repository=REPOSITORY):
    return open_or_update(
        plan_for(store, which),
        Git(repo),
        github.url,
        repository,
        token,
        retries=3,
        backoff=0.01,
        throttle=False,
    )


def committed_bytes(origin: Path, path: str) -> bytes:
    return subprocess.run(
        ["git", "show", f"{BRANCH}:{path}"], cwd=origin, check=True, capture_output=True
    ).stdout


def test_it_opens_one_pull_request_then_updates_it_on_a_second_run(github, repo, store):
    first_id, second_id = (manifest["snapshot_id"] for manifest in manifests(store))
    first = run_bot(github, repo, store)
    assert first.action == "opened" and first.number == 1
    origin = repo.parent / "origin.git"
    assert git(origin, "rev-parse", BRANCH) == first.commit
    files = git(origin, "ls-tree", "-r", "--name-only", BRANCH).splitlines()
    assert "governance/retraining/request.json" in files and "README.md" in files
    request = json.loads(git(origin, "show", f"{BRANCH}:governance/retraining/request.json"))
    assert request["snapshot"]["snapshot_id"] == first_id
    assert request["data_file"] == "snapshot.parquet" and "window" in request["retraining_set"]

    second = run_bot(github, repo, store, which=1)
    assert second.action == "updated" and second.number == 1
    pulls = github.fake.pulls
    assert len(pulls) == 1, "a second run must not open a duplicate pull request"
    comments = github.fake.comments[1]
    assert len(comments) == 1 and second_id in comments[0]["body"]
    assert second_id in pulls[0]["body"] and first_id not in pulls[0]["body"]
    # the branch now carries the second snapshot's data, byte for byte
    data = committed_bytes(origin, "governance/retraining/snapshot.parquet")
    assert data == (store / second_id / "data.parquet").read_bytes()
    # the update replaces the request commit: still one commit on top of main
    assert git(origin, "rev-parse", f"{BRANCH}~1") == git(origin, "rev-parse", "main")
    assert git(origin, "rev-parse", BRANCH) == second.commit != first.commit
    creates = [entry for entry in github.fake.requests if entry == ("POST", f"/repos/{REPOSITORY}/pulls")]
    assert len(creates) == 1
    assert pulls[0]["head"] == BRANCH and pulls[0]["base"] == "main"
    # nothing of the user's checkout changed: still on main, clean tree, no new local branch
    assert git(repo, "branch", "--show-current") == "main"
    assert git(repo, "status", "--porcelain") == ""

    third = run_bot(github, repo, store, which=0)  # the window moved back: one more update
    assert third.action == "updated" and third.number == 1
    (comment,) = github.fake.comments[1]  # the same comment, edited in place: never one per run
    assert (
        comment["id"] == comments[0]["id"]
        and first_id in comment["body"]
        and second_id not in comment["body"]
    )
    assert comment["body"].startswith(retrain_pr.UPDATE_MARKER)


def snapshot_blobs(origin: Path, ref: str) -> set[str]:
    """Every distinct blob stored as the request's snapshot file in any commit reachable from ref."""
    path = "governance/retraining/snapshot.parquet"
    blobs = set()
    for commit in git(origin, "rev-list", ref).splitlines():
        listing = git(origin, "ls-tree", commit, "--", path)
        if listing:
            blobs.add(listing.split()[2])
    return blobs


def test_weekly_updates_replace_the_snapshot_commit_instead_of_stacking_snapshots(github, repo, store):
    """Two updates after the opening: the branch is one commit ahead of its base, one snapshot reachable."""
    origin = repo.parent / "origin.git"
    outcomes = [run_bot(github, repo, store, which=which) for which in (0, 1, 0)]
    assert [outcome.action for outcome in outcomes] == ["opened", "updated", "updated"]
    assert git(origin, "rev-list", "--count", f"main..{BRANCH}") == "1"
    assert git(origin, "rev-parse", f"{BRANCH}^") == git(origin, "rev-parse", "main")
    first_id = manifests(store)[0]["snapshot_id"]
    (blob,) = snapshot_blobs(origin, BRANCH)
    assert git(origin, "cat-file", "-s", blob) == str((store / first_id / "data.parquet").stat().st_size)
    assert [pull["number"] for pull in github.fake.open_pulls()] == [1], "the pull request stays open"


def test_an_update_rebuilds_the_request_on_the_moved_base(github, repo, store):
    """main moved between two weekly runs: the replaced commit sits on main's new tip."""
    origin = repo.parent / "origin.git"
    run_bot(github, repo, store)
    (repo / "CHANGELOG.md").write_text("more\n")
    git(repo, "add", "CHANGELOG.md")
    git(repo, "commit", "--quiet", "-m", "main moves on")
    git(repo, "push", "--quiet", "origin", "main")
    run_bot(github, repo, store, which=1)
    assert git(origin, "rev-parse", f"{BRANCH}^") == git(origin, "rev-parse", "main")
    assert "CHANGELOG.md" in git(origin, "ls-tree", "-r", "--name-only", BRANCH).splitlines()


def test_a_rerun_with_the_same_request_changes_nothing(github, repo, store):
    """The scheduled check fires twice on the same drift: no empty commit, no second comment."""
    first = run_bot(github, repo, store)
    origin = repo.parent / "origin.git"
    tip, before = git(origin, "rev-parse", BRANCH), len(github.fake.requests)
    again = run_bot(github, repo, store)
    assert again.action == "unchanged" and again.number == first.number == 1
    assert git(origin, "rev-parse", BRANCH) == tip == again.commit, "no new commit on the branch"
    assert github.fake.comments.get(1, []) == []
    assert [entry for entry in github.fake.requests[before:] if entry[0] != "GET"] == []
    assert [pull["number"] for pull in github.fake.pulls] == [1]


def test_it_retries_on_502_and_then_succeeds(github, repo, store):
    github.fake.failures.extend([502, 502])
    outcome = run_bot(github, repo, store)
    assert outcome.action == "opened" and len(github.fake.open_pulls()) == 1
    repo_calls = [entry for entry in github.fake.requests if entry[1] == f"/repos/{REPOSITORY}"]
    assert len(repo_calls) == 3  # two 502 answers, then the real one


def test_it_gives_up_clearly_when_5xx_persists(github, repo, store):
    github.fake.failures.extend([502] * 10)
    with pytest.raises(RetrainPRError, match="after retries"):
        run_bot(github, repo, store)
    assert not github.fake.pulls


def test_it_fails_clearly_on_401(github, repo, store):
    with pytest.raises(RetrainPRError, match=r"401 .*GITHUB_TOKEN is missing, expired or revoked"):
        run_bot(github, repo, store, token=WRONG_TOKEN)
    assert not github.fake.pulls
    assert not git(repo.parent / "origin.git", "branch", "--list", BRANCH), "nothing may be pushed on 401"


def test_it_names_the_repository_on_404(github, repo, store):
    with pytest.raises(RetrainPRError, match=r"404 .*'acme/elsewhere'"):
        run_bot(github, repo, store, repository="acme/elsewhere")
    assert not github.fake.pulls


def test_it_explains_a_403_without_rate_limit(github, repo, store):
    github.fake.failures.append(403)
    with pytest.raises(RetrainPRError, match=r"403 .*pull-requests: write"):
        run_bot(github, repo, store)
    assert not github.fake.pulls
    assert not git(repo.parent / "origin.git", "branch", "--list", BRANCH), "nothing may be pushed on 403"


def test_a_dry_run_writes_the_would_be_pull_request(tmp_path, store):
    plan = plan_for(store)
    as_json, as_md = write_dry_run(plan, tmp_path)
    written = json.loads(as_json.read_text())
    assert written["branch"] == BRANCH and written["title"] == plan.title
    assert "governance/retraining/request.json" in written["files"]
    snapshot_id = manifests(store)[0]["snapshot_id"]
    assert written["data_files"] == {
        "governance/retraining/snapshot.parquet": str(store / snapshot_id / "data.parquet")
    }
    assert snapshot_id in as_md.read_text() and "governance/retraining/snapshot.parquet" in as_md.read_text()


def test_a_snapshot_above_the_size_limit_is_refused_with_a_way_out(store):
    with pytest.raises(RetrainPRError, match=r"above the 0\.001 MB limit.*object storage"):
        plan_for(store, max_data_mb=0.001)


def test_a_snapshot_that_changed_since_the_drift_run_is_not_committed(tmp_path, store):
    copy = tmp_path / "snapshots"
    shutil.copytree(store, copy)
    manifest = manifests(store)[0]
    path = copy / manifest["snapshot_id"] / "data.parquet"
    frame = snapshot.read_table(path)
    frame.loc[0, "income"] = frame.loc[0, "income"] + 1
    frame.to_parquet(path, index=False)
    with pytest.raises(RetrainPRError, match="the data changed after the snapshot was made"):
        make_plan(drift_summary(manifest), BRANCH, None, "r", None, "h", snapshots_root=copy)
    with pytest.raises(RetrainPRError, match="run `make drift` in this checkout"):
        make_plan(drift_summary(manifest), BRANCH, None, "r", None, "h", snapshots_root=tmp_path / "empty")


def test_it_refuses_a_plan_without_a_retrain_decision_or_valid_data(store):
    manifest = manifests(store)[0]
    for status in ("no_retrain", "insufficient_data", "retrain_blocked"):
        decision = {"status": status, "reasons": [], "checks": [], "notes": []}
        with pytest.raises(RetrainPRError, match=f"decision is '{status}', not 'retrain'"):
            make_plan(drift_summary(manifest, decision=decision), BRANCH, None, "r", None, "h", store)
    invalid = {"valid": False, "rows": 10, "errors": ["column 'age': out of range"]}
    with pytest.raises(RetrainPRError, match="no valid new snapshot"):
        make_plan(drift_summary(manifest, dataset=invalid), BRANCH, None, "r", None, "h", store)


def retrain_pr_run(root: Path, summary: DriftSummary, monkeypatch, **options: Any):
    """`mlops retrain-pr` on a drift.json holding `summary`, without GitHub variables."""
    for name in ("GITHUB_TOKEN", "GITHUB_REPOSITORY", "GITHUB_API_URL"):
        monkeypatch.delenv(name, raising=False)
    paths = Paths(root)
    paths.drift_reports.mkdir(parents=True, exist_ok=True)
    (paths.drift_reports / "drift.json").write_text(summary.model_dump_json())
    said: list[str] = []
    outcome = retrain_pr.run(paths, say=said.append, **options)
    return outcome, "\n".join(said), paths


def test_without_a_token_the_bot_writes_a_dry_run_instead_of_sending(tmp_path, store, monkeypatch):
    manifest = manifests(store)[0]
    checkout = project_checkout(tmp_path / "project")
    shutil.copytree(store, checkout.snapshots)
    outcome, said, paths = retrain_pr_run(checkout.root, drift_summary(manifest), monkeypatch)
    assert outcome.action == "dry_run" and "GITHUB_TOKEN is not set" in said
    written = json.loads((paths.drift_reports / "retrain_pr.json").read_text())
    request = json.loads(written["files"]["governance/retraining/request.json"])
    assert request["snapshot"] == manifest
    assert written["branch"] == load_settings(paths).retraining.branch
    data = paths.snapshots / manifest["snapshot_id"] / "data.parquet"
    assert written["data_files"] == {"governance/retraining/snapshot.parquet": str(data)}


@pytest.mark.parametrize("status", ["no_retrain", "retrain_blocked", "insufficient_data"])
def test_a_decision_other_than_retrain_opens_nothing(tmp_path, monkeypatch, status):
    decision = {"status": status, "reasons": [], "checks": [], "notes": []}
    outcome, said, paths = retrain_pr_run(tmp_path, drift_summary(decision=decision), monkeypatch)
    assert outcome.action == "skipped" and f"the latest drift decision is '{status}'" in said
    assert not (paths.drift_reports / "retrain_pr.json").exists()


def test_the_push_token_never_reaches_arguments_or_git_config(repo):
    git(repo, "remote", "set-url", "origin", "https://github.example/acme/loans.git")
    client = Git(repo, token=TOKEN)
    assert client.env["GIT_CONFIG_KEY_0"] == "http.https://github.example/.extraheader"
    assert TOKEN not in (repo / ".git" / "config").read_text()
    assert retrain_pr.COMMIT_IDENTITY["name"]
