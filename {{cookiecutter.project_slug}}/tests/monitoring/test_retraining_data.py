"""What retraining trains on is the policy's choice (`retrain.data`), recorded in the snapshot's manifest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from data_pipelines import ingest, snapshot
from governance.core import policy as policy_file
from governance.core.contract import load as load_contract
from governance.core.paths import Paths
from governance.core.policy import PolicyError
from ml.pipeline import split_snapshot
from ml.train import load_params, split
from monitoring import dataset
from tests.support import training
from tests.support.drift import example


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    """A workspace whose latest snapshot (the example's 2,000 rows) stands in for the champion's."""
    return Paths(training.make_workspace(tmp_path / "workspace"))


def window(rows: int, seed: int) -> pd.DataFrame:
    """A labelled capture window as `read_window` returns it (the contract's columns plus timestamp)."""
    return example(rows, seed=seed).rename(columns={snapshot.EVENT_TIME: "timestamp"})


def build(
    paths: Paths,
    choice: str,
    rows: int = 200,
    seed: int = 11,
    sliding: int = 3,
    reference_id: str | None = None,
) -> dict:
    contract = load_contract(paths.contract)
    reference, manifest = snapshot.load(reference_id or snapshot.LATEST, root=paths.snapshots)
    sources = dataset.Sources(
        choice=choice,
        reference=reference,
        reference_id=manifest["snapshot_id"],
        params=load_params(paths.params),
        sliding_snapshots=sliding,
        manifest=manifest,
    )
    built = dataset.build(
        window(rows, seed), contract, {"kind": "capture"}, paths.reports, paths.snapshots, sources=sources
    )
    assert built.valid, built.errors
    return built.manifest


def counts(manifest: dict) -> list[tuple[str, int]]:
    return [(segment["source"], segment["rows"]) for segment in manifest["source"]["segments"]]


def rows_of(paths: Paths, manifest: dict) -> pd.DataFrame:
    frame, _ = snapshot.load(manifest["snapshot_id"], root=paths.snapshots)
    return frame


def test_the_default_keeps_the_reference_rows_and_holds_out_the_champions_own_test_split(paths):
    contract = load_contract(paths.contract)
    reference, _ = snapshot.load(root=paths.snapshots)
    expected = split(reference, contract, load_params(paths.params))
    manifest = build(paths, "reference_and_window")
    assert manifest["source"]["data"] == "reference_and_window"
    assert counts(manifest) == [
        ("reference_holdout", len(expected.test)),
        ("reference", len(expected.train)),
        ("window", 200),
    ]
    assert manifest["rows"] == len(reference) + 200
    stored = rows_of(paths, manifest)
    columns = list(contract.columns)
    # the hold-out slice is exactly the reference's test split (same seed and test size), first
    holdout = stored.head(len(expected.test))[columns].reset_index(drop=True)
    pd.testing.assert_frame_equal(holdout, expected.test[columns].reset_index(drop=True), check_dtype=False)
    assert manifest["source"]["capture"] == {"kind": "capture"}


def test_a_champion_trained_on_a_retraining_snapshot_lends_every_row_it_was_not_fitted_on(paths):
    """Second generation: the reference is a retraining snapshot, so its hold-out is its own
    reference hold-out plus its window's test split, and its training rows stay training rows."""
    first = build(paths, "reference_and_window", rows=400, seed=31)
    trained_on = split_snapshot(
        rows_of(paths, first), first, load_contract(paths.contract), load_params(paths.params)
    )
    second = build(paths, "reference_and_window", rows=200, seed=32, reference_id=first["snapshot_id"])
    assert counts(second) == [
        ("reference_holdout", len(trained_on.reference) + len(trained_on.split.test)),
        ("reference", len(trained_on.split.train)),
        ("window", 200),
    ]
    assert second["source"]["segments"][0]["snapshot_id"] == first["snapshot_id"]


def test_window_only_trains_on_the_window_but_still_carries_the_reference_hold_out(paths):
    manifest = build(paths, "window")
    assert manifest["source"]["data"] == "window"
    sources = dict(counts(manifest))
    assert set(sources) == {"reference_holdout", "window"} and sources["window"] == 200
    assert manifest["rows"] == sum(sources.values())


def test_sliding_takes_the_window_segments_of_the_newest_retraining_snapshots(paths):
    older = build(paths, "window", rows=150, seed=21)
    newer = build(paths, "window", rows=170, seed=22)
    # runs within one second: date them a week apart, as weekly runs would be
    for made, moment in ((older, "2000-01-01T00:00:00Z"), (newer, "2000-01-08T00:00:00Z")):
        manifest_path = paths.snapshots / made["snapshot_id"] / "manifest.json"
        stored = json.loads(manifest_path.read_text())
        stored["created_at"] = moment
        manifest_path.write_text(json.dumps(stored))

    one = build(paths, "sliding", rows=120, seed=23, sliding=1)
    assert [(source, rows) for source, rows in counts(one)][1:] == [("snapshot", 170), ("window", 120)]
    assert one["source"]["segments"][1]["snapshot_id"] == newer["snapshot_id"]
    two = build(paths, "sliding", rows=120, seed=24, sliding=2)
    earlier = [segment for segment in two["source"]["segments"] if segment["source"] == "snapshot"]
    # the newest first: the sliding snapshot just built (its window of 120), then the 170-row one
    assert [segment["rows"] for segment in earlier] == [120, 170]
    # an earlier snapshot contributes only its window rows, never its reference hold-out again
    window_rows = rows_of(paths, newer).tail(170).reset_index(drop=True)
    offset = two["source"]["segments"][0]["rows"] + 120
    pd.testing.assert_frame_equal(
        rows_of(paths, two).iloc[offset : offset + 170].reset_index(drop=True), window_rows
    )


def test_of_a_large_window_the_snapshot_takes_the_newest_labelled_rows_and_says_so(paths):
    contract = load_contract(paths.contract)
    rows = window(300, seed=41).sample(frac=1.0, random_state=0)  # out of time order
    reference, manifest = snapshot.load(root=paths.snapshots)
    sources = dataset.Sources("window", reference, manifest["snapshot_id"], load_params(paths.params))
    built = dataset.build(
        rows, contract, {"kind": "capture"}, paths.reports, paths.snapshots, sources=sources, max_rows=120
    )
    assert built.valid, built.errors
    assert dict(counts(built.manifest))["window"] == 120
    assert built.manifest["source"]["capture"] == {"kind": "capture", "labelled_rows": 300, "rows_taken": 120}
    assert built.notes and "300 labelled rows" in built.notes[0] and "newest 120" in built.notes[0]
    kept = rows_of(paths, built.manifest).tail(120)[snapshot.EVENT_TIME]
    assert kept.min() == rows["timestamp"].nlargest(120).min()  # the newest ones, whatever their order


def test_the_policy_names_the_choice_and_refuses_an_unknown_one(tmp_path):
    project = policy_file.load(Paths(training.PROJECT).policy)
    assert project.retrain.data == "reference_and_window" and project.retrain.sliding_snapshots >= 1
    raw = yaml.safe_load(Paths(training.PROJECT).policy.read_text())
    raw["retrain"]["data"] = "everything"
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(PolicyError, match=r"retrain\.data.*everything|everything.*retrain\.data"):
        policy_file.load(path)


def test_the_pull_requests_ci_rebuilds_and_validates_the_same_snapshot_with_its_segments(paths, tmp_path):
    """What `make data` does on the retraining branch: the committed file and manifest, validated whole."""
    manifest = build(paths, "reference_and_window")
    request = tmp_path / "request"
    request.mkdir()
    shutil.copy(paths.snapshots / manifest["snapshot_id"] / "data.parquet", request / snapshot.REQUEST_DATA)
    (request / snapshot.REQUEST_MANIFEST).write_text(json.dumps(manifest))
    folder = ingest.from_request(request, load_contract(paths.contract), tmp_path / "rebuilt")
    rebuilt = json.loads((folder / "manifest.json").read_text())
    assert rebuilt["snapshot_id"] == manifest["snapshot_id"] and rebuilt["source"] == manifest["source"]
