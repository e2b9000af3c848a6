"""The GitHub stand-in keeps GitHub's rules where the bots rely on them.

A stand-in that is kinder than the real service hides bugs: a bot that resets its pull request's
branch to the base, or creates a branch that exists, must fail here as it would on GitHub.
These tests speak plain HTTP to the stand-in, with the request and answer shapes of GitHub's REST
API (docs.github.com/en/rest/git/blobs, /git/trees, /git/commits, /git/refs and /pulls).
"""

from __future__ import annotations

import base64
import hashlib
import subprocess

import pytest
from werkzeug.test import Client

from tests.support.github_standin import FakeGitHub

REPO = "/repos/acme/loans"


def blob_sha(content: bytes) -> str:
    """Git's id of a file's content, as `git hash-object` computes it."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()  # noqa: S324 -- git's id


@pytest.fixture
def fake() -> FakeGitHub:
    return FakeGitHub(
        repository="acme/loans", files={"README.md": b"project\n", "deploy/app.yaml": b"v: 1\n"}
    )


@pytest.fixture
def http(fake) -> Client:
    return Client(fake)


def commit_files(http: Client, parent: str, files: dict[str, bytes], message: str = "change") -> str:
    """Blobs, a tree on top of the parent's tree and a commit on the parent, as a bot makes them."""
    parent_commit = http.get(f"{REPO}/git/commits/{parent}").json
    entries = []
    for path, content in files.items():
        blob = http.post(
            f"{REPO}/git/blobs", json={"content": base64.b64encode(content).decode(), "encoding": "base64"}
        )
        assert blob.status_code == 201 and set(blob.json) == {"sha", "url"}
        entries.append({"path": path, "mode": "100644", "type": "blob", "sha": blob.json["sha"]})
    tree = http.post(f"{REPO}/git/trees", json={"base_tree": parent_commit["tree"]["sha"], "tree": entries})
    assert tree.status_code == 201, tree.json
    commit = http.post(
        f"{REPO}/git/commits", json={"message": message, "tree": tree.json["sha"], "parents": [parent]}
    )
    assert commit.status_code == 201, commit.json
    return commit.json["sha"]


def main_tip(http: Client) -> str:
    return http.get(f"{REPO}/git/ref/heads/main").json["object"]["sha"]


def test_the_git_data_api_makes_real_git_objects_on_top_of_the_base_tree(fake, http):
    main = main_tip(http)
    blob = http.post(f"{REPO}/git/blobs", json={"content": "v: 2\n", "encoding": "utf-8"})
    assert blob.json["sha"] == blob_sha(b"v: 2\n")  # git's own id of the content
    commit = commit_files(http, main, {"deploy/app.yaml": b"v: 2\n", "deploy/new.yaml": b"new\n"})
    answer = http.get(f"{REPO}/git/commits/{commit}").json
    assert [parent["sha"] for parent in answer["parents"]] == [main]
    assert answer["message"] == "change" and answer["author"]["name"] and answer["html_url"].endswith(commit)
    listing = http.get(f"{REPO}/git/trees/{answer['tree']['sha']}?recursive=1").json
    files = {entry["path"]: entry["sha"] for entry in listing["tree"] if entry["type"] == "blob"}
    assert files == {  # base_tree kept README.md; the entries replaced or added the rest
        "README.md": blob_sha(b"project\n"),
        "deploy/app.yaml": blob_sha(b"v: 2\n"),
        "deploy/new.yaml": blob_sha(b"new\n"),
    }
    created = http.post(f"{REPO}/git/refs", json={"ref": "refs/heads/gitops/staging", "sha": commit})
    assert created.status_code == 201 and created.json["object"]["sha"] == commit
    assert fake.file("gitops/staging", "deploy/app.yaml") == b"v: 2\n"
    assert fake.file("main", "deploy/app.yaml") == b"v: 1\n"  # nothing moved but the new ref


def test_a_tree_without_base_tree_holds_only_its_entries_and_deleting_a_missing_path_fails(http):
    tree = http.post(
        f"{REPO}/git/trees",
        json={"tree": [{"path": "a.txt", "mode": "100644", "type": "blob", "content": "a"}]},
    )
    listing = http.get(f"{REPO}/git/trees/{tree.json['sha']}?recursive=1").json["tree"]
    assert [entry["path"] for entry in listing] == ["a.txt"]
    main_tree = http.get(f"{REPO}/git/commits/{main_tip(http)}").json["tree"]["sha"]
    gone = {"path": "missing.txt", "mode": "100644", "type": "blob", "sha": None}
    assert http.post(f"{REPO}/git/trees", json={"base_tree": main_tree, "tree": [gone]}).status_code == 422


