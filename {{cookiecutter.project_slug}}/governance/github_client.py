"""GitHub's REST API for the project's bots: the PR results comment and the GitOps pull requests.

Why one small module: every bot must be safe to re-run (a workflow retried, a schedule that
fires twice), so the two write patterns live here once: a comment found by a hidden marker
and edited in place, and a pull request on a fixed branch per purpose, looked up before one
is created, whose branch moves by one atomic commit per change (the Git Data API) and not at
all when it already holds the change. The API address, repository and token come from the
variables GitHub Actions sets (GITHUB_API_URL, GITHUB_REPOSITORY, GITHUB_TOKEN), so GitHub
Enterprise, act and a local stand-in of the API in tests all work unchanged. Without a token
nothing is sent: the callers write what they would have done to a dry-run file instead.

Every bot (this module's callers and the retraining PR in monitoring/retrain_pr.py) builds its
client here, so all of them get the same behaviour towards GitHub: retries with backoff on rate
limits for every request (PyGithub's GithubRetry honours Retry-After and the rate-limit reset)
and on 5xx answers for idempotent requests only (a POST answered 502 may have been carried out:
sent again, it could post a second comment), and a sentence that says what to fix when GitHub
answers 401, 403 or 404 (`explain`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from github import Auth, Github, GithubException, GithubRetry, InputGitTreeElement, RateLimitExceededException
from github.GitRef import GitRef
from github.PullRequest import PullRequest
from github.Repository import Repository
from requests.exceptions import RequestException

from governance.core.errors import InputError

DEFAULT_API_URL = "https://api.github.com"
REPOSITORY = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9_.-]{1,100}$")
RETRY_STATUSES = [*range(500, 600), 429]  # GithubRetry adds the 403s that are rate limits itself
# Requests that do the same when GitHub receives them twice. A POST or PATCH answered 5xx (or cut
# off) may have been carried out all the same: sent again, it could post a second comment.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
RATE_LIMITED = frozenset({403, 429})  # refused before anything was done: safe to send again
WRITE_PERMISSIONS = "`permissions: {contents: write, pull-requests: write}`"
# GitHub starts no workflow for what a workflow's own GITHUB_TOKEN does (so that runs cannot start
# runs): a bot's pull request opened with it gets no check, and the required `all green` never
# reports. The workflows say which token the bots hold in GITOPS_TOKEN_SET.
NO_CHECKS_WARNING = (
    "No check starts on this pull request by itself: it was opened with the workflow's GITHUB_TOKEN, "
    "and GitHub starts no workflow for that token's events. Close and reopen it to run `pr.yml` "
    "(the required `all green` check), or store a GitHub App token as the `GITOPS_TOKEN` secret of "
    "the `gitops` environment so that the bots' pull requests are checked by themselves."
)


class GitHubConfigError(InputError):
    """A GitHub setting is missing or malformed; the message names the variable and the value."""


class GitHubError(InputError):
    """GitHub refused a call, or could not be reached after the retries; the message says what to fix."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class GitHubTarget:
    """Where the bots write: API address, `owner/repo` and the token (never printed), and whether what
    the token does starts workflows (false for the workflow's own GITHUB_TOKEN)."""

    api_url: str
    repository: str
    token: str = field(repr=False)
    starts_workflows: bool = True

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
    # Set by the workflows to `secrets.GITOPS_TOKEN != ''`; unset (a person's token) starts workflows.
    starts_workflows = environ.get("GITOPS_TOKEN_SET", "").strip().lower() != "false"
    return GitHubTarget(
        api_url=api_url, repository=repository, token=token, starts_workflows=starts_workflows
    )


def checked_body(body: str, target: GitHubTarget, say=print) -> str:
    """A bot's pull request body, telling its reviewers (and the job log) when no check will start."""
    if target.starts_workflows:
        return body
    say(f"::warning::{NO_CHECKS_WARNING}")
    return f"{body.rstrip()}\n\n> [!WARNING]\n> {NO_CHECKS_WARNING}\n"


