"""The one pull-request comment that shows a reviewer the evidence for a change.

Why a comment: reviewers decide on a model change from its numbers (metrics against the
champion, the policy gates, ONNX parity, data validation, and for a retraining PR the drift
that caused it), and those numbers should sit next to the diff, not in CI logs. It is one
comment, found again by a hidden marker and edited in place, so a PR with ten pushes still
has one up-to-date report. It reads only the records the pipeline wrote (artifacts/,
reports/, governance/registry.yaml) and JOB_RESULTS (the workflow's `needs` context as JSON);
the layout is governance/templates/pr_comment.md.j2.

Without GITHUB_TOKEN (local runs, act) it writes the comment to reports/pr-comment.md only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from github import GithubException
from pydantic import BaseModel
from requests.exceptions import RequestException

from governance import github_client, registry
from governance.core import recording
from governance.core.errors import InputError
from governance.core.paths import Paths
from governance.core.records import (
    Explanations,
    GateReport,
    MonitoringSettings,
    Parity,
    Quality,
    RecordError,
    TrackedRun,
    TrainingRecord,
    ValidationReport,
    numeric_items,
    parse,
    read_json,
    read_yaml,
)
from governance.core.tasks import METRICS, REGRESSION, higher_is_better, worsening
from governance.documents import render

MARKER = "<!-- mlops-pr-report -->"
PERMISSIONS = "`permissions: {pull-requests: write}`"  # what the commenting job needs
ICONS = {"success": "✅", "failure": "❌", "cancelled": "⏹️", "skipped": "⏭️"}
JOB_TITLES = {
    "lint-test": "lint + unit tests",
    "data": "data validation",
    "train": "train + gates + ONNX + parity",
    "champion": "candidate vs champion (register + model card)",
    "image": "image build + image test",
}


def optional(model: type[BaseModel], path: Path) -> Any:
    """A record a failed job may not have written: None when it is missing or broken."""
    try:
        return read_json(model, path)
    except RecordError:
        return None


def recorded_run(model_dir: Path) -> TrackedRun | None:
    """The model's MLflow run, once a recording still pending in the background is done."""
    recording.wait(model_dir)
    return optional(TrackedRun, model_dir / recording.RECORD)


def latest_model_dir(models: Path) -> Path | None:
    """The model this run trained: artifacts/models/latest names it (a version, or a link)."""
    pointer = models / "latest"
    if pointer.is_dir():
        return pointer.resolve()
    if pointer.is_file():
        chosen = models / pointer.read_text().strip()
        return chosen if (chosen / "metrics.json").is_file() else None
    return None


MLFLOW_ARTIFACT = "mlflow-run"  # the workflow's upload of the local MLflow store (.github/workflows/pr.yml)


def run_link(run: TrackedRun | None) -> str | None:
    """Where a reviewer finds the training run: its page on the team's server, else the uploaded store."""
    if run is None:
        return None
    if run.tracking_uri.startswith(("http://", "https://")):
        page = f"{run.tracking_uri.rstrip('/')}/#/experiments/{run.experiment_id}/runs/{run.run_id}"
        return f"[{run.run_id}]({page})" if run.experiment_id else f"{run.run_id} on {run.tracking_uri}"
    unreachable = f" (server {run.fallback_from} was unreachable)" if run.fallback_from else ""
    return f"artifact `{MLFLOW_ARTIFACT}`, run `{run.run_id}`{unreachable}; browse it with `make ui`"


