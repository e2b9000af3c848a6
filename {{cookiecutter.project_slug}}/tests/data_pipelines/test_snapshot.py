"""Snapshots: the same input gives the same content hash, and a snapshot proves its own integrity."""

import json

import numpy as np
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


def one_by_one(column: pd.Series) -> list[object]:
    """The hash's serialisation spelled out value by value: what `bool`, `int`, `float`, `str` and
    strftime give, None for a missing value (the snapshot ids already made depend on exactly this)."""
    if pd.api.types.is_bool_dtype(column.dtype):
        convert = bool
    elif pd.api.types.is_integer_dtype(column.dtype):
        convert = int
    elif pd.api.types.is_float_dtype(column.dtype):
        convert = float
    elif pd.api.types.is_datetime64_any_dtype(column.dtype):
        column = column.dt.tz_convert("UTC") if column.dt.tz is not None else column
        return [None if pd.isna(value) else value.strftime("%Y-%m-%dT%H:%M:%S.%f") for value in column]
    else:
        convert = str
    return [None if pd.isna(value) else convert(value) for value in column.astype(object)]


def test_every_kind_of_column_is_serialised_value_for_value_as_the_hash_defines_it():
    rng = np.random.default_rng(3)
    rows = 5_000
    times = pd.Series(pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 10**16, rows)))
    times[7] = pd.NaT
    columns = {
        "flags": pd.Series(rng.random(rows) < 0.5),
        "nullable_flags": pd.Series(pd.array(rng.choice([True, False, None], rows), dtype="boolean")),
        "counts": pd.Series(rng.integers(-(10**12), 10**12, rows)),
        "nullable_counts": pd.Series(pd.array(rng.choice([1, 2, None], rows), dtype="Int64")),
        "amounts": pd.Series(np.where(rng.random(rows) < 0.1, np.nan, rng.normal(size=rows) * 1e-5)),
        "huge": pd.Series(rng.normal(size=rows) * 1e17),
        "single": pd.Series(rng.normal(size=rows).astype(np.float32)),
        "utc_times": times,
        "naive_times": times.dt.tz_localize(None),
        "words": pd.Series(rng.choice(["a", "ü", None], rows), dtype=object),
        "categories": pd.Series(pd.Categorical(rng.choice(["x", "y", None], rows))),
    }
    for name, column in columns.items():
        kind, values = snapshot._logical(column)
        assert json.dumps(values) == json.dumps(one_by_one(column)), (name, kind)


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


# --- reading files ------------------------------------------------------------------------------


def write_lines(path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("lines", "line", "fields"),
    [
        (["a,b,c", "1,2,3,4", "5,6,7"], 2, 4),  # pandas would take the first field as an index
        (["a,b,c", "1,2,3", "", "5,6,7", "8,9,10,11"], 5, 4),  # blank lines still count
        (["a,b,c", '1,"two\nlines",3', "5,6,7,8"], 4, 4),  # a quoted value spans two lines
        (["a,b,c", "1,2,3", "5,6"], 3, 2),  # a missing field is no better than an extra one
    ],
    ids=["first-row", "after-a-blank-line", "after-a-quoted-newline", "too-few"],
)
def test_a_csv_row_whose_fields_differ_from_the_header_is_refused_by_its_line(tmp_path, lines, line, fields):
    path = tmp_path / "ragged.csv"
    write_lines(path, lines)
    with pytest.raises(snapshot.UnreadableBatch) as refused:
        snapshot.read_table(path)
    assert refused.value.rule == snapshot.ROW_RULE
    assert f"line {line} has {fields} fields, the header has 3" in str(refused.value)


def test_a_file_over_the_size_limit_is_refused_before_it_is_parsed(tmp_path):
    path = tmp_path / "large.csv"
    path.write_bytes(b"\x00" * ((1 << 20) + 1))  # not even text: the size is what is reported
    with pytest.raises(snapshot.UnreadableBatch) as refused:
        snapshot.read_table(path, max_mb=1)
    assert refused.value.rule == snapshot.SIZE_RULE
    assert "1.0 MiB (1,048,577 bytes), over the limit of 1 MiB" in str(refused.value)
    assert "max_file_mb in data_pipelines/source.yaml" in str(refused.value)
    with pytest.raises(snapshot.UnreadableBatch, match="not a CSV table"):
        snapshot.read_table(path, max_mb=2)


def test_a_csv_is_read_in_blocks_yet_typed_by_its_whole_columns(tmp_path):
    """A word far beyond the first block makes a column text, as when the file was read whole."""
    rows = 150_000  # about 2 MiB: a few of the reader's 1 MiB blocks
    path = tmp_path / "long.csv"
    lines = ["count,code,amount"] + [f"{index},{index % 5},{index}.5" for index in range(rows)]
    lines[-1] = f"{rows - 1},Z9,inf"
    write_lines(path, lines)
    assert path.stat().st_size > 2 * (1 << 20)
    frame = snapshot.read_table(path)
    assert len(frame) == rows
    assert frame["count"].dtype == "int64"
    assert frame["code"].tolist()[:3] == ["0", "1", "2"] and frame["code"].iloc[-1] == "Z9"
    assert frame["amount"].dtype == "float64" and frame["amount"].iloc[-1] == float("inf")


def test_missing_markers_mean_missing_and_dates_stay_text(tmp_path):
    path = tmp_path / "markers.csv"
    write_lines(
        path,
        [
            "\ufeffname,score,day,event_time",
            "a,1.5,2024-01-02,2024-01-02T10:00:00Z",
            ",NA,2024-01-03,2024-01-03T11:00:00Z",
            "None,,2024-01-04,",
        ],
    )
    frame = snapshot.read_table(path)
    assert list(frame.columns) == ["name", "score", "day", "event_time"]  # the byte-order mark is gone
    assert frame["name"].tolist()[0] == "a" and frame["name"].isna().tolist() == [False, True, True]
    assert frame["score"].isna().tolist() == [False, True, True]
    assert frame["day"].tolist() == ["2024-01-02", "2024-01-03", "2024-01-04"]
    assert frame["event_time"].tolist()[:2] == ["2024-01-02T10:00:00Z", "2024-01-03T11:00:00Z"]
    conformed = snapshot.conform(frame, CONTRACT)
    assert str(conformed["event_time"].dtype).startswith("datetime64") and conformed["event_time"].isna()[2]


def test_a_csv_saved_with_its_index_names_that_column_as_pandas_does(tmp_path):
    path = tmp_path / "indexed.csv"
    write_lines(path, [",age,income", "0,30,100.0", "1,41,"])
    frame = snapshot.read_table(path)
    assert list(frame.columns) == ["Unnamed: 0", "age", "income"]
    assert frame["age"].tolist() == [30, 41]


def test_a_header_naming_a_column_twice_is_refused(tmp_path):
    path = tmp_path / "twice.csv"
    write_lines(path, ["age,income,age", "30,100.0,31"])
    with pytest.raises(snapshot.UnreadableBatch, match=r"names columns \['age'\] more than once"):
        snapshot.read_table(path)


def test_fractions_and_infinities_in_an_integer_column_stay_the_values_they_are(frame):
    broken = frame.astype({"age": "float64"})
    broken.loc[[1, 2, 3], "age"] = [30.5, float("inf"), float("-inf")]
    age = snapshot.conform(broken, CONTRACT)["age"]
    assert age.dtype == object
    assert age.tolist()[:5] == [
        int(frame.loc[0, "age"]),
        30.5,
        float("inf"),
        float("-inf"),
        int(frame.loc[4, "age"]),
    ]
    assert {type(value) for value in age.drop([1, 2, 3])} == {int}
