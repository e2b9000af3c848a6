"""A local stand-in for the part of GitHub's REST API the project's bots use.

Why: the bots (PR comment, GitOps and retraining pull requests) must be tested for what they
send, including re-runs, without a network or a token. A stand-in that is kinder than the real
service hides bugs, so this one keeps GitHub's rules where the bots rely on them:

- its git side is a real (bare) git repository: blobs, trees, commits and refs made through the
  Git Data API (`/git/blobs`, `/git/trees` with `base_tree`, `/git/commits`, `/git/refs`) are git
  objects with git's ids, and a `git push` to that repository is seen by the API like on GitHub;
- `POST /git/refs` answers 422 "Reference already exists" for an existing ref, and `PATCH
  /git/refs/...` refuses a move that is not a fast-forward unless `force` is set;
- an open pull request whose head branch is moved so that it has no commit left over its base
  (for instance reset to the base commit) is closed, and can never be reopened (`PATCH
  state=open` answers 422), as GitHub does; one whose commits reach the base by a push is merged;
- opening a pull request without a commit between base and head, or a second one for the same
  head, answers 422 like GitHub;
- `main` is protected with the required check `all green`, as the README tells teams to set it:
  the API refuses to move it (422 on `/git/refs`, 409 on `/contents`) and to merge a pull request
  whose head has not passed every required check (405); a `git push` to the git side stands for an
  administrator (or a merge done elsewhere) and is let through;
- events made with the workflow's own `GITHUB_TOKEN` (`actions_token`) start no workflow: every
  pull request opened, reopened or moved is logged in `events` with `starts_workflows`, false when
  the request carried that token (a `git push` cannot be attributed and counts as a person's).

Use it with pytest-httpserver (`respond_with_handler(fake.handle)`), serve it on a port
(`serve()`) and point GITHUB_API_URL at it, or run it as a process for a whole local run, e.g.
under act: `python -m tests.support.github_standin --state /tmp/github.json [--git-dir origin.git]`.
`token` makes it refuse other credentials (401), `failures` queues error answers and `faults`
fails chosen requests (before or after doing them), so the bots' retries and refusals are tested
against the same stand-in as their happy path.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import os
import re
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

# What GitHub says with a status the stand-in is asked to answer (`failures`, `faults`).
REFUSALS = {
    401: "Bad credentials",
    403: "Resource not accessible by integration",
    404: "Not Found",
    409: "Conflict",
    422: "Validation Failed",
}
# Who a commit made through the API is by when the request names nobody (GitHub: the token's owner).
BOT = {"name": "github-actions[bot]", "email": "41898282+github-actions[bot]@users.noreply.github.com"}
FILE_MODES = {"100644", "100755", "120000"}
TREE_OF, COMMIT_OF = (
    "^{tree}",
    "^{commit}",
)  # git's peeling suffixes (a ref or commit -> its tree, its commit)


@dataclass
class Fault:
    """Answer the next request that matches `method` and `path` (a regular expression on the path
    after /repos/<owner>/<name>) with `status`. With `done`, the request is carried out first and
    its answer is lost: a gateway error that hides a write GitHub did."""

    method: str
    path: str
    status: int
    done: bool = False


class _Refused(Exception):
    """An answer other than success, raised from deep inside a route."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.body = status, {"message": message, **extra}


def _invalid(resource: str, message: str) -> _Refused:
    """GitHub's 422 for a request it understood but will not do."""
    return _Refused(
        422, "Validation Failed", errors=[{"resource": resource, "code": "custom", "message": message}]
    )