class IdempotentRetry(GithubRetry):
    """GithubRetry that never sends a request again when that could do its work twice.

    Rate limits (429, and the 403s GithubRetry recognises as rate limits) are retried for every
    method: GitHub refused before doing anything. 5xx answers and connections cut after the
    request was sent are retried for idempotent methods only (GET, PUT, DELETE ...), never for
    POST or PATCH; the callers look up what they meant to create instead (a comment by its
    marker, a pull request by its branch) before they create it again.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("allowed_methods", IDEMPOTENT_METHODS)
        super().__init__(**kwargs)

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if status_code in RATE_LIMITED:
            method = "GET"  # whatever the method: a refused request did nothing
        return super().is_retry(method, status_code, has_retry_after)


def client(
    target: GitHubTarget,
    *,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: int = 30,
    throttle: bool = True,
) -> Github:
    """PyGithub with IdempotentRetry: waits on rate limits (Retry-After/reset), backoff on 5xx for
    idempotent requests only.

    `throttle` keeps PyGithub's pauses between requests and between writes, which GitHub asks
    bots for to stay clear of secondary rate limits; a local stand-in of the API needs none.
    """
    retry = IdempotentRetry(
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


def _marked(issue: Any, marker: str) -> Any | None:
    return next((comment for comment in issue.get_comments() if marker in (comment.body or "")), None)


def upsert_comment(repository: Repository, number: int, marker: str, body: str) -> str:
    """Edit the issue/PR comment that carries `marker`, or create it: returns its URL.

    The marker is a hidden HTML comment placed in the body, so later runs find the same
    comment and a pull request never collects one comment per push. A comment that already
    says `body` is left alone. A create answered 5xx is not sent again blindly (it may have
    been posted): the comments are looked up by the marker first.
    """
    if marker not in body:
        body = f"{marker}\n{body}"
    issue = repository.get_issue(number)
    found = _marked(issue, marker)
    if found is None:
        try:
            return issue.create_comment(body).html_url
        except GithubException as error:
            if error.status < 500:
                raise
            found = _marked(issue, marker)  # the answer may be lost, not the comment
            if found is None:
                return issue.create_comment(body).html_url
    if found.body != body:
        found.edit(body)
    return found.html_url


def _marked_issue(repository: Repository, marker: str) -> Any | None:
    """The open issue (not pull request: the issues list holds both) whose body carries the marker."""
    for issue in repository.get_issues(state="open"):
        if issue.pull_request is None and marker in (issue.body or ""):
            return issue
    return None


def upsert_issue(repository: Repository, marker: str, title: str, body: str) -> tuple[int, bool]:
    """Open the one issue a bot keeps by `marker`, or edit the open one; returns (number, created).

    An unchanged issue is not edited (no notification); a 5xx on the creation is looked up again
    before anything is sent twice (the issue may exist although its answer was lost).
    """
    existing = _marked_issue(repository, marker)
    if existing is not None:
        if (existing.title, existing.body or "") != (title, body):
            existing.edit(title=title, body=body)
        return existing.number, False
    try:
        return repository.create_issue(title=title, body=body).number, True
    except GithubException as error:
        again = _marked_issue(repository, marker) if error.status >= 500 else None
        if again is None:
            raise
        return again.number, True


def close_issue(repository: Repository, marker: str, comment: str) -> int | None:
    """Close the bot's open issue with a comment saying why; None when none is open."""
    existing = _marked_issue(repository, marker)
    if existing is None:
        return None
    existing.create_comment(comment)
    existing.edit(state="closed", state_reason="completed")
    return existing.number


def _missing(error: GithubException) -> bool:
    return error.status == 404


