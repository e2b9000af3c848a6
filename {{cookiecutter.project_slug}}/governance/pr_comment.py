"""The one pull-request comment that shows a reviewer the evidence for a change.

Why a comment: reviewers decide on a model change from its numbers (metrics against the
champion, the policy gates, ONNX parity, data validation, and for a retraining PR the drift
that caused it), and those numbers should sit next to the diff, not in CI logs. It is one
comment, found again by a hidden marker and edited in place, so a PR with ten pushes still
has one up-to-date report. The module only reads files the pipeline wrote (artifacts/,
reports/, governance/registry.yaml) and JOB_RESULTS (the workflow's `needs` context as JSON);
it imports no other domain.

Without GITHUB_TOKEN (local runs, act) it writes the comment to reports/pr-comment.md only.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from github import GithubException
from requests.exceptions import RequestException

from governance import github_client
from governance.files import format_number as fmt
from governance.files import numeric_items

MARKER = "<!-- mlops-pr-report -->"
OUTPUT = Path("reports/pr-comment.md")
PERMISSIONS = "`permissions: {pull-requests: write}`"  # what the commenting job needs
ICONS = {"success": "✅", "failure": "❌", "cancelled": "⏹️", "skipped": "⏭️"}
JOB_TITLES = {
    "lint-test": "lint + unit tests",
    "data": "data validation",
    "train": "train + gates + ONNX + parity",
    "champion": "candidate vs champion (register + model card)",
    "image": "image build + image test",
}


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def latest_model_dir(models: Path) -> Path | None:
    """The model this run trained: artifacts/models/latest names it (a version, or a link)."""
    pointer = models / "latest"
    if pointer.is_dir():
        return pointer.resolve()
    if pointer.is_file():
        chosen = models / pointer.read_text().strip()
        return chosen if (chosen / "metrics.json").is_file() else None
    return None


def champion(registry_path: Path) -> dict | None:
    try:
        registry = yaml.safe_load(registry_path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    production = [entry for entry in registry.get("models") or [] if entry.get("stage") == "production"]
    return production[-1] if production else None


def checks_section(job_results: Mapping[str, Any]) -> list[str]:
    if not job_results:
        return []
    lines = ["### Checks", "", "| check | result |", "|---|---|"]
    order = list(JOB_TITLES)
    ranked = sorted(
        job_results.items(), key=lambda item: order.index(item[0]) if item[0] in order else len(order)
    )
    for job, outcome in ranked:
        result = outcome.get("result", "unknown") if isinstance(outcome, Mapping) else str(outcome)
        lines.append(f"| {JOB_TITLES.get(job, job)} | {ICONS.get(result, '❔')} {result} |")
    return [*lines, ""]


def validation_section(folder: Path) -> list[str]:
    """One line per validated batch (reports/validation/<name>.json from `make validate`)."""
    results = [(path, read_json(path)) for path in sorted(folder.glob("*.json"))]
    results = [(path, result) for path, result in results if isinstance(result, Mapping)]
    if not results:
        return []
    lines = ["### Data validation", ""]
    for path, result in results:
        failures = result.get("failures") or []
        icon = "✅" if result.get("success") else "❌"
        lines.append(
            f"- {icon} `{result.get('name', path.stem)}`: {fmt(result.get('rows'))} rows, "
            f"{len(failures)} failed expectation(s). Data Docs: the `data-docs` artifact."
        )
        for failure in failures[:10]:
            described = ", ".join(f"{key} {fmt(value)}" for key, value in failure.items())
            lines.append(f"  - {described}")
    return [*lines, ""]


def metrics_section(
    metrics: Mapping[str, Any], champion_entry: Mapping[str, Any] | None, baseline: Any = None
) -> list[str]:
    """Candidate against champion, metric by metric, on the basis the regression gate used.

    When `make train` re-scored the champion on the candidate's test split (gates.json's
    `champion`), those figures are the column; otherwise the champion's registered ones, from
    its own test split, and the column says so.
    """
    candidate = numeric_items(metrics.get("metrics"))
    if not candidate:
        return []
    rescored = isinstance(baseline, Mapping) and baseline.get("comparable") and baseline.get("metrics")
    best = numeric_items(baseline["metrics"] if rescored else (champion_entry or {}).get("metrics"))
    if champion_entry is None:
        title = "champion"
    else:
        basis = "on this test split" if rescored else "registered, its own test split"
        title = f"champion `{champion_entry['version']}` ({basis})"
    lines = ["### Metrics", "", f"| metric | candidate | {title} | change |", "|---|---|---|---|"]
    for name, value in candidate.items():
        if name in best:
            lines.append(f"| {name} | {fmt(value)} | {fmt(best[name])} | {value - best[name]:+.4f} |")
        else:
            lines.append(f"| {name} | {fmt(value)} | — | — |")
    if champion_entry is None:
        lines += ["", "No champion in production yet: the candidate is held to the policy alone."]
    bias = metrics.get("bias") or {}
    if bias.get("sensitive_attribute"):
        lines += [
            "",
            f"Bias across `{bias['sensitive_attribute']}`: largest {bias.get('metric', 'metric')} gap "
            f"{fmt(bias.get('largest_gap'))}; gaps "
            + ", ".join(f"{k} {fmt(v)}" for k, v in numeric_items(bias.get("gaps")).items()),
        ]
    return [*lines, ""]


def gates_section(gates: Any) -> list[str]:
    """The policy gates `make train` applied (gates.json), champion comparison included."""
    if not isinstance(gates, Mapping) or not isinstance(gates.get("gates"), list):
        return []
    policy = gates.get("policy", "governance/policy.yaml")
    lines = [f"### Policy gates (`{policy}`)", "", "| gate | result | detail |", "|---|---|---|"]
    for gate in gates["gates"]:
        icon = "✅" if gate.get("passed") is True else "❌"
        detail = str(gate.get("message", "")).replace("|", "\\|")  # a pipe would end the table cell
        lines.append(f"| {gate.get('name')} | {icon} | {detail} |")
    baseline = gates.get("champion")
    if isinstance(baseline, Mapping):
        lines += [
            "",
            f"Champion `{baseline.get('version')}` scores {fmt(baseline.get('value'))} "
            f"({baseline.get('basis')}).",
        ]
    return [*lines, ""]


def parity_section(parity: Any) -> list[str]:
    if not isinstance(parity, Mapping) or "max_abs_diff" not in parity:
        return []
    icon = "✅" if parity.get("passed", parity.get("labels_equal")) else "❌"
    return [
        "### ONNX parity",
        "",
        f"{icon} max |p_onnx - p_sklearn| {fmt(parity['max_abs_diff'])} (tolerance "
        f"{fmt(parity.get('tolerance'))}) on {fmt(parity.get('rows'))} rows; "
        f"labels equal: {fmt(parity.get('labels_equal'))}.",
        "",
    ]


def retraining_branch(root: Path) -> str:
    """The branch the drift bot opens retraining PRs from (monitoring/monitoring.yaml)."""
    try:
        settings = yaml.safe_load((root / "monitoring" / "monitoring.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        settings = {}
    return str((settings.get("retraining") or {}).get("branch") or "retrain/auto")


def retraining_section(root: Path, head_ref: str, trained_snapshot: str | None) -> list[str]:
    """On a retraining PR: the drift evidence the bot committed, so the reviewer sees why.

    Only when this PR is the retraining PR (its branch, or a candidate trained on the snapshot
    the request names); the request stays in git after the merge and must not haunt later PRs.
    """
    folder = root / "governance" / "retraining"
    summary = folder / "drift-summary.md"
    if not summary.is_file():
        return []
    requested = ((read_json(folder / "request.json") or {}).get("snapshot") or {}).get("snapshot_id")
    if head_ref != retraining_branch(root) and not (requested and requested == trained_snapshot):
        return []
    return [
        "### Drift evidence (why this retraining PR exists)",
        "",
        "<details><summary>drift check committed by the bot</summary>",
        "",
        summary.read_text().strip(),
        "",
        "</details>",
        "",
    ]


def build_report(root: Path, job_results: Mapping[str, Any], head_ref: str = "") -> str:
    """The comment's markdown, from the evidence the pipeline left under root."""
    lines = [MARKER, "## Model CI report", ""]
    lines += checks_section(job_results)
    lines += validation_section(root / "reports" / "validation")
    model_dir = latest_model_dir(root / "artifacts" / "models")
    training = (read_json(model_dir / "training.json") if model_dir else None) or {}
    lines += retraining_section(root, head_ref, (training.get("data") or {}).get("snapshot_id"))
    if model_dir is None:
        lines += ["No trained model in this run (see the checks above).", ""]
    else:
        lines += [f"Candidate `{model_dir.name}`.", ""]
        metrics = read_json(model_dir / "metrics.json") or {}
        gates = read_json(model_dir / "gates.json")
        baseline = gates.get("champion") if isinstance(gates, Mapping) else None
        lines += metrics_section(metrics, champion(root / "governance" / "registry.yaml"), baseline)
        lines += gates_section(gates)
        lines += parity_section(read_json(model_dir / "parity.json"))
    return "\n".join(lines).rstrip() + "\n"