def test_creating_a_ref_that_exists_answers_422(http):
    answer = http.post(f"{REPO}/git/refs", json={"ref": "refs/heads/main", "sha": main_tip(http)})
    assert answer.status_code == 422 and answer.json["message"] == "Reference already exists"


def test_moving_a_ref_backwards_needs_force(fake, http):
    main = main_tip(http)
    ahead = commit_files(http, main, {"x.txt": b"x"})
    http.post(f"{REPO}/git/refs", json={"ref": "refs/heads/topic", "sha": ahead})
    other = commit_files(http, main, {"y.txt": b"y"})  # a sibling, not a descendant of `ahead`
    refused = http.patch(f"{REPO}/git/refs/heads/topic", json={"sha": other})
    assert refused.status_code == 422 and refused.json["message"] == "Update is not a fast forward"
    assert fake.tip("topic") == ahead
    assert http.patch(f"{REPO}/git/refs/heads/topic", json={"sha": other, "force": True}).status_code == 200
    assert fake.tip("topic") == other


def open_pull(http: Client, head: str = "gitops/staging") -> int:
    commit = commit_files(http, main_tip(http), {"deploy/app.yaml": b"v: 2\n"})
    http.post(f"{REPO}/git/refs", json={"ref": f"refs/heads/{head}", "sha": commit})
    answer = http.post(f"{REPO}/pulls", json={"title": "t", "body": "b", "head": head, "base": "main"})
    assert answer.status_code == 201, answer.json
    return answer.json["number"]


def test_a_pull_request_whose_head_is_moved_to_its_base_is_closed_and_cannot_be_reopened(fake, http):
    number = open_pull(http)
    moved = http.patch(f"{REPO}/git/refs/heads/gitops/staging", json={"sha": main_tip(http), "force": True})
    assert moved.status_code == 200
    pull = http.get(f"{REPO}/pulls/{number}").json
    assert pull["state"] == "closed" and pull["merged"] is False
    # Not even after the branch gets new commits: GitHub keeps such a pull request closed.
    commit = commit_files(http, main_tip(http), {"deploy/app.yaml": b"v: 3\n"})
    http.patch(f"{REPO}/git/refs/heads/gitops/staging", json={"sha": commit, "force": True})
    reopened = http.patch(f"{REPO}/pulls/{number}", json={"state": "open"})
    assert reopened.status_code == 422 and "state cannot be changed" in reopened.json["errors"][0]["message"]
    assert fake.open_pulls() == []


def test_a_pull_request_closed_by_hand_can_be_reopened_while_its_head_is_unchanged(http):
    number = open_pull(http)
    assert http.patch(f"{REPO}/pulls/{number}", json={"state": "closed"}).json["state"] == "closed"
    assert http.patch(f"{REPO}/pulls/{number}", json={"state": "open"}).json["state"] == "open"


def test_a_pull_request_needs_commits_and_only_one_is_open_per_branch(http):
    http.post(f"{REPO}/git/refs", json={"ref": "refs/heads/empty", "sha": main_tip(http)})
    empty = http.post(f"{REPO}/pulls", json={"title": "t", "head": "empty", "base": "main"})
    assert empty.status_code == 422 and "No commits between main and empty" in str(empty.json)
    open_pull(http)
    again = http.post(f"{REPO}/pulls", json={"title": "t", "head": "gitops/staging", "base": "main"})
    assert again.status_code == 422 and "already exists" in str(again.json)


def test_a_push_to_the_git_side_is_seen_by_the_api(tmp_path):
    """Bots that `git push` (the retraining PR) and bots that use the API share one repository."""
    origin, work = tmp_path / "origin.git", tmp_path / "work"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "--quiet", "--bare", "--initial-branch=main", str(origin)], check=True)
    subprocess.run(["git", "init", "--quiet", "--initial-branch=main", str(work)], check=True)
    subprocess.run(["git", "-C", str(work), "remote", "add", "origin", str(origin)], check=True)
    (work / "a.txt").write_text("a\n")
    subprocess.run([*git, "-C", str(work), "add", "a.txt"], check=True)
    subprocess.run([*git, "-C", str(work), "commit", "--quiet", "-m", "a"], check=True)
    subprocess.run(["git", "-C", str(work), "push", "--quiet", "origin", "main", "main:topic"], check=True)
    fake = FakeGitHub(repository="acme/loans", git_dir=origin)
    assert fake.branches() == {"main": ["a.txt"], "topic": ["a.txt"]}
    http = Client(fake)
    (work / "b.txt").write_text("b\n")
    subprocess.run([*git, "-C", str(work), "add", "b.txt"], check=True)
    subprocess.run([*git, "-C", str(work), "commit", "--quiet", "-m", "b"], check=True)
    subprocess.run(["git", "-C", str(work), "push", "--quiet", "origin", "HEAD:topic"], check=True)
    number = http.post(f"{REPO}/pulls", json={"title": "t", "head": "topic", "base": "main"}).json["number"]
    subprocess.run(["git", "-C", str(work), "push", "--quiet", "origin", "HEAD:main"], check=True)
    pull = http.get(f"{REPO}/pulls/{number}").json  # the base now holds the head: merged by the push
    assert pull["state"] == "closed" and pull["merged"] is True


