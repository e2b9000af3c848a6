"""The drift check's snapshot worker builds exactly what the in-process build builds, and never lingers."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_pipelines import snapshot
from governance.core.contract import load as load_contract
from governance.core.paths import Paths
from ml.train import load_params
from monitoring import dataset
from monitoring.snapshot_worker import SnapshotWorker, WorkerFailed
from tests.support import training
from tests.support.drift import example


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths(training.make_workspace(tmp_path / "workspace"))


def job(paths: Paths, rows: dataset.Candidate, manifest: dict) -> dict:
    return {
        "root": str(paths.root),
        "labelled": rows.labelled,
        "notes": list(rows.notes),
        "source": {"kind": "capture"},
        "min_rows": 1,
        "choice": "reference_and_window",
        "reference_id": manifest["snapshot_id"],
        "sliding_snapshots": 3,
        "manifest": manifest,
    }


def test_the_worker_builds_the_snapshot_the_check_would_build_itself(paths, tmp_path):
    contract = load_contract(paths.contract)
    window = example(400, seed=5).rename(columns={snapshot.EVENT_TIME: "timestamp"})
    reference, manifest = snapshot.load(root=paths.snapshots)
    rows = dataset.candidate(window, contract, max_rows=150)
    with SnapshotWorker() as worker:
        worker.submit(rows.batch, reference, job(paths, rows, manifest))
        worker.commit()
        handed = worker.result()
    sources = dataset.Sources(
        "reference_and_window", reference, manifest["snapshot_id"], load_params(paths.params)
    )
    here = dataset.build(
        window, contract, {"kind": "capture"}, tmp_path / "reports", tmp_path / "snapshots", 1, sources, 150
    )
    assert handed.valid and here.valid, (handed.errors, here.errors)
    assert handed.manifest["snapshot_id"] == here.manifest["snapshot_id"]  # same rows, same types
    assert handed.manifest["source"] == here.manifest["source"] and handed.notes == here.notes
    assert Path(handed.path).parent == paths.snapshots
    assert Path(handed.validation).is_file() and Path(handed.validation).is_relative_to(paths.reports)
    assert Path(handed.data_docs).is_file() and Path(handed.data_docs).is_relative_to(paths.reports)


def test_a_candidate_validated_before_a_decision_that_is_not_retrain_leaves_no_trace(paths):
    contract = load_contract(paths.contract)
    window = example(300, seed=8).rename(columns={snapshot.EVENT_TIME: "timestamp"})
    reference, manifest = snapshot.load(root=paths.snapshots)
    rows = dataset.candidate(window, contract)
    before = sorted(path.relative_to(paths.root) for path in paths.root.rglob("*"))
    with SnapshotWorker() as worker:
        worker.submit(rows.batch, reference, job(paths, rows, manifest))
        scratch = worker.folder
    assert sorted(path.relative_to(paths.root) for path in paths.root.rglob("*")) == before
    assert not scratch.exists()


def test_a_worker_given_no_job_is_ended_and_leaves_nothing_behind():
    worker = SnapshotWorker()
    process, folder = worker.process, worker.folder
    worker.close()
    assert process is not None and process.poll() is not None
    assert not folder.exists()


def test_a_worker_that_fails_says_so_with_its_last_words(paths, tmp_path):
    contract = load_contract(paths.contract)
    rows = dataset.candidate(example(50, seed=6).rename(columns={snapshot.EVENT_TIME: "timestamp"}), contract)
    reference, manifest = snapshot.load(root=paths.snapshots)
    broken = {**job(paths, rows, manifest), "root": str(tmp_path / "no-project-here")}
    with SnapshotWorker() as worker:
        worker.submit(rows.batch, reference, broken)
        worker.commit()
        with pytest.raises(WorkerFailed, match=r"exit code 1.*contract"):
            worker.result()
