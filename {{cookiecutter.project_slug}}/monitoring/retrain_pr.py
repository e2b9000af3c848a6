"""Open, or update, the retraining pull request when the drift decision says retrain.

Safe to re-run, like any bot that opens pull requests should be: one fixed branch per
purpose (`retrain/auto`), and an open pull request from that branch is updated (its commit
replaced, refreshed body, and its one "updated" comment, found by a hidden marker and edited in place)
instead of a second one being opened. A re-run with the same request changes nothing: no
commit when the tree would not change, no comment.

The request carries its data: besides the decision, the drift summary and the snapshot's
manifest, the new snapshot's Parquet file is committed as `<request_dir>/snapshot.parquet`,
so the pull request's own CI run (`make data`, see data_pipelines/snapshot.py) rebuilds
exactly that snapshot and retrains on it. The file is size-checked (`--max-data-mb`, default
50 MB): a git repository is no place for bigger windows.

The branch is one commit on top of the base, never more: an update REPLACES that commit (a new
one built on the base's current tip, the branch force-moved to it) instead of appending, so
however many weekly updates a request sees, the branch and its pull request carry exactly one
snapshot and no earlier one stays reachable from it. What lands in main on merge is that one
commit's files (the request, its manifest, the snapshot's Parquet file and the drift history):
merge with "Squash and merge" (or rebase) so main gains one commit and one snapshot per retraining,
and delete the branch after the merge so an unmerged snapshot is not kept alive by it.

The commit is built with git plumbing on a temporary index (read-tree, update-index,
write-tree, commit-tree) and pushed as `<sha>:refs/heads/<branch>`: the user's working tree,
index and current branch are never touched, and a binary file travels like any other. The
GitHub calls use the project's one client (governance/github_client.py): GITHUB_API_URL
(GitHub Enterprise and local stand-ins work too), retries and backoff on 5xx answers and rate
limits (never a second POST after a 5xx: see IdempotentRetry there), and 401/403/404 stop
with a message that says what to fix.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from data_pipelines import snapshot as snapshots
from governance import github_client
from governance.core.errors import InputError
from governance.core.paths import Paths
from governance.core.records import DriftSummary, read_drift_summary
from monitoring.config import load_settings
from monitoring.report import markdown

COMMIT_IDENTITY = {"name": "drift-monitor", "email": "drift-monitor@users.noreply.github.com"}
GIT = shutil.which("git")
MAX_DATA_MB = 50.0  # default size limit of the committed snapshot (GitHub warns above 50 MB)
MAX_DATA_ENV = "RETRAIN_MAX_DATA_MB"
UPDATE_MARKER = "<!-- mlops-retrain-pr-update -->"  # the one "updated" comment of the pull request


class RetrainPRError(InputError):
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
    # binary files committed as they are: path relative to the repository root -> local file
    data_files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Outcome:
    action: str  # opened | updated | unchanged | dry_run | skipped
    branch: str
    number: int | None = None
    url: str | None = None
    commit: str | None = None
    message: str = ""


def snapshot_file(manifest: dict[str, Any], snapshots_root: Path, max_mb: float = MAX_DATA_MB) -> Path:
    """The new snapshot's Parquet file, checked against its manifest and the size limit.

    The file is what the pull request's CI trains on, so it must be exactly the snapshot the
    drift run validated (content hash as in the manifest), and small enough for git.
    """
    snapshot_id = str(manifest.get("snapshot_id") or "")
    try:
        folder = snapshots.resolve(snapshot_id, root=snapshots_root)
    except snapshots.SnapshotError as error:
        raise RetrainPRError(
            f"the new snapshot {snapshot_id!r} is not here ({error}); run `make drift` in this checkout "
            "(in CI: hand artifacts/snapshots/ from the drift job to this one)"
        ) from None
    path = folder / "data.parquet"
    size_mb = path.stat().st_size / 1e6
    if size_mb > max_mb:
        raise RetrainPRError(
            f"snapshot {snapshot_id} is {size_mb:.1f} MB of Parquet, above the {max_mb:g} MB limit for data "
            f"committed with a retraining request (--max-data-mb or {MAX_DATA_ENV}). A git repository is "
            "no place for big data (GitHub refuses files over 100 MB): narrow the window (for example "
            'DRIFT_ARGS="--days 7" or "--last-n 20000"), or keep windows this size in object storage '
            "(a bucket next to CAPTURE_URI, DVC or Git LFS) and let the request refer to them there"
        )
    try:
        _, stored = snapshots.load(folder)  # also proves the rows still hash to the manifest's sha256
    except (snapshots.SnapshotError, OSError) as error:
        raise RetrainPRError(f"the new snapshot {snapshot_id} cannot be committed: {error}") from None
    if stored.get("sha256") != manifest.get("sha256"):
        raise RetrainPRError(
            f"snapshot {snapshot_id}: its manifest in {folder} (sha256 {stored.get('sha256')}) is not "
            f"the one the drift run recorded (sha256 {manifest.get('sha256')}); run `make drift` again"
        )
    return path


def retraining_set(manifest: dict[str, Any]) -> str:
    """What the snapshot trains on, from its manifest: the policy's choice and each segment's rows."""
    source = manifest.get("source")
    if not isinstance(source, dict) or not source.get("segments"):
        return snapshots.RETRAINING_SET
    parts = ", ".join(f"{item['source']} {item['rows']}" for item in source["segments"])
    return (
        f"retrain.data {source.get('data')}: rows by source ({parts}); the reference_holdout rows are "
        "scored (gate reference_holdout), never trained on, and the main held-out split comes from the "
        "window rows alone"
    )


def make_plan(
    summary: DriftSummary,
    branch: str,
    base: str | None,
    request_dir: str,
    history_path: Path | None,
    history_name: str,
    snapshots_root: Path,
    max_data_mb: float = MAX_DATA_MB,
) -> Plan:
    """The request files and the texts of the pull request, from the drift run's summary."""
    decision, dataset = summary.decision, summary.dataset
    if decision.status != "retrain":
        raise RetrainPRError(
            f"the drift decision is {decision.status!r}, not 'retrain': no pull request to open"
        )
    if dataset is None or not dataset.valid or not dataset.manifest:
        raise RetrainPRError("the drift run produced no valid new snapshot: nothing to retrain on")
    manifest = dataset.manifest
    data_path = snapshot_file(manifest, snapshots_root, max_data_mb)
    model = summary.reference.model_name or "the model"
    summary_md = markdown(summary)
    request = {
        "requested_at": summary.run_at,
        "reason": list(decision.reasons),
        "snapshot": manifest,
        "window": summary.window.model_dump(mode="json"),
        "champion": {
            "model_name": summary.reference.model_name,
            "model_version": summary.reference.model_version,
        },
        # What `make data` rebuilds on this request's branch (and on main once it is merged).
        "data_file": snapshots.REQUEST_DATA,
        "retraining_set": retraining_set(manifest),
        "decision": decision.model_dump(mode="json"),
        "drift": summary.drift.model_dump(mode="json") if summary.drift else None,
        "score_drift": summary.score_drift.model_dump(mode="json") if summary.score_drift else None,
        "performance": summary.performance.model_dump(mode="json") if summary.performance else None,
    }
    files = {
        f"{request_dir}/request.json": json.dumps(request, indent=2, sort_keys=True, default=str) + "\n",
        f"{request_dir}/drift-summary.md": summary_md,
        f"{request_dir}/{snapshots.REQUEST_MANIFEST}": json.dumps(manifest, indent=2, sort_keys=True) + "\n",
    }
    data_files = {f"{request_dir}/{snapshots.REQUEST_DATA}": str(data_path)}
    history = history_path.read_text(encoding="utf-8") if history_path and history_path.exists() else ""
    # In CI the drift run and this bot are separate jobs with separate checkouts: make sure the
    # run that asked for retraining is in the committed history exactly once.
    line = summary.history_record.model_dump_json()
    if line not in history.splitlines():
        history += line + "\n"
    files[history_name] = history
    snapshot = manifest.get("snapshot_id")
    body = (
        f"The scheduled drift check asks to retrain {model} on snapshot `{snapshot}`.\n\n"
        f"The snapshot's data is committed as `{request_dir}/{snapshots.REQUEST_DATA}` "
        f"({manifest.get('rows')} rows, sha256 `{manifest.get('sha256')}`; {retraining_set(manifest)}): "
        f"`make data` rebuilds exactly that snapshot, so this pull request's CI retrains on it and "
        f"compares the candidate with the champion under `governance/policy.yaml`; merge only if the "
        f"gates pass.\n\n{summary_md}\n"
        f"<sub>Opened by `make retrain-pr`; re-runs update this pull request.</sub>\n"
    )
    return Plan(
        branch=branch,
        base=base,
        title=f"Retrain {model} on new production data (snapshot {snapshot})",
        body=body,
        comment=f"New drift check at {summary.run_at}: snapshot `{snapshot}`.\n\n{summary_md}",
        commit_message=f"Request retraining on snapshot {snapshot}\n\n" + "\n".join(decision.reasons),
        files=files,
        data_files=data_files,
    )


