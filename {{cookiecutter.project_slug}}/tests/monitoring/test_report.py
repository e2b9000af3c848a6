"""The drift reports: what a reviewer reads in the pull request and what a person opens in a browser."""

from __future__ import annotations

import json
import re

from data_pipelines.example import example_contract
from governance.core.paths import PATHS
from governance.core.records import read_drift_summary
from monitoring import report
from monitoring.detectors import make_detector
from tests.support.drift import INJECTED, drift_summary, example, inject

CONTRACT = example_contract()


def drifted_summary():
    """A retrain decision on a window with injected drift in three features."""
    reference, current = example(3000, seed=0), inject(example(1500, seed=1))
    drift = make_detector("scipy", CONTRACT, 0.05, "bonferroni").fit(reference).check(current)
    reason = f"drifted_feature_share: {len(drift.drifted_features)}/{len(drift.features)} features drifted"
    decision = {"status": "retrain", "reasons": [reason], "checks": [], "notes": ["a note"]}
    summary = drift_summary(drift=drift, decision=decision)
    return summary, reference, current


def test_the_reports_show_the_decision_its_reasons_and_every_feature(tmp_path):
    summary, reference, current = drifted_summary()
    written = report.write(summary, tmp_path, reference, current, CONTRACT)
    markdown, html = written["markdown"].read_text(), written["html"].read_text()
    assert markdown.startswith("## Drift check: retrain\n")
    for text in (markdown, html):
        assert all(reason in text for reason in summary.decision.reasons)
        assert "a note" in text and summary.window.uri in text
    cells = [line.strip("| ").split(" | ") for line in markdown.splitlines() if line.startswith("| ")]
    features = {row[0]: row[-1] for row in cells if len(row) == 5 and row[1] in ("ks", "chi2")}
    assert set(features) == set(CONTRACT.feature_names)
    assert {name for name, drifted in features.items() if drifted == "**yes**"} == INJECTED
    assert read_drift_summary(written["json"]) == summary


def test_the_html_report_plots_only_the_drifted_features_and_stays_one_file(tmp_path):
    summary, reference, current = drifted_summary()
    html = report.write(summary, tmp_path, reference, current, CONTRACT)["html"].read_text()
    assert set(re.findall(r'<img alt="([^"]+)" src="data:image/svg\+xml;base64,', html)) == INJECTED
    assert (PATHS.templates / "report.css").read_text() in html, "the stylesheet is inlined as it is"
    assert not re.search(r'(src|href)="(?!data:)', html), "nothing is loaded from elsewhere"


def test_captured_text_never_becomes_markup_in_the_html_report(tmp_path):
    uri = "s3://bucket/<script>alert(1)</script>"
    reason = "drifted_feature_share: income drifted; bonferroni threshold p < 0.0056"
    summary = drift_summary(
        window={"uri": uri, "rows": 10, "labelled_rows": 0},
        decision={"status": "retrain", "reasons": [reason], "checks": [], "notes": []},
    )
    html = report.render_html(summary, {})
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "threshold p &lt; 0.0056" in html
    assert uri in report.markdown(summary), "Markdown shows it verbatim, inside code"
    assert json.loads(summary.model_dump_json())["window"]["uri"] == uri
