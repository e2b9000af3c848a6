"""`python -m monitoring.cli drift|retrain-pr`: what `make drift` and `make retrain-pr` run.

Exit codes: 0 when the run did its job (whatever the decision), 2 when it could not run
(bad configuration, unreadable capture, no reference, GitHub refused); the message on
stderr says what to fix.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

from data_pipelines.contract import ContractError, load
from governance.registry import RegistryError
from monitoring.capture import CaptureError
from monitoring.config import (
    ROOT,
    SETTINGS_PATH,
    ConfigError,
    Settings,
    backend_name,
    load_policy,
    load_settings,
)
from monitoring.detectors import DriftError
from monitoring.performance import PerformanceError
from monitoring.reference import NoReferenceError
from monitoring.retrain_pr import MAX_DATA_ENV, MAX_DATA_MB, RetrainPRError

FAILURES = (
    ConfigError,
    ContractError,
    CaptureError,
    DriftError,
    PerformanceError,
    NoReferenceError,
    RegistryError,
    RetrainPRError,
)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (got {text})")
    return value


def _positive_mb(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of megabytes (got {text!r})") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0 (got {text})")
    return value


def max_data_mb(flag: float | None) -> float:
    """--max-data-mb, else RETRAIN_MAX_DATA_MB from the environment, else the default."""
    if flag is not None:
        return flag
    raw = os.environ.get(MAX_DATA_ENV, "").strip()
    if not raw:
        return MAX_DATA_MB
    try:
        return _positive_mb(raw)
    except argparse.ArgumentTypeError as error:
        raise ConfigError(f"{MAX_DATA_ENV} {error}") from None


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="python -m monitoring.cli", description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--root",
        type=Path,
        default=ROOT,
        help="project root: policy, registry, snapshots, reports (default: here)",
    )
    commands = main.add_subparsers(dest="command", required=True)
    drift = commands.add_parser(
        "drift", parents=[common], help="drift, performance and bias checks on a capture window"
    )
    drift.add_argument(
        "--capture-uri", help="capture root (default: CAPTURE_URI or file://./artifacts/capture)"
    )
    drift.add_argument("--since", help="window start, ISO 8601 (UTC if no offset)")
    drift.add_argument("--until", help="window end (exclusive), ISO 8601")
    drift.add_argument("--days", type=float, help="window: the last N days")
    drift.add_argument("--last-n", type=_positive_int, help="window: the newest N predictions")
    drift.add_argument("--detector", help="alibi or scipy (default: DETECTOR or monitoring/monitoring.yaml)")
    drift.add_argument("--reference", help="snapshot id or path to compare with instead of the champion's")
    drift.add_argument("--no-history", action="store_true", help="do not append to the monitoring history")
    pr = commands.add_parser(
        "retrain-pr", parents=[common], help="open or update the retraining pull request"
    )
    pr.add_argument("--summary", type=Path, help="drift.json of the run (default: the latest report)")
    pr.add_argument(
        "--dry-run", action="store_true", help="write the would-be pull request to reports/drift/"
    )
    pr.add_argument("--remote", default="origin", help="git remote to push the branch to")
    pr.add_argument("--retries", type=int, default=5, help="retries on 5xx answers and rate limits")
    pr.add_argument("--backoff", type=float, default=1.0, help="backoff factor in seconds between retries")
    pr.add_argument(
        "--max-data-mb",
        type=_positive_mb,
        default=None,
        help="size limit of the snapshot file committed with the request "
        f"(default: {MAX_DATA_ENV} or {MAX_DATA_MB:g})",
    )
    return main


def settings_for(root: Path) -> Settings:
    """monitoring.yaml of that root if it has one (tests, workspaces), else this project's."""
    root = root.resolve()
    own = root / "monitoring" / "monitoring.yaml"
    return load_settings(own if own.is_file() else SETTINGS_PATH, root=root)


def drift(args: argparse.Namespace) -> int:
    from monitoring import check

    settings = settings_for(args.root)
    if args.detector:
        settings = replace(settings, detector=backend_name(args.detector, "--detector"))
    options = check.Options(
        uri=args.capture_uri,
        since=args.since,
        until=args.until,
        last_n=args.last_n,
        days=args.days,
        reference=args.reference,
        record=not args.no_history,
    )
    contract_path = settings.root / "data_pipelines" / "contract.yaml"
    contract = load(contract_path) if contract_path.is_file() else load()
    summary = check.run(
        options, settings, load_policy(settings.root / "governance" / "policy.yaml"), contract
    )
    decision = summary["decision"]
    print(f"decision: {decision['status']}")
    for reason in decision["reasons"]:
        print(f"  - {reason}")
    print(f"report: {settings.reports / 'report.html'}")
    return 0


def retrain_pr(args: argparse.Namespace) -> int:
    from governance.github_client import target_from_env
    from monitoring import retrain_pr as bot

    settings = settings_for(args.root)
    path = args.summary or settings.reports / "drift.json"
    try:
        summary = json.loads(path.read_text())
    except FileNotFoundError:
        raise RetrainPRError(f"{path} does not exist: run `make drift` first") from None
    decision = summary.get("decision", {})
    status = decision.get("status")
    if status != "retrain":
        why = {
            "retrain_blocked": "the policy asks to retrain, but the captured window failed validation "
            "or holds too few labels (see the drift report); nothing is trained on it",
            "insufficient_data": "too few captured rows to decide",
        }.get(status, "no retraining pull request needed")
        print(f"retrain-pr: the latest drift decision is {status!r}: {why}")
        return 0
    root = settings.root
    plan = bot.make_plan(
        summary,
        branch=settings.branch,
        base=settings.base,
        request_dir=settings.request_dir.relative_to(root).as_posix(),
        history_path=settings.history,
        history_name=settings.history.relative_to(root).as_posix(),
        snapshots_root=root / "artifacts" / "snapshots",
        max_data_mb=max_data_mb(args.max_data_mb),
    )
    try:
        target = None if args.dry_run else target_from_env()
    except ValueError as error:  # GitHubConfigError: a malformed GITHUB_REPOSITORY or GITHUB_API_URL
        raise RetrainPRError(str(error)) from None
    if target is None:
        as_json, as_md = bot.write_dry_run(plan, settings.reports)
        why = "--dry-run" if args.dry_run else "GITHUB_TOKEN is not set"
        print(f"retrain-pr: dry run ({why}): the would-be pull request is in {as_json} and {as_md}")
        return 0
    git = bot.Git(root, token=target.token, remote=args.remote)
    outcome = bot.open_or_update(
        plan, git, target.api_url, target.repository, target.token, retries=args.retries, backoff=args.backoff
    )
    print(f"retrain-pr: {outcome.message} on branch {outcome.branch}: {outcome.url}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return drift(args) if args.command == "drift" else retrain_pr(args)
    except FAILURES as error:
        print(f"{args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
