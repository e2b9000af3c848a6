"""The retraining pull request, against a local stand-in of GitHub's REST API and a bare git origin."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from werkzeug import Request, Response

from data_pipelines import snapshot
from data_pipelines.example import example_contract, generate
from monitoring import retrain_pr
from monitoring.retrain_pr import Git, RetrainPRError, make_plan, open_or_update, write_dry_run

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


def summary(manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    manifest = manifest or {"snapshot_id": "abc123def456", "rows": 2000, "sha256": "f" * 64}
    return {
        "run_at": "2024-05-06T06:00:00+00:00",
        "detector": "scipy",
        "policy": {"p_value": 0.05, "correction": "bonferroni"},
        "window": {"uri": "file://capture", "rows": 5000, "labelled_rows": 2000, "start": "a", "end": "b"},
        "reference": {"snapshot_id": "0123", "rows": 10000, "model_name": "loans", "model_version": "v1"},
        "drift": None,
        "decision": {
            "status": "retrain",
            "reasons": ["drifted_feature_share: 3/9 features drifted (limit 0.25)"],
            "checks": [],
            "notes": [],
        },
        "dataset": {"valid": True, "manifest": manifest},
    }


def plan_for(store: Path, which: int = 0, max_data_mb: float = 50.0):
    return make_plan(
        summary(manifests(store)[which]),
        BRANCH,
        None,
        "governance/retraining",
        None,
        "history.jsonl",
        snapshots_root=store,
        max_data_mb=max_data_mb,
    )


class FakeGitHub:
    """Just enough of GitHub's REST API (shapes as documented) for the bot, with a request log."""

    def __init__(self, server: Any, origin: Path) -> None:
        self.server = server
        self.origin = origin
        self.base = server.url_for("").rstrip("/")
        self.pulls: list[dict[str, Any]] = []
        self.comments: list[dict[str, Any]] = []
        self.log: list[tuple[str, str, Any]] = []
        self.fail: list[int] = []  # statuses to answer before serving normally
        server.expect_request(f"/repos/{OWNER}/{NAME}", method="GET").respond_with_handler(self.repo)
        server.expect_request(f"/repos/{OWNER}/{NAME}/pulls", method="GET").respond_with_handler(
            self.list_pulls
        )
        server.expect_request(f"/repos/{OWNER}/{NAME}/pulls", method="POST").respond_with_handler(
            self.create_pull
        )
        server.expect_request(f"/repos/{OWNER}/{NAME}/pulls/1", method="PATCH").respond_with_handler(
            self.edit_pull
        )
        server.expect_request(f"/repos/{OWNER}/{NAME}/issues/1", method="GET").respond_with_handler(
            self.issue
        )
        server.expect_request(f"/repos/{OWNER}/{NAME}/issues/1/comments", method="POST").respond_with_handler(
            self.comment
        )

    def _json(self, data: Any, status: int = 200) -> Response:
        return Response(json.dumps(data), status=status, content_type="application/json")

    def _gate(self, request: Request) -> Response | None:
        body = request.get_json(silent=True)
        self.log.append((request.method, request.path, body if body is not None else dict(request.args)))
        if request.headers.get("Authorization") != f"token {TOKEN}":
            return self._json({"message": "Bad credentials", "status": "401"}, 401)
        if self.fail:
            return self._json({"message": "Server Error"}, self.fail.pop(0))
        return None

    def repo(self, request: Request) -> Response:
        return self._gate(request) or self._json(
            {
                "id": 1,
                "name": NAME,
                "full_name": REPOSITORY,
                "owner": {"login": OWNER},
                "default_branch": "main",
                "url": f"{self.base}/repos/{REPOSITORY}",
                "html_url": f"https://github.example/{REPOSITORY}",
            }
        )

    def list_pulls(self, request: Request) -> Response:
        head, state, base = request.args.get("head"), request.args.get("state"), request.args.get("base")
        matches = [
            pull
            for pull in self.pulls
            if pull["state"] == state and pull["head"]["label"] == head and pull["base"]["ref"] == base
        ]
        return self._gate(request) or self._json(matches)

    def create_pull(self, request: Request) -> Response:
        gate = self._gate(request)
        if gate:
            return gate
        payload = request.get_json()
        assert {"title", "head", "base"} <= set(payload), payload
        assert all(isinstance(payload[key], str) for key in ("title", "head", "base", "body"))
        if any(pull["head"]["ref"] == payload["head"] and pull["state"] == "open" for pull in self.pulls):
            return self._json(
                {"message": "Validation Failed", "errors": [{"message": "already exists"}]}, 422
            )
        branch_exists = git(self.origin, "branch", "--list", payload["head"])
        if not branch_exists:
            return self._json({"message": "Validation Failed", "errors": [{"field": "head"}]}, 422)
        number = len(self.pulls) + 1
        pull = {
            "id": number,
            "number": number,
            "state": "open",
            "title": payload["title"],
            "body": payload["body"],
            "url": f"{self.base}/repos/{REPOSITORY}/pulls/{number}",
            "html_url": f"https://github.example/{REPOSITORY}/pull/{number}",
            "issue_url": f"{self.base}/repos/{REPOSITORY}/issues/{number}",
            "head": {"ref": payload["head"], "label": f"{OWNER}:{payload['head']}"},
            "base": {"ref": payload["base"], "label": f"{OWNER}:{payload['base']}"},
        }
        self.pulls.append(pull)
        return self._json(pull, 201)

    def edit_pull(self, request: Request) -> Response:
        gate = self._gate(request)
        if gate:
            return gate
        self.pulls[0].update(
            {key: value for key, value in request.get_json().items() if key in ("title", "body")}
        )
        return self._json(self.pulls[0])

    def issue(self, request: Request) -> Response:
        return self._gate(request) or self._json(
            {
                "number": 1,
                "state": "open",
                "url": f"{self.base}/repos/{REPOSITORY}/issues/1",
                "html_url": f"https://github.example/{REPOSITORY}/pull/1",
            }
        )

    def comment(self, request: Request) -> Response:
        gate = self._gate(request)
        if gate:
            return gate
        payload = request.get_json()
        assert set(payload) == {"body"} and isinstance(payload["body"], str)
        comment = {
            "id": len(self.comments) + 1,
            "body": payload["body"],
            "html_url": "https://github.example/c",
        }
        self.comments.append(comment)
        return self._json(comment, 201)