@dataclass
class FakeGitHub:
    """One repository `owner/name`. Its git side is `git_dir` (a bare repository, created when
    missing; a private temporary one when None), whose `main` gets `files` (path -> bytes)."""

    repository: str = "acme/model"
    files: dict[str, bytes] = field(default_factory=dict)
    git_dir: Path | None = None
    # When set, every request must carry this token (`Authorization: token ...`, as PyGithub sends it):
    # anything else is answered 401 Bad credentials, as GitHub does for a revoked token.
    token: str | None = None
    # Statuses to answer the next requests with, in order, before serving normally (5xx, 403 ...).
    failures: list[int] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    pulls: list[dict[str, Any]] = field(default_factory=list)
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    issues: list[dict[str, Any]] = field(default_factory=list)  # issues proper; pulls are issues too
    requests: list[tuple[str, str]] = field(default_factory=list)
    # Branch -> the checks that must have succeeded on a commit before the API moves the branch to it
    # or merges into it (GitHub's branch protection with required status checks).
    protected: dict[str, tuple[str, ...]] = field(default_factory=lambda: {"main": ("all green",)})
    # sha -> {check name: "success" | "failure" | ...}, as the checks of a workflow run report them.
    checks: dict[str, dict[str, str]] = field(default_factory=dict)
    # The token GitHub Actions gives a workflow (GITHUB_TOKEN): what it does starts no workflow.
    actions_token: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    # Pull requests are numbered 1, 2, ... per repository like GitHub's issues; comment ids
    # come from a separate counter, so they never skip a PR number.
    _numbers: itertools.count = field(default_factory=lambda: itertools.count(1))
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _by_actions: bool = field(default=False, init=False, repr=False)  # the current request's token
    _scratch: tempfile.TemporaryDirectory | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.git_dir is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="github-standin-")
            self.git_dir = Path(self._scratch.name) / "repository.git"
        self.git_dir = Path(self.git_dir)
        if not (self.git_dir / "HEAD").is_file():
            self.git_dir.mkdir(parents=True, exist_ok=True)
            self._git("init", "--quiet", "--bare", "--initial-branch=main")
        main = self.tip("main")
        if self.files or (main is None and self._scratch is not None):
            tree = self._write_tree(self._tree_of(main), {p: self._blob(c) for p, c in self.files.items()})
            commit = self._commit_tree(tree, [main] if main else [], "Initial files", BOT, BOT)
            self._git("update-ref", "refs/heads/main", commit)

    # --- what tests inspect ---------------------------------------------------------------------
    def open_pulls(self) -> list[dict[str, Any]]:
        with self._lock:
            self._settle()
            return [pull for pull in self.pulls if pull["state"] == "open"]

    def tip(self, branch: str) -> str | None:
        """The commit a branch points at, or None when there is no such branch."""
        found = self._git("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}" + COMMIT_OF, check=False)
        return found.decode().strip() or None

    def branches(self) -> dict[str, list[str]]:
        """Every branch with the paths of its files."""
        names = self._git("for-each-ref", "--format=%(refname:strip=2)", "refs/heads").decode().split()
        return {name: sorted(self._entries(f"refs/heads/{name}", recursive=True)) for name in names}

    def file(self, branch: str, path: str) -> bytes:
        return self._git("cat-file", "blob", f"refs/heads/{branch}:{path}")

    # --- HTTP -----------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        with self._lock:
            self.requests.append((request.method, request.path))
            refused = self._refusal(request)
            if refused is not None:
                return refused
            self._by_actions = self.actions_token is not None and request.headers.get("Authorization") in (
                f"token {self.actions_token}",
                f"Bearer {self.actions_token}",
            )
            base = request.host_url.rstrip("/")
            prefix = f"/repos/{self.repository}"
            if not request.path.startswith(prefix):
                return self._json({"message": "Not Found"}, 404)
            path = request.path[len(prefix) :]
            fault = next(
                (f for f in self.faults if f.method == request.method and re.fullmatch(f.path, path)), None
            )
            if fault is not None:
                self.faults.remove(fault)
                if not fault.done:
                    return self._json({"message": REFUSALS.get(fault.status, "Server Error")}, fault.status)
            self._settle(by_actions=False)  # pushes to the git side happen between requests, as on GitHub
            answer = self._route(base, request, path)
            self._settle(by_actions=self._by_actions)
            if fault is not None:  # done, but the answer is lost on the way back
                return self._json({"message": REFUSALS.get(fault.status, "Server Error")}, fault.status)
            return answer

    def _route(self, base: str, request: Request, path: str) -> Response:
        body = request.get_json(silent=True) or {}
        for method, pattern, handler in self._routes():
            match = re.fullmatch(pattern, path)
            if match and request.method == method:
                try:
                    result = handler(base, request, body, **match.groupdict())
                except _Refused as refused:
                    return self._json(refused.body, refused.status)
                return result if isinstance(result, Response) else self._json(*result)
        return self._json({"message": f"the stand-in has no route for {request.method} {path}"}, 404)

    def _refusal(self, request: Request) -> Response | None:
        """A 401 for a missing or wrong token, then the queued failures, else None (serve normally)."""
        if self.token is not None and request.headers.get("Authorization") not in (
            f"token {self.token}",
            f"Bearer {self.token}",
        ):
            return self._json({"message": "Bad credentials"}, 401)
        if self.failures:
            status = self.failures.pop(0)
            return self._json({"message": REFUSALS.get(status, "Server Error")}, status)
        return None

    def __call__(self, environ, start_response):
        return self.handle(Request(environ))(environ, start_response)

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, callable]:
        """Serve on a loopback port in a thread; returns (base URL, stop function)."""
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log per request
        server = make_server(host, port, self, threaded=True)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()

        def stop() -> None:
            server.shutdown()
            thread.join(timeout=5)

        return f"http://{host}:{server.server_port}", stop

    # --- routes ---------------------------------------------------------------------------------
    def _routes(self):
        return [
            ("GET", r"", self._get_repo),
            ("GET", r"/branches/(?P<branch>.+)", self._get_branch),
            ("GET", r"/git/refs?/heads/(?P<branch>.+)", self._get_ref),
            ("PATCH", r"/git/refs/heads/(?P<branch>.+)", self._update_ref),
            ("POST", r"/git/refs", self._create_ref),
            ("POST", r"/git/blobs", self._create_blob),
            ("GET", r"/git/blobs/(?P<sha>[0-9a-f]{40})", self._get_blob),
            ("POST", r"/git/trees", self._create_tree),
            ("GET", r"/git/trees/(?P<name>.+)", self._get_tree),
            ("POST", r"/git/commits", self._create_commit),
            ("GET", r"/git/commits/(?P<sha>[0-9a-f]{40})", self._get_commit),
            ("GET", r"/contents/(?P<path>.+)", self._get_contents),
            ("PUT", r"/contents/(?P<path>.+)", self._put_contents),
            ("GET", r"/pulls", self._list_pulls),
            ("POST", r"/pulls", self._create_pull),
            ("GET", r"/pulls/(?P<number>\d+)", self._get_pull),
            ("PATCH", r"/pulls/(?P<number>\d+)", self._edit_pull),
            ("PUT", r"/pulls/(?P<number>\d+)/merge", self._merge_pull),
            ("GET", r"/issues", self._list_issues),
            ("POST", r"/issues", self._create_issue),
            ("GET", r"/issues/(?P<number>\d+)", self._get_issue),
            ("PATCH", r"/issues/(?P<number>\d+)", self._edit_issue),
            ("GET", r"/issues/(?P<number>\d+)/comments", self._list_comments),
            ("POST", r"/issues/(?P<number>\d+)/comments", self._create_comment),
            ("PATCH", r"/issues/comments/(?P<comment_id>\d+)", self._edit_comment),
        ]

    def _repo_json(self, base: str) -> dict[str, Any]:
        owner, name = self.repository.split("/")
        return {
            "id": 1,
            "name": name,
            "full_name": self.repository,
            "owner": {"login": owner, "type": "Organization"},
            "default_branch": "main",
            "url": f"{base}/repos/{self.repository}",
            "html_url": f"{base}/{self.repository}",
        }

    def _get_repo(self, base, request, body):
        return self._repo_json(base), 200

    def _get_branch(self, base, request, body, branch):
        sha = self.tip(branch)
        if sha is None:
            return {"message": "Branch not found"}, 404
        return {
            "name": branch,
            "commit": self._commit_json(base, sha),
            "protected": branch in self.protected,
        }, 200

    # --- branch protection ----------------------------------------------------------------------
    def missing_checks(self, branch: str, sha: str) -> list[str]:
        """The required checks of a protected branch that have not succeeded on the commit."""
        passed = self.checks.get(sha, {})
        return [name for name in self.protected.get(branch, ()) if passed.get(name) != "success"]

    def _guard(self, branch: str, sha: str, prefix: str = "", status: int = 422) -> None:
        """Refuse to move a protected branch to a commit whose required checks have not passed."""
        missing = self.missing_checks(branch, sha)
        if len(missing) == 1:
            raise _Refused(status, f'{prefix}Required status check "{missing[0]}" is expected.')
        if missing:
            required = len(self.protected[branch])
            raise _Refused(
                status, f"{prefix}{len(missing)} of {required} required status checks are expected."
            )

    # --- refs: git/refs -------------------------------------------------------------------------
    def _ref_json(self, base: str, branch: str) -> dict[str, Any]:
        sha = self.tip(branch)
        return {
            "ref": f"refs/heads/{branch}",
            "url": f"{base}/repos/{self.repository}/git/refs/heads/{branch}",
            "object": {
                "sha": sha,
                "type": "commit",
                "url": f"{base}/repos/{self.repository}/git/commits/{sha}",
            },
        }

    def _get_ref(self, base, request, body, branch):
        if self.tip(branch) is None:
            return {"message": "Not Found"}, 404
        return self._ref_json(base, branch), 200

    def _update_ref(self, base, request, body, branch):
        """PATCH a branch: a fast-forward only, unless `force` (GitHub's "Update a reference")."""
        old = self.tip(branch)
        if old is None:
            return {"message": "Reference does not exist"}, 422
        new = self._commit_sha(body.get("sha"))
        if not body.get("force") and not self._contains(new, old):
            return {"message": "Update is not a fast forward"}, 422
        self._guard(branch, new)
        self._git("update-ref", f"refs/heads/{branch}", new, old)
        return self._ref_json(base, branch), 200

    def _create_ref(self, base, request, body):
        ref = str(body.get("ref") or "")
        if not ref.startswith("refs/") or ref.count("/") < 2:
            return {"message": f"{ref!r} is not a valid ref name (refs/<namespace>/<name>)"}, 422
        if not ref.startswith("refs/heads/"):
            return {"message": "the stand-in keeps branches only (refs/heads/...)"}, 422
        sha = self._commit_sha(body.get("sha"))
        if self.tip(ref.removeprefix("refs/heads/")) is not None:
            return {"message": "Reference already exists"}, 422
        self._git("update-ref", ref, sha, "0" * 40)
        return self._ref_json(base, ref.removeprefix("refs/heads/")), 201

    # --- objects: git/blobs, git/trees, git/commits ---------------------------------------------
    def _create_blob(self, base, request, body):
        content, encoding = body.get("content"), body.get("encoding", "utf-8")
        if not isinstance(content, str):
            return {"message": 'Invalid request. "content" wasn\'t supplied.'}, 422
        if encoding not in ("utf-8", "base64"):
            return {"message": f"encoding must be utf-8 or base64, not {encoding!r}"}, 422
        data = base64.b64decode(content) if encoding == "base64" else content.encode()
        sha = self._blob(data)
        return {"sha": sha, "url": f"{base}/repos/{self.repository}/git/blobs/{sha}"}, 201

    def _get_blob(self, base, request, body, sha):
        if self._type(sha) != "blob":
            return {"message": "Not Found"}, 404
        data = self._git("cat-file", "blob", sha)
        return {
            "sha": sha,
            "size": len(data),
            "url": f"{base}/repos/{self.repository}/git/blobs/{sha}",
            "content": base64.b64encode(data).decode(),
            "encoding": "base64",
        }, 200

    def _create_tree(self, base, request, body):
        """A tree from `base_tree` (when given) with `tree`'s entries put over it.

        Entries are files (blobs): by `sha` of an existing blob or by `content`; `sha: null`
        deletes a path, and deleting a path that is not there is an error, as on GitHub.
        """
        entries = body.get("tree")
        if not isinstance(entries, list):
            return {"message": 'Invalid request. "tree" wasn\'t supplied.'}, 422
        base_tree = body.get("base_tree")
        if base_tree is not None and self._type(base_tree) != "tree":
            raise _invalid("Tree", f"base_tree {base_tree} is not a tree in this repository")
        changes: dict[str, str | None] = {}
        for entry in entries:
            path, mode = str(entry.get("path") or ""), entry.get("mode")
            if not path or path.startswith("/") or path.endswith("/") or "" in path.split("/"):
                raise _invalid("Tree", f"tree.path contains a malformed path component: {path!r}")
            if entry.get("type", "blob") != "blob" or mode not in FILE_MODES:
                raise _invalid(
                    "Tree",
                    f"the stand-in takes file entries only (type blob, mode 100644/100755/120000): {path}",
                )
            if "content" in entry:
                changes[path] = self._blob(str(entry["content"]).encode())
            elif entry.get("sha") is None:
                changes[path] = None
            elif self._type(entry["sha"]) == "blob":
                changes[path] = entry["sha"]
            else:
                raise _invalid("Tree", f"tree.sha {entry['sha']} is not a blob in this repository")
        sha = self._write_tree(base_tree, changes)
        return self._tree_json(base, sha, recursive=False), 201

    def _get_tree(self, base, request, body, name):
        """A tree by its id, or the tree of a commit or branch (GitHub takes a tree SHA or a ref name)."""
        sha = self._git("rev-parse", "--verify", "--quiet", name + TREE_OF, check=False).decode().strip()
        if not sha:
            return {"message": "Not Found"}, 404
        return self._tree_json(base, sha, recursive=request.args.get("recursive") is not None), 200

    def _tree_json(self, base: str, sha: str, recursive: bool) -> dict[str, Any]:
        listing = []
        for path, (mode, kind, object_sha, size) in self._entries(sha, recursive).items():
            entry = {"path": path, "mode": mode, "type": kind, "sha": object_sha}
            if kind == "blob":
                entry["size"] = size
            entry["url"] = f"{base}/repos/{self.repository}/git/{kind}s/{object_sha}"
            listing.append(entry)
        return {
            "sha": sha,
            "url": f"{base}/repos/{self.repository}/git/trees/{sha}",
            "tree": listing,
            "truncated": False,
        }

    def _create_commit(self, base, request, body):
        tree, parents = body.get("tree"), body.get("parents", [])
        if not isinstance(body.get("message"), str):
            return {"message": 'Invalid request. "message" wasn\'t supplied.'}, 422
        if not isinstance(tree, str) or self._type(tree) != "tree":
            return {"message": "Tree SHA does not exist"}, 422
        if not isinstance(parents, list) or any(self._type(parent) != "commit" for parent in parents):
            return {"message": "Parent SHA does not exist or is not a commit object"}, 422
        author = body.get("author") or BOT
        sha = self._commit_tree(tree, parents, body["message"], author, body.get("committer") or author)
        return self._commit_json(base, sha), 201

    def _get_commit(self, base, request, body, sha):
        if self._type(sha) != "commit":
            return {"message": "Not Found"}, 404
        return self._commit_json(base, sha), 200

    def _commit_json(self, base: str, sha: str) -> dict[str, Any]:
        raw = self._git("cat-file", "commit", sha).decode()
        head, _, message = raw.partition("\n\n")
        fields: dict[str, list[str]] = {}
        for line in head.splitlines():
            key, _, value = line.partition(" ")
            fields.setdefault(key, []).append(value)
        url = f"{base}/repos/{self.repository}/git/commits"

        def person(value: str) -> dict[str, str]:
            found = re.fullmatch(r"(?P<name>.*) <(?P<email>.*)> (?P<time>\d+) (?P<zone>[+-]\d{4})", value)
            when = datetime.fromtimestamp(int(found["time"]), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            return {"name": found["name"], "email": found["email"], "date": when}

        return {
            "sha": sha,
            "url": f"{url}/{sha}",
            "html_url": f"{base}/{self.repository}/commit/{sha}",
            "author": person(fields["author"][0]),
            "committer": person(fields["committer"][0]),
            "message": message.removesuffix("\n"),
            "tree": {
                "sha": fields["tree"][0],
                "url": f"{base}/repos/{self.repository}/git/trees/{fields['tree'][0]}",
            },
            "parents": [
                {
                    "sha": parent,
                    "url": f"{url}/{parent}",
                    "html_url": f"{base}/{self.repository}/commit/{parent}",
                }
                for parent in fields.get("parent", [])
            ],
            "verification": {"verified": False, "reason": "unsigned", "signature": None, "payload": None},
        }

    # --- contents -------------------------------------------------------------------------------
    def _content_json(self, base: str, branch: str, path: str) -> dict[str, Any]:
        data = self.file(branch, path)
        return {
            "type": "file",
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "sha": self._entries(f"refs/heads/{branch}", recursive=True)[path][2],
            "size": len(data),
            "encoding": "base64",
            "content": base64.b64encode(data).decode(),
            "url": f"{base}/repos/{self.repository}/contents/{path}?ref={branch}",
        }

    def _get_contents(self, base, request, body, path):
        branch = request.args.get("ref", "main")
        if self.tip(branch) is None or path not in self._entries(f"refs/heads/{branch}", recursive=True):
            return {"message": "Not Found"}, 404
        return self._content_json(base, branch, path), 200

    def _put_contents(self, base, request, body, path):
        """One file, one commit on the branch (GitHub's "Create or update file contents")."""
        branch = body.get("branch", "main")
        parent = self.tip(branch)
        if parent is None:
            return {"message": f"Branch {branch} not found"}, 404
        current = self._entries(parent, recursive=True).get(path)
        if current is not None and body.get("sha") != current[2]:
            if not body.get("sha"):
                return {"message": 'Invalid request.\n\n"sha" wasn\'t supplied.'}, 422
            return {"message": f"{path} does not match {body.get('sha')}"}, 409
        tree = self._write_tree(self._tree_of(parent), {path: self._blob(base64.b64decode(body["content"]))})
        commit = self._commit_tree(tree, [parent], body.get("message", f"Update {path}"), BOT, BOT)
        self._guard(branch, commit, prefix="Could not update file: ", status=409)
        self._git("update-ref", f"refs/heads/{branch}", commit, parent)
        answer = {
            "content": self._content_json(base, branch, path),
            "commit": self._commit_json(base, commit),
        }
        return answer, 200 if current is not None else 201

    # --- pull requests --------------------------------------------------------------------------
    def _pull_json(self, base: str, pull: dict[str, Any]) -> dict[str, Any]:
        owner = self.repository.split("/")[0]
        return {
            **{key: pull[key] for key in ("number", "title", "body", "state", "merged")},
            "head": {"ref": pull["head"], "label": f"{owner}:{pull['head']}", "sha": pull["head_sha"]},
            "base": {"ref": pull["base"], "label": f"{owner}:{pull['base']}", "sha": self.tip(pull["base"])},
            "url": f"{base}/repos/{self.repository}/pulls/{pull['number']}",
            "issue_url": f"{base}/repos/{self.repository}/issues/{pull['number']}",
            "html_url": f"{base}/{self.repository}/pull/{pull['number']}",
        }

    def _list_pulls(self, base, request, body):
        owner = self.repository.split("/")[0]
        found = [
            pull
            for pull in self.pulls
            if request.args.get("state", "open") in (pull["state"], "all")
            and request.args.get("head") in (None, f"{owner}:{pull['head']}")
            and request.args.get("base") in (None, pull["base"])
        ]
        return [self._pull_json(base, pull) for pull in found], 200

    def _pull(self, number: str) -> dict[str, Any]:
        found = next((pull for pull in self.pulls if pull["number"] == int(number)), None)
        if found is None:
            raise _Refused(404, "Not Found")
        return found

    def _create_pull(self, base, request, body):
        owner = self.repository.split("/")[0]
        head_branch, base_branch = body.get("head", ""), body.get("base", "")
        head, target = self.tip(head_branch.removeprefix(f"{owner}:")), self.tip(base_branch)
        if head is None or target is None:
            field_name = "head" if head is None else "base"
            return {
                "message": "Validation Failed",
                "errors": [{"resource": "PullRequest", "field": field_name, "code": "invalid"}],
            }, 422
        head_branch = head_branch.removeprefix(f"{owner}:")
        if any(
            p["head"] == head_branch and p["base"] == base_branch and p["state"] == "open" for p in self.pulls
        ):
            raise _invalid("PullRequest", f"A pull request already exists for {owner}:{head_branch}.")
        if self._contains(target, head):
            raise _invalid("PullRequest", f"No commits between {base_branch} and {head_branch}")
        pull = self._new_pull(head_branch, base_branch, head, body.get("title", ""), body.get("body", ""))
        return self._pull_json(base, pull), 201

    def _new_pull(
        self, head_branch: str, base_branch: str, head: str, title: str, body: str
    ) -> dict[str, Any]:
        pull = {
            "number": next(self._numbers),
            "title": title,
            "body": body,
            "state": "open",
            "merged": False,
            "head": head_branch,
            "base": base_branch,
            "head_sha": head,
            "reopenable": True,
        }
        self.pulls.append(pull)
        self._event(pull, "opened", self._by_actions)
        return pull

    def add_pull_request(self, head: str = "feature", title: str = "A change") -> int:
        """An open pull request from a new branch one commit over main, as a person opens one
        (for tests of the bots that comment on pull requests); returns its number."""
        with self._lock:
            main = self.tip("main")
            tree = self._write_tree(self._tree_of(main), {f"{head}.txt": self._blob(head.encode())})
            commit = self._commit_tree(tree, [main] if main else [], title, BOT, BOT)
            self._git("update-ref", f"refs/heads/{head}", commit)
            return self._new_pull(head, "main", commit, title, "")["number"]

    def _get_pull(self, base, request, body, number):
        return self._pull_json(base, self._pull(number)), 200

    def _edit_pull(self, base, request, body, number):
        pull = self._pull(number)
        if body.get("state") == "open" and pull["state"] == "closed":
            self._reopen(pull)
        elif body.get("state") == "closed" and pull["state"] == "open":
            pull["state"] = "closed"
        pull.update({key: body[key] for key in ("title", "body") if key in body})
        return self._pull_json(base, pull), 200

    def _reopen(self, pull: dict[str, Any]) -> None:
        """GitHub reopens a closed pull request only if its head still holds what it held when it was
        closed (a descendant of that commit) and has commits over its base; never a merged one, and
        never one that was closed because its head was moved onto its base."""
        head, target = self.tip(pull["head"]), self.tip(pull["base"])
        why = None
        if pull["merged"]:
            why = "the pull request is merged"
        elif not pull["reopenable"] or head is None or not self._contains(head, pull["head_sha"]):
            why = f"the {pull['head']} branch was force-pushed or recreated"
        elif target is None or self._contains(target, head):
            why = f"there are no new commits on the {pull['head']} branch"
        if why is not None:
            raise _invalid("PullRequest", f"state cannot be changed. {why}")
        pull["state"] = "open"
        self._event(pull, "reopened", self._by_actions)

    def _merge_pull(self, base, request, body, number):
        """GitHub's "Merge a pull request": a merge commit on the base, only once the head passed the
        base's required checks (405 otherwise), only for an open pull request that merges cleanly."""
        pull = self._pull(number)
        if pull["state"] != "open":
            return {"message": "Pull Request is not mergeable"}, 405
        head, target = self.tip(pull["head"]), self.tip(pull["base"])
        if body.get("sha") not in (None, head):
            return {"message": "Head branch was modified. Review and try the merge again."}, 409
        self._guard(pull["base"], head, status=405)
        merged = self._git("merge-tree", "--write-tree", target, head, check=False)
        if b"CONFLICT" in merged:
            return {"message": "Pull Request is not mergeable"}, 405
        tree = merged.decode().split()[0]
        title = body.get("commit_title") or f"Merge pull request #{pull['number']} from {pull['head']}"
        commit = self._commit_tree(tree, [target, head], title, BOT, BOT)
        self._git("update-ref", f"refs/heads/{pull['base']}", commit, target)
        pull.update(state="closed", merged=True)
        return {"sha": commit, "merged": True, "message": "Pull Request successfully merged"}, 200

    def _event(self, pull: dict[str, Any], action: str, by_actions: bool) -> None:
        self.events.append(
            {
                "event": "pull_request",
                "action": action,
                "number": pull["number"],
                "head_sha": pull["head_sha"],
                "starts_workflows": not by_actions,
            }
        )

    def _settle(self, by_actions: bool = False) -> None:
        """What GitHub does to open pull requests when branches move (by the API or by a push).

        A head that moved until nothing of it is missing from the base (reset to the base commit,
        say) closes the pull request for good; a base that came to contain the unchanged head
        merged it (a fast-forward pushed to the base); a deleted head branch closes it.
        """
        for pull in self.pulls:
            if pull["state"] != "open":
                continue
            head, target = self.tip(pull["head"]), self.tip(pull["base"])
            if head is None or target is None:
                pull["state"] = "closed"
            elif self._contains(target, head):
                pull["state"] = "closed"
                if head == pull["head_sha"]:
                    pull["merged"] = True
                else:
                    pull["reopenable"] = False
            if head is not None and head != pull["head_sha"]:
                pull["head_sha"] = head
                if pull["state"] == "open":
                    self._event(pull, "synchronize", by_actions)

    # --- issues and their comments --------------------------------------------------------------
    def _comment_json(self, base: str, comment: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": comment["id"],
            "body": comment["body"],
            "url": f"{base}/repos/{self.repository}/issues/comments/{comment['id']}",
            "html_url": f"{base}/{self.repository}/issues/{comment['issue']}#issuecomment-{comment['id']}",
        }

    def _issue_json(self, base: str, item: dict[str, Any]) -> dict[str, Any]:
        """An issue, or a pull request as the issues API shows it (with a `pull_request` key)."""
        number = item["number"]
        found = {
            **{key: item[key] for key in ("number", "title", "body", "state")},
            "labels": [],
            "url": f"{base}/repos/{self.repository}/issues/{number}",
            "html_url": f"{base}/{self.repository}/issues/{number}",
            "comments": len(self.comments.get(number, [])),
        }
        if "head" in item:
            found["html_url"] = f"{base}/{self.repository}/pull/{number}"
            found["pull_request"] = {"url": f"{base}/repos/{self.repository}/pulls/{number}"}
        return found

    def _issue(self, number: str) -> dict[str, Any]:
        found = next((item for item in (*self.issues, *self.pulls) if item["number"] == int(number)), None)
        if found is None:
            raise _Refused(404, "Not Found")
        return found

    def _list_issues(self, base, request, body):
        """Open issues by default, pull requests among them, newest first, as GitHub lists them."""
        wanted = request.args.get("state", "open")
        found = [item for item in (*self.issues, *self.pulls) if wanted in (item["state"], "all")]
        found.sort(key=lambda item: item["number"], reverse=True)
        return [self._issue_json(base, item) for item in found], 200

    def _create_issue(self, base, request, body):
        if not isinstance(body.get("title"), str) or not body["title"].strip():
            raise _invalid("Issue", "title wasn't supplied")
        issue = {
            "number": next(self._numbers),  # issues and pull requests share one sequence
            "title": body["title"],
            "body": body.get("body") or "",
            "state": "open",
        }
        self.issues.append(issue)
        return self._issue_json(base, issue), 201

    def _get_issue(self, base, request, body, number):
        return self._issue_json(base, self._issue(number)), 200

    def _edit_issue(self, base, request, body, number):
        item = self._issue(number)
        if "head" in item:  # a pull request's state moves through the pulls API's rules
            self._edit_pull(base, request, body, number)
            return self._issue_json(base, item), 200
        if body.get("state") not in (None, "open", "closed"):
            raise _invalid("Issue", f"state must be open or closed, not {body.get('state')!r}")
        item.update({key: body[key] for key in ("title", "body", "state") if key in body})
        return self._issue_json(base, item), 200

    def _list_comments(self, base, request, body, number):
        return [self._comment_json(base, c) for c in self.comments.get(int(number), [])], 200

    def _create_comment(self, base, request, body, number):
        comment = {"id": next(self._ids), "issue": int(number), "body": body["body"]}
        self.comments.setdefault(int(number), []).append(comment)
        return self._comment_json(base, comment), 201

    def _edit_comment(self, base, request, body, comment_id):
        for comment in itertools.chain.from_iterable(self.comments.values()):
            if comment["id"] == int(comment_id):
                comment["body"] = body["body"]
                return self._comment_json(base, comment), 200
        return {"message": "Not Found"}, 404

    # --- git ------------------------------------------------------------------------------------
    def _git(
        self, *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None, check=True
    ) -> bytes:
        done = subprocess.run(
            ["git", "--git-dir", str(self.git_dir), *args],
            input=stdin,
            capture_output=True,
            env={**os.environ, **(env or {})},
            check=False,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)}: {done.stderr.decode().strip()}")
        return done.stdout

    def _type(self, sha: Any) -> str | None:
        if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{40}", sha):
            return None
        return self._git("cat-file", "-t", sha, check=False).decode().strip() or None

    def _commit_sha(self, sha: Any) -> str:
        if self._type(sha) != "commit":
            raise _Refused(422, "Object does not exist")
        return sha

    def _contains(self, descendant: str, ancestor: str) -> bool:
        """Whether `ancestor` is reachable from `descendant` (every commit of it is in there)."""
        found = subprocess.run(
            ["git", "--git-dir", str(self.git_dir), "merge-base", "--is-ancestor", ancestor, descendant],
            capture_output=True,
            check=False,
        )
        return found.returncode == 0

    def _blob(self, data: bytes) -> str:
        return self._git("hash-object", "-w", "--no-filters", "--stdin", stdin=data).decode().strip()

    def _tree_of(self, commit: str | None) -> str | None:
        return self._git("rev-parse", commit + TREE_OF).decode().strip() if commit else None

    def _entries(self, treeish: str, recursive: bool) -> dict[str, tuple[str, str, str, int | None]]:
        """path -> (mode, type, sha, size) of a tree (or of a commit's or branch's tree)."""
        listing = self._git("ls-tree", "-z", "-l", *(["-r"] if recursive else []), treeish)
        entries = {}
        for record in filter(None, listing.decode().split("\0")):
            meta, path = record.split("\t", 1)
            mode, kind, sha, size = meta.split()
            entries[path] = (mode, kind, sha, None if size == "-" else int(size))
        return entries

    def _write_tree(self, base_tree: str | None, changes: dict[str, str | None]) -> str:
        """base_tree (or nothing) with paths set to blobs, or removed where the blob is None."""
        with tempfile.TemporaryDirectory() as folder:
            env = {"GIT_INDEX_FILE": str(Path(folder) / "index")}
            if base_tree:
                self._git("read-tree", base_tree, env=env)
            else:
                self._git("read-tree", "--empty", env=env)
            present = set(self._git("ls-files", "-z", env=env).decode().split("\0"))
            for path, blob in sorted(changes.items()):
                if blob is None:
                    if path not in present:
                        raise _invalid("Tree", f"cannot delete {path}: it is not in the tree")
                    self._git("update-index", "--force-remove", "--", path, env=env)
                else:
                    self._git("update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=env)
            return self._git("write-tree", env=env).decode().strip()

    def _commit_tree(
        self, tree: str, parents: list[str], message: str, author: dict[str, str], committer: dict[str, str]
    ) -> str:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        env = {}
        for role, person in (("AUTHOR", author), ("COMMITTER", committer)):
            env[f"GIT_{role}_NAME"] = person.get("name") or BOT["name"]
            env[f"GIT_{role}_EMAIL"] = person.get("email") or BOT["email"]
            env[f"GIT_{role}_DATE"] = person.get("date") or now
        arguments = [argument for parent in parents for argument in ("-p", parent)]
        return self._git("commit-tree", tree, *arguments, stdin=message.encode(), env=env).decode().strip()

    @staticmethod
    def _json(data: Any, status: int = 200) -> Response:
        return Response(json.dumps(data), status=status, content_type="application/json")


def main(argv: list[str] | None = None) -> int:
    """Serve a stand-in on a loopback port for a whole local run (e.g. `make ci-drift` under act).

    Prints the base URL on the first line, then keeps a JSON snapshot of its state (pull
    requests, branch file lists, comments) in --state after every request.
    """
    import argparse
    import time

    parser = argparse.ArgumentParser(description=main.__doc__.split("\n\n")[0])
    parser.add_argument("--repository", default="acme/model")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--git-dir", type=Path, help="bare repository that is the stand-in's git side")
    parser.add_argument(
        "--actions-token", help="the workflow's GITHUB_TOKEN: what it does starts no workflow"
    )
    args = parser.parse_args(argv)
    fake = FakeGitHub(repository=args.repository, git_dir=args.git_dir, actions_token=args.actions_token)
    handle = fake.handle

    def handle_and_record(request: Request) -> Response:
        response = handle(request)
        with fake._lock:
            state = {
                "pulls": fake.pulls,
                "branches": fake.branches(),
                "comments": {str(number): items for number, items in fake.comments.items()},
                "issues": fake.issues,
                "requests": fake.requests,
                "events": fake.events,
            }
            args.state.write_text(json.dumps(state, indent=2))
        return response

    fake.handle = handle_and_record
    url, _ = fake.serve(port=args.port)
    print(url, flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    raise SystemExit(main())
