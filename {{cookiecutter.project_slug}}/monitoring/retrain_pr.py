"""Open, or update, the retraining pull request when the drift decision says retrain.

Safe to re-run, like any bot that opens pull requests should be: one fixed branch per
purpose (`retrain/auto`), and an open pull request from that branch is updated (new commit,
refreshed body, one comment saying what changed) instead of a second one being opened.

The commit is built with git plumbing on a temporary index (read-tree, update-index,
write-tree, commit-tree) and pushed as `<sha>:refs/heads/<branch>`: the user's working tree,
index and current branch are never touched. The GitHub calls go through PyGithub against
GITHUB_API_URL (GitHub Enterprise and local stand-ins work too) with retries and backoff on
5xx answers and rate limits; 401/403/404 stop with a message that says what to fix.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from monitoring.report import markdown

COMMIT_IDENTITY = {"name": "drift-monitor", "email": "drift-monitor@users.noreply.github.com"}
GIT = shutil.which("git")
RETRY_STATUSES = [*range(500, 600), 429]  # PyGithub's GithubRetry adds 403 rate limits itself


class RetrainPRError(RuntimeError):
    """The pull request could not be opened or updated; the message says what to fix."""


@dataclass
class Plan:
    """Everything the pull request will carry; `--dry-run` writes exactly this to a file."""

    branch: str
    base: str | None
    title: str
    body: str
    comment: str
    commit_message: str
    files: dict[str, str] = field(default_factory=dict)  # path relative to the repository root -> text

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Outcome:
    action: str  # opened | updated | dry_run | skipped
    branch: str
    number: int | None = None
    url: str | None = None
    commit: str | None = None
    message: str = ""


def make_plan(
    summary: dict[str, Any],
    branch: str,
    base: str | None,
    request_dir: str,
    history_path: Path | None,
    history_name: str,
) -> Plan:
    """The request files and the texts of the pull request, from the drift run's JSON summary."""
    decision = summary.get("decision", {})
    dataset = summary.get("dataset") or {}
    if decision.get("status") != "retrain":
        raise RetrainPRError(
            f"the drift decision is {decision.get('status')!r}, not 'retrain': no pull request to open"
        )
    if not dataset.get("valid") or not dataset.get("manifest"):
        raise RetrainPRError("the drift run produced no valid new snapshot: nothing to retrain on")
    manifest = dataset["manifest"]
    model = summary.get("reference", {}).get("model_name") or "the model"
    summary_md = markdown(summary)
    request = {
        "requested_at": summary.get("run_at"),
        "reason": decision.get("reasons", []),
        "snapshot": manifest,
        "window": summary.get("window"),
        "champion": {key: summary.get("reference", {}).get(key) for key in ("model_name", "model_version")},
        "decision": decision,
        "drift": summary.get("drift"),
        "score_drift": summary.get("score_drift"),
        "performance": summary.get("performance"),
    }
    files = {
        f"{request_dir}/request.json": json.dumps(request, indent=2, sort_keys=True, default=str) + "\n",
        f"{request_dir}/drift-summary.md": summary_md + "\n",
        f"{request_dir}/snapshot-manifest.json": json.dumps(manifest, indent=2, sort_keys=True) + "\n",
    }
    history = history_path.read_text(encoding="utf-8") if history_path and history_path.exists() else ""
    record = summary.get("history_record")
    if record:
        # In CI the drift run and this bot are separate jobs with separate checkouts: make sure the
        # run that asked for retraining is in the committed history exactly once.
        line = json.dumps(record, sort_keys=True, default=str)
        if line not in history.splitlines():
            history += line + "\n"
    if history:
        files[history_name] = history
    snapshot = manifest.get("snapshot_id")
    body = (
        f"The scheduled drift check asks to retrain {model} on snapshot `{snapshot}`.\n\n"
        f"This pull request's CI retrains on that snapshot and compares the candidate with the champion "
        f"under `governance/policy.yaml`; merge only if the gates pass.\n\n{summary_md}\n\n"
        f"<sub>Opened by `python -m monitoring.cli retrain-pr`; re-runs update this pull request.</sub>\n"
    )
    return Plan(
        branch=branch,
        base=base,
        title=f"Retrain {model} on new production data (snapshot {snapshot})",
        body=body,
        comment=f"New drift check at {summary.get('run_at')}: snapshot `{snapshot}`.\n\n{summary_md}",
        commit_message=f"Request retraining on snapshot {snapshot}\n\n"
        + "\n".join(decision.get("reasons", [])),
        files=files,
    )


