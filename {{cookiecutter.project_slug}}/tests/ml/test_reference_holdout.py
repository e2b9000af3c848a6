"""A retraining candidate is also scored on the reference hold-out slice it never trained on."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from data_pipelines import snapshot
from governance.core import policy as policy_file
from governance.core.contract import Contract
from governance.core.contract import load as load_contract
from governance.core.errors import InputError
from governance.core.paths import Paths
from ml.pipeline import load_inputs, split_data, train
from ml.train import load_params
from monitoring import dataset
from tests.support import training
from tests.support.drift import another_label, example


def poisoned(frame: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    """Every label turned into another one (classes shifted by one, numbers mirrored about their mean):
    a window a model can fit perfectly well that says the opposite of the reference."""
    target = contract.target.name
    frame = frame.copy()
    if contract.target.is_classification:
        frame[target] = [another_label(value, contract) for value in frame[target]]
    else:
        values = frame[target].astype(float)
        frame[target] = 2 * values.mean() - values
    return frame


def retraining_snapshot(paths: Paths, choice: str, window: pd.DataFrame) -> dict:
    contract = load_contract(paths.contract)
    reference, manifest = snapshot.load(root=paths.snapshots)
    sources = dataset.Sources(choice, reference, manifest["snapshot_id"], load_params(paths.params))
    capture = window.rename(columns={snapshot.EVENT_TIME: "timestamp"})
    built = dataset.build(
        capture, contract, {"kind": "capture"}, paths.reports, paths.snapshots, sources=sources
    )
    assert built.valid, built.errors
    return built.manifest


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths(training.make_workspace(tmp_path / "workspace"))


def outputs(paths: Paths, version: str) -> tuple[dict, dict, dict]:
    folder = paths.models / version
    return tuple(
        json.loads((folder / name).read_text()) for name in ("metrics.json", "gates.json", "training.json")
    )


def test_the_hold_out_is_never_trained_on_and_the_test_split_comes_from_the_window(paths):
    manifest = retraining_snapshot(paths, "reference_and_window", example(400, seed=41))
    segments = {segment["source"]: segment["rows"] for segment in manifest["source"]["segments"]}
    parts = split_data(load_inputs(paths, manifest["snapshot_id"]))
    holdout, reference_rows = segments["reference_holdout"], segments["reference"]
    assert len(parts.reference) == holdout and parts.reference.index.max() < holdout
    assert parts.reference_id == manifest["source"]["segments"][0]["snapshot_id"]
    train_index, test_index = set(parts.split.train.index), set(parts.split.test.index)
    assert not train_index & set(parts.reference.index), "no hold-out row is trained on"
    assert min(test_index) >= holdout + reference_rows, "the main test split is window rows only"
    assert len(train_index) + len(test_index) + holdout == manifest["rows"]


def test_segments_that_do_not_cover_the_rows_are_refused_by_name(paths):
    manifest = retraining_snapshot(paths, "window", example(300, seed=42))
    inputs = load_inputs(paths, manifest["snapshot_id"])
    inputs.manifest["source"]["segments"][-1]["rows"] -= 1
    with pytest.raises(InputError, match=r"source\.segments must cover every row.*the data has"):
        split_data(inputs)


def test_a_candidate_that_learned_only_a_poisoned_window_fails_on_the_reference_slice(paths):
    contract = load_contract(paths.contract)
    policy_metric = policy_file.load(paths.policy).model.primary_metric
    manifest = retraining_snapshot(paths, "window", poisoned(example(600, seed=43), contract))
    report = train(paths, manifest["snapshot_id"])
    metrics, gates, record = outputs(paths, report.version)
    by_name = {gate["name"]: gate for gate in gates["gates"]}
    reference = metrics["reference"]
    segments = manifest["source"]["segments"]
    assert reference["rows"] == segments[0]["rows"] and reference["snapshot_id"] == segments[0]["snapshot_id"]
    gate = by_name["reference_holdout"]
    assert gate["value"] == pytest.approx(reference["metrics"][policy_metric])
    # on its own (poisoned) window the candidate looks fine; on the reference it is caught
    assert by_name["primary_metric"]["passed"], by_name["primary_metric"]["message"]
    assert not gate["passed"] and not report.passed
    assert "reference hold-out" in gate["message"]
    print(
        f"\n{policy_metric}: held-out (window) {metrics['metrics'][policy_metric]:.4f}, "
        f"reference hold-out {gate['value']:.4f} on {reference['rows']} rows"
    )
    assert record["data"]["train_rows"] + record["data"]["test_rows"] + reference["rows"] == manifest["rows"]


def test_an_ordinary_snapshot_trains_as_before_without_a_reference_figure(paths):
    report = train(paths)
    metrics, gates, record = outputs(paths, report.version)
    assert metrics.get("reference") is None
    assert "reference_holdout" not in {gate["name"] for gate in gates["gates"]}
    assert record["data"]["train_rows"] + record["data"]["test_rows"] == record["data"]["rows"]