def parse_job_results(raw: str) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        results = json.loads(raw)
    except ValueError as error:
        raise ValueError(f"JOB_RESULTS must be the workflow's `needs` context as JSON: {error}") from None
    if not isinstance(results, dict):
        raise ValueError(f"JOB_RESULTS must be a JSON object, got {type(results).__name__}")
    return results


def main(root: Path | None = None, environ: Mapping[str, str] | None = None) -> int:
    root = root or Path.cwd()
    environ = os.environ if environ is None else environ
    try:
        body = build_report(
            root, parse_job_results(environ.get("JOB_RESULTS", "")), environ.get("PR_HEAD_REF", "")
        )
        target = github_client.target_from_env(environ)
    except (ValueError, github_client.GitHubConfigError) as error:
        print(f"pr-comment: {error}", file=sys.stderr)
        return 2
    github_client.write_dry_run(root / OUTPUT, body)
    if environ.get("GITHUB_STEP_SUMMARY"):
        with open(environ["GITHUB_STEP_SUMMARY"], "a") as summary:
            summary.write(body)
    if target is None:
        print(f"pr-comment: no GITHUB_TOKEN, the comment is in {OUTPUT}")
        return 0
    raw_number = environ.get("PR_NUMBER", "")
    if not raw_number.isdigit() or int(raw_number) < 1:
        print(f"pr-comment: PR_NUMBER must be a pull request number, got {raw_number!r}", file=sys.stderr)
        return 2
    try:
        repository = github_client.open_repository(target)  # retries on 5xx and rate limits
        url = github_client.upsert_comment(repository, int(raw_number), MARKER, body)
    except (GithubException, RequestException) as error:
        if isinstance(error, GithubException) and error.status == 403:
            # A fork's PR gets a read-only token: the job summary and the file still have the report.
            print(f"pr-comment: the token may not comment here (403); see the job summary and {OUTPUT}")
            return 0
        print(f"pr-comment: {github_client.explain(error, target, PERMISSIONS)}", file=sys.stderr)
        return 1
    except github_client.GitHubError as error:  # open_repository explains its own refusals
        print(f"pr-comment: {error}", file=sys.stderr)
        return 1
    print(f"pr-comment: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
