"""Read a window of captured production rows and join the labels that came back as feedback.

Serving appends one JSON object per line to date-partitioned files, one stream per process
(`<root>/date=YYYY-MM-DD/<host>-<pid>-<start>.jsonl`); `make compact` may have rewritten a
finished day as one Parquet file of the same columns (monitoring/compact.py), read alike.
Predictions and feedback share those streams, so a window is: the prediction lines whose
timestamp falls in the window, plus one feedback label for each of them, wherever (and
whenever) that feedback was written. Which one, when a prediction was labelled more than once,
is the policy's (`feedback.relabel`): the first label by default, so a later label cannot
rewrite an outcome already recorded; the newest with `last_wins`. Every label stays in the
capture, and the window marks the predictions whose labels disagree (`relabelled`), which the
drift report counts.

Parsing is done by pyarrow's multithreaded JSON reader with an explicit schema derived from
the data contract: a million rows parse in a few seconds, and a value of the wrong type fails
with the file named instead of silently changing a column's type.

A line that is not JSON at all (a write cut short by a full disk or a crash, an older writer's
leftover) is skipped wherever it is and counted: one torn line must not cost the whole window.
A prediction written twice (a batch retried after a failure) is kept once, its first copy. The
window carries both counts in `frame.attrs` (BAD_LINES, DUPLICATES) for the drift report.
"""

from __future__ import annotations

import json
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq

from governance.core.capture import COLUMNS, ShadowRecord
from governance.core.contract import Contract, load
from governance.core.errors import InputError
from governance.core.paths import DEFAULT_CAPTURE_URI
from monitoring.predictions import SCORE, signal_columns

DEFAULT_URI = DEFAULT_CAPTURE_URI
PARTITION = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")
# Columns the window adds next to the contract's columns; a contract column may not reuse them.
META_COLUMNS = (
    "prediction_id",
    "request_id",
    "row",
    "timestamp",
    "model_name",
    "model_version",
    "predicted_label",
    SCORE,
    "feedback_timestamp",
    "relabelled",
)
Relabel = Literal["first_wins", "last_wins"]
TIMESTAMP = pa.timestamp("us", tz="UTC")
# The window's `attrs`: lines skipped as unreadable, and prediction lines dropped as repeats.
BAD_LINES = "capture_bad_lines"
DUPLICATES = "capture_duplicate_predictions"


class CaptureError(InputError):
    """The capture store cannot be read as the spec describes; the message names the file."""


@dataclass(frozen=True)
class CaptureFile:
    day: date
    path: str


def capture_uri(uri: str | None = None) -> str:
    """The capture root: an explicit value, else CAPTURE_URI, else the local default."""
    return uri or os.environ.get("CAPTURE_URI") or DEFAULT_URI


def to_utc(value: datetime | str | None, name: str) -> datetime | None:
    """Accept an ISO 8601 string or a datetime; naive values are taken as UTC (what serving writes)."""
    if value is None or isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise CaptureError(f"{name} must be an ISO 8601 timestamp (got {value!r})") from None
    if moment is not None and moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


# The `label` column (predicted and true) per contract target dtype. A regression answer is a
# float whatever the target's dtype: the model predicts 151.3 for an integer target too.
TARGET_TYPES = {"int64": pa.int64(), "string": pa.string(), "bool": pa.bool_(), "float64": pa.float64()}
# The pandas dtype of those columns in the window: nullable, since most rows wait for their label
# (string classes become categoricals, as every few-valued string column does).
TARGET_PANDAS = {"int64": "Int64", "bool": "boolean", "float64": "float64"}


def target_type(contract: Contract) -> pa.DataType:
    target = contract.target
    return TARGET_TYPES[target.dtype if target.is_classification else "float64"]  # type: ignore[index]


