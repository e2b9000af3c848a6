"""Rollback by pull request, and the comparison that travels with a promotion.

`make rollback` restores the digest production ran before (the registry's archived version
promoted most recently) on the bot-owned branch `rollback/production`; the scheduled
post-deploy check runs it with its record, so only a `rollback` verdict opens the PR, once
however often the schedule fires.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from governance import registry
from governance.cli import main
from governance.core.paths import Paths
from governance.core.records import Comparison, Registry, write_json
from tests.support.checkout import commit_checkout
from tests.support.training import PROJECT

OLD, CURRENT = "sha256:" + "a" * 64, "sha256:" + "b" * 64
OVERLAY = "deploy/overlays/production/kustomization.yaml"


@pytest.fixture
def repo(tmp_path, make_entry) -> Path:
    """A checkout of main: v1 was production until v2 replaced it; production pins v2's digest."""
    root = tmp_path / "repo"
    shutil.copytree(PROJECT / "deploy" / "overlays", root / "deploy" / "overlays")
    overlay = root / OVERLAY
    overlay.write_text(re.sub(r"sha256:[0-9a-f]{64}", CURRENT, overlay.read_text()))
    models = [
        {
            **make_entry("v0", "archived", image_digest="sha256:" + "0" * 64),
            "promoted_at": "2024-01-01T00:00:00Z",
        },
        {**make_entry("v1", "archived", image_digest=OLD), "promoted_at": "2024-02-01T00:00:00Z"},
        {**make_entry("v2", "production", image_digest=CURRENT), "promoted_at": "2024-03-01T00:00:00Z"},
        make_entry("v3", "archived", image_digest="sha256:" + "3" * 64),  # staged once, never production
    ]
    return commit_checkout(root, models)


def check_record(root: Path, verdict: str) -> Path:
    """A post-deploy check's record (reports/post_deploy/check.json) with this verdict."""
    record = Comparison(
        kind="post_deploy",
        run_at="2024-03-02T06:00:00+00:00",
        uri="s3://capture",
        baseline_name="shadow phase",
        subject_name="live",
        baseline_version="v2",
        subject_version="v2",
        rows=1000,
        labelled_rows=500,
        score_distance=0.31,
        verdict=verdict,
        reasons=("score_shift 0.31 breaks promotion.max_score_distance 0.15: ...",)
        if verdict == "rollback"
        else (),
    )
    return write_json(record, root / "reports" / "post_deploy" / "check.json")


def scheduled_check(root: Path, verdict: str = "rollback") -> int:
    """One run of post-deploy.yml's bot job on a fresh checkout of main."""
    subprocess.run(["git", "checkout", "--quiet", "--", "."], cwd=root, check=True)
    return main(["--root", str(root), "rollback", "--check", str(check_record(root, verdict))])


def pinned(text: bytes | str) -> str:
    (image,) = yaml.safe_load(text)["images"]
    return image["digest"]


def test_the_rollback_pr_restores_the_previous_digest_once_across_reruns(repo, fake_api, monkeypatch):
    monkeypatch.setattr(registry, "now", lambda: "2024-03-02T06:00:01Z")  # each run writes the same registry
    for _ in range(3):
        assert scheduled_check(repo) == 0
    (pull,) = fake_api.pulls
    assert pull["state"] == "open" and pull["head"] == "rollback/production"
    assert pull["title"] == "Roll production back from v2 to v1"
    assert pinned(fake_api.file("rollback/production", OVERLAY)) == OLD
    models = yaml.safe_load(fake_api.file("rollback/production", "governance/registry.yaml"))["models"]
    assert {model["version"]: model["stage"] for model in models} == {
        "v0": "archived", "v1": "production", "v2": "archived", "v3": "archived"
    }  # fmt: skip
    assert "score_shift 0.31 breaks promotion.max_score_distance" in pull["body"], "the evidence is in the PR"
    assert fake_api.tip("main") != fake_api.tip("rollback/production")
    assert pinned((repo / OVERLAY).read_text()) == OLD  # the checkout holds the change the PR carries


def test_a_healthy_check_opens_no_rollback(repo, fake_api, capsys):
    assert scheduled_check(repo, "healthy") == 0
    assert "post-deploy check says healthy: no rollback" in capsys.readouterr().out
    assert fake_api.pulls == []
    assert pinned((repo / OVERLAY).read_text()) == CURRENT


def test_a_named_version_is_restored_instead(repo, monkeypatch):
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    assert main(["--root", str(repo), "rollback", "--version", "v0"]) == 0
    assert pinned((repo / OVERLAY).read_text()) == "sha256:" + "0" * 64
    text = (repo / "reports" / "gitops" / "rollback-production.md").read_text()
    assert "Roll production back from v2 to v0" in text and "branch `rollback/production`" in text


def test_without_a_previous_production_version_the_rollback_says_what_to_do(repo, make_entry, capsys):
    models = [
        make_entry("v2", "production", image_digest=CURRENT),
        make_entry("v3", "archived", image_digest=OLD),
    ]
    registry.save(Registry.model_validate({"version": 1, "models": models}), Paths(repo).registry)
    assert main(["--root", str(repo), "rollback"]) == 2
    error = capsys.readouterr().err
    assert "no previous production version" in error and "VERSION=<version>" in error
    assert pinned((repo / OVERLAY).read_text()) == CURRENT


def test_rolling_back_to_the_running_version_is_refused(repo, capsys):
    assert main(["--root", str(repo), "rollback", "--version", "v2"]) == 2
    assert "v2 is production already" in capsys.readouterr().err


def test_promotion_records_when_a_version_became_production(repo):
    registry.set_stage("v3", "production", Paths(repo).registry)
    assert registry.previous_production(registry.load(Paths(repo).registry)).version == "v2"


def test_the_promotion_pr_carries_the_comparison_of_that_version(repo, monkeypatch):
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    registry.set_stage("v3", "staging", Paths(repo).registry)
    compared = Comparison(
        kind="compare",
        run_at="2024-03-05T00:00:00+00:00",
        uri="s3://capture",
        baseline_name="champion",
        subject_name="challenger",
        baseline_version="v2",
        subject_version="v3",
        rows=1500,
        labelled_rows=750,
        agreement=0.97,
        verdict="promote",
    )
    write_json(compared, repo / "reports" / "compare" / "compare.json")
    assert main(["--root", str(repo), "promote", "--version", "v3"]) == 0
    text = (repo / "reports" / "gitops" / "production.md").read_text()
    assert "## Champion vs challenger: promote" in text and "Agreement: 0.97" in text


def test_a_comparison_of_another_version_is_not_offered_as_evidence(repo, monkeypatch):
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    registry.set_stage("v3", "staging", Paths(repo).registry)
    other = Comparison(
        kind="compare", run_at="2024-03-05T00:00:00+00:00", uri="x", baseline_name="champion",
        subject_name="challenger", subject_version="v9", rows=0, labelled_rows=0, verdict="hold",
    )  # fmt: skip
    write_json(other, repo / "reports" / "compare" / "compare.json")
    assert main(["--root", str(repo), "promote", "--version", "v3"]) == 0
    assert "Champion vs challenger" not in (repo / "reports" / "gitops" / "production.md").read_text()


def test_a_rollback_outside_a_git_checkout_is_an_error_not_a_traceback(repo, capsys):
    shutil.rmtree(repo / ".git")
    assert main(["--root", str(repo), "rollback"]) == 2
    assert "must be a git checkout to make a GitOps change" in capsys.readouterr().err
