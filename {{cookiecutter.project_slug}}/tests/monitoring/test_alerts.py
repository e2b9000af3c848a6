"""Monitoring that cannot act by itself tells people, once: one issue, edited by re-runs, closed when healthy.

Driven against the project's GitHub stand-in (tests/support/github_standin.py), whose issues list
holds pull requests too, as GitHub's does.
"""

from __future__ import annotations

from governance.cli import main
from governance.core.paths import Paths
from monitoring import alerts
from tests.support.drift import drift_summary
from tests.support.github_standin import FakeGitHub

BLOCKED = {
    "status": "retrain_blocked",
    "reasons": ["the window holds 0 labelled rows (policy: at least 50)"],
    "checks": [],
    "notes": [],
}
HEALTHY = {"status": "no_retrain", "reasons": [], "checks": [], "notes": []}
RUN = "https://github.example/acme/loan-default-model/actions/runs/42"


def write_decision(root, decision) -> Paths:
    paths = Paths(root)
    paths.drift_reports.mkdir(parents=True, exist_ok=True)
    (paths.drift_reports / "drift.json").write_text(drift_summary(decision=decision).model_dump_json())
    return paths


def open_alerts(fake: FakeGitHub) -> list[dict]:
    return [issue for issue in fake.issues if issue["state"] == "open"]


def test_drift_without_labels_opens_one_issue_that_reruns_edit_and_a_healthy_run_closes(tmp_path, fake_api):
    fake_api.add_pull_request()  # GitHub lists pull requests as issues too: never taken for the alert
    paths = write_decision(tmp_path, BLOCKED)
    first = alerts.run(paths, run_url=RUN, say=lambda _: None)
    (issue,) = open_alerts(fake_api)
    assert first == f"issue #{issue['number']} opened: {issue['title']}"
    assert "needs labels" in issue["title"] and "/feedback" in issue["body"]
    assert BLOCKED["reasons"][0] in issue["body"] and RUN in issue["body"]
    again = alerts.run(paths, run_url=RUN.replace("42", "43"), say=lambda _: None)
    assert again == f"issue #{issue['number']} updated: {issue['title']}"
    assert [i["number"] for i in fake_api.issues] == [issue["number"]], "never a second issue"
    assert "runs/43" in issue["body"]
    write_decision(tmp_path, HEALTHY)
    assert alerts.run(paths, run_url=RUN, say=lambda _: None) == f"issue #{issue['number']} closed"
    assert open_alerts(fake_api) == [] and "Resolved" in fake_api.comments[issue["number"]][0]["body"]
    assert alerts.run(paths, run_url=RUN, say=lambda _: None) == "nothing to report"
    assert [pull["state"] for pull in fake_api.pulls] == ["open"], "the pull request was left alone"


def test_a_failed_run_alerts_even_without_a_decision(tmp_path, fake_api):
    outcome = alerts.run(
        Paths(tmp_path), job_results={"drift": "failure", "retrain-pr": "skipped"}, run_url=RUN
    )
    (issue,) = open_alerts(fake_api)
    assert outcome.endswith("opened: Scheduled monitoring failed")
    assert "`drift`: failure" in issue["body"] and "retrain-pr" not in issue["body"]


def test_a_run_that_wrote_no_decision_is_a_failure_too(tmp_path, fake_api):
    alerts.run(Paths(tmp_path), job_results={"drift": "success"}, run_url=RUN, say=lambda _: None)
    (issue,) = open_alerts(fake_api)
    assert "wrote no drift decision" in issue["body"]


def test_without_a_token_the_alert_is_a_dry_run_file(tmp_path, monkeypatch):
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    paths = write_decision(tmp_path, BLOCKED)
    assert "dry run written to reports/drift/alert.md" in alerts.run(paths, say=lambda _: None)
    assert "needs labels" in (paths.drift_reports / "alert.md").read_text()


def test_a_malformed_job_result_is_refused_by_name(tmp_path, capsys):
    assert main(["--root", str(tmp_path), "alert", "--job", "drift"]) == 2
    assert "--job: must be job=result" in capsys.readouterr().err
