"""GitOps: every change to what runs where is a reviewed pull request on a fixed branch.

Three changes exist, each one make target and one bot-owned branch:
- `pin-staging` (cd.yml, after an image is pushed): the image's model version becomes
  `staging` in governance/registry.yaml, with its image digest (and its batch image's, when
  cd.yml built one), and deploy/overlays/staging pins that digest. Branch `gitops/staging`.
- `promote` (promote.yml, behind the protected `production` environment): a version that is
  in `staging` becomes `production`, the previous champion is archived, and
  deploy/overlays/production pins the version's digest, deploy/batch its batch image's, so the
  nightly scoring job runs the champion too. Branch `gitops/production`. The body carries
  `make compare`'s evidence for that version when there is some.
- `rollback` (by hand, or post-deploy.yml when the live window breaches the policy): production
  goes back to the version it ran before (or a named one), whose digests production and
  deploy/batch pin again. Branch `rollback/production`, so a pending promotion and a rollback
  never share a branch.
Merging the PR is the deployment: Argo CD syncs each overlay from main. Re-running either
target updates the same branch and PR instead of opening another, with one commit on top of
main, and changes nothing when the open PR already holds the change (see github_client.py).
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from governance import github_client, registry
from governance.core.errors import InputError
from governance.core.paths import Paths
from governance.core.records import Comparison, RegistryEntry, read_comparison
from governance.documents import render

# Only these paths are part of a GitOps change (the registry, its model cards, the overlays, the
# batch job's image pin); anything else in the working tree is not. cd.yml's `paths-ignore` lists
# exactly these, so merging a GitOps PR deploys without building again (the template's tests keep
# them equal).
CHANGE_SCOPE = (
    "governance/registry.yaml",
    "governance/model_cards",
    "deploy/overlays",
    "deploy/batch/kustomization.yaml",
)
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
DIGEST_LINE = re.compile(r"^(?P<key>[ \t]+digest:[ \t]*)(?P<value>\S+)(?P<rest>.*)$", re.MULTILINE)


class GitOpsError(InputError):
    """A GitOps change cannot be made; the message names the file, the rule and the value."""


@dataclass(frozen=True)
class Change:
    """One pull request's worth of desired state."""

    environment: str
    version: str
    digest: str
    title: str
    body: str
    purpose: str = "gitops"  # the branch's prefix: gitops, or rollback

    @property
    def branch(self) -> str:
        return f"{self.purpose}/{self.environment}"

    @property
    def name(self) -> str:
        """The dry run's file name: the environment, prefixed by any purpose other than gitops."""
        return self.environment if self.purpose == "gitops" else f"{self.purpose}-{self.environment}"


def check_digest(digest: str, where: str) -> str:
    if not isinstance(digest, str) or not DIGEST.match(digest):
        raise GitOpsError(f"{where}: an image digest must be sha256:<64 hex>, got {digest!r}")
    return digest


def pin_digest(overlay: Path, digest: str) -> bool:
    """Set the image digest in an overlay's kustomization.yaml; True when the file changed.

    A line edit, not a YAML round trip, so the file's comments and layout survive; the
    result is parsed again to prove that the digest landed where kustomize reads it.
    """
    check_digest(digest, "pin_digest")
    path = overlay / "kustomization.yaml"
    text = path.read_text()
    lines = DIGEST_LINE.findall(text)
    if len(lines) != 1:
        raise GitOpsError(f"{path}: expected exactly one `digest:` line under images, found {len(lines)}")
    updated = DIGEST_LINE.sub(lambda match: f"{match['key']}{digest}", text)
    images = (yaml.safe_load(updated) or {}).get("images") or []
    if [image.get("digest") for image in images] != [digest]:
        raise GitOpsError(f"{path}: the digest line is not the `images:` entry kustomize reads")
    if updated == text:
        return False
    path.write_text(updated)
    return True


def batch_digest_of(batch_record: dict | None, version: str) -> str | None:
    """The batch image's digest from its push record, which must be of the same model version."""
    if batch_record is None:
        return None
    digest = check_digest(batch_record.get("digest", ""), "batch image record `digest`")
    if batch_record.get("model_version") != version:
        raise GitOpsError(
            f"batch image record: `model_version` must be the serving image's {version!r} (one build, "
            f"one model), got {batch_record.get('model_version')!r}: push this build's batch image "
            "(make image-batch image-push-batch) or remove artifacts/image-batch.json"
        )
    return digest


def pin_batch(paths: Paths, entry: RegistryEntry) -> str:
    """Pin the version's batch image in deploy/batch; a line for the PR body says what happened."""
    batch = entry.image.batch_digest if entry.image else None
    if batch is None:
        return (
            f"`deploy/batch` is unchanged: version `{entry.version}` has no batch image (cd.yml builds "
            "one when the repository variable `BATCH_SCORING` is `true`)."
        )
    pin_digest(paths.batch_deploy, batch)
    return f"`deploy/batch` pins the batch image `{batch}` of the same build."


