"""`make post-deploy-check`: the production model's live answers against its own shadow phase.

The capture holds the story of one promotion: v2 scored in shadow beside champion v1, was
promoted at PROMOTED, and has answered live rows since.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import timedelta

import pytest

from data_pipelines.example import example_contract
from governance import registry
from governance.cli import main
from governance.core.paths import PATHS, Paths
from governance.core.records import ImageRef, Registry
from monitoring.post_deploy import ERROR_RATE_NOTE, Options, run
from tests.support.drift import (
    START,
    ToyModel,
    another_label,
    example,
    project_checkout,
    registry_entry,
    write_capture,
)
from tests.support.shadow import write_shadow

CONTRACT = example_contract()
PROMOTED = START + timedelta(days=3)
DIGEST_1, DIGEST_2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64


@pytest.fixture(scope="module")
def models() -> tuple[ToyModel, ToyModel]:
    """(v1, v2): the old champion and the promoted challenger."""
    return ToyModel(CONTRACT, example(4000, seed=0)), ToyModel(CONTRACT, example(4000, seed=1))


def promoted_checkout(tmp_path) -> Paths:
    """A checkout whose registry says v2 went to production at PROMOTED, replacing v1."""
    paths = project_checkout(tmp_path / "project")
    paths.policy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(PATHS.policy, paths.policy)
    old = registry_entry("v1", stage="archived").model_copy(
        update={"image": ImageRef(digest=DIGEST_1), "promoted_at": "2024-01-01T00:00:00Z"}
    )
    new = registry_entry("v2", stage="production").model_copy(
        update={"image": ImageRef(digest=DIGEST_2), "promoted_at": PROMOTED.isoformat()}
    )
    registry.save(Registry(version=1, models=(old, new)), paths.registry)
    return paths


def capture(tmp_path, models, live_drift: float = 0.0, wrong_labels: bool = False):
    """Shadow phase (v1 answers, v2 in shadow) before PROMOTED; v2 answering live after it.

    `wrong_labels`: the live rows' feedback labels are the other class (or value): v2 got worse.
    """
    v1, v2 = models
    uri = tmp_path / "capture"
    before = example(1000, seed=3)
    write_capture(uri, before, CONTRACT, v1.scores(before), model_version="v1", stream="old-1-0")
    write_shadow(uri, before, CONTRACT, v2.scores(before), version="v2", stream="old-1-0")
    after = example(1000, seed=4, covariate_drift=live_drift)
    labels = (
        after[CONTRACT.target.name].map(lambda value: another_label(value, CONTRACT))
        if wrong_labels
        else None
    )
    write_capture(
        uri,
        after,
        CONTRACT,
        v2.scores(after),
        model_version="v2",
        start=PROMOTED,
        stream="new-1-0",
        labels=labels,
    )
    return str(uri)


def test_a_model_answering_live_as_in_its_shadow_phase_is_healthy(tmp_path, models):
    paths = promoted_checkout(tmp_path)
    check = run(paths, Options(uri=capture(tmp_path, models)))
    assert check.verdict == "healthy", check.reasons
    assert check.rows == 1000 and check.subject_version == "v2"
    assert {c.name for c in check.checks} == {
        "rows",
        "shadow_rows",
        "score_shift",
        "metric_drop",
        "min_primary_metric",
    }
    assert ERROR_RATE_NOTE in check.notes
    assert check.since.startswith(PROMOTED.date().isoformat()), "the live window starts at the promotion"


def test_a_shifted_live_window_asks_for_a_rollback(tmp_path, models, capsys):
    paths = promoted_checkout(tmp_path)
    uri = capture(tmp_path, models, live_drift=1.0)
    assert main(["--root", str(paths.root), "post-deploy-check", "--capture-uri", uri]) == 1
    record = json.loads((paths.reports / "post_deploy" / "check.json").read_text())
    assert record["verdict"] == "rollback" and record["kind"] == "post_deploy"
    assert any(
        reason.startswith("score_shift ") and "promotion.max_score_distance" in reason
        for reason in record["reasons"]
    )
    assert "Post-deploy check: rollback" in (paths.reports / "post_deploy" / "summary.md").read_text()


def test_without_a_shadow_phase_there_is_nothing_to_judge(tmp_path, models):
    paths = promoted_checkout(tmp_path)
    _, v2 = models
    uri = tmp_path / "capture"
    after = example(1000, seed=4)
    write_capture(uri, after, CONTRACT, v2.scores(after), model_version="v2", start=PROMOTED)
    check = run(paths, Options(uri=str(uri)))
    assert check.verdict == "insufficient_data"
    assert check.reasons == (
        "not enough evidence: shadow_rows 0 breaks promotion.min_rows 200: 0 rows scored in shadow before it",
    )


def test_a_labelled_metric_drop_live_asks_for_a_rollback(tmp_path, models):
    paths = promoted_checkout(tmp_path)
    check = run(paths, Options(uri=capture(tmp_path, models, wrong_labels=True)))
    assert check.verdict == "rollback"
    broken = {c.name: c for c in check.checks if c.triggered}
    # the drop from its shadow phase; and its bound too when the live value falls below it
    assert "metric_drop" in broken and set(broken) <= {"metric_drop", "min_primary_metric"}, check.reasons
    assert broken["metric_drop"].value > broken["metric_drop"].limit


def test_a_model_as_poor_live_as_in_shadow_still_breaks_the_policys_bound(tmp_path, models):
    """Forced into production past its gates: no shift from its shadow phase, but below the bound."""
    paths = promoted_checkout(tmp_path)
    policy = paths.policy.read_text()
    paths.policy.write_text(
        re.sub(r"min_primary_metric: [0-9.]+", "min_primary_metric: 0.99", policy, count=1)
    )
    check = run(paths, Options(uri=capture(tmp_path, models)))
    assert check.verdict == "rollback"
    broken = [c for c in check.checks if c.triggered]
    assert [c.name for c in broken] == ["min_primary_metric"], check.reasons
    assert broken[0].limit == 0.99 and broken[0].value < 0.99
    assert (
        check.reasons[0].startswith("min_primary_metric ")
        and "model.min_primary_metric 0.99" in check.reasons[0]
    )


def test_before_the_first_promotion_the_schedule_has_nothing_to_check(tmp_path, capsys):
    paths = promoted_checkout(tmp_path)
    registry.save(Registry(version=1), paths.registry)
    assert main(["--root", str(paths.root), "post-deploy-check", "--capture-uri", str(tmp_path)]) == 0
    assert "verdict: insufficient_data" in capsys.readouterr().out
    record = json.loads((paths.reports / "post_deploy" / "check.json").read_text())
    assert record["reasons"] == ["governance/registry.yaml holds no production version yet: nothing to check"]
