"""`make alert`: tell people when the scheduled monitoring cannot act by itself.

Why: a drift check that finds drift in a window without labels decides `retrain_blocked`, and a
scheduled run that fails decides nothing; both used to end in a green or red run nobody looked at.
Each now opens one GitHub issue (found again by a hidden marker, so a re-run or the next week's
run edits it instead of opening a second one) saying what happened and what a person must do:
send labels through `/feedback`, or look at the failed run. When a later run is healthy again the
issue is closed with a comment naming that run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from governance import github_client
from governance.core.errors import InputError
from governance.core.paths import Paths
from governance.core.records import DriftSummary, read_drift_summary
from monitoring.report import markdown

MARKER = "<!-- mlops-monitoring-alert -->"
# GitHub Actions job results (`needs.<job>.result`): anything but these two is a run that failed.
FINE_RESULTS = frozenset({"success", "skipped"})
ISSUE_PERMISSIONS = "`permissions: {issues: write}`"


@dataclass(frozen=True)
class Alert:
    """One issue's title and body; `None` from `alert_for` means all is well (close any open alert)."""

    title: str
    body: str


def alert_for(summary: DriftSummary | None, job_results: dict[str, str], run_url: str) -> Alert | None:
    """What the latest scheduled run asks a person to do, if anything."""
    failed = {job: result for job, result in job_results.items() if result not in FINE_RESULTS}
    seen = f"Seen by the scheduled run {run_url}." if run_url else "Seen by a local run."
    if failed or summary is None:
        listing = "\n".join(f"- `{job}`: {result}" for job, result in sorted(failed.items()))
        what = listing or "- the run wrote no drift decision (`reports/drift/drift.json`)"
        return Alert(
            title="Scheduled monitoring failed",
            body=f"{MARKER}\nThe scheduled drift check did not finish, so nothing was decided:\n\n{what}\n\n"
            f"Open the run's log to see why, fix it, and run the `drift` workflow again by hand "
            f"(Actions > drift > Run workflow). {seen}\n",
        )
    if summary.decision.status == "retrain_blocked":
        reasons = "\n".join(f"- {reason}" for reason in summary.decision.reasons)
        return Alert(
            title="Drift found, retraining blocked: the captured window needs labels",
            body=f"{MARKER}\nThe drift check of {summary.run_at} asks to retrain, but nothing can be "
            f"trained on the captured window:\n\n{reasons}\n\nSend the true outcomes of the captured "
            f"predictions to the service's `/feedback` route (each prediction's `feedback_token`), "
            f"then the next scheduled run (or a manual one) opens the retraining pull request. "
            f"{seen}\n\n{markdown(summary)}\n",
        )
    return None


def run(
    paths: Paths,
    summary_path: Path | None = None,
    job_results: dict[str, str] | None = None,
    run_url: str = "",
    say=print,
) -> str:
    """Open, update or close the one monitoring alert issue; without a token, write a dry run."""
    path = summary_path or paths.drift_reports / "drift.json"
    summary = read_drift_summary(path) if path.is_file() else None
    alert = alert_for(summary, job_results or {}, run_url)
    target = github_client.target_from_env()
    if target is None:
        dry_run = paths.drift_reports / "alert.md"
        text = f"# {alert.title}\n\n{alert.body}" if alert else "# No alert: close any open one\n"
        github_client.write_dry_run(dry_run, text)
        outcome = f"no GITHUB_TOKEN: dry run written to {paths.relative(dry_run)}"
    else:
        repository = github_client.open_repository(target, permissions=ISSUE_PERMISSIONS)
        with github_client.explained(target, permissions=ISSUE_PERMISSIONS):
            if alert is None:
                closed = github_client.close_issue(
                    repository, MARKER, f"Resolved: {run_url or 'a local run'}"
                )
                outcome = f"issue #{closed} closed" if closed else "nothing to report"
            else:
                number, created = github_client.upsert_issue(repository, MARKER, alert.title, alert.body)
                outcome = f"issue #{number} {'opened' if created else 'updated'}: {alert.title}"
    say(f"alert: {outcome}")
    return outcome


def parse_results(pairs: list[str]) -> dict[str, str]:
    """`job=result` pairs from the command line (the workflow passes `needs.<job>.result`)."""
    results = {}
    for pair in pairs:
        job, separator, result = pair.partition("=")
        if not separator or not job.strip() or not result.strip():
            raise InputError(f"--job: must be job=result, e.g. drift=failure (got {pair!r})")
        results[job.strip()] = result.strip()
    return results