def schema(contract: Contract) -> pa.Schema:
    """The Arrow schema of a capture line: the ground record's columns, typed from the contract.

    Feature numbers are float64 (JSON has no integer type); `features` and `sensitive` are
    structs of the contract's columns; `label` has the type of the target's classes (or float64
    for regression), so a label of another type fails with its file named.
    """
    types = {
        "string": pa.string(),
        "integer": pa.int64(),
        "target": target_type(contract),
        "timestamp": TIMESTAMP,  # ISO 8601 with an offset, parsed by the reader's threads
        "scores": pa.list_(pa.float64()),
        "features": pa.struct(
            [
                pa.field(feature.name, pa.float64() if feature.is_numeric else pa.string())
                for feature in contract.features
            ]
        ),
    }
    if contract.sensitive:
        types["sensitive"] = pa.struct([pa.field(contract.sensitive.name, pa.string())])
    return pa.schema([pa.field(name, types[kind]) for name, kind in COLUMNS.items() if kind in types])


def list_files(uri: str | None = None) -> tuple[fsspec.AbstractFileSystem, list[CaptureFile]]:
    """Every capture file under the root, oldest partition first."""
    uri = capture_uri(uri)
    fs, root = fsspec.core.url_to_fs(uri)
    root = root.rstrip("/")
    if not fs.exists(root):
        raise CaptureError(
            f"capture store {uri} does not exist (set CAPTURE_URI to the serving capture root)"
        )
    files = []
    found = fs.glob(f"{root}/date=*/*.jsonl") + fs.glob(f"{root}/date=*/*.parquet")
    for path in found:
        match = PARTITION.match(path.rstrip("/").split("/")[-2])
        if match:
            files.append(CaptureFile(date.fromisoformat(match.group(1)), path))
    return fs, sorted(files, key=lambda item: (item.day, item.path))


def _read_file(
    fs: fsspec.AbstractFileSystem, path: str, parse: pj.ParseOptions, classes: int = 0
) -> tuple[pa.Table, int]:
    """The file's lines as a table, and how many lines were skipped as not JSON.

    A Parquet file is a day already parsed by `make compact` (monitoring/compact.py).
    """
    if path.endswith(".parquet"):
        with fs.open(path, "rb") as handle:
            table = pq.read_table(handle, schema=parse.explicit_schema)
        if classes:
            _check_scores(table, classes, path)
        return table, 0
    with fs.open(path, "rb") as handle:
        data = handle.read()
    if data and not data.endswith(b"\n"):
        # A process may be appending right now: its last line can be half written.
        cut = data.rfind(b"\n") + 1
        print(f"capture: ignored an incomplete last line in {path}", file=sys.stderr)
        data = data[:cut]
    if not data.strip():
        return parse.explicit_schema.empty_table(), 0
    bad = 0
    try:
        table = _parse(data, parse)
    except pa.ArrowInvalid as error:
        data, bad = _without_torn_lines(data, path)
        if not bad:  # every line is JSON: a value of the wrong type, which must not pass silently
            raise CaptureError(f"capture file {path} does not match the capture format: {error}") from None
        try:
            table = _parse(data, parse) if data.strip() else parse.explicit_schema.empty_table()
        except pa.ArrowInvalid as again:
            raise CaptureError(f"capture file {path} does not match the capture format: {again}") from None
    if classes:
        _check_scores(table, classes, path)
    return table, bad


def _parse(data: bytes, parse: pj.ParseOptions) -> pa.Table:
    return pj.read_json(
        pa.BufferReader(data), read_options=pj.ReadOptions(block_size=1 << 24), parse_options=parse
    )


def _without_torn_lines(data: bytes, path: str) -> tuple[bytes, int]:
    """Drop the lines that are not a JSON object; only called once the fast parse has failed."""
    kept, torn = [], []
    for number, line in enumerate(data.splitlines(keepends=True), start=1):
        if not line.strip():
            continue
        try:
            whole = isinstance(json.loads(line), dict)
        except ValueError:
            whole = False
        if whole:
            kept.append(line)
        else:
            torn.append(number)
    if torn:
        print(
            f"capture: skipped {len(torn)} line(s) that are not JSON objects in {path} "
            f"(line {', '.join(map(str, torn[:5]))}{', ...' if len(torn) > 5 else ''})",
            file=sys.stderr,
        )
    return b"".join(kept), len(torn)


