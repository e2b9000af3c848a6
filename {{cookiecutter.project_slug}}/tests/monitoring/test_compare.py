"""`make compare`: the champion and a challenger scored in shadow on the same live rows, judged by
governance/policy.yaml's `promotion:` rules (promote, hold or reject), with its reports.

Two real small models of this project's task (tests/support/drift.py's ToyModel) answer the same
captured rows: the champion as predictions, the challenger as shadow lines.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from data_pipelines.example import example_contract
from governance.cli import HOLD_EXIT, main
from governance.core.paths import PATHS, Paths
from governance.core.policy import PromotionPolicy
from monitoring.compare import Options, run, too_slow
from tests.support.drift import ToyModel, example, project_checkout, write_capture
from tests.support.shadow import write_shadow

CONTRACT = example_contract()
TARGET = CONTRACT.target
ROWS = 1500


@pytest.fixture(scope="module")
def champion() -> ToyModel:
    return ToyModel(CONTRACT, example(4000, seed=0))


@pytest.fixture(scope="module")
def live() -> pd.DataFrame:
    return example(ROWS, seed=5)


def shuffled(frame: pd.DataFrame, seed: int = 7) -> pd.DataFrame:
    """The same rows with the target permuted: a model trained on it learned nothing."""
    frame = frame.copy()
    frame[TARGET.name] = np.random.default_rng(seed).permutation(frame[TARGET.name].to_numpy())
    return frame


def checkout(tmp_path) -> Paths:
    paths = project_checkout(tmp_path / "project")
    paths.policy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(PATHS.policy, paths.policy)
    return paths


def captured(tmp_path, live, champion, challenger, *, feedback_every: int = 2, version: str = "v2"):
    """A capture where the champion answered `live` and the challenger answered it in shadow."""
    paths = checkout(tmp_path)
    uri = tmp_path / "capture"
    write_capture(
        uri, live, CONTRACT, champion.scores(live), feedback_every=feedback_every, model_version="v1"
    )
    write_shadow(uri, live, CONTRACT, challenger.scores(live), version=version)
    return paths, str(uri)


def test_a_challenger_as_good_as_the_champion_is_promoted(tmp_path, live, champion):
    challenger = ToyModel(CONTRACT, example(4000, seed=1))
    paths, uri = captured(tmp_path, live, champion, challenger)
    comparison = run(paths, Options(uri=uri))
    assert comparison.verdict == "promote", comparison.reasons
    assert (comparison.baseline_version, comparison.subject_version) == ("v1", "v2")
    assert comparison.rows == ROWS and comparison.labelled_rows == ROWS // 2
    assert {check.name for check in comparison.checks} >= {
        "rows",
        "labelled_rows",
        "score_distance",
        "metric_drop",
    }
    assert not [check for check in comparison.checks if check.triggered]
    assert comparison.score_distance is not None and comparison.score_distance < 0.15
    if TARGET.is_classification:
        assert comparison.agreement > 0.9


def test_a_challenger_trained_on_shuffled_labels_is_rejected_with_the_rules_named(tmp_path, live, champion):
    challenger = ToyModel(CONTRACT, shuffled(example(4000, seed=1)))
    paths, uri = captured(tmp_path, live, champion, challenger)
    comparison = run(paths, Options(uri=uri))
    assert comparison.verdict == "reject"
    broken = {check.name for check in comparison.checks if check.triggered}
    assert "metric_drop" in broken, comparison.reasons
    (drop,) = [reason for reason in comparison.reasons if reason.startswith("metric_drop ")]
    assert "breaks promotion.max_metric_drop 0.02" in drop  # the rule, the value and the bound


def test_too_few_labels_holds_the_decision(tmp_path, live, champion):
    challenger = ToyModel(CONTRACT, example(4000, seed=1))
    paths, uri = captured(tmp_path, live, champion, challenger, feedback_every=50)
    comparison = run(paths, Options(uri=uri))
    assert comparison.verdict == "hold"
    assert comparison.labelled_rows == ROWS // 50
    (reason,) = comparison.reasons
    assert reason.startswith(
        f"not enough evidence: labelled_rows {ROWS // 50} breaks promotion.min_labelled_rows"
    )


def test_a_broken_rule_rejects_even_before_the_labels_are_in(tmp_path, live, champion):
    challenger = ToyModel(CONTRACT, shuffled(example(4000, seed=1)))
    paths, uri = captured(tmp_path, live, champion, challenger, feedback_every=0)
    comparison = run(paths, Options(uri=uri))
    assert comparison.labelled_rows == 0
    assert comparison.verdict == "reject", comparison.reasons
    assert "metric_drop" not in {check.name for check in comparison.checks}


def test_the_command_writes_the_reports_and_exits_by_verdict(tmp_path, live, champion, capsys):
    good = ToyModel(CONTRACT, example(4000, seed=1))
    paths, uri = captured(tmp_path / "good", live, champion, good)
    assert main(["--root", str(paths.root), "compare", "--capture-uri", uri]) == 0
    assert "verdict: promote (v2 vs v1)" in capsys.readouterr().out
    folder = paths.reports / "compare"
    record = json.loads((folder / "compare.json").read_text())
    assert record["verdict"] == "promote" and record["subject_version"] == "v2"
    html = (folder / "report.html").read_text()
    assert 'Champion vs challenger: <span class="status">promote' in html
    assert '<img alt="score distributions" src="data:image/svg+xml;base64,' in html
    assert "| score_distance |" in (folder / "summary.md").read_text()

    bad = ToyModel(CONTRACT, shuffled(example(4000, seed=1)))
    paths, uri = captured(tmp_path / "bad", live, champion, bad)
    assert main(["--root", str(paths.root), "compare", "--capture-uri", uri]) == 1
    paths, uri = captured(tmp_path / "few", live, champion, good, feedback_every=50)
    assert main(["--root", str(paths.root), "compare", "--capture-uri", uri]) == HOLD_EXIT


def test_a_window_without_shadow_answers_says_how_to_get_them(tmp_path, live, champion, capsys):
    paths = checkout(tmp_path)
    uri = tmp_path / "capture"
    write_capture(uri, live, CONTRACT, champion.scores(live))
    assert main(["--root", str(paths.root), "compare", "--capture-uri", str(uri)]) == 2
    assert "SHADOW_MODEL_PATH" in capsys.readouterr().err


def test_two_challengers_in_one_window_must_be_told_apart(tmp_path, live, champion, capsys):
    challenger = ToyModel(CONTRACT, example(4000, seed=1))
    paths, uri = captured(tmp_path, live, champion, challenger)
    write_shadow(
        tmp_path / "capture", live, CONTRACT, challenger.scores(live), version="v3", stream="host-2-0"
    )
    assert main(["--root", str(paths.root), "compare", "--capture-uri", uri]) == 2
    assert "option '--version' is required" in capsys.readouterr().err
    assert run(paths, Options(uri=uri, version="v2")).subject_version == "v2"


def test_a_slower_challenger_is_rejected_only_when_clients_would_notice():
    rules = PromotionPolicy(max_latency_ratio=2.0, latency_slack_ms=2.0)
    assert not too_slow(0.55, 1.55, rules), "2.8x of half a millisecond: one busy moment, not a slower model"
    assert too_slow(0.55, 3.0, rules), "5x and 2.45 ms slower"
    assert not too_slow(10.0, 15.0, rules), "5 ms slower but within the ratio"
    assert too_slow(10.0, 25.0, rules)
