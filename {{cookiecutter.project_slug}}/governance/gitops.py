"""GitOps: every change to what runs where is a reviewed pull request on a fixed branch.

Two changes exist, each one make target and one bot-owned branch:
- `pin-staging` (cd.yml, after an image is pushed): the image's model version becomes
  `staging` in governance/registry.yaml, with its image digest, and deploy/overlays/staging
  pins that digest. Branch `gitops/staging`.
- `promote` (promote.yml, behind the protected `production` environment): a version that is
  in `staging` becomes `production`, the previous champion is archived, and
  deploy/overlays/production pins the version's digest. Branch `gitops/production`.
Merging the PR is the deployment: Argo CD syncs each overlay from main. Re-running either
target updates the same branch and PR instead of opening another, with one commit on top of
main, and changes nothing when the open PR already holds the change (see github_client.py).
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from governance import github_client, registry
from governance.core.errors import InputError
from governance.core.paths import Paths
from governance.core.records import RegistryEntry
from governance.documents import render

# Only these paths are part of a GitOps change (the registry, its model cards, the overlays);
# anything else in the working tree is not. cd.yml's `paths-ignore` lists exactly these, so
# merging a GitOps PR deploys without building again (the template's tests keep them equal).
CHANGE_SCOPE = ("governance/registry.yaml", "governance/model_cards", "deploy/overlays")
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

    @property
    def branch(self) -> str:
        return f"gitops/{self.environment}"


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


def stage_for_staging(root: Path, record: dict) -> Change:
    """Register the pushed image's version as staging and pin its digest in the staging overlay."""
    digest = check_digest(record.get("digest", ""), "image record `digest`")
    version = record.get("model_version") or ""
    if not version:
        raise GitOpsError("image record: `model_version` is empty (the image lacks its version label)")
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
    registry.update(version, {"image": {"digest": digest}}, path)
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
    return Change(
        "production",
        version,
        digest,
        f"Promote {version} to production",
        describe(entry, "production", digest, replaced),
    )


def describe(entry: RegistryEntry, environment: str, image: str, archived: list[str]) -> str:
    return render("gitops_pr.md.j2", entry=entry, environment=environment, image=image, archived=archived)


def changed_files(root: Path) -> dict[str, bytes]:
    """The files of the GitOps change: what git sees changed (or new) under CHANGE_SCOPE."""
    result = subprocess.run(  # noqa: S603 -- fixed arguments, no shell
        ["git", "status", "--porcelain", "--untracked-files=all", "--", *CHANGE_SCOPE],  # noqa: S607
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    paths = sorted({line[3:].split(" -> ")[-1].strip('"') for line in result.stdout.splitlines() if line})
    return {path: (root / path).read_bytes() for path in paths if (root / path).is_file()}


def publish(root: Path, change: Change, files: dict[str, bytes]) -> str:
    """Open or update the change's PR; without a token, write the dry run and say where."""
    target = github_client.target_from_env()
    if target is None:
        listing = "\n".join(f"- `{path}`" for path in files)
        paths = Paths(root)
        dry_run = paths.reports / "gitops" / f"{change.environment}.md"
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
    """`make pin-staging`: the pushed image's version becomes staging, its digest pinned in staging."""
    record_path = image_record or paths.image_record
    if not record_path.is_file():
        raise GitOpsError(f"{paths.relative(record_path)} does not exist: run `make image-push` first")
    return apply(paths, stage_for_staging(paths.root, json.loads(record_path.read_text())), say)


def promote(paths: Paths, version: str, say=print) -> str:
    """`make promote VERSION=...`: a staging version becomes production, its digest pinned there."""
    return apply(paths, stage_for_production(paths.root, version), say)