def _check_scores(table: pa.Table, classes: int, path: str) -> None:
    """A classifier's prediction line carries one probability per contract class, in contract order."""
    predicted = table.filter(pc.equal(table["kind"], "prediction"))
    lengths = pc.fill_null(pc.list_value_length(predicted["scores"]), 0)
    wrong = pc.not_equal(lengths, classes)
    if pc.any(wrong).as_py():
        bad = predicted.filter(wrong)
        first, length = bad["prediction_id"][0].as_py(), lengths.filter(wrong)[0].as_py()
        raise CaptureError(
            f"capture file {path} does not match the capture format: field 'scores' must hold one "
            f"probability per contract class ({classes}); {len(bad)} prediction line(s) do not, the first "
            f"{first!r} has {length}"
        )


def _read_url(url: str, explicit: pa.Schema, classes: int) -> tuple[pa.Table, int]:
    """One file read on a Dask worker: the same reader, its options rebuilt there."""
    fs, path = fsspec.core.url_to_fs(url)
    parse = pj.ParseOptions(explicit_schema=explicit, unexpected_field_behavior="ignore")
    return _read_file(fs, path, parse, classes)


FEEDBACK_COLUMNS = ("kind", "prediction_id", "request_id", "row", "label", "timestamp")


@dataclass(frozen=True)
class Lean:
    """What the window needs of some capture files: flat prediction rows (duplicates still in,
    read order kept) and the feedback lines' few columns. Reducing each file to this as soon as it
    is read keeps the nested raw lines of only the files in flight in memory, not the window's."""

    predictions: pa.Table
    feedback: pa.Table
    bad: int

    @staticmethod
    def of(read: tuple[pa.Table, int], contract: Contract) -> Lean:
        """One file as `_read_file` returns it (its table, its skipped lines), reduced."""
        table, bad = read
        feedback = table.filter(pc.equal(table["kind"], "feedback")).select(list(FEEDBACK_COLUMNS))
        return Lean(_flat_predictions(table, contract), feedback, bad)

    @staticmethod
    def concat(parts: list[Lean]) -> Lean:
        # A file without predictions (feedback arrives in later days' files) types its empty
        # feature columns as float64: it adds no row, so it is left out rather than reconciled.
        predictions = [part.predictions for part in parts if len(part.predictions)] or [parts[0].predictions]
        return Lean(
            pa.concat_tables(predictions),
            pa.concat_tables([part.feedback for part in parts]),
            sum(part.bad for part in parts),
        )


def _lean_url(url: str, explicit: pa.Schema, contract: Contract) -> Lean:
    """One file read and reduced on a Dask worker: only the lean tables travel back."""
    return Lean.of(_read_url(url, explicit, len(contract.target.classes)), contract)


def _read_lean(
    fs: fsspec.AbstractFileSystem,
    files: list[CaptureFile],
    parse: pj.ParseOptions,
    contract: Contract,
    client: Any = None,
) -> Lean:
    """Every file read and reduced (Lean): on this machine's threads, or one task per file on Dask."""
    if not files:
        return Lean.of((parse.explicit_schema.empty_table(), 0), contract)
    if client is not None:
        urls = [fs.unstrip_protocol(item.path) for item in files]
        futures = client.map(_lean_url, urls, explicit=parse.explicit_schema, contract=contract, pure=False)
        return Lean.concat(client.gather(futures))
    classes = len(contract.target.classes)
    with ThreadPoolExecutor(max_workers=min(4, len(files))) as pool:
        lean = Lean.concat(
            list(pool.map(lambda item: Lean.of(_read_file(fs, item.path, parse, classes), contract), files))
        )
    pa.default_memory_pool().release_unused()  # the raw files' pages: Arrow's allocator keeps them otherwise
    return lean


