"""The drift reference survives a retraining merge: a champion snapshot that is not in
artifacts/snapshots/ is rebuilt from the configured source or from the retraining request git
history holds, and otherwise the error names the snapshot and how to restore it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from data_pipelines import snapshot
from data_pipelines.contract import load as load_contract
from data_pipelines.example import EXAMPLE_CONTRACT, generate
from monitoring import reference
from monitoring.reference import Champion, NoReferenceError
from monitoring.retrain_pr import make_plan
from tests.test_retraining_request import REQUEST, drift_summary

PROJECT = Path(__file__).resolve().parents[1]
SOURCE = {"kind": "example", "rows": 300, "seed": 3}


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def champion_on(snapshot_id: str) -> Champion:
    return Champion("v1", "loans", "production", Path("model.onnx"), "0" * 64, snapshot_id)


def commit_request(checkout: Path, seed: int, message: str) -> dict:
    """Lay out a retraining request as the drift bot commits it, and commit it; returns its manifest."""
    contract = load_contract(checkout / "data_pipelines" / "contract.yaml")
    drift_root = checkout.parent / f"drift-machine-{seed}"
    folder = snapshot.create(
        generate(150, seed=seed, covariate_drift=1.0), {"kind": "capture"}, contract=contract, root=drift_root
    )
    manifest = json.loads((folder / "manifest.json").read_text())
    plan = make_plan(
        drift_summary(manifest), "retrain/auto", None, REQUEST, None, "h", snapshots_root=drift_root
    )
    for path, text in plan.files.items():
        (checkout / path).parent.mkdir(parents=True, exist_ok=True)
        (checkout / path).write_text(text)
    for path, local in plan.data_files.items():
        shutil.copyfile(local, checkout / path)
    git(checkout, "add", "-A")
    git(checkout, "commit", "-q", "-m", message)
    return manifest


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> tuple[Path, dict, dict]:
    """A git checkout on main after two retraining merges: the champion was trained on the first."""
    root = tmp_path_factory.mktemp("reference") / "checkout"
    shutil.copytree(
        PROJECT / "data_pipelines", root / "data_pipelines", ignore=shutil.ignore_patterns("__pycache__")
    )
    (root / "data_pipelines" / "contract.yaml").write_text(yaml.safe_dump(EXAMPLE_CONTRACT, sort_keys=False))
    (root / "data_pipelines" / "source.yaml").write_text(yaml.safe_dump(SOURCE))
    (root / "monitoring").mkdir()
    shutil.copy(PROJECT / "monitoring" / "monitoring.yaml", root / "monitoring" / "monitoring.yaml")
    git(root, "init", "-q")
    first = commit_request(root, seed=21, message="retraining request 1 (merged; its model is the champion)")
    second = commit_request(root, seed=22, message="retraining request 2 (merged; not yet promoted)")
    return root, first, second


def fresh(checkout: Path, tmp_path: Path) -> Path:
    """A private copy of the checkout with an empty artifacts/ (as in a CI run)."""
    root = tmp_path / "checkout"
    shutil.copytree(checkout, root)
    return root


def test_a_champion_trained_on_an_older_request_is_rebuilt_from_git_history(checkout, tmp_path):
    root = fresh(checkout[0], tmp_path)
    first = checkout[1]
    snapshots = root / "artifacts" / "snapshots"
    snapshots.mkdir(parents=True)
    (snapshots / "latest").write_text("whatever-make-data-built\n")
    ref = reference.load_reference(champion_on(first["snapshot_id"]), root=root)
    assert ref.snapshot_id == first["snapshot_id"]
    assert len(ref.frame) == first["rows"]
    assert ref.manifest["sha256"] == first["sha256"]
    assert (snapshots / "latest").read_text() == "whatever-make-data-built\n", "latest must not move"
    assert sorted(path.name for path in snapshots.iterdir()) == [first["snapshot_id"], "latest"]


def test_a_champion_trained_on_the_configured_source_is_rebuilt_despite_a_request(checkout, tmp_path):
    root = fresh(checkout[0], tmp_path)
    contract = load_contract(root / "data_pipelines" / "contract.yaml")
    source_id = snapshot.create(
        generate(SOURCE["rows"], seed=SOURCE["seed"]), {}, contract=contract, root=tmp_path / "elsewhere"
    ).name
    ref = reference.load_reference(champion_on(source_id), root=root)
    assert ref.snapshot_id == source_id and len(ref.frame) == SOURCE["rows"]


def test_an_unknown_snapshot_fails_naming_it_and_how_to_restore_it(checkout, tmp_path):
    root = fresh(checkout[0], tmp_path)
    with pytest.raises(NoReferenceError) as error:
        reference.load_reference(champion_on("0123456789ab"), root=root)
    message = str(error.value)
    assert "0123456789ab" in message and "v1" in message
    assert "--ignore-request" in message and "yields snapshot" in message
    assert "no commit's governance/retraining/request.json names snapshot 0123456789ab" in message
    assert "Restore artifacts/snapshots/0123456789ab/" in message
    assert not (root / "artifacts" / "snapshots" / "0123456789ab").exists()


def test_outside_a_git_checkout_it_says_history_is_unavailable(checkout, tmp_path):
    root = fresh(checkout[0], tmp_path)
    shutil.rmtree(root / ".git")
    with pytest.raises(NoReferenceError, match="git history: not available"):
        reference.load_reference(champion_on(checkout[1]["snapshot_id"]), root=root)