@pytest.fixture
def github(httpserver, repo: Path) -> FakeGitHub:
    return FakeGitHub(httpserver, repo.parent / "origin.git")


def run_bot(github: FakeGitHub, repo: Path, store: Path, token: str = TOKEN, which: int = 0):
    return open_or_update(
        plan_for(store, which),
        Git(repo),
        github.base,
        REPOSITORY,
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
    assert len(github.pulls) == 1, "a second run must not open a duplicate pull request"
    assert len(github.comments) == 1 and second_id in github.comments[0]["body"]
    assert second_id in github.pulls[0]["body"]
    # the branch now carries the second snapshot's data, byte for byte
    data = committed_bytes(origin, "governance/retraining/snapshot.parquet")
    assert data == (store / second_id / "data.parquet").read_bytes()
    # the update is a new commit on top of the branch (a fast-forward, history kept)
    assert git(origin, "rev-parse", f"{BRANCH}~1") == first.commit
    assert git(origin, "rev-parse", BRANCH) == second.commit
    creates = [entry for entry in github.log if entry[0] == "POST" and entry[1].endswith("/pulls")]
    assert len(creates) == 1
    assert creates[0][2]["head"] == BRANCH and creates[0][2]["base"] == "main"
    # nothing of the user's checkout changed: still on main, clean tree, no new local branch
    assert git(repo, "branch", "--show-current") == "main"
    assert git(repo, "status", "--porcelain") == ""


def test_it_retries_on_502_and_then_succeeds(github, repo, store):
    github.fail = [502, 502]
    outcome = run_bot(github, repo, store)
    assert outcome.action == "opened"
    repo_calls = [entry for entry in github.log if entry[1] == f"/repos/{REPOSITORY}"]
    assert len(repo_calls) == 3  # two 502 answers, then the real one


def test_it_gives_up_clearly_when_5xx_persists(github, repo, store):
    github.fail = [502] * 10
    with pytest.raises(RetrainPRError, match="after retries"):
        run_bot(github, repo, store)
    assert not github.pulls


def test_it_fails_clearly_on_401(github, repo, store):
    with pytest.raises(RetrainPRError, match=r"401 .*GITHUB_TOKEN is missing, expired or revoked"):
        run_bot(github, repo, store, token=WRONG_TOKEN)
    assert not github.pulls
    assert not git(repo.parent / "origin.git", "branch", "--list", BRANCH), "nothing may be pushed on 401"


def test_it_names_the_repository_on_404(httpserver, repo, store):
    httpserver.expect_request(f"/repos/{REPOSITORY}").respond_with_json({"message": "Not Found"}, status=404)
    with pytest.raises(RetrainPRError, match=rf"404 .*{REPOSITORY}"):
        open_or_update(
            plan_for(store),
            Git(repo),
            httpserver.url_for(""),
            REPOSITORY,
            "t",
            retries=0,
            backoff=0,
            throttle=False,
        )


def test_it_explains_a_403_without_rate_limit(httpserver, repo, store):
    httpserver.expect_request(f"/repos/{REPOSITORY}").respond_with_json(
        {"message": "Resource not accessible by integration"}, status=403
    )
    with pytest.raises(RetrainPRError, match=r"403 .*pull-requests: write"):
        open_or_update(
            plan_for(store),
            Git(repo),
            httpserver.url_for(""),
            REPOSITORY,
            "t",
            retries=2,
            backoff=0,
            throttle=False,
        )


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
        make_plan(summary(manifest), BRANCH, None, "r", None, "h", snapshots_root=copy)
    with pytest.raises(RetrainPRError, match="run `make drift` in this checkout"):
        make_plan(summary(manifest), BRANCH, None, "r", None, "h", snapshots_root=tmp_path / "empty")


def test_it_refuses_a_plan_without_a_retrain_decision_or_valid_data():
    data = summary()
    data["decision"]["status"] = "no_retrain"
    with pytest.raises(RetrainPRError, match="not 'retrain'"):
        make_plan(data, BRANCH, None, "governance/retraining", None, "h")
    data = summary()
    data["dataset"]["valid"] = False
    with pytest.raises(RetrainPRError, match="no valid new snapshot"):
        make_plan(data, BRANCH, None, "governance/retraining", None, "h")


def test_the_push_token_never_reaches_arguments_or_git_config(repo):
    git(repo, "remote", "set-url", "origin", "https://github.example/acme/loans.git")
    client = Git(repo, token=TOKEN)
    assert client.env["GIT_CONFIG_KEY_0"] == "http.https://github.example/.extraheader"
    assert TOKEN not in (repo / ".git" / "config").read_text()
    assert retrain_pr.COMMIT_IDENTITY["name"]