def _read_tables(
    fs: fsspec.AbstractFileSystem,
    files: list[CaptureFile],
    parse: pj.ParseOptions,
    classes: int = 0,
    client: Any = None,
) -> tuple[pa.Table, int]:
    """Every file parsed: on this machine's threads, or one task per file on a Dask cluster."""
    if client is not None and files:
        urls = [fs.unstrip_protocol(item.path) for item in files]
        futures = client.map(_read_url, urls, explicit=parse.explicit_schema, classes=classes, pure=False)
        read = client.gather(futures)
    else:
        with ThreadPoolExecutor(max_workers=min(4, max(1, len(files)))) as pool:
            read = list(pool.map(lambda item: _read_file(fs, item.path, parse, classes), files))
    tables = [table for table, _ in read]
    table = pa.concat_tables(tables) if tables else parse.explicit_schema.empty_table()
    return table, sum(bad for _, bad in read)


def _runs(
    ids: pa.ChunkedArray | pa.Array, *then: pa.ChunkedArray | pa.Array
) -> tuple[pa.Array, pa.Array, np.ndarray]:
    """The order that sorts the rows by id, then by the `then` columns, then by read position; the
    ids in that order; and for each sorted row whether its id is the previous row's (the same
    prediction again).

    Sorting millions of short strings and comparing neighbours is about 3x faster here than a hash
    table of them (Arrow's group_by), and needs a fraction of its memory.
    """
    keys = pa.table(
        {
            "id": ids,
            **{f"then{index}": column for index, column in enumerate(then)},
            "line": pa.array(np.arange(len(ids), dtype=np.int64)),
        }
    )
    order = pc.sort_indices(keys, sort_keys=[(name, "ascending") for name in keys.column_names])
    sorted_ids = pc.take(ids, order)
    return order, sorted_ids, _same_as_previous(sorted_ids)


