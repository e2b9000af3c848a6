"""The drift reference survives a retraining merge: a champion snapshot that is not in
artifacts/snapshots/ is rebuilt from the configured source or from the retraining request git
history holds, and otherwise the error names the snapshot and how to restore it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from data_pipelines import snapshot
from data_pipelines.example import generate
from governance.core.contract import load as load_contract
from governance.core.paths import Paths
from governance.core.records import RegistryEntry
from monitoring import reference
from monitoring.reference import NoReferenceError
from tests.support.drift import lay_out_request, project_checkout, registry_entry

SOURCE = {"kind": "example", "rows": 300, "seed": 3}


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def champion_on(snapshot_id: str) -> RegistryEntry:
    return registry_entry("v1", snapshot_id=snapshot_id)


def commit_request(checkout: Paths, seed: int, message: str) -> dict:
    """Lay out a retraining request as the drift bot commits it, and commit it; returns its manifest."""
    contract = load_contract(checkout.contract)
    drift_root = checkout.root.parent / f"drift-machine-{seed}"
    folder = snapshot.create(
        generate(150, seed=seed, covariate_drift=1.0), {"kind": "capture"}, contract=contract, root=drift_root
    )
    manifest = json.loads((folder / "manifest.json").read_text())
    lay_out_request(checkout, manifest, drift_root)
    git(checkout.root, "add", "-A")
    git(checkout.root, "commit", "-q", "-m", message)
    return manifest


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> tuple[Path, dict, dict]:
    """A git checkout on main after two retraining merges: the champion was trained on the first."""
    paths = project_checkout(tmp_path_factory.mktemp("reference") / "checkout", SOURCE)
    git(paths.root, "init", "-q")
    first = commit_request(paths, seed=21, message="retraining request 1 (merged; its model is the champion)")
    second = commit_request(paths, seed=22, message="retraining request 2 (merged; not yet promoted)")
    return paths.root, first, second


def fresh(checkout: Path, tmp_path: Path) -> Paths:
    """A private copy of the checkout with an empty artifacts/ (as in a CI run)."""
    root = tmp_path / "checkout"
    shutil.copytree(checkout, root)
    return Paths(root)


def test_a_champion_trained_on_an_older_request_is_rebuilt_from_git_history(checkout, tmp_path):
    paths = fresh(checkout[0], tmp_path)
    first = checkout[1]
    snapshots = paths.snapshots
    snapshots.mkdir(parents=True)
    (snapshots / "latest").write_text("whatever-make-data-built\n")
    champion = champion_on(first["snapshot_id"])
    ref = reference.load_reference(paths, champion)
    assert ref.snapshot_id == first["snapshot_id"]
    assert len(ref.frame) == first["rows"]
    assert ref.manifest["sha256"] == first["sha256"]
    assert (snapshots / "latest").read_text() == "whatever-make-data-built\n", "latest must not move"
    assert sorted(path.name for path in snapshots.iterdir()) == [first["snapshot_id"], "latest"]
    described = ref.describe()
    assert (described.snapshot_id, described.rows) == (first["snapshot_id"], first["rows"])
    assert (described.model_version, described.stage) == (champion.version, champion.stage)


def test_a_champion_trained_on_the_configured_source_is_rebuilt_despite_a_request(checkout, tmp_path):
    paths = fresh(checkout[0], tmp_path)
    contract = load_contract(paths.contract)
    source_id = snapshot.create(
        generate(SOURCE["rows"], seed=SOURCE["seed"]), {}, contract=contract, root=tmp_path / "elsewhere"
    ).name
    ref = reference.load_reference(paths, champion_on(source_id))
    assert ref.snapshot_id == source_id and len(ref.frame) == SOURCE["rows"]


def test_an_unknown_snapshot_fails_naming_it_and_how_to_restore_it(checkout, tmp_path):
    paths = fresh(checkout[0], tmp_path)
    with pytest.raises(NoReferenceError) as error:
        reference.load_reference(paths, champion_on("0123456789ab"))
    message = str(error.value)
    assert "0123456789ab" in message and "v1" in message
    assert "--ignore-request" in message and "yields snapshot" in message
    assert "no commit's governance/retraining/request.json names snapshot 0123456789ab" in message
    assert "Restore artifacts/snapshots/0123456789ab/" in message
    assert not (paths.snapshots / "0123456789ab").exists()


def test_outside_a_git_checkout_it_says_history_is_unavailable(checkout, tmp_path):
    paths = fresh(checkout[0], tmp_path)
    shutil.rmtree(paths.root / ".git")
    with pytest.raises(NoReferenceError, match="git history: not available"):
        reference.load_reference(paths, champion_on(checkout[1]["snapshot_id"]))
