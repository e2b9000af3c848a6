"""The batch image travels with its model: recorded at staging, pinned in deploy/batch at promotion.

cd.yml pushes the batch image of the same build beside the serving image (when the repository
variable BATCH_SCORING is true); `make pin-staging` stores its digest in the registry entry,
and promoting or rolling back production pins it in deploy/batch, so the nightly scoring job
always runs the model production serves. A version without one leaves deploy/batch as it was,
and the pull request says so.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from governance import gitops, registry
from governance.cli import main
from governance.core.paths import Paths
from tests.support.checkout import GIT, commit_checkout
from tests.support.training import PROJECT

SERVING = {version: f"sha256:{digit * 64}" for version, digit in (("v1", "1"), ("v2", "2"), ("v3", "3"))}
BATCH = {version: f"sha256:{letter * 64}" for version, letter in (("v1", "a"), ("v2", "b"), ("v3", "c"))}
PLACEHOLDER = "sha256:" + "0" * 64
BATCH_KUSTOMIZATION = "deploy/batch/kustomization.yaml"


@pytest.fixture
def repo(tmp_path, make_entry) -> Path:
    """A checkout of main: v1 was production before v2, which serves now; v3 is a new candidate.
    deploy/ is the project's own (overlays and batch), with placeholder digests as baked."""
    root = tmp_path / "repo"
    for folder in ("overlays", "batch"):
        shutil.copytree(PROJECT / "deploy" / folder, root / "deploy" / folder)
    for path in (root / "deploy").rglob("kustomization.yaml"):
        path.write_text(re.sub(r"sha256:[0-9a-f]{64}", PLACEHOLDER, path.read_text()))
    models = [
        {**make_entry("v1", "archived", image_digest=SERVING["v1"]), "promoted_at": "2024-02-01T00:00:00Z"},
        {**make_entry("v2", "staging", image_digest=SERVING["v2"])},
        make_entry("v3", "candidate"),
    ]
    models[0]["image"]["batch_digest"] = BATCH["v1"]
    return commit_checkout(root, models)


@pytest.fixture(autouse=True)
def dry_run(monkeypatch) -> None:
    """No token: each change is written as the pull request it would open (reports/gitops/)."""
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)


def batch_pin(root: Path) -> str:
    (image,) = yaml.safe_load((root / BATCH_KUSTOMIZATION).read_text())["images"]
    return image["digest"]


def pushed(root: Path, version: str, batch_version: str | None = None) -> None:
    """What `make image-push` and `make image-push-batch` record after cd.yml's pushes."""
    paths = Paths(root)
    paths.artifacts.mkdir(exist_ok=True)
    record = {"digest": SERVING[version], "model_version": version, "reference": f"r@{SERVING[version]}"}
    paths.image_record.write_text(json.dumps(record))
    if batch_version is not None:
        batch = {"digest": BATCH[version], "model_version": batch_version, "reference": f"b@{BATCH[version]}"}
        paths.batch_image_record.write_text(json.dumps(batch))


def entry_image(root: Path, version: str) -> dict:
    return registry.get(version, Paths(root).registry).image.model_dump(exclude_none=True)


def test_staging_records_the_batch_image_of_the_same_build_and_pins_nothing_in_deploy_batch(repo, capsys):
    pushed(repo, "v3", batch_version="v3")
    assert main(["--root", str(repo), "pin-staging"]) == 0
    assert entry_image(repo, "v3") == {"digest": SERVING["v3"], "batch_digest": BATCH["v3"]}
    assert set(gitops.changed_files(repo)) == {
        "governance/registry.yaml", "deploy/overlays/staging/kustomization.yaml"
    }, "staging runs no batch job: deploy/batch follows production only"  # fmt: skip
    assert batch_pin(repo) == PLACEHOLDER


def test_a_batch_image_of_another_model_version_is_refused_and_nothing_is_staged(repo, capsys):
    pushed(repo, "v3", batch_version="v2")
    assert main(["--root", str(repo), "pin-staging"]) == 2
    error = capsys.readouterr().err
    assert "batch image record: `model_version` must be the serving image's 'v3'" in error and "'v2'" in error
    assert "make image-batch image-push-batch" in error, "and how to put it right"
    assert registry.get("v3", Paths(repo).registry).stage == "candidate"
    assert gitops.changed_files(repo) == {}


def test_without_a_batch_record_staging_registers_the_serving_image_alone(repo):
    pushed(repo, "v3")
    assert main(["--root", str(repo), "pin-staging"]) == 0
    assert entry_image(repo, "v3") == {"digest": SERVING["v3"]}


def test_promotion_pins_the_batch_image_so_the_nightly_job_scores_with_the_champion(repo):
    pushed(repo, "v3", batch_version="v3")
    assert main(["--root", str(repo), "pin-staging"]) == 0
    before = (repo / BATCH_KUSTOMIZATION).read_text().splitlines()
    assert main(["--root", str(repo), "promote", "--version", "v3"]) == 0
    assert batch_pin(repo) == BATCH["v3"]
    after = (repo / BATCH_KUSTOMIZATION).read_text().splitlines()
    changed = [(old, new) for old, new in zip(before, after, strict=True) if old != new]
    assert len(changed) == 1 and "digest:" in changed[0][1], "only the digest line changes; comments stay"
    assert BATCH_KUSTOMIZATION in gitops.changed_files(repo)
    text = (repo / "reports" / "gitops" / "production.md").read_text()
    assert f"`deploy/batch` pins the batch image `{BATCH['v3']}`" in text
    assert f"- `{BATCH_KUSTOMIZATION}`" in text, "the pull request carries the file"


def test_promoting_a_version_without_a_batch_image_leaves_deploy_batch_and_says_so(repo):
    assert main(["--root", str(repo), "promote", "--version", "v2"]) == 0
    assert batch_pin(repo) == PLACEHOLDER
    assert BATCH_KUSTOMIZATION not in gitops.changed_files(repo)
    text = (repo / "reports" / "gitops" / "production.md").read_text()
    assert "`deploy/batch` is unchanged: version `v2` has no batch image" in text
    assert "`BATCH_SCORING`" in text, "and what to set to get one"


def test_a_rollback_restores_the_batch_image_of_the_version_it_restores(repo):
    assert main(["--root", str(repo), "promote", "--version", "v2"]) == 0
    subprocess.run([*GIT, "commit", "--quiet", "--all", "--message", "promote v2"], cwd=repo, check=True)
    assert main(["--root", str(repo), "rollback"]) == 0
    assert batch_pin(repo) == BATCH["v1"]
    text = (repo / "reports" / "gitops" / "rollback-production.md").read_text()
    assert "Roll production back from v2 to v1" in text and f"`{BATCH['v1']}`" in text