def blob_sha(content: bytes) -> str:
    """Git's id of a file's content: what GitHub's trees list as each file's `sha`."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()  # noqa: S324 -- git's id, not security


class Upserted(NamedTuple):
    """The pull request, and the commit this run made on its branch (None: it held the files already)."""

    pull: PullRequest
    commit: str | None


def _branch(repository: Repository, branch: str) -> GitRef | None:
    try:
        ref = repository.get_git_ref(f"heads/{branch}")
        ref.object  # noqa: B018 -- PyGithub reads the ref lazily: this is the GET that may answer 404
    except GithubException as error:
        if not _missing(error):
            raise
        return None
    return ref


def _holds(repository: Repository, commit: str, files: Mapping[str, bytes]) -> bool:
    """Whether the commit's tree already has exactly these contents at these paths."""
    tree = repository.get_git_tree(repository.get_git_commit(commit).tree.sha, recursive=True)
    if tree.truncated:
        return False  # too big to list in one answer: make the commit, which is always right
    present = {element.path: element.sha for element in tree.tree if element.type == "blob"}
    return all(present.get(path) == blob_sha(content) for path, content in files.items())


def _commit_on(repository: Repository, base: str, files: Mapping[str, bytes], message: str) -> str:
    """One commit whose parent is the base's tip and whose tree is the base's plus `files`.

    Git Data API: a blob per file, one tree on top of the base commit's tree (`base_tree`), one
    commit; nothing is visible on any branch until the caller moves one to it.
    """
    parent = repository.get_git_commit(repository.get_git_ref(f"heads/{base}").object.sha)
    elements = [
        InputGitTreeElement(
            path,
            "100644",
            "blob",
            sha=repository.create_git_blob(base64.b64encode(content).decode(), "base64").sha,
        )
        for path, content in sorted(files.items())
    ]
    tree = repository.create_git_tree(elements, base_tree=parent.tree)
    return repository.create_git_commit(message, tree, [parent]).sha


def _move(repository: Repository, ref: GitRef | None, branch: str, commit: str) -> None:
    """Point the branch at `commit` in one step: force-update it, or create it.

    Never through the base commit: GitHub closes a pull request whose head branch has no commit
    left over its base, for good (it cannot be reopened).
    """
    if ref is None:
        try:
            repository.create_git_ref(f"refs/heads/{branch}", commit)
            return
        except GithubException as error:
            if error.status != 422:  # 422: "Reference already exists" (made meanwhile): move it instead
                raise
        ref = repository.get_git_ref(f"heads/{branch}")
    ref.edit(commit, force=True)


def _describe(pull: PullRequest, title: str, body: str) -> None:
    if (pull.title, pull.body or "") != (title, body):
        pull.edit(title=title, body=body)


def upsert_pull_request(
    repository: Repository,
    *,
    branch: str,
    base: str,
    title: str,
    body: str,
    files: Mapping[str, bytes],
    message: str,
) -> Upserted:
    """Make `branch` hold `base` plus exactly `files` in one commit, then open its PR or update the open one.

    A re-run whose files the open pull request's branch already holds changes nothing: no
    commit, no edit (reviews stay). Otherwise the change is one commit on top of the current
    base (so the PR always shows the latest desired change, never a stack of commits) and the
    branch is force-moved to it once: a failure before that leaves the branch as it was, never
    half-updated. No git push, so the workflow never holds credentials in git's configuration.
    """
    if not files:
        raise ValueError("a pull request needs at least one changed file")
    head = f"{repository.owner.login}:{branch}"
    existing = next(iter(repository.get_pulls(state="open", head=head, base=base)), None)
    ref = _branch(repository, branch)
    if existing is not None and ref is not None and _holds(repository, ref.object.sha, files):
        _describe(existing, title, body)
        return Upserted(existing, None)
    commit = _commit_on(repository, base, files, message)
    _move(repository, ref, branch, commit)
    if existing is not None:
        _describe(existing, title, body)
        return Upserted(existing, commit)
    try:
        return Upserted(repository.create_pull(title=title, body=body, head=branch, base=base), commit)
    except GithubException as error:
        # 422: it exists (another run); 5xx: the answer may be lost, not the pull request.
        again = next(iter(repository.get_pulls(state="open", head=head, base=base)), None)
        if again is None or (error.status != 422 and error.status < 500):
            raise
        _describe(again, title, body)
        return Upserted(again, commit)


def write_dry_run(path: Path, text: str) -> Path:
    """Record what a bot would have sent when no token is configured (local runs, act)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