def _same_as_previous(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """For each value whether it equals the one before it (the first never does)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    same = np.zeros(len(values), dtype=bool)
    if len(values) > 1:
        equal = pc.equal(values.slice(1), values.slice(0, len(values) - 1))
        same[1:] = pc.fill_null(equal, False).to_numpy(zero_copy_only=False)
    return same


def _first_per_prediction(table: pa.Table) -> pa.Table:
    """One line per prediction_id, the first read: a retried batch may have written a row twice."""
    if not len(table):
        return table
    order, _, again = _runs(table["prediction_id"])
    if not again.any():
        return table
    first = pc.filter(order, pa.array(~again))
    return table.take(pc.take(first, pc.sort_indices(first)))


def _flat_predictions(table: pa.Table, contract: Contract) -> pa.Table:
    """The prediction lines as flat columns (features, sensitive attribute, label, signal), in read order."""
    table = table.filter(pc.equal(table["kind"], "prediction"))
    features = table["features"].combine_chunks()
    target = contract.target
    columns: dict[str, pa.Array | pa.ChunkedArray] = {
        "prediction_id": table["prediction_id"],
        "request_id": table["request_id"],
        "row": table["row"],
        "timestamp": table["timestamp"],
        "model_name": table["model_name"],
        "model_version": table["model_version"],
    }
    for index, feature in enumerate(contract.features):
        columns[feature.name] = (
            pc.struct_field(features, [index]) if len(table) else pa.array([], pa.float64())
        )
    if contract.sensitive:
        sensitive = table["sensitive"].combine_chunks()
        columns[contract.sensitive.name] = pc.struct_field(sensitive, [0])
    columns["predicted_label"] = table["label"]
    signal = signal_columns(target)
    if not target.is_classification:
        columns[signal[0]] = table["label"]  # the predicted value is the regression signal
    else:
        positions = [target.positive_index] if len(signal) == 1 else range(len(target.classes))
        for name, position in zip(signal, positions, strict=True):
            columns[name] = (
                pc.list_element(table["scores"], position) if len(table) else pa.array([], pa.float64())
            )
    # Few-valued strings (model name and version, categorical features, class labels) are encoded
    # once per file, as read: a string per row of each was about a quarter of a 10 M-row window's
    # peak memory. Ids stay strings: nearly every one is different.
    return pa.table(
        {
            name: pc.dictionary_encode(column) if _few_valued(name, column.type) else column
            for name, column in columns.items()
        }
    )


def _few_valued(name: str, kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) and name not in ("prediction_id", "request_id")


def _feedback(table: pa.Table, target: str, relabel: Relabel = "first_wins") -> pa.Table:
    """One label per prediction: its first (`first_wins`) or its newest (`last_wins`).

    `relabelled` marks the predictions whose labels disagree: a correction, or someone trying
    to rewrite an outcome; the lines themselves stay in the capture as the audit trail.
    """
    if relabel not in ("first_wins", "last_wins"):
        raise CaptureError(f"relabel must be first_wins or last_wins (got {relabel!r})")
    # A line without a label says nothing about the outcome: it neither labels nor relabels.
    table = table.filter(pc.and_(pc.equal(table["kind"], "feedback"), pc.is_valid(table["label"])))
    derived = pc.binary_join_element_wise(table["request_id"], pc.cast(table["row"], pa.string()), ":")
    ids = pc.coalesce(table["prediction_id"], derived)
    order, ids, again = _runs(ids, table["timestamp"])  # each prediction's labels, oldest first
    labels, stamps = pc.take(table["label"], order), pc.take(table["timestamp"], order)
    changed = again & ~_same_as_previous(labels)  # a label that differs from the prediction's previous one
    starts = np.flatnonzero(~again)
    groups = np.cumsum(~again) - 1
    pick = starts if relabel == "first_wins" else np.append(starts[1:], len(order)).astype(np.int64) - 1
    return pa.table(
        {
            "prediction_id": pc.take(ids, pick),
            target: pc.take(labels, pick),
            "feedback_timestamp": pc.take(stamps, pick),
            "relabelled": np.bincount(groups, weights=changed, minlength=len(starts)) > 0,
        }
    )


def _in_window(table: pa.Table, since: datetime | None, until: datetime | None) -> pa.Table:
    """The rows with since <= timestamp < until; the table itself (no copy) when all of them are."""
    keep = None
    if since is not None:
        keep = pc.greater_equal(table["timestamp"], pa.scalar(since, TIMESTAMP))
    if until is not None:
        before = pc.less(table["timestamp"], pa.scalar(until, TIMESTAMP))
        keep = before if keep is None else pc.and_(keep, before)
    if keep is None or pc.all(pc.fill_null(keep, False)).as_py() in (True, None):
        return table
    return table.filter(keep)


def _with_labels(predictions: pa.Table, feedback: pa.Table) -> pa.Table:
    """Each prediction with its label columns (null without feedback): a left join by prediction_id,
    done by position so the prediction columns are kept as they are, not copied into a join result."""
    found = pc.index_in(predictions["prediction_id"], value_set=feedback["prediction_id"])
    for name in feedback.column_names[1:]:
        predictions = predictions.append_column(name, pc.take(feedback[name], found))
    return predictions.set_column(
        predictions.schema.get_field_index("relabelled"),
        "relabelled",
        pc.fill_null(predictions["relabelled"], False),
    )


def _to_pandas(handed: list[pa.Table], contract: Contract) -> pd.DataFrame:
    """The window oldest first as a frame, converted a column at a time.

    `handed` holds the only reference to the table and is emptied: each column is sorted and
    converted, then dropped, so the window exists about once in memory instead of three times
    (table, sorted copy, frame). Few-valued strings, dictionaries since `_flat_predictions`, become
    pandas categoricals and ids stay Arrow strings: no million Python objects.
    """
    table = handed.pop()
    order = pc.sort_indices(table, sort_keys=[("timestamp", "ascending"), ("prediction_id", "ascending")])
    columns: dict[str, pd.Series] = {}
    for name in table.column_names:
        column = pc.take(table[name], order)
        table = table.drop_columns([name])
        columns[name] = column.to_pandas(types_mapper={pa.string(): pd.ArrowDtype(pa.string())}.get)
        del column
    frame = pd.DataFrame(columns, copy=False)
    for feature in contract.categorical:
        frame[feature.name] = frame[feature.name].astype("category")
    target = contract.target
    dtype = TARGET_PANDAS.get(target.dtype if target.is_classification else "float64")  # type: ignore[arg-type]
    if dtype is not None:
        for name in (target.name, "predicted_label"):
            frame[name] = frame[name].astype(dtype)
    return frame


def read_window(
    uri: str | None = None,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    last_n: int | None = None,
    contract: Contract | None = None,
    relabel: Relabel = "first_wins",
    client: Any = None,
) -> pd.DataFrame:
    """Captured predictions with `since <= timestamp < until` (UTC), or the newest `last_n` of them.

    Returns one row per prediction: the contract's features and sensitive attribute, the
    `predicted_label` (a class value, or the predicted number), the prediction signal (`score`
    or `score[<class>]`, monitoring/predictions.py), the true label in the target column
    (missing until feedback arrives; the first label or the newest, as `relabel` says),
    `relabelled` (its labels disagree), ids, model name/version and timestamps, oldest first.
    With a Dask `client` (monitoring/engine.py) the files are parsed on the cluster's workers.
    """
    contract = contract or load()
    clash = sorted(set(META_COLUMNS) & set(contract.columns))
    if clash:
        raise CaptureError(f"contract columns {clash} clash with the capture window's own columns")
    if last_n is not None and (isinstance(last_n, bool) or not isinstance(last_n, int) or last_n < 1):
        raise CaptureError(f"last_n must be a positive integer (got {last_n!r})")
    since, until = to_utc(since, "since"), to_utc(until, "until")
    if since and until and since >= until:
        raise CaptureError(f"since ({since.isoformat()}) must be before until ({until.isoformat()})")
    fs, files = list_files(uri)
    # Feedback lands in the partition of the day it arrived, so only the lower bound prunes files.
    if since is not None:
        files = [item for item in files if item.day >= since.date()]
    parse = pj.ParseOptions(explicit_schema=schema(contract), unexpected_field_behavior="ignore")
    if last_n is None:
        lean = _read_lean(fs, files, parse, contract, client)
    else:
        lean = _newest(fs, files, parse, contract, since, until, last_n, client)
    bad, feedback, unique = lean.bad, lean.feedback, _first_per_prediction(lean.predictions)
    duplicates = len(lean.predictions) - len(unique)
    del lean  # each step below copies the window: only the newest copy is kept (peak memory)
    predictions = _in_window(unique, since, until)
    del unique
    if last_n is not None and len(predictions) > last_n:
        predictions = predictions.sort_by([("timestamp", "ascending")])
        predictions = predictions.slice(len(predictions) - last_n)
    handed = [_with_labels(predictions, _feedback(feedback, contract.target.name, relabel))]
    del predictions, feedback
    frame = _to_pandas(handed, contract)
    pa.default_memory_pool().release_unused()  # Arrow's allocator keeps freed pages unless asked
    frame.attrs[BAD_LINES], frame.attrs[DUPLICATES] = bad, duplicates
    return frame


def _newest(
    fs: fsspec.AbstractFileSystem,
    files: list[CaptureFile],
    parse: pj.ParseOptions,
    contract: Contract,
    since: datetime | None,
    until: datetime | None,
    last_n: int,
    client: Any = None,
) -> Lean:
    """Read partitions newest first until `last_n` predictions are in hand (their feedback is newer)."""
    parts: list[Lean] = []
    count = 0
    for day in sorted({item.day for item in files}, reverse=True):
        day_files = [item for item in files if item.day == day]
        parts.append(_read_lean(fs, day_files, parse, contract, client))
        count += len(_in_window(_first_per_prediction(parts[-1].predictions), since, until))
        if count >= last_n:
            break
    return Lean.concat(parts) if parts else _read_lean(fs, [], parse, contract)


# -- the challenger's answers (ShadowRecord lines, written beside the champion's with SHADOW_MODEL_PATH) --

# The shadow record's own fields (what the shared columns lack), typed from the ground record.
SHADOW_TYPES = {str: pa.string(), float: pa.float64(), int: pa.int64()}
SHADOW_EXTRA = {
    name: SHADOW_TYPES[field.annotation]
    for name, field in ShadowRecord.model_fields.items()
    if name not in COLUMNS and field.annotation in SHADOW_TYPES
}


def shadow_schema(contract: Contract) -> pa.Schema:
    """The capture schema plus the shadow record's own fields (the challenger's and champion's latency)."""
    base = schema(contract)
    return pa.schema([*base, *(pa.field(name, kind) for name, kind in SHADOW_EXTRA.items())])


def read_shadow(
    uri: str | None = None,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    contract: Contract | None = None,
) -> pd.DataFrame:
    """The challenger's answers with `since <= timestamp < until` (UTC), one row per prediction_id.

    Columns: prediction_id, timestamp, model_version (the challenger's), champion_version,
    `predicted_label`, the prediction signal (`score` or `score[<class>]`, as the window has
    it), latency_ms and champion_latency_ms. The same files, parser and torn-line handling as
    `read_window`; a classifier's shadow line must carry one probability per contract class.
    """
    contract = contract or load()
    since, until = to_utc(since, "since"), to_utc(until, "until")
    fs, files = list_files(uri)
    if since is not None:
        files = [item for item in files if item.day >= since.date()]
    parse = pj.ParseOptions(explicit_schema=shadow_schema(contract), unexpected_field_behavior="ignore")
    table, _ = _read_tables(fs, files, parse)
    table = _first_per_prediction(table.filter(pc.equal(table["kind"], "shadow")))
    target = contract.target
    if target.is_classification and len(table):
        lengths = pc.fill_null(pc.list_value_length(table["scores"]), 0)
        wrong = pc.not_equal(lengths, len(target.classes))
        if pc.any(wrong).as_py():
            first = table.filter(wrong)["prediction_id"][0].as_py()
            raise CaptureError(
                f"capture under {capture_uri(uri)} does not match the capture format: field 'scores' of a "
                f"shadow line must hold one probability per contract class ({len(target.classes)}); "
                f"the first that does not is {first!r}"
            )
    columns: dict[str, pa.Array | pa.ChunkedArray] = {
        name: table[name] for name in ("prediction_id", "timestamp", "model_version", "champion_version")
    }
    columns["predicted_label"] = table["label"]
    signal = signal_columns(target)
    if not target.is_classification:
        columns[signal[0]] = table["label"]
    else:
        positions = [target.positive_index] if len(signal) == 1 else range(len(target.classes))
        for name, position in zip(signal, positions, strict=True):
            columns[name] = (
                pc.list_element(table["scores"], position) if len(table) else pa.array([], pa.float64())
            )
    columns["latency_ms"] = table["latency_ms"]
    columns["champion_latency_ms"] = table["champion_latency_ms"]
    shadow = _in_window(pa.table(columns), since, until).sort_by([("timestamp", "ascending")])
    frame = shadow.to_pandas(types_mapper={pa.string(): pd.ArrowDtype(pa.string())}.get)
    dtype = TARGET_PANDAS.get(target.dtype if target.is_classification else "float64")  # type: ignore[arg-type]
    if dtype is not None:
        frame["predicted_label"] = frame["predicted_label"].astype(dtype)
    return frame.reset_index(drop=True)