def write_dry_run(plan: Plan, out_dir: Path) -> tuple[Path, Path]:
    """The would-be pull request as JSON (title, body, branch, files) and as Markdown for reading."""
    out_dir.mkdir(parents=True, exist_ok=True)
    as_json, as_md = out_dir / "retrain_pr.json", out_dir / "retrain_pr.md"
    as_json.write_text(json.dumps(plan.to_dict(), indent=2, sort_keys=True) + "\n")
    sizes = {path: len(text.encode()) for path, text in plan.files.items()}
    sizes.update({path: Path(local).stat().st_size for path, local in plan.data_files.items()})
    listing = "\n".join(f"- `{path}` ({size} bytes)" for path, size in sorted(sizes.items()))
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

    def tree(self, parent: str, files: dict[str, str], data_files: dict[str, str] | None = None) -> str:
        """The tree of parent plus files (text) and data_files (local files, byte for byte),
        written without touching the working tree or the index."""
        with tempfile.TemporaryDirectory() as folder:
            env = {**self.env, "GIT_INDEX_FILE": str(Path(folder) / "index")}
            self.run("read-tree", parent, env=env)
            blobs = {
                path: self.run("hash-object", "-w", "--stdin", stdin=text) for path, text in files.items()
            }
            for path, local in (data_files or {}).items():
                # --no-filters: the bytes as they are (no line-ending or attribute conversions)
                blobs[path] = self.run("hash-object", "-w", "--no-filters", "--", str(Path(local).resolve()))
            for path, blob in sorted(blobs.items()):
                self.run("update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=env)
            return self.run("write-tree", env=env)

    def tree_of(self, commit: str) -> str:
        return self.run("rev-parse", commit + "^{tree}")

    def commit_tree(self, tree: str, parent: str, message: str) -> str:
        return self.run("commit-tree", tree, "-p", parent, "-m", message)

    def commit(
        self, parent: str, files: dict[str, str], message: str, data_files: dict[str, str] | None = None
    ) -> str:
        """A commit of parent's tree plus files and data_files (see `tree`)."""
        return self.commit_tree(self.tree(parent, files, data_files), parent, message)

    def push(self, commit: str, branch: str, expected: str | None = None) -> None:
        """Move the remote branch to commit. With `expected`, only if it still points there
        (--force-with-lease): a replaced request commit never overwrites someone else's push."""
        lease = [f"--force-with-lease=refs/heads/{branch}:{expected}"] if expected else ["--force"]
        self.run("push", "--quiet", *lease, self.remote, f"{commit}:refs/heads/{branch}")


# -- GitHub ---------------------------------------------------------------------------------
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
    target = github_client.GitHubTarget(api_url=api_url.rstrip("/"), repository=repository, token=token)
    client = github_client.client(target, retries=retries, backoff=backoff, throttle=throttle)
    try:
        with github_client.explained(target):
            return _push_and_open(plan, git, client.get_repo(repository), target.owner)
    except github_client.GitHubError as error:
        raise RetrainPRError(str(error)) from None
    finally:
        client.close()


def _describe(pull: Any, plan: Plan) -> None:
    if (pull.title, pull.body or "") != (plan.title, plan.body):
        pull.edit(title=plan.title, body=plan.body)


def _updated(plan: Plan, repo: Any, pull: Any, commit: str) -> Outcome:
    """Refresh the pull request's text and its one "updated" comment (edited in place by its marker)."""
    _describe(pull, plan)
    github_client.upsert_comment(repo, pull.number, UPDATE_MARKER, plan.comment)
    return Outcome("updated", plan.branch, pull.number, pull.html_url, commit, f"updated #{pull.number}")


def _base_tip(git: Git, base: str) -> str:
    """The base branch's tip on the remote: the one parent of every request commit."""
    parent = git.remote_tip(base)
    if parent is None:
        raise RetrainPRError(f"base branch {base!r} does not exist on remote {git.remote!r}")
    return parent


def _push_and_open(plan: Plan, git: Git, repo: Any, owner: str) -> Outcome:
    from github import GithubException

    base = plan.base or repo.default_branch
    existing = list(repo.get_pulls(state="open", head=f"{owner}:{plan.branch}", base=base))
    if existing:
        pull = existing[0]
        tip = git.remote_tip(plan.branch)
        if tip is None:
            raise RetrainPRError(
                f"pull request #{pull.number} is open but branch {plan.branch} is not on the remote"
            )
        parent = _base_tip(git, base)
        tree = git.tree(parent, plan.files, plan.data_files)
        if tree == git.tree_of(tip):
            # The branch already carries this request: no empty commit, no new comment.
            _describe(pull, plan)
            message = f"#{pull.number} already carries this request"
            return Outcome("unchanged", plan.branch, pull.number, pull.html_url, tip, message)
        # Replace, never append: the one request commit is rebuilt on the base and the branch moved
        # to it, so the branch (and the pull request) carries one snapshot, not one per weekly update.
        commit = git.commit_tree(tree, parent, plan.commit_message)
        git.push(commit, plan.branch, expected=tip)
        return _updated(plan, repo, pull, commit)
    # No open pull request: start the branch afresh from the base (a closed one's branch is stale).
    parent = _base_tip(git, base)
    commit = git.commit(parent, plan.files, plan.commit_message, plan.data_files)
    git.push(commit, plan.branch)
    try:
        pull = repo.create_pull(base=base, head=plan.branch, title=plan.title, body=plan.body)
    except GithubException as error:
        # 422 "already exists": another run opened it; 5xx: the answer may be lost, not the pull
        # request (a POST is not retried, see github_client.IdempotentRetry). Look before failing.
        again = list(repo.get_pulls(state="open", head=f"{owner}:{plan.branch}", base=base))
        if not again or (error.status != 422 and error.status < 500):
            raise
        if error.status == 422:
            return _updated(plan, repo, again[0], commit)
        pull = again[0]
    return Outcome("opened", plan.branch, pull.number, pull.html_url, commit, f"opened #{pull.number}")


def run(
    paths: Paths,
    *,
    summary_path: Path | None = None,
    dry_run: bool = False,
    remote: str = "origin",
    retries: int = 5,
    backoff: float = 1.0,
    max_data_mb: float = MAX_DATA_MB,
    say=print,
) -> Outcome:
    """`make retrain-pr`: open or update the retraining PR when the latest decision says retrain."""
    summary = read_drift_summary(summary_path or paths.drift_reports / "drift.json")
    status = summary.decision.status
    if status != "retrain":
        why = {
            "retrain_blocked": "the policy asks to retrain, but the captured window failed validation "
            "or holds too few labels (see the drift report); nothing is trained on it",
            "insufficient_data": "too few captured rows to decide",
        }.get(status, "no retraining pull request needed")
        say(f"retrain-pr: the latest drift decision is {status!r}: {why}")
        return Outcome("skipped", "", message=why)
    settings = load_settings(paths)
    plan = make_plan(
        summary,
        branch=settings.retraining.branch,
        base=settings.retraining.base,
        request_dir=paths.relative(paths.retraining),
        history_path=paths.history,
        history_name=paths.relative(paths.history),
        snapshots_root=paths.snapshots,
        max_data_mb=max_data_mb,
    )
    target = None if dry_run else github_client.target_from_env()
    if target is None:
        as_json, as_md = write_dry_run(plan, paths.drift_reports)
        why = "--dry-run" if dry_run else "GITHUB_TOKEN is not set"
        say(f"retrain-pr: dry run ({why}): the would-be pull request is in {as_json} and {as_md}")
        return Outcome("dry_run", plan.branch, message=why)
    plan = dataclasses.replace(plan, body=github_client.checked_body(plan.body, target, say))
    git = Git(paths.root, token=target.token, remote=remote)
    outcome = open_or_update(
        plan, git, target.api_url, target.repository, target.token, retries=retries, backoff=backoff
    )
    say(f"retrain-pr: {outcome.message} on branch {outcome.branch}: {outcome.url}")
    return outcome
