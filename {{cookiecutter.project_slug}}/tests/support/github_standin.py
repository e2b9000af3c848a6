"""An in-memory stand-in for the part of GitHub's REST API the project's bots use.

Why: the bots (PR comment, GitOps and retraining pull requests) must be tested for what they
send, including re-runs, without a network or a token. The fake keeps repositories, branches,
files, pull requests and issue comments in dictionaries and answers with the JSON fields
PyGithub reads. Use it with pytest-httpserver (`respond_with_handler(fake.handle)`), serve
it on a port (`serve()`) and point GITHUB_API_URL at it, or run it as a process for a whole
local run, e.g. under act: `python -m tests.support.github_standin --state /tmp/github.json`.
`token` makes it refuse other credentials (401) and `failures` queues error answers, so the
bots' retries and refusals are tested against the same stand-in as their happy path.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import logging
import re
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

# What GitHub says with a status the stand-in is asked to answer (`failures`).
REFUSALS = {
    401: "Bad credentials",
    403: "Resource not accessible by integration",
    404: "Not Found",
    422: "Validation Failed",
}


@dataclass
class FakeGitHub:
    """One repository `owner/name` with a `main` branch holding `files` (path -> bytes)."""

    repository: str = "acme/model"
    files: dict[str, bytes] = field(default_factory=dict)
    # A bare repository that plays GitHub's git side, for bots that `git push` their branch
    # (head branches found there are accepted by the pull request endpoint).
    git_dir: Path | None = None
    branches: dict[str, dict[str, bytes]] = field(init=False)
    heads: dict[str, str] = field(init=False)
    # When set, every request must carry this token (`Authorization: token ...`, as PyGithub sends it):
    # anything else is answered 401 Bad credentials, as GitHub does for a revoked token.
    token: str | None = None
    # Statuses to answer the next requests with, in order, before serving normally (5xx, 403 ...).
    failures: list[int] = field(default_factory=list)
    pulls: list[dict[str, Any]] = field(default_factory=list)
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    # Pull requests are numbered 1, 2, ... per repository like GitHub's issues; comment ids
    # and commit digests come from a separate counter, so they never skip a PR number.
    _numbers: itertools.count = field(default_factory=lambda: itertools.count(1))
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.branches = {"main": dict(self.files)}
        self.heads = {"main": self._commit("main")}

    # --- what tests inspect ---------------------------------------------------------------------
    def open_pulls(self) -> list[dict[str, Any]]:
        return [pull for pull in self.pulls if pull["state"] == "open"]

    def file(self, branch: str, path: str) -> bytes:
        return self.branches[branch][path]

    # --- HTTP -----------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        with self._lock:
            self.requests.append((request.method, request.path))
            refused = self._refusal(request)
            if refused is not None:
                return refused
            base = request.host_url.rstrip("/")
            prefix = f"/repos/{self.repository}"
            if not request.path.startswith(prefix):
                return self._json({"message": "Not Found"}, 404)
            path = request.path[len(prefix) :]
            body = request.get_json(silent=True) or {}
            for method, pattern, handler in self._routes():
                match = re.fullmatch(pattern, path)
                if match and request.method == method:
                    result = handler(base, request, body, **match.groupdict())
                    return result if isinstance(result, Response) else self._json(*result)
            return self._json({"message": f"fake GitHub has no route for {request.method} {path}"}, 404)

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
            ("GET", r"/git/ref/heads/(?P<branch>.+)", self._get_ref),
            ("PATCH", r"/git/refs/heads/(?P<branch>.+)", self._update_ref),
            ("POST", r"/git/refs", self._create_ref),
            ("GET", r"/contents/(?P<path>.+)", self._get_contents),
            ("PUT", r"/contents/(?P<path>.+)", self._put_contents),
            ("GET", r"/pulls", self._list_pulls),
            ("POST", r"/pulls", self._create_pull),
            ("PATCH", r"/pulls/(?P<number>\d+)", self._edit_pull),
            ("GET", r"/issues/(?P<number>\d+)", self._get_issue),
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
        if branch not in self.branches:
            return {"message": "Branch not found"}, 404
        return {"name": branch, "commit": {"sha": self.heads[branch]}}, 200

    def _ref_json(self, base: str, branch: str) -> dict[str, Any]:
        return {
            "ref": f"refs/heads/{branch}",
            "url": f"{base}/repos/{self.repository}/git/refs/heads/{branch}",
            "object": {"sha": self.heads[branch], "type": "commit"},
        }

    def _get_ref(self, base, request, body, branch):
        if branch not in self.branches:
            return {"message": "Not Found"}, 404
        return self._ref_json(base, branch), 200

    def _branch_at(self, sha: str) -> dict[str, bytes]:
        for name, head in self.heads.items():
            if head == sha:
                return dict(self.branches[name])
        raise KeyError(sha)

    def _update_ref(self, base, request, body, branch):
        if branch not in self.branches:
            return {"message": "Reference does not exist"}, 422
        self.branches[branch] = self._branch_at(body["sha"])
        self.heads[branch] = body["sha"]
        return self._ref_json(base, branch), 200

    def _create_ref(self, base, request, body):
        branch = body["ref"].removeprefix("refs/heads/")
        if branch in self.branches:
            return {"message": "Reference already exists"}, 422
        self.branches[branch] = self._branch_at(body["sha"])
        self.heads[branch] = body["sha"]
        return self._ref_json(base, branch), 201

    def _content_json(self, base: str, branch: str, path: str) -> dict[str, Any]:
        data = self.branches[branch][path]
        return {
            "type": "file",
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "sha": hashlib.sha1(data).hexdigest(),  # noqa: S324 -- git's blob id scheme, not security
            "size": len(data),
            "encoding": "base64",
            "content": base64.b64encode(data).decode(),
            "url": f"{base}/repos/{self.repository}/contents/{path}?ref={branch}",
        }

    def _get_contents(self, base, request, body, path):
        branch = request.args.get("ref", "main")
        if path not in self.branches.get(branch, {}):
            return {"message": "Not Found"}, 404
        return self._content_json(base, branch, path), 200

    def _put_contents(self, base, request, body, path):
        branch = body.get("branch", "main")
        files = self.branches[branch]
        if path in files and body.get("sha") != hashlib.sha1(files[path]).hexdigest():  # noqa: S324
            return {"message": f"{path} does not match the given sha"}, 409
        if path not in files and body.get("sha"):
            return {"message": f"{path} does not exist"}, 422
        files[path] = base64.b64decode(body["content"])
        self.heads[branch] = self._commit(branch)
        return {"content": self._content_json(base, branch, path), "commit": {"sha": self.heads[branch]}}, (
            200 if body.get("sha") else 201
        )

    def _pull_json(self, base: str, pull: dict[str, Any]) -> dict[str, Any]:
        return {
            **{key: pull[key] for key in ("number", "title", "body", "state")},
            "head": {"ref": pull["head"], "label": f"{self.repository.split('/')[0]}:{pull['head']}"},
            "base": {"ref": pull["base"]},
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

    def _pushed(self, branch: str) -> bool:
        if self.git_dir is None:
            return False
        found = subprocess.run(
            [
                "git",
                "--git-dir",
                str(self.git_dir),
                "rev-parse",
                "--verify",
                "--quiet",
                f"refs/heads/{branch}",
            ],
            capture_output=True,
            check=False,
        )
        return found.returncode == 0

    def _create_pull(self, base, request, body):
        if body["head"] not in self.branches and not self._pushed(body["head"]):
            return {"message": f"no branch {body['head']}"}, 422
        if any(p["head"] == body["head"] and p["state"] == "open" for p in self.pulls):
            return {"message": f"A pull request already exists for {body['head']}."}, 422
        pull = {
            "number": next(self._numbers),
            "title": body["title"],
            "body": body.get("body", ""),
            "state": "open",
            "head": body["head"],
            "base": body["base"],
        }
        self.pulls.append(pull)
        return self._pull_json(base, pull), 201

    def _edit_pull(self, base, request, body, number):
        pull = next(p for p in self.pulls if p["number"] == int(number))
        pull.update({key: body[key] for key in ("title", "body", "state") if key in body})
        return self._pull_json(base, pull), 200

    def _comment_json(self, base: str, comment: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": comment["id"],
            "body": comment["body"],
            "url": f"{base}/repos/{self.repository}/issues/comments/{comment['id']}",
            "html_url": f"{base}/{self.repository}/issues/{comment['issue']}#issuecomment-{comment['id']}",
        }

    def _get_issue(self, base, request, body, number):
        return {
            "number": int(number),
            "state": "open",
            "url": f"{base}/repos/{self.repository}/issues/{number}",
            "html_url": f"{base}/{self.repository}/pull/{number}",
        }, 200

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

    # --- helpers --------------------------------------------------------------------------------
    def _commit(self, branch: str) -> str:
        digest = hashlib.sha256(json.dumps(sorted(self.branches[branch])).encode())
        for path in sorted(self.branches[branch]):
            digest.update(self.branches[branch][path])
        digest.update(str(next(self._ids)).encode())
        return digest.hexdigest()[:40]

    @staticmethod
    def _json(data: Any, status: int = 200) -> Response:
        return Response(json.dumps(data), status=status, content_type="application/json")


def main(argv: list[str] | None = None) -> int:
    """Serve a fake on a loopback port for a whole local run (e.g. `make ci-drift` under act).

    Prints the base URL on the first line, then keeps a JSON snapshot of the fake's state
    (pull requests, branch file lists, comments) in --state after every request.
    """
    import argparse
    import time

    parser = argparse.ArgumentParser(description=main.__doc__.split("\n\n")[0])
    parser.add_argument("--repository", default="acme/model")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--git-dir", type=Path, help="bare repository that receives `git push`")
    args = parser.parse_args(argv)
    fake = FakeGitHub(repository=args.repository, git_dir=args.git_dir)
    handle = fake.handle

    def handle_and_record(request: Request) -> Response:
        response = handle(request)
        state = {
            "pulls": fake.pulls,
            "branches": {name: sorted(files) for name, files in fake.branches.items()},
            "comments": {str(number): items for number, items in fake.comments.items()},
            "requests": fake.requests,
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