def stage_for_staging(root: Path, record: dict, batch_record: dict | None = None) -> Change:
    """Register the pushed image's version as staging and pin its digest in the staging overlay;
    `batch_record` (`make image-push-batch`) adds the batch image's digest to the registry entry."""
    digest = check_digest(record.get("digest", ""), "image record `digest`")
    version = record.get("model_version") or ""
    if not version:
        raise GitOpsError("image record: `model_version` is empty (the image lacks its version label)")
    batch = batch_digest_of(batch_record, version)
    paths = Paths(root)
    path = paths.registry
    entry = registry.get(version, path)
    if entry.stage not in ("candidate", "staging"):
        raise GitOpsError(
            f"{paths.relative(path)}: version {version} is in stage {entry.stage!r}; "
            "only a candidate (or the staging version itself) can become staging"
        )
    replaced = [
        other.version
        for other in registry.load(path).models
        if other.stage == "staging" and other.version != version
    ]
    for other in replaced:  # one staging version at a time: what the staging overlay runs
        registry.set_stage(other, "archived", path)
    registry.update(version, {"image": {"digest": digest, "batch_digest": batch}}, path)
    entry = registry.set_stage(version, "staging", path)
    pin_digest(paths.overlays / "staging", digest)
    body = describe(entry, "staging", record.get("reference") or digest, replaced)
    return Change("staging", version, digest, f"Deploy {version} to staging", body)


def stage_for_production(root: Path, version: str) -> Change:
    """Move a staging version to production (archiving the champion) and pin its digest there."""
    paths = Paths(root)
    path = paths.registry
    entry = registry.get(version, path)
    if entry.stage != "staging":
        raise GitOpsError(
            f"{paths.relative(path)}: version {version} is in stage {entry.stage!r}; "
            "only the version in staging can be promoted to production"
        )
    digest = check_digest(
        entry.image.digest if entry.image else "", f"{paths.relative(path)}: {version} image.digest"
    )
    previous = registry.load(path).champion
    entry = registry.set_stage(version, "production", path)  # archives the previous champion
    pin_digest(paths.overlays / "production", digest)
    replaced = [previous.version] if previous else []
    body = describe(entry, "production", digest, replaced, batch=pin_batch(paths, entry))
    return Change("production", version, digest, f"Promote {version} to production", body)


def describe(entry: RegistryEntry, environment: str, image: str, archived: list[str], batch: str = "") -> str:
    return render(
        "gitops_pr.md.j2", entry=entry, environment=environment, image=image, archived=archived, batch=batch
    )