def test_the_api_moves_a_protected_branch_only_to_a_commit_that_passed_its_required_checks(fake, http):
    """`main` requires `all green` (as the README says to set it): no bot writes there, whatever its token."""
    main = main_tip(http)
    assert http.get(f"{REPO}/branches/main").json["protected"] is True
    ahead = commit_files(http, main, {"x.txt": b"x"})
    refused = http.patch(f"{REPO}/git/refs/heads/main", json={"sha": ahead})
    assert (
        refused.status_code == 422
        and refused.json["message"] == 'Required status check "all green" is expected.'
    )
    content = base64.b64encode(b"v: 9\n").decode()
    sha = http.get(f"{REPO}/contents/deploy/app.yaml").json["sha"]
    put = http.put(f"{REPO}/contents/deploy/app.yaml", json={"message": "m", "content": content, "sha": sha})
    assert put.status_code == 409 and put.json["message"].startswith("Could not update file: Required status")
    assert fake.tip("main") == main, "a refused write leaves the branch where it was"
    fake.checks[ahead] = {"all green": "success"}
    assert http.patch(f"{REPO}/git/refs/heads/main", json={"sha": ahead}).status_code == 200


def test_a_pull_request_merges_only_after_its_head_passed_the_required_checks(fake, http):
    number = open_pull(http)
    head = fake.tip("gitops/staging")
    fake.checks[head] = {"all green": "failure"}
    refused = http.put(f"{REPO}/pulls/{number}/merge", json={})
    assert refused.status_code == 405 and '"all green" is expected' in refused.json["message"]
    fake.checks[head] = {"all green": "success"}
    merged = http.put(f"{REPO}/pulls/{number}/merge", json={"sha": head})
    assert merged.status_code == 200 and merged.json["merged"] is True
    assert http.get(f"{REPO}/pulls/{number}").json["merged"] is True
    assert fake.file("main", "deploy/app.yaml") == b"v: 2\n"
    parents = subprocess.run(
        ["git", "--git-dir", str(fake.git_dir), "rev-list", "--parents", "-n", "1", "main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[1:]
    assert parents[1] == head, "a merge commit with the pull request's head as second parent"


def test_what_the_workflow_token_does_starts_no_workflow(fake):
    """GitHub starts no workflow for events made with GITHUB_TOKEN: a bot's PR opened with it gets no
    check, so the required `all green` never reports; another token's PR starts pr.yml."""
    fake.actions_token = "ghs_workflow"  # noqa: S105 -- a test token
    http = Client(fake)
    bot = {"Authorization": "token ghs_workflow"}
    app = {"Authorization": "token ghs_app"}
    commit = commit_files(http, main_tip(http), {"deploy/app.yaml": b"v: 2\n"})
    http.post(f"{REPO}/git/refs", json={"ref": "refs/heads/a", "sha": commit}, headers=bot)
    http.post(f"{REPO}/git/refs", json={"ref": "refs/heads/b", "sha": commit}, headers=app)
    first = http.post(f"{REPO}/pulls", json={"title": "t", "head": "a", "base": "main"}, headers=bot).json
    second = http.post(f"{REPO}/pulls", json={"title": "t", "head": "b", "base": "main"}, headers=app).json
    newer = commit_files(http, commit, {"deploy/app.yaml": b"v: 3\n"})
    http.patch(f"{REPO}/git/refs/heads/b", json={"sha": newer}, headers=bot)
    started = [(e["number"], e["action"], e["starts_workflows"]) for e in fake.events]
    assert started == [
        (first["number"], "opened", False),
        (second["number"], "opened", True),
        (second["number"], "synchronize", False),
    ]
