"""A retraining request carries its data: `make data` in its checkout rebuilds exactly that snapshot.

The drift monitor commits the new snapshot's Parquet file and manifest with the request
(monitoring/retrain_pr.py); the pull request's CI then runs `make data`, which must build the
requested snapshot, never the configured source, and must refuse a file that changed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from data_pipelines import cli, snapshot
from data_pipelines.contract import load as load_contract
from data_pipelines.example import EXAMPLE_CONTRACT, generate
from monitoring.retrain_pr import make_plan

PROJECT = Path(__file__).resolve().parents[1]
REQUEST = "governance/retraining"


def drift_summary(manifest: dict) -> dict:
    """The parts of a drift run's summary (reports/drift/drift.json) the bot reads."""
    return {
        "run_at": "2024-06-01T06:00:00+00:00",
        "detector": "scipy",
        "policy": {"p_value": 0.05, "correction": "bonferroni"},
        "window": {
            "uri": "file://capture",
            "rows": manifest["rows"],
            "labelled_rows": manifest["rows"],
            "start": manifest["time_window"]["start"],
            "end": manifest["time_window"]["end"],
        },
        "reference": {"snapshot_id": "0123", "rows": 10000, "model_name": "loans", "model_version": "v1"},
        "drift": None,
        "decision": {
            "status": "retrain",
            "reasons": ["drifted_feature_share: 3/9"],
            "checks": [],
            "notes": [],
        },
        "dataset": {"valid": True, "manifest": manifest},
    }


@pytest.fixture(scope="module")
def requested(tmp_path_factory) -> tuple[Path, dict]:
    """A project checkout holding a retraining request, as the bot's commit lays it out.

    The snapshot is built on the "drift machine" (its own snapshot root) from drifted example
    rows; the request files are exactly the plan's files, the data file copied byte for byte.
    """
    base = tmp_path_factory.mktemp("request")
    checkout = base / "checkout"
    shutil.copytree(
        PROJECT / "data_pipelines", checkout / "data_pipelines", ignore=shutil.ignore_patterns("__pycache__")
    )
    # The example's own contract, so the test also runs where the project's contract is still a draft.
    (checkout / "data_pipelines" / "contract.yaml").write_text(
        yaml.safe_dump(EXAMPLE_CONTRACT, sort_keys=False)
    )
    (checkout / "monitoring").mkdir()
    shutil.copy(PROJECT / "monitoring" / "monitoring.yaml", checkout / "monitoring" / "monitoring.yaml")
    contract = load_contract(checkout / "data_pipelines" / "contract.yaml")
    window = generate(120, seed=11, covariate_drift=1.0, concept_drift=1.0)
    drift_root = base / "drift-machine" / "snapshots"
    folder = snapshot.create(
        window, {"kind": "capture", "uri": "file://capture"}, contract=contract, root=drift_root
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
    return checkout, manifest


def copy_request(checkout: Path, into: Path) -> Path:
    shutil.copytree(checkout / REQUEST, into)
    return into


def test_data_in_a_checkout_with_a_request_builds_exactly_the_requested_snapshot(requested):
    checkout, manifest = requested
    ids = []
    for _ in range(2):  # twice: the same snapshot every run (main after the merge stays deterministic)
        result = subprocess.run(
            [sys.executable, "-m", "data_pipelines.cli", "data"],
            cwd=checkout,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert f"using the retraining request's snapshot {manifest['snapshot_id']}" in result.stderr
        ids.append((checkout / "artifacts" / "snapshots" / "latest").read_text().strip())
    assert ids == [manifest["snapshot_id"]] * 2
    rebuilt = json.loads((checkout / "artifacts" / "snapshots" / ids[0] / "manifest.json").read_text())
    assert rebuilt == manifest  # source, time window and created_at included
    assert "generating" not in result.stderr, "the configured example source must not be used"


def test_explicit_source_flags_bypass_the_request(requested, tmp_path, monkeypatch):
    checkout, manifest = requested
    monkeypatch.setattr(cli, "PROJECT_ROOT", checkout)
    contract = str(checkout / "data_pipelines" / "contract.yaml")
    common = ["--contract", contract, "--snapshots", str(tmp_path / "snapshots")]
    own_file = tmp_path / "own.csv"
    generate(40, seed=3).to_csv(own_file, index=False)
    assert cli.main(["data", "--input", str(own_file), *common]) == 0
    assert (tmp_path / "snapshots" / "latest").read_text().strip() != manifest["snapshot_id"]
    assert cli.main(["data", *common]) == 0
    assert (tmp_path / "snapshots" / "latest").read_text().strip() == manifest["snapshot_id"]


def tamper(path: Path) -> None:
    frame = snapshot.read_table(path)
    frame.loc[3, "income"] = frame.loc[3, "income"] * 2
    frame.to_parquet(path, index=False)


def run_data(request: Path, snapshots: Path, checkout: Path) -> int:
    contract = str(checkout / "data_pipelines" / "contract.yaml")
    return cli.main(
        ["data", "--request", str(request), "--snapshots", str(snapshots), "--contract", contract]
    )


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
