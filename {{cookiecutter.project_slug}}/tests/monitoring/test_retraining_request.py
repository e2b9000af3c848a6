"""A retraining request carries its data: `make data` in its checkout rebuilds exactly that snapshot.

The drift monitor commits the new snapshot's Parquet file and manifest with the request
(monitoring/retrain_pr.py); the pull request's CI then runs `make data`, which must build the
requested snapshot, never the configured source, and must refuse a file that changed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from data_pipelines import snapshot
from data_pipelines.example import generate
from governance.cli import main
from governance.core.contract import load as load_contract
from governance.core.paths import Paths
from tests.support.drift import lay_out_request, project_checkout


@pytest.fixture(scope="module")
def requested(tmp_path_factory) -> tuple[Paths, dict]:
    """A project checkout holding a retraining request, as the bot's commit lays it out.

    The snapshot is built on the "drift machine" (its own snapshot root) from drifted example
    rows; the request files are exactly the plan's files, the data file copied byte for byte.
    """
    base = tmp_path_factory.mktemp("request")
    checkout = project_checkout(base / "checkout")
    contract = load_contract(checkout.contract)
    window = generate(120, seed=11, covariate_drift=1.0, concept_drift=1.0)
    drift_root = base / "drift-machine" / "snapshots"
    folder = snapshot.create(
        window, {"kind": "capture", "uri": "file://capture"}, contract=contract, root=drift_root
    )
    manifest = json.loads((folder / "manifest.json").read_text())
    lay_out_request(checkout, manifest, drift_root)
    return checkout, manifest


def data(checkout: Paths, *options: str) -> int:
    """`mlops --root <checkout> data ...`: what `make data` runs in that checkout."""
    return main(["--root", str(checkout.root), "data", *options])


def copy_request(checkout: Paths, into: Path) -> Path:
    shutil.copytree(checkout.retraining, into)
    return into


def test_data_in_a_checkout_with_a_request_builds_exactly_the_requested_snapshot(requested, capsys):
    checkout, manifest = requested
    ids = []
    for _ in range(2):  # twice: the same snapshot every run (main after the merge stays deterministic)
        assert data(checkout) == 0
        progress = capsys.readouterr().err
        assert f"using the retraining request's snapshot {manifest['snapshot_id']}" in progress
        assert "generating" not in progress, "the configured example source must not be used"
        ids.append((checkout.snapshots / "latest").read_text().strip())
    assert ids == [manifest["snapshot_id"]] * 2
    rebuilt = json.loads((checkout.snapshots / ids[0] / "manifest.json").read_text())
    assert rebuilt == manifest  # source, time window and created_at included


def test_explicit_source_flags_bypass_the_request(requested, tmp_path):
    checkout, manifest = requested
    snapshots = tmp_path / "snapshots"
    own_file = tmp_path / "own.csv"
    generate(40, seed=3).to_csv(own_file, index=False)
    assert data(checkout, "--input", str(own_file), "--snapshots", str(snapshots)) == 0
    assert (snapshots / "latest").read_text().strip() != manifest["snapshot_id"]
    assert data(checkout, "--snapshots", str(snapshots)) == 0
    assert (snapshots / "latest").read_text().strip() == manifest["snapshot_id"]


def tamper(path: Path) -> None:
    frame = snapshot.read_table(path)
    frame.loc[3, "income"] = frame.loc[3, "income"] * 2
    frame.to_parquet(path, index=False)


def run_data(request: Path, snapshots: Path, checkout: Paths) -> int:
    return data(checkout, "--request", str(request), "--snapshots", str(snapshots))


def test_a_tampered_request_file_is_refused(requested, tmp_path, capsys):
    checkout, manifest = requested
    request = copy_request(checkout, tmp_path / "request")
    tamper(request / snapshot.REQUEST_DATA)
    assert run_data(request, tmp_path / "snapshots", checkout) == 2
    error = capsys.readouterr().err
    assert f"request names snapshot {manifest['snapshot_id']}" in error and "refusing to train on it" in error
    assert not (tmp_path / "snapshots").exists(), "no snapshot may be built from a refused file"


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda request: (request / snapshot.REQUEST_DATA).unlink(), "snapshot.parquet is missing"),
        (lambda request: (request / snapshot.REQUEST_DATA).write_bytes(b"PAR1 not really"), "not a readable"),
        (
            lambda request: (request / snapshot.REQUEST_MANIFEST).write_text(
                json.dumps({"snapshot_id": "0" * 12, "sha256": "0" * 64})
            ),
            "hashes to",
        ),
        (
            lambda request: (request / snapshot.REQUEST_MANIFEST).write_text(json.dumps({"sha256": "abc"})),
            "field 'sha256' must be 64 hex digits",
        ),
    ],
    ids=["missing-data", "not-parquet", "other-hash", "bad-manifest"],
)
def test_a_broken_request_is_refused_by_name(requested, tmp_path, capsys, damage, message):
    checkout, _ = requested
    request = copy_request(checkout, tmp_path / "request")
    damage(request)
    assert run_data(request, tmp_path / "snapshots", checkout) == 2
    assert message in capsys.readouterr().err


def test_a_request_made_under_another_contract_is_refused(requested, tmp_path, capsys):
    checkout, _ = requested
    request = copy_request(checkout, tmp_path / "request")
    manifest = json.loads((request / snapshot.REQUEST_MANIFEST).read_text())
    manifest["contract_sha256"] = "e" * 64
    (request / snapshot.REQUEST_MANIFEST).write_text(json.dumps(manifest))
    assert run_data(request, tmp_path / "snapshots", checkout) == 2
    assert "validated under data contract eeeeeeeeeeee" in capsys.readouterr().err