def write_dry_run(plan: Plan, out_dir: Path) -> tuple[Path, Path]:
    """The would-be pull request as JSON (title, body, branch, files) and as Markdown for reading."""
    out_dir.mkdir(parents=True, exist_ok=True)
    as_json, as_md = out_dir / "retrain_pr.json", out_dir / "retrain_pr.md"
    as_json.write_text(json.dumps(plan.to_dict(), indent=2, sort_keys=True) + "\n")
    listing = "\n".join(f"- `{path}` ({len(text)} bytes)" for path, text in sorted(plan.files.items()))
    as_md.write_text(
        f"# {plan.title}\n\nBranch `{plan.branch}` into `{plan.base or '(default branch)'}`\n\n"
        f"## Files\n\n{listing}\n\n## Body\n\n{plan.body}"
    )
    return as_json, as_md


# -- git ------------------------------------------------------------------------------------
class Git:
    """Subprocess git with argument lists; errors carry git's own message."""

    def __init__(self, root: Path, token: str | None = None, remote: str = "origin") -> None:
        self.root = root
        self.remote = remote
        self.env = dict(os.environ)
        for role in ("AUTHOR", "COMMITTER"):
            if not self._configured("user.name"):
                self.env.setdefault(f"GIT_{role}_NAME", COMMIT_IDENTITY["name"])
            if not self._configured("user.email"):
                self.env.setdefault(f"GIT_{role}_EMAIL", COMMIT_IDENTITY["email"])
        self._auth(token)

    def _configured(self, key: str) -> bool:
        return bool(self.run("config", key, check=False))

    def _auth(self, token: str | None) -> None:
        """Let `git push` use the token over HTTPS the way actions/checkout does (an extra header).

        Passed through GIT_CONFIG_* variables, not arguments, so it never shows in a process list
        and is never written to .git/config.
        """
        if not token:
            return
        url = self.run("remote", "get-url", self.remote, check=False)
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            return
        credentials = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        count = int(self.env.get("GIT_CONFIG_COUNT", "0"))
        self.env[f"GIT_CONFIG_KEY_{count}"] = f"http.https://{parts.hostname}/.extraheader"
        self.env[f"GIT_CONFIG_VALUE_{count}"] = f"AUTHORIZATION: basic {credentials}"
        self.env["GIT_CONFIG_COUNT"] = str(count + 1)

    def run(
        self, *args: str, env: dict[str, str] | None = None, check: bool = True, stdin: str | None = None
    ) -> str:
        if GIT is None:
            raise RetrainPRError("git is not installed (or not on PATH)")
        result = subprocess.run(  # noqa: S603 - fixed executable, argument list, no shell
            [GIT, *args],
            cwd=self.root,
            env=env or self.env,
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and result.returncode != 0:
            raise RetrainPRError(
                f"git {' '.join(args[:2])} failed: {result.stderr.strip() or result.stdout.strip()}"
            )
        return result.stdout.strip()

    def remote_tip(self, branch: str) -> str | None:
        """The commit the remote branch points at, fetched so it can be a parent; None if absent."""
        listing = self.run("ls-remote", "--heads", self.remote, f"refs/heads/{branch}")
        if not listing:
            return None
        self.run("fetch", "--quiet", "--no-tags", self.remote, f"refs/heads/{branch}")
        return listing.split()[0]

    def commit(self, parent: str, files: dict[str, str], message: str) -> str:
        """A commit of parent's tree plus files, without touching the working tree or the index."""
        with tempfile.TemporaryDirectory() as folder:
            env = {**self.env, "GIT_INDEX_FILE": str(Path(folder) / "index")}
            self.run("read-tree", parent, env=env)
            for path, text in sorted(files.items()):
                blob = self.run("hash-object", "-w", "--stdin", stdin=text)
                self.run("update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=env)
            tree = self.run("write-tree", env=env)
        return self.run("commit-tree", tree, "-p", parent, "-m", message)

    def push(self, commit: str, branch: str, force: bool) -> None:
        self.run(
            "push", "--quiet", *(["--force"] if force else []), self.remote, f"{commit}:refs/heads/{branch}"
        )


# -- GitHub ---------------------------------------------------------------------------------
def _github_error(error: Exception, repository: str, api_url: str) -> RetrainPRError:
    from github import GithubException, RateLimitExceededException

    if isinstance(error, RateLimitExceededException):
        return RetrainPRError(f"GitHub rate limit still exceeded after retries ({api_url}); run again later")
    if isinstance(error, GithubException):
        status = error.status
        message = error.data.get("message") if isinstance(error.data, dict) else error.data
        if status == 401:
            return RetrainPRError(
                f"GitHub answered 401 ({message}): GITHUB_TOKEN is missing, expired or revoked"
            )
        if status == 403:
            return RetrainPRError(
                f"GitHub answered 403 ({message}): the token may not write to {repository}; the workflow "
                "needs `permissions: {contents: write, pull-requests: write}` and the repository setting "
                "'Allow GitHub Actions to create and approve pull requests'"
            )
        if status == 404:
            return RetrainPRError(
                f"GitHub answered 404 ({message}): repository {repository!r} does not exist at {api_url} "
                "or the token cannot see it (check GITHUB_REPOSITORY and GITHUB_API_URL)"
            )
        return RetrainPRError(f"GitHub answered {status}: {json.dumps(error.data)[:500]}")
    return RetrainPRError(f"could not reach GitHub at {api_url} after retries: {error}")


def github_client(
    api_url: str, token: str, retries: int = 5, backoff: float = 1.0, timeout: int = 30, throttle: bool = True
) -> Any:
    """PyGithub with GithubRetry: backoff on 5xx and 429, waits on rate-limit 403s (Retry-After/reset).

    `throttle` keeps PyGithub's pauses between requests and writes, which GitHub asks bots for
    to avoid secondary rate limits; a local stand-in of the API does not need them.
    """
    from github import Auth, Github, GithubRetry

    retry = GithubRetry(
        total=retries,
        backoff_factor=backoff,
        status_forcelist=RETRY_STATUSES,
        secondary_rate_wait=max(backoff * 10, 1),
        max_rate_limit_wait=15 * 60,
    )
    pauses = {} if throttle else {"seconds_between_requests": None, "seconds_between_writes": None}
    return Github(
        base_url=api_url.rstrip("/"), auth=Auth.Token(token), retry=retry, timeout=timeout, **pauses
    )


def open_or_update(
    plan: Plan,
    git: Git,
    api_url: str,
    repository: str,
    token: str,
    retries: int = 5,
    backoff: float = 1.0,
    throttle: bool = True,
) -> Outcome:
    """Push the request commit and open the pull request, or update the open one (never a second)."""
    from github import GithubException
    from requests.exceptions import RequestException

    client = github_client(api_url, token, retries=retries, backoff=backoff, throttle=throttle)
    try:
        repo = client.get_repo(repository)
        base = plan.base or repo.default_branch
        owner = repository.split("/")[0]
        existing = list(repo.get_pulls(state="open", head=f"{owner}:{plan.branch}", base=base))
        if existing:
            pull = existing[0]
            parent = git.remote_tip(plan.branch)
            if parent is None:
                raise RetrainPRError(
                    f"pull request #{pull.number} is open but branch {plan.branch} is not on the remote"
                )
            commit = git.commit(parent, plan.files, plan.commit_message)
            git.push(commit, plan.branch, force=False)
            pull.edit(title=plan.title, body=plan.body)
            pull.create_issue_comment(plan.comment)
            return Outcome(
                "updated", plan.branch, pull.number, pull.html_url, commit, f"updated #{pull.number}"
            )
        # No open pull request: start the branch afresh from the base (a closed one's branch is stale).
        parent = git.remote_tip(base)
        if parent is None:
            raise RetrainPRError(f"base branch {base!r} does not exist on remote {git.remote!r}")
        commit = git.commit(parent, plan.files, plan.commit_message)
        git.push(commit, plan.branch, force=True)
        try:
            pull = repo.create_pull(base=base, head=plan.branch, title=plan.title, body=plan.body)
        except GithubException as error:
            # A retried POST whose first attempt did reach GitHub answers 422 "already exists".
            again = list(repo.get_pulls(state="open", head=f"{owner}:{plan.branch}", base=base))
            if error.status != 422 or not again:
                raise
            pull = again[0]
            pull.create_issue_comment(plan.comment)
            return Outcome(
                "updated", plan.branch, pull.number, pull.html_url, commit, f"updated #{pull.number}"
            )
        return Outcome("opened", plan.branch, pull.number, pull.html_url, commit, f"opened #{pull.number}")
    except (GithubException, RequestException) as error:
        raise _github_error(error, repository, api_url) from None
    finally:
        client.close()
