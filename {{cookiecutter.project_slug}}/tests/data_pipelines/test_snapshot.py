"""Snapshots: the same input gives the same content hash, and a snapshot proves its own integrity."""

import json

import pandas as pd
import pytest

from data_pipelines import snapshot
from data_pipelines.example import example_contract, generate

CONTRACT = example_contract()
SOURCE = {"kind": "example", "rows": 500, "seed": 7}


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate(500, seed=7)


def test_the_same_rows_give_the_same_snapshot(frame, tmp_path):
    first = snapshot.create(frame, SOURCE, contract=CONTRACT, root=tmp_path)
    manifest = json.loads((first / "manifest.json").read_text())
    again = snapshot.create(generate(500, seed=7), SOURCE, contract=CONTRACT, root=tmp_path)
    assert again == first
    assert json.loads((again / "manifest.json").read_text()) == manifest  # untouched, created_at included
    assert first.name == manifest["snapshot_id"] == manifest["sha256"][: snapshot.ID_LENGTH]


def test_the_hash_ignores_column_order_and_index_but_not_values(frame):
    reference = snapshot.content_hash(snapshot.canonical(frame, CONTRACT))
    shuffled = frame[list(reversed(frame.columns))].set_index(frame.index + 100)
    assert snapshot.content_hash(snapshot.canonical(shuffled, CONTRACT)) == reference
    changed = frame.copy()
    changed.loc[3, "income"] = changed.loc[3, "income"] + 0.01 if pd.notna(changed.loc[3, "income"]) else 1.0
    assert snapshot.content_hash(snapshot.canonical(changed, CONTRACT)) != reference
    missing_not_zero = frame.copy()
    missing_not_zero["credit_history_months"] = missing_not_zero["credit_history_months"].fillna(0)
    assert snapshot.content_hash(snapshot.canonical(missing_not_zero, CONTRACT)) != reference


def test_the_same_csv_file_read_twice_gives_the_same_hash(frame, tmp_path):
    path = tmp_path / "batch.csv"
    frame.to_csv(path, index=False)
    hashes = {
        snapshot.content_hash(
            snapshot.canonical(snapshot.conform(snapshot.read_table(path), CONTRACT), CONTRACT)
        )
        for _ in range(2)
    }
    assert len(hashes) == 1


def test_the_manifest_records_rows_schema_source_window_and_contract(frame, tmp_path):
    folder = snapshot.create(frame, SOURCE, contract=CONTRACT, root=tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["rows"] == len(frame)
    assert list(manifest["columns"]) == [*CONTRACT.columns, "event_time"]
    assert manifest["columns"]["credit_history_months"] == "Int64"
    assert manifest["source"] == SOURCE
    assert manifest["time_window"] == {
        "start": frame["event_time"].min().strftime("%Y-%m-%dT%H:%M:%SZ"),
        "end": frame["event_time"].max().strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    assert manifest["contract_sha256"] == CONTRACT.digest
    assert (tmp_path / "latest").read_text().strip() == folder.name


def test_load_returns_the_rows_and_points_latest_at_the_newest(frame, tmp_path):
    older = snapshot.create(frame.head(100), SOURCE, contract=CONTRACT, root=tmp_path)
    newer = snapshot.create(frame, SOURCE, contract=CONTRACT, root=tmp_path)
    rows, manifest = snapshot.load(root=tmp_path)
    assert manifest["snapshot_id"] == newer.name != older.name
    pd.testing.assert_frame_equal(rows, snapshot.canonical(frame, CONTRACT))
    assert snapshot.load(older.name[:8], root=tmp_path)[1]["rows"] == 100
    assert snapshot.load(older / "data.parquet")[1]["snapshot_id"] == older.name


def test_a_snapshot_edited_after_the_fact_is_refused(frame, tmp_path):
    folder = snapshot.create(frame, SOURCE, contract=CONTRACT, root=tmp_path)
    tampered = pd.read_parquet(folder / "data.parquet")
    tampered.loc[0, "age"] = 99
    tampered.to_parquet(folder / "data.parquet", index=False)
    with pytest.raises(snapshot.SnapshotError, match="changed after the snapshot was made"):
        snapshot.load(folder.name, root=tmp_path)


def test_unknown_or_absent_snapshots_are_named_errors(tmp_path):
    with pytest.raises(snapshot.SnapshotError, match="run `make data` first"):
        snapshot.load(root=tmp_path)
    with pytest.raises(snapshot.SnapshotError, match="'feedbeef'"):
        snapshot.load("feedbeef", root=tmp_path)


def test_ingestion_keeps_only_the_contracts_columns(frame):
    extra = frame.assign(customer_id=[f"c{index}" for index in range(len(frame))])
    kept, dropped = snapshot.select_contract_columns(extra.drop(columns=["sex"]), CONTRACT)
    assert dropped == ["customer_id"]
    assert list(kept.columns) == [name for name in [*CONTRACT.columns, "event_time"] if name != "sex"]


def test_a_column_mixing_words_and_numbers_cannot_become_a_snapshot(frame, tmp_path):
    path = tmp_path / "mixed.csv"
    broken = frame.astype({"age": object})
    broken.loc[2, "age"] = "forty"
    broken.to_csv(path, index=False)
    conformed = snapshot.conform(snapshot.read_table(path), CONTRACT)
    with pytest.raises(snapshot.SnapshotError, match="age"):
        snapshot.create(conformed, SOURCE, contract=CONTRACT, root=tmp_path / "snapshots")
