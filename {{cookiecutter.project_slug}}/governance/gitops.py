"""GitOps: every change to what runs where is a reviewed pull request on a fixed branch.

Two changes exist, each one make target and one bot-owned branch:
- `pin-staging` (cd.yml, after an image is pushed): the image's model version becomes
  `staging` in governance/registry.yaml, with its image digest, and deploy/overlays/staging
  pins that digest. Branch `gitops/staging`.
- `promote` (promote.yml, behind the protected `production` environment): a version that is
  in `staging` becomes `production`, the previous champion is archived, and
  deploy/overlays/production pins the version's digest. Branch `gitops/production`.
Merging the PR is the deployment: Argo CD syncs each overlay from main. Re-running either
target updates the same branch and PR instead of opening another (see github_client.py).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from governance import github_client, registry

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = Path("governance/registry.yaml")
OVERLAYS = Path("deploy/overlays")
REPORTS = Path("reports/gitops")
# Only these folders are part of a GitOps change; anything else in the working tree is not.
CHANGE_SCOPE = ("governance", "deploy/overlays")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
DIGEST_LINE = re.compile(r"^(?P<key>[ \t]+digest:[ \t]*)(?P<value>\S+)(?P<rest>.*)$", re.MULTILINE)


class GitOpsError(ValueError):
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
    path = root / REGISTRY
    entry = registry.get(version, path)
    if entry["stage"] not in ("candidate", "staging"):
        raise GitOpsError(
            f"{REGISTRY}: version {version} is in stage {entry['stage']!r}; "
            "only a candidate (or the staging version itself) can become staging"
        )
    replaced = [
        other["version"]
        for other in registry.load(path)["models"]
        if other["stage"] == "staging" and other["version"] != version
    ]
    for other in replaced:  # one staging version at a time: what the staging overlay runs
        registry.set_stage(other, "archived", path)
    registry.update(version, {"image": {"digest": digest}}, path)
    entry = registry.set_stage(version, "staging", path)
    pin_digest(root / OVERLAYS / "staging", digest)
    body = describe(entry, "staging", record.get("reference") or digest, replaced)
    return Change("staging", version, digest, f"Deploy {version} to staging", body)


def stage_for_production(root: Path, version: str) -> Change:
    """Move a staging version to production (archiving the champion) and pin its digest there."""
    path = root / REGISTRY
    entry = registry.get(version, path)
    if entry["stage"] != "staging":
        raise GitOpsError(
            f"{REGISTRY}: version {version} is in stage {entry['stage']!r}; "
            "only the version in staging can be promoted to production"
        )
    digest = check_digest((entry.get("image") or {}).get("digest", ""), f"{REGISTRY}: {version} image.digest")
    previous = registry.champion(path)
    entry = registry.set_stage(version, "production", path)  # archives the previous champion
    pin_digest(root / OVERLAYS / "production", digest)
    replaced = [previous["version"]] if previous else []
    return Change(
        "production",
        version,
        digest,
        f"Promote {version} to production",
        describe(entry, "production", digest, replaced),
    )


def describe(entry: dict, environment: str, image: str, archived: list[str]) -> str:
    metrics = entry.get("metrics") or {}
    shown = ", ".join(
        f"{name} {value:.4f}" for name, value in metrics.items() if isinstance(value, int | float)
    )
    lines = [
        f"Model `{entry.get('model_name', '')}` version `{entry['version']}` goes to **{environment}**.",
        "",
        "| | |",
        "|---|---|",
        f"| image | `{image}` |",
        f"| registry stage | `{environment}` |",
        f"| metrics | {shown or 'none recorded'} |",
        f"| replaces | {', '.join(f'`{v}`' for v in archived) or 'nothing'} (archived) |",
        "",
        "Merging this pull request is the deployment:",
        f"Argo CD syncs `deploy/overlays/{environment}` from main.",
        "This branch is owned by a bot and rewritten on each run; change the source, not the branch.",
    ]
    return "\n".join(lines)


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
        dry_run = REPORTS / f"{change.environment}.md"
        text = f"# {change.title}\n\nbranch `{change.branch}`\n\n{change.body}\n\n## Files\n{listing}\n"
        github_client.write_dry_run(root / dry_run, text)
        return f"no GITHUB_TOKEN: dry run written to {dry_run}"
    repository = github_client.open_repository(target)  # retries on 5xx and rate limits
    with github_client.explained(target):
        pull = github_client.upsert_pull_request(
            repository,
            branch=change.branch,
            base=repository.default_branch,
            title=change.title,
            body=change.body,
            files=files,
            message=change.title,
        )
    return f"pull request #{pull.number}: {pull.html_url}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    staging = commands.add_parser("pin-staging", help="register the pushed image's version as staging")
    staging.add_argument("--image-record", type=Path, default=Path("artifacts/image.json"))
    production = commands.add_parser("promote", help="move a staging version to production")
    production.add_argument("--version", required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "pin-staging":
            record_path = ROOT / args.image_record
            if not record_path.is_file():
                raise GitOpsError(f"{args.image_record} does not exist: run `make image-push` first")
            change = stage_for_staging(ROOT, json.loads(record_path.read_text()))
        else:
            change = stage_for_production(ROOT, args.version)
        files = changed_files(ROOT)
        if not files:
            print(f"gitops: {change.environment} already runs {change.version}; nothing to change")
            return 0
        print(f"gitops: {change.title} ({', '.join(files)})")
        print(f"gitops: {publish(ROOT, change, files)}")
    except (GitOpsError, registry.RegistryError, github_client.GitHubConfigError) as error:
        print(f"gitops: {error}", file=sys.stderr)
        return 2
    except github_client.GitHubError as error:
        print(f"gitops: GitHub refused the change: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