def checks(job_results: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(title, icon, result) per job, in the workflow's order."""
    order = list(JOB_TITLES)
    ranked = sorted(
        job_results.items(), key=lambda item: order.index(item[0]) if item[0] in order else len(order)
    )
    rows = []
    for job, outcome in ranked:
        result = outcome.get("result", "unknown") if isinstance(outcome, Mapping) else str(outcome)
        rows.append((JOB_TITLES.get(job, job), ICONS.get(result, "❔"), result))
    return rows


def metric_rows(
    quality: Quality, gates: GateReport | None, champion_metrics: dict[str, float]
) -> list[tuple]:
    """(metric, which way is better, candidate, champion or None, change or None).

    On the basis the regression gate used; the change says whether the candidate is better or
    worse by the metric's own direction (a lower log_loss or rmse is better).
    """
    rescored = gates is not None and gates.champion is not None and gates.champion.comparable
    best = gates.champion.metrics if rescored and gates and gates.champion else champion_metrics
    rows = []
    for name, value in numeric_items(quality.metrics).items():
        other = best.get(name)
        direction = ("higher" if higher_is_better(name) else "lower") if name in METRICS else ""
        change = None
        if other is not None:
            change = f"{value - other:+.4f}"
            if name in METRICS and value != other:
                change += " better" if worsening(name, value, other) < 0 else " worse"
        rows.append((name, direction, value, other, change))
    return rows


def retraining_evidence(paths: Paths, head_ref: str, trained_snapshot: str | None) -> str | None:
    """On a retraining PR: the drift evidence the bot committed, so the reviewer sees why.

    Only when this PR is the retraining PR (its branch, or a candidate trained on the snapshot
    the request names); the request stays in git after the merge and must not haunt later PRs.
    """
    summary = paths.retraining / "drift-summary.md"
    if not summary.is_file():
        return None
    try:
        request = json.loads((paths.retraining / "request.json").read_text())
    except (OSError, ValueError):
        request = {}
    requested = ((request or {}).get("snapshot") or {}).get("snapshot_id")
    try:
        branch = parse(
            MonitoringSettings, read_yaml(paths.monitoring, "monitoring settings"), "monitoring.yaml"
        )
        retraining_branch = branch.retraining.branch
    except InputError:
        retraining_branch = "retrain/auto"
    if head_ref != retraining_branch and not (requested and requested == trained_snapshot):
        return None
    return summary.read_text().strip()


def build_report(root: Path, job_results: Mapping[str, Any], head_ref: str = "") -> str:
    """The comment's markdown, from the evidence the pipeline left under root."""
    paths = Paths(root)
    validations = sorted((paths.reports / "validation").glob("*.json"))
    model_dir = latest_model_dir(paths.models)
    training = optional(TrainingRecord, model_dir / "training.json") if model_dir else None
    quality = optional(Quality, model_dir / "metrics.json") if model_dir else None
    gates = optional(GateReport, model_dir / "gates.json") if model_dir else None
    try:
        champion = registry.load(paths.registry).champion
    except InputError:
        champion = None
    text = render(
        "pr_comment.md.j2",
        marker=MARKER,
        checks=checks(job_results),
        validations=[
            report for report in (optional(ValidationReport, path) for path in validations) if report
        ],
        evidence=retraining_evidence(paths, head_ref, training.data.snapshot_id if training else None),
        candidate=model_dir.name if model_dir else None,
        quality=quality,
        metric_rows=metric_rows(quality, gates, numeric_items(champion.metrics) if champion else {})
        if quality
        else [],
        champion=champion,
        rescored=bool(gates and gates.champion and gates.champion.comparable),
        regression=bool(quality and quality.diagnostics and quality.diagnostics.task == REGRESSION),
        gates=gates,
        parity=optional(Parity, model_dir / "parity.json") if model_dir else None,
        explanations=optional(Explanations, model_dir / "explanations.json") if model_dir else None,
        run_link=run_link(recorded_run(model_dir)) if model_dir else None,
    )
    return text.rstrip() + "\n"


def parse_job_results(raw: str) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        results = json.loads(raw)
    except ValueError as error:
        raise InputError(f"JOB_RESULTS must be the workflow's `needs` context as JSON: {error}") from None
    if not isinstance(results, dict):
        raise InputError(f"JOB_RESULTS must be a JSON object, got {type(results).__name__}")
    return results


def publish(root: Path, environ: Mapping[str, str] | None = None, say=print) -> str:
    """`make pr-comment`: write the report, and create or update the PR's one comment when a token is set."""
    environ = os.environ if environ is None else environ
    body = build_report(
        root, parse_job_results(environ.get("JOB_RESULTS", "")), environ.get("PR_HEAD_REF", "")
    )
    target = github_client.target_from_env(environ)
    paths = Paths(root)
    output = paths.relative(github_client.write_dry_run(paths.reports / "pr-comment.md", body))
    if environ.get("GITHUB_STEP_SUMMARY"):
        with open(environ["GITHUB_STEP_SUMMARY"], "a") as summary:
            summary.write(body)
    if target is None:
        return f"no GITHUB_TOKEN, the comment is in {output}"
    raw_number = environ.get("PR_NUMBER", "")
    if not raw_number.isdigit() or int(raw_number) < 1:
        raise InputError(f"PR_NUMBER must be a pull request number, got {raw_number!r}")
    try:
        repository = github_client.open_repository(target)  # retries on 5xx and rate limits
        return github_client.upsert_comment(repository, int(raw_number), MARKER, body)
    except (GithubException, RequestException) as error:
        if isinstance(error, GithubException) and error.status == 403:
            # A fork's PR gets a read-only token: the job summary and the file still have the report.
            return f"the token may not comment here (403); see the job summary and {output}"
        raise github_client.explain(error, target, PERMISSIONS) from None
