"""GitHub's REST API for the project's bots: the PR results comment and the GitOps pull requests.

Why one small module: every bot must be safe to re-run (a workflow retried, a schedule that
fires twice), so the two write patterns live here once: a comment found by a hidden marker
and edited in place, and a pull request on a fixed branch per purpose, looked up before one
is created. The API address, repository and token come from the variables GitHub Actions
sets (GITHUB_API_URL, GITHUB_REPOSITORY, GITHUB_TOKEN), so GitHub Enterprise, act and a
local stand-in of the API in tests all work unchanged. Without a token nothing is sent: the
callers write what they would have done to a dry-run file instead.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from github import Auth, Github, GithubException
from github.PullRequest import PullRequest
from github.Repository import Repository

DEFAULT_API_URL = "https://api.github.com"
REPOSITORY = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9_.-]{1,100}$")


class GitHubConfigError(ValueError):
    """A GitHub setting is missing or malformed; the message names the variable and the value."""


@dataclass(frozen=True)
class GitHubTarget:
    """Where the bots write: API address, `owner/repo` and the token (never printed)."""

    api_url: str
    repository: str
    token: str

    @property
    def owner(self) -> str:
        return self.repository.split("/", 1)[0]


def target_from_env(environ: Mapping[str, str] | None = None) -> GitHubTarget | None:
    """The GitHub target from the environment, or None (dry run) when no token is set."""
    environ = os.environ if environ is None else environ
    token = environ.get("GITHUB_TOKEN", "").strip()
    if not token:
        return None
    repository = environ.get("GITHUB_REPOSITORY", "").strip()
    if not REPOSITORY.match(repository):
        raise GitHubConfigError(f"GITHUB_REPOSITORY must be owner/repo, got {repository!r}")
    api_url = (environ.get("GITHUB_API_URL") or DEFAULT_API_URL).rstrip("/")
    if not api_url.startswith(("https://", "http://")):
        raise GitHubConfigError(f"GITHUB_API_URL must be an http(s) URL, got {api_url!r}")
    return GitHubTarget(api_url=api_url, repository=repository, token=token)


def open_repository(target: GitHubTarget, *, fast: bool = False) -> Repository:
    """The repository object; `fast` drops PyGithub's pauses and retries (for a local stand-in)."""
    options = (
        {"seconds_between_requests": None, "seconds_between_writes": None, "retry": None} if fast else {}
    )
    client = Github(base_url=target.api_url, auth=Auth.Token(target.token), timeout=30, **options)
    return client.get_repo(target.repository)


def upsert_comment(repository: Repository, number: int, marker: str, body: str) -> str:
    """Edit the issue/PR comment that carries `marker`, or create it: returns its URL.

    The marker is a hidden HTML comment placed in the body, so later runs find the same
    comment and a pull request never collects one comment per push.
    """
    if marker not in body:
        body = f"{marker}\n{body}"
    issue = repository.get_issue(number)
    for comment in issue.get_comments():
        if marker in (comment.body or ""):
            comment.edit(body)
            return comment.html_url
    return issue.create_comment(body).html_url


def _missing(error: GithubException) -> bool:
    return error.status == 404


def upsert_pull_request(
    repository: Repository,
    *,
    branch: str,
    base: str,
    title: str,
    body: str,
    files: Mapping[str, bytes],
    message: str,
) -> PullRequest:
    """Point `branch` at `base` plus exactly `files`, then open its PR or update the open one.

    The branch is reset to the base each time, so a re-run never stacks commits and the PR
    always shows the latest desired change. Files go through the contents API (no git push,
    so the workflow never holds credentials in git's configuration).
    """
    if not files:
        raise ValueError("a pull request needs at least one changed file")
    base_sha = repository.get_branch(base).commit.sha
    try:
        repository.get_git_ref(f"heads/{branch}").edit(base_sha, force=True)
    except GithubException as error:
        if not _missing(error):
            raise
        repository.create_git_ref(f"refs/heads/{branch}", base_sha)
    for path, content in sorted(files.items()):
        try:
            current = repository.get_contents(path, ref=branch)
        except GithubException as error:
            if not _missing(error):
                raise
            repository.create_file(path, message, content, branch=branch)
            continue
        if isinstance(current, list):
            raise ValueError(f"{path} is a folder in {repository.full_name}, not a file")
        repository.update_file(path, message, content, current.sha, branch=branch)
    head = f"{repository.owner.login}:{branch}"
    existing = next(iter(repository.get_pulls(state="open", head=head, base=base)), None)
    if existing is not None:
        existing.edit(title=title, body=body)
        return existing
    return repository.create_pull(title=title, body=body, head=branch, base=base)


def write_dry_run(path: Path, text: str) -> Path:
    """Record what a bot would have sent when no token is configured (local runs, act)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
