"""`mlops data`: the configured source (the data-source seam) becomes a snapshot, or nothing at all.

The commands run in-process against a project folder of their own (`mlops --root`), holding the
example generator's contract and a source.yaml written by each test.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from data_pipelines import snapshot, source
from data_pipelines.example import EXAMPLE_CONTRACT, generate
from data_pipelines.ingest import build_snapshot
from governance import cli
from governance.core.errors import InputError
from governance.core.paths import Paths

EXAMPLE_SOURCE = {"kind": "example", "generator": "data_pipelines.example"}


@pytest.fixture
def project(tmp_path: Path) -> Paths:
    """A project folder with the example contract and the example source (seeded, 300 rows)."""
    (tmp_path / "data_pipelines").mkdir()
    contract = yaml.safe_dump(EXAMPLE_CONTRACT, sort_keys=False)
    (tmp_path / "data_pipelines" / "contract.yaml").write_text(contract)
    write_source(tmp_path, {"kind": "example", "rows": 300, "seed": 5})
    return Paths(tmp_path)


def write_source(root: Path, config: dict) -> None:
    (root / "data_pipelines" / "source.yaml").write_text(yaml.safe_dump(config))


def snapshot_folders(paths: Paths) -> list[Path]:
    return sorted(folder for folder in paths.snapshots.glob("*") if (folder / "manifest.json").is_file())


def test_a_source_config_of_kind_file_reads_that_file_and_records_its_lineage(project):
    frame = generate(40, seed=3)
    (project.root / "data" / "raw").mkdir(parents=True)
    frame.to_csv(project.root / "data" / "raw" / "loans.csv", index=False)
    config = source.SourceConfig(kind="file", path="data/raw/loans.csv")
    rows, origin = source.load(config, project)
    assert len(rows) == 40
    assert list(rows.columns) == list(frame.columns)
    assert rows["income"].tolist() == pytest.approx(frame["income"].tolist(), nan_ok=True)
    assert origin["kind"] == "file" and origin["path"] == "data/raw/loans.csv"
    raw = (project.root / "data" / "raw" / "loans.csv").read_bytes()
    assert origin["file_sha256"] == hashlib.sha256(raw).hexdigest()


def test_a_source_config_of_kind_example_generates_the_seeded_rows(project):
    rows, origin = source.load(source.read_config(project), project)
    pd.testing.assert_frame_equal(rows, generate(300, seed=5))
    assert origin == {**EXAMPLE_SOURCE, "rows": 300, "seed": 5}


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"kind": "file"}, "'path' is required"),
        ({"kind": "warehouse"}, "field 'kind'"),
        ({"kind": "example", "rows": 0}, "field 'rows'"),
        ({"kind": "example", "rwos": 10}, "field 'rwos' is not a known field"),
    ],
)
def test_a_broken_source_config_is_refused_by_field(project, config, named):
    write_source(project.root, config)
    with pytest.raises(InputError, match=named):
        source.read_config(project)


def test_the_command_builds_a_snapshot_from_the_configured_source(project, capsys):
    assert cli.main(["--root", str(project.root), "data", "--rows", "120", "--seed", "9"]) == 0
    (folder,) = snapshot_folders(project)
    frame, manifest = snapshot.load(root=project.snapshots)
    assert manifest["snapshot_id"] == folder.name
    assert manifest["rows"] == len(frame) == 120
    assert manifest["source"] == {**EXAMPLE_SOURCE, "rows": 120, "seed": 9}
    assert manifest["contract_sha256"] == hashlib.sha256(project.contract.read_bytes()).hexdigest()
    assert f"snapshot {folder.name}: 120 rows" in capsys.readouterr().out


def test_the_command_leaves_out_columns_the_contract_does_not_declare(project, tmp_path, capsys):
    path = tmp_path / "extra.csv"
    generate(50, seed=2).assign(customer_id=[f"c{index}" for index in range(50)]).to_csv(path, index=False)
    assert cli.main(["--root", str(project.root), "data", "--input", str(path)]) == 0
    assert "left out columns the contract does not declare: ['customer_id']" in capsys.readouterr().err
    frame, manifest = snapshot.load(root=project.snapshots)
    assert "customer_id" not in frame.columns
    assert manifest["source"]["kind"] == "file"


def test_the_command_refuses_data_that_lacks_a_contract_column_and_writes_no_snapshot(
    project, tmp_path, capsys
):
    path = tmp_path / "short.csv"
    generate(50, seed=2).drop(columns=["open_accounts"]).to_csv(path, index=False)
    assert cli.main(["--root", str(project.root), "data", "--input", str(path)]) == 2
    assert "error: the data lacks contract columns ['open_accounts']" in capsys.readouterr().err
    assert snapshot_folders(project) == []
    assert not (project.snapshots / snapshot.LATEST).exists()


def test_the_configured_file_lacking_a_contract_column_is_refused_too(project):
    (project.root / "data").mkdir()
    generate(50, seed=2).drop(columns=["sex"]).to_csv(project.root / "data" / "loans.csv", index=False)
    write_source(project.root, {"kind": "file", "path": "data/loans.csv"})
    with pytest.raises(InputError, match=r"lacks contract columns \['sex'\]"):
        build_snapshot(project)
    assert snapshot_folders(project) == []


def test_the_command_exits_2_with_bad_options_or_a_missing_file(project, tmp_path, capsys):
    assert cli.main(["--root", str(project.root), "data", "--rows", "0"]) == 2
    assert cli.main(["--root", str(project.root), "data", "--input", str(tmp_path / "nowhere.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert snapshot_folders(project) == []


def test_the_manifest_printed_is_the_manifest_written(project, capsys):
    assert cli.main(["--root", str(project.root), "data"]) == 0
    manifest = json.loads((snapshot_folders(project)[0] / "manifest.json").read_text())
    printed = capsys.readouterr().out
    assert manifest["sha256"] in printed
    assert manifest["time_window"]["start"] in printed