def changed_files(root: Path) -> dict[str, bytes]:
    """The files of the GitOps change: what git sees changed (or new) under CHANGE_SCOPE."""
    result = subprocess.run(  # noqa: S603 -- fixed arguments, no shell
        ["git", "status", "--porcelain", "--untracked-files=all", "--", *CHANGE_SCOPE],  # noqa: S607
        cwd=root,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise GitOpsError(f"{root} must be a git checkout to make a GitOps change: {result.stderr.strip()}")
    paths = sorted({line[3:].split(" -> ")[-1].strip('"') for line in result.stdout.splitlines() if line})
    return {path: (root / path).read_bytes() for path in paths if (root / path).is_file()}


def publish(root: Path, change: Change, files: dict[str, bytes]) -> str:
    """Open or update the change's PR; without a token, write the dry run and say where."""
    target = github_client.target_from_env()
    if target is None:
        listing = "\n".join(f"- `{path}`" for path in files)
        paths = Paths(root)
        dry_run = paths.reports / "gitops" / f"{change.name}.md"
        text = f"# {change.title}\n\nbranch `{change.branch}`\n\n{change.body}\n\n## Files\n{listing}\n"
        github_client.write_dry_run(dry_run, text)
        return f"no GITHUB_TOKEN: dry run written to {paths.relative(dry_run)}"
    repository = github_client.open_repository(target)  # retries on 5xx and rate limits
    with github_client.explained(target):
        pull, commit = github_client.upsert_pull_request(
            repository,
            branch=change.branch,
            base=repository.default_branch,
            title=change.title,
            body=github_client.checked_body(change.body, target),
            files=files,
            message=change.title,
        )
    if commit is None:
        return f"pull request #{pull.number} already holds this change: {pull.html_url}"
    return f"pull request #{pull.number}: {pull.html_url}"


def apply(paths: Paths, change: Change, say=print) -> str:
    """Publish a staged change as its pull request; nothing to publish when git sees no change."""
    files = changed_files(paths.root)
    if not files:
        message = f"{change.environment} already runs {change.version}; nothing to change"
        say(f"gitops: {message}")
        return message
    say(f"gitops: {change.title} ({', '.join(files)})")
    outcome = publish(paths.root, change, files)
    say(f"gitops: {outcome}")
    return outcome


def pin_staging(paths: Paths, image_record: Path | None = None, say=print) -> str:
    """`make pin-staging`: the pushed image's version becomes staging, its digest pinned in staging;
    the batch image's record (artifacts/image-batch.json) is read when `make image-push-batch` wrote it."""
    record_path = image_record or paths.image_record
    if not record_path.is_file():
        raise GitOpsError(f"{paths.relative(record_path)} does not exist: run `make image-push` first")
    batch = paths.batch_image_record
    batch_record = json.loads(batch.read_text()) if batch.is_file() else None
    change = stage_for_staging(paths.root, json.loads(record_path.read_text()), batch_record)
    return apply(paths, change, say)


def promote(paths: Paths, version: str, say=print, evidence: Path | None = None) -> str:
    """`make promote VERSION=...`: a staging version becomes production, its digest pinned there.

    The pull request carries the comparison of the version with the champion: `evidence` (a
    Markdown file), else `make compare`'s record when it compared this version.
    """
    change = stage_for_production(paths.root, version)
    text = evidence_text(paths, version, evidence)
    if text:
        change = replace(change, body=f"{change.body.rstrip()}\n\n{text}")
    return apply(paths, change, say)


# --- evidence and rollback -------------------------------------------------------------------------


def evidence_text(paths: Paths, version: str, evidence: Path | None) -> str:
    """The named Markdown file, else the latest `make compare` summary when it judged `version`."""
    if evidence is not None:
        if not evidence.is_file():
            raise GitOpsError(f"option '--evidence': {evidence} must be an existing Markdown file")
        return evidence.read_text().strip()
    record = paths.reports / "compare" / "compare.json"
    if not record.is_file():
        return ""
    comparison = read_comparison(record)
    return comparison_markdown(comparison) if comparison.subject_version == version else ""


def comparison_markdown(comparison: Comparison) -> str:
    return render("comparison_summary.md.j2", comparison=comparison).strip()


def stage_rollback(
    root: Path, version: str | None = None, trigger: str = "a person (make rollback)", evidence: str = ""
) -> Change:
    """Production goes back to the version it ran before the champion (or `version`), digest and all.

    The registry knows the previous one: the archived version promoted most recently
    (`promoted_at`). The champion is archived, the restored version becomes production again.
    """
    paths = Paths(root)
    path = paths.registry
    current = registry.load(path).champion
    if current is None:
        raise GitOpsError(f"{paths.relative(path)}: no version is in production: nothing to roll back")
    if version is not None:
        entry = registry.get(version, path)
        if entry.version == current.version:
            raise GitOpsError(f"option '--version': {version} is production already; name an earlier version")
    else:
        entry = registry.previous_production(registry.load(path))
        if entry is None:
            raise GitOpsError(
                f"{paths.relative(path)}: no previous production version with an image digest is recorded "
                f"(no archived entry has `promoted_at`): name the version to restore with VERSION=<version>"
            )
    digest = check_digest(
        entry.image.digest if entry.image else "", f"{paths.relative(path)}: {entry.version} image.digest"
    )
    restored = registry.set_stage(entry.version, "production", path)  # archives the current champion
    pin_digest(paths.overlays / "production", digest)
    batch = pin_batch(paths, restored)
    body = render(
        "rollback_pr.md.j2",
        entry=restored,
        current=current,
        digest=digest,
        trigger=trigger,
        evidence=evidence.strip(),
        batch=batch,
    )
    title = f"Roll production back from {current.version} to {entry.version}"
    return Change("production", entry.version, digest, title, body, purpose="rollback")


def rollback(
    paths: Paths,
    version: str | None = None,
    check: Path | None = None,
    evidence: Path | None = None,
    say=print,
) -> str:
    """`make rollback [VERSION=]`: open (or update) the pull request that restores production.

    With `check` (a post-deploy check's record), only a `rollback` verdict opens it, with the
    check's summary as the evidence: the scheduled workflow runs this after every check.
    """
    trigger, text = "a person (make rollback)", ""
    if check is not None:
        comparison = read_comparison(check)
        if comparison.kind != "post_deploy":
            raise GitOpsError(
                f"option '--check': {check} is a {comparison.kind} record, not a post-deploy check"
            )
        if comparison.verdict != "rollback":
            message = f"post-deploy check says {comparison.verdict}: no rollback"
            say(f"gitops: {message}")
            return message
        trigger, text = f"the post-deploy check of {comparison.run_at}", comparison_markdown(comparison)
    if evidence is not None:
        if not evidence.is_file():
            raise GitOpsError(f"option '--evidence': {evidence} must be an existing Markdown file")
        text = f"{text}\n\n{evidence.read_text().strip()}".strip()
    return apply(paths, stage_rollback(paths.root, version, trigger, text), say)
