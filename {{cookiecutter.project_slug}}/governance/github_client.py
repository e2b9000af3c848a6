"""GitHub's REST API for the project's bots: the PR results comment and the GitOps pull requests.

Why one small module: every bot must be safe to re-run (a workflow retried, a schedule that
fires twice), so the two write patterns live here once: a comment found by a hidden marker
and edited in place, and a pull request on a fixed branch per purpose, looked up before one
is created. The API address, repository and token come from the variables GitHub Actions
sets (GITHUB_API_URL, GITHUB_REPOSITORY, GITHUB_TOKEN), so GitHub Enterprise, act and a
local stand-in of the API in tests all work unchanged. Without a token nothing is sent: the
callers write what they would have done to a dry-run file instead.

Every bot (this module's callers and the retraining PR in monitoring/retrain_pr.py) builds its
client here, so all of them get the same behaviour towards GitHub: retries with backoff on 5xx
answers and rate limits (PyGithub's GithubRetry honours Retry-After and the rate-limit reset),
and a sentence that says what to fix when GitHub answers 401, 403 or 404 (`explain`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from github import Auth, Github, GithubException, GithubRetry, RateLimitExceededException
from github.PullRequest import PullRequest
from github.Repository import Repository
from requests.exceptions import RequestException

from governance.core.errors import InputError

DEFAULT_API_URL = "https://api.github.com"
REPOSITORY = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9_.-]{1,100}$")
RETRY_STATUSES = [*range(500, 600), 429]  # GithubRetry adds the 403s that are rate limits itself
WRITE_PERMISSIONS = "`permissions: {contents: write, pull-requests: write}`"


class GitHubConfigError(InputError):
    """A GitHub setting is missing or malformed; the message names the variable and the value."""


class GitHubError(InputError):
    """GitHub refused a call, or could not be reached after the retries; the message says what to fix."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


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


def client(
    target: GitHubTarget,
    *,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: int = 30,
    throttle: bool = True,
) -> Github:
    """PyGithub with GithubRetry: backoff on 5xx and 429, waits on rate-limit 403s (Retry-After/reset).

    `throttle` keeps PyGithub's pauses between requests and between writes, which GitHub asks
    bots for to stay clear of secondary rate limits; a local stand-in of the API needs none.
    """
    retry = GithubRetry(
        total=retries,
        backoff_factor=backoff,
        status_forcelist=RETRY_STATUSES,
        secondary_rate_wait=max(backoff * 10, 1),
        max_rate_limit_wait=15 * 60,
    )
    pauses = {} if throttle else {"seconds_between_requests": None, "seconds_between_writes": None}
    return Github(
        base_url=target.api_url.rstrip("/"),
        auth=Auth.Token(target.token),
        retry=retry,
        timeout=timeout,
        **pauses,
    )


def open_repository(
    target: GitHubTarget, *, fast: bool = False, permissions: str = WRITE_PERMISSIONS
) -> Repository:
    """The repository object, through a retrying client; a refusal is raised as a clear GitHubError.

    `fast` drops PyGithub's pauses and shortens the backoff (for a local stand-in of the API).
    """
    github = client(target, backoff=0.05 if fast else 1.0, throttle=not fast)
    with explained(target, permissions):
        return github.get_repo(target.repository)


def explain(error: Exception, target: GitHubTarget, permissions: str = WRITE_PERMISSIONS) -> GitHubError:
    """Turn what PyGithub or requests raised into one sentence that names the fix.

    `permissions` is what the calling workflow job needs, quoted in the 403 message.
    """
    if isinstance(error, RateLimitExceededException):
        return GitHubError(
            f"GitHub rate limit still exceeded after retries ({target.api_url}); run again later", 429
        )
    if isinstance(error, GithubException):
        status = error.status
        message = error.data.get("message") if isinstance(error.data, dict) else error.data
        if status == 401:
            return GitHubError(
                f"GitHub answered 401 ({message}): GITHUB_TOKEN is missing, expired or revoked", status
            )
        if status == 403:
            return GitHubError(
                f"GitHub answered 403 ({message}): the token may not write to {target.repository}; the "
                f"workflow job needs {permissions} and, to open pull requests with the workflow's token, "
                "the repository setting 'Allow GitHub Actions to create and approve pull requests'",
                status,
            )
        if status == 404:
            return GitHubError(
                f"GitHub answered 404 ({message}): repository {target.repository!r} does not exist at "
                f"{target.api_url} or the token cannot see it (check GITHUB_REPOSITORY and GITHUB_API_URL)",
                status,
            )
        return GitHubError(f"GitHub answered {status}: {json.dumps(error.data, default=str)[:500]}", status)
    return GitHubError(f"could not reach GitHub at {target.api_url} after retries: {error}")


@contextmanager
def explained(target: GitHubTarget, permissions: str = WRITE_PERMISSIONS) -> Iterator[None]:
    """Raise a GitHubError (see `explain`) for anything GitHub or the network refused inside."""
    try:
        yield
    except (GithubException, RequestException) as error:
        raise explain(error, target, permissions) from None


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
