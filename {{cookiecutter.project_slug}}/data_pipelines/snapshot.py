"""Ingest a dataset into an immutable, content-addressed snapshot.

A snapshot is ``artifacts/snapshots/<id>/`` holding ``data.parquet`` and ``manifest.json``
(rows, schema, content hash, source, time window, contract hash). The id is the first 12
hex digits of the content hash, and the registry records the full hash, so a model can
always be traced to exactly the rows it was trained on.

The hash is computed from the data itself in a canonical form (contract column order, a
fixed serialisation of every value), not from the Parquet bytes, which embed library
versions and other metadata: the same rows give the same hash on any machine, and a file
edited after the fact is caught when the snapshot is loaded.

Reading user files lives here too, because ingestion is where a CSV's guessed types are
turned back into the contract's (``conform``); validation reads files the same way. A file
is refused before it is read when it is larger than the size limit (``max_file_mb`` in
data_pipelines/source.yaml), and a CSV is read block by block with pyarrow's reader, which
refuses a row with more (or fewer) fields than the header, naming its line, instead of
shifting every column. Whether the rows obey the contract is validation's question
(data_pipelines/validation.py), asked by ``make data`` before it writes anything here.

So does rebuilding a snapshot from a committed retraining request (``from_request``): the
drift monitor commits the new snapshot's Parquet file and manifest to git, and ``make data``
on that branch (and on main after the merge) rebuilds exactly that snapshot, or refuses.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from governance.core.contract import Contract
from governance.core.contract import load as load_contract
from governance.core.errors import InputError
from governance.core.paths import PATHS

SNAPSHOTS = PATHS.snapshots
EVENT_TIME = "event_time"  # optional column: dates the rows, gives the snapshot its time window
LATEST = "latest"
ID_LENGTH = 12
SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
EMPTY_RULE = "a batch needs a header row with the contract's columns and at least 1 row"
TABLE_RULE = "a batch must be a CSV (UTF-8 text) or Parquet table"
ROW_RULE = "every row of a CSV has as many fields as its header"
MAX_FILE_MB = 1024  # the default of max_file_mb in data_pipelines/source.yaml (MiB)
SIZE_SETTING = "max_file_mb in data_pipelines/source.yaml"
SIZE_RULE = f"a data file must not be larger than the size limit ({SIZE_SETTING})"
MIB = 1 << 20
# pandas' default missing-value markers, so a CSV means what it meant when pandas parsed it.
NULL_TOKENS = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
]  # fmt: skip
BINARY_SIGNATURES = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"%PDF": "a PDF document",
    b"PK\x03\x04": "a ZIP archive (or an Excel workbook)",
    b"PAR1": "a Parquet file",
}


class SnapshotError(InputError):
    """A snapshot is missing, unknown or does not match its manifest."""


class UnreadableBatch(InputError):
    """The file exists but is not a table at all (empty, binary, a broken CSV)."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"{message} (rule: {rule})")
        self.rule, self.message = rule, message


# --- reading files ------------------------------------------------------------------------------


def read_parquet(path: Path) -> pd.DataFrame:
    """A Parquet file as a DataFrame, read with pyarrow's file reader, not its dataset scanner.

    Why not `pd.read_parquet`: it scans through pyarrow's dataset API, whose worker threads
    can still be winding down when a short command exits right after the read; Arrow then
    aborts the process ("terminate called without an active exception", apache/arrow#39862)
    and a command whose work was done exits non-zero (seen here in `data --request`, in 3 of
    about 100 runs of tests/test_reference.py). The file reader gives the same frame, pandas
    metadata and dtypes included.
    """
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as parquet:
        return parquet.read().to_pandas()


def read_table(path: Path | str, max_mb: int = MAX_FILE_MB, contract: Contract | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet file, turning every way it can be unreadable into one clear sentence.

    A file larger than ``max_mb`` MiB is refused before a byte of it is parsed: an error to
    act on (raise the limit, or read the data through the source seam), not a process that
    runs out of memory. Given the ``contract``, a CSV's text and boolean labels are read as
    the text they are (:func:`text_columns`), so a class named "1" or "007" stays that word.
    """
    path = Path(path)
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise InputError(f"data file {path} has an unsupported type '{path.suffix}': use .csv or .parquet")
    if not path.is_file():
        raise InputError(f"data file {path} does not exist")
    size = path.stat().st_size
    if size == 0:
        raise UnreadableBatch(EMPTY_RULE, f"data file {path} is empty (0 bytes)")
    if size > max_mb * MIB:
        raise UnreadableBatch(
            SIZE_RULE,
            f"data file {path} is {size / MIB:,.1f} MiB ({size:,} bytes), over the limit of {max_mb:,} MiB: "
            f"raise {SIZE_SETTING} if this machine has the memory for it, or read the data through "
            "data_pipelines/source.py",
        )
    with path.open("rb") as stream:
        head = stream.read(4096)
    if kind == "parquet":
        try:
            return read_parquet(path)
        except Exception as error:  # pyarrow raises several unrelated types for a bad file
            what = _binary_kind(head)
            hint = f" (its content is {what})" if what and what != "a Parquet file" else ""
            raise UnreadableBatch(
                TABLE_RULE, f"data file {path} is not a readable Parquet file{hint}"
            ) from error
    _check_text(path, head)
    return read_csv(path, text_columns(contract) if contract else ())


def text_columns(contract: Contract) -> set[str]:
    """Columns a CSV reader must not guess a type for: a target whose classes are text or booleans.

    A guess would turn the class "1" into the number 1 (and "01" into 1 as well), or a word
    among booleans into a failed parse; :func:`conform` gives them the contract's type instead.
    """
    return {contract.target.name} if contract.target.dtype in ("string", "bool") else set()


def read_csv(path: Path, text: Collection[str] = ()) -> pd.DataFrame:
    """A CSV file read block by block with pyarrow's reader, typed the way pandas would type it.

    Numbers, booleans and text are inferred over the whole file (a word far down a column
    makes it text, as in pandas); dates and times stay text (``conform`` parses event_time);
    pandas' missing-value markers mean missing. A row whose field count differs from the
    header's is refused with its line number: pandas would take a first row with one field
    too many as an index and shift every column silently.
    """
    import pyarrow as pa

    ragged: list[tuple[int | None, int, int]] = []

    def refuse(row: Any) -> str:
        ragged.append((row.number, row.expected_columns, row.actual_columns))
        return "error"

    try:
        table = _parse_csv(path, refuse, {EVENT_TIME, *text})
        temporal = {field.name for field in table.schema if pa.types.is_temporal(field.type)}
        if temporal:  # rare: read again with those columns as the text they are
            table = _parse_csv(path, refuse, {EVENT_TIME, *text, *temporal})
    except pa.ArrowException as error:
        if ragged:
            record, expected, actual = ragged[0]
            where = f"line {_line_of(path, record)}" if record else "a row"
            raise UnreadableBatch(
                ROW_RULE,
                f"data file {path}: {where} has {actual} fields, the header has {expected} "
                "(a stray delimiter, or a value holding a comma without quotes?)",
            ) from None
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        if "Empty CSV file" in first:
            raise UnreadableBatch(EMPTY_RULE, f"data file {path} has no header row and no rows") from None
        raise UnreadableBatch(
            TABLE_RULE, f"data file {path} is not a well-formed CSV table: {first}"
        ) from None
    # A header cell left empty (a CSV saved with its index) gets pandas' name for it.
    names = [name or f"Unnamed: {index}" for index, name in enumerate(table.column_names)]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise UnreadableBatch(
            TABLE_RULE, f"data file {path}: the header names columns {repeated} more than once"
        )
    return table.rename_columns(names).to_pandas()


def _parse_csv(path: Path, refuse: Any, text_columns: set[str]) -> Any:
    import pyarrow as pa
    import pyarrow.csv as pv

    return pv.read_csv(
        path,
        # Serial, so a refused row comes with its number; blocks of 1 MiB keep memory flat.
        read_options=pv.ReadOptions(use_threads=False, block_size=MIB),
        parse_options=pv.ParseOptions(newlines_in_values=True, invalid_row_handler=refuse),
        convert_options=pv.ConvertOptions(
            null_values=NULL_TOKENS,
            strings_can_be_null=True,
            column_types={name: pa.string() for name in text_columns},
        ),
    )


def _line_of(path: Path, record: int) -> int:
    """The line where the CSV's ``record``-th row starts (pyarrow counts rows: quoted newlines
    and blank lines make the two differ); the header is row 1."""
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as stream:
        reader, seen, end = csv.reader(stream), 0, 0
        for fields in reader:
            start, end = end + 1, reader.line_num
            seen += bool(fields)  # pyarrow skips blank lines
            if seen == record:
                return start
    return record


def _binary_kind(head: bytes) -> str | None:
    for signature, what in BINARY_SIGNATURES.items():
        if head.startswith(signature):
            return what
    return None


def _check_text(path: Path, head: bytes) -> None:
    what = _binary_kind(head)
    if what is None and b"\x00" in head:
        what = "binary data"
    if what is None:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as error:
            if error.start < len(head) - 4:  # a character cut at the 4 KiB boundary is still text
                what = "binary data (not UTF-8 text)"
    if what:
        raise UnreadableBatch(TABLE_RULE, f"data file {path} is not a CSV table: its content is {what}")


def conform(frame: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    """Give a file's columns the types the contract means, without hiding real type errors.

    CSV has no types, so the reader guesses: an integer column with gaps becomes float, and
    categories that look like numbers become numbers. We undo exactly those guesses and
    leave anything else (a word in a numeric column; a fraction, inf or -inf in an integer
    column) as the value it is, among numbers of the contract's type, for the validation's
    type checks to quote.
    """
    frame = frame.copy()
    for feature in contract.features:
        if feature.name in frame.columns:
            frame[feature.name] = _conform_column(frame[feature.name], feature.dtype)
    if contract.sensitive and contract.sensitive.name in frame.columns:
        frame[contract.sensitive.name] = _conform_column(frame[contract.sensitive.name], "string")
    target = contract.target
    if target.name in frame.columns:
        frame[target.name] = _conform_target(frame[target.name], target.dtype or "int64")
    if EVENT_TIME in frame.columns and not isinstance(frame[EVENT_TIME].dtype, pd.DatetimeTZDtype):
        frame[EVENT_TIME] = pd.to_datetime(frame[EVENT_TIME], utc=True, errors="coerce", format="mixed")
    return frame


def _conform_column(column: pd.Series, dtype: str) -> pd.Series:
    if dtype in ("int64", "float64") and _is_text(column):
        numbers = pd.to_numeric(column, errors="coerce")
        if (column.notna() & numbers.isna()).any():
            # Keep the words, so the type check can quote them; make the rest real numbers.
            mixed = column.astype(object).copy()
            parsed = numbers.notna()
            mixed[parsed] = [_number(value, dtype) for value in numbers[parsed]]
            return mixed
        column = numbers
    if dtype == "int64" and pd.api.types.is_bool_dtype(column.dtype):
        return column.astype("int64")
    if dtype == "int64" and pd.api.types.is_float_dtype(column.dtype):
        whole = np.isfinite(column) & (column == column.round())  # False where missing
        present = column.notna()
        if bool(whole[present].all()):
            return column.astype("int64") if bool(present.all()) else column.astype("Int64")
        # Keep the fractions and infinities as floats, so the type check can quote them.
        mixed = column.astype(object).copy()
        mixed[whole] = [int(value) for value in column[whole]]
        return mixed
    if dtype == "string" and (
        pd.api.types.is_numeric_dtype(column.dtype) or pd.api.types.is_bool_dtype(column)
    ):
        return column.map(_as_category, na_action="ignore").astype(object)
    return column


def _conform_target(column: pd.Series, dtype: str) -> pd.Series:
    """The label in the contract's type: classes as text, booleans or integers; a regression number.

    Only unambiguous spellings are converted ("true"/"false" in any case for booleans, a number
    for a regression target); anything else stays as it is, for validation to quote.
    """
    if dtype == "bool":
        if pd.api.types.is_bool_dtype(column.dtype):
            return column
        converted = column.map(_as_boolean, na_action="ignore")
        clean = bool(converted.notna().all() and converted.map(_is_bool).all())
        return converted.astype(bool) if clean else converted
    column = _conform_column(column, dtype)
    if dtype == "float64" and pd.api.types.is_integer_dtype(column.dtype):
        return column.astype("float64")
    return column


def _as_boolean(value: Any) -> Any:
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return value


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool | np.bool_)


def _is_text(column: pd.Series) -> bool:
    return pd.api.types.is_object_dtype(column.dtype) or pd.api.types.is_string_dtype(column.dtype)


def _number(value: float, dtype: str) -> int | float:
    return int(value) if dtype == "int64" and float(value).is_integer() else float(value)


def _as_category(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def select_contract_columns(frame: pd.DataFrame, contract: Contract) -> tuple[pd.DataFrame, list[str]]:
    """Keep the contract's columns (and event_time); return the frame and what was dropped.

    A source file often carries more than the model may use (identifiers, free text, the
    sensitive attribute of a project that declares none): a snapshot holds only what the
    contract declares. Missing contract columns stay missing: `make data` refuses such data
    (data_pipelines/ingest.py) and validation names them.
    """
    keep = [*contract.columns, EVENT_TIME]
    dropped = [column for column in frame.columns if column not in keep]
    return frame[[column for column in keep if column in frame.columns]], dropped


# --- the content hash ---------------------------------------------------------------------------


def canonical(frame: pd.DataFrame, contract: Contract | None = None) -> pd.DataFrame:
    """Columns in contract order, then event_time, then any others by name; a plain row index."""
    first = [*(contract.columns if contract else []), EVENT_TIME]
    ordered = [column for column in first if column in frame.columns]
    ordered += sorted(str(column) for column in frame.columns if column not in ordered)
    return frame[ordered].reset_index(drop=True)


def content_hash(frame: pd.DataFrame) -> str:
    """sha256 of the rows in a serialisation that depends only on names and values.

    Each column contributes its name, a logical kind (integer, float, boolean, datetime,
    string) and its values as compact JSON, missing values as null. The frame is hashed in
    the order given: call :func:`canonical` first to make column order irrelevant.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps({"rows": len(frame), "columns": [str(c) for c in frame.columns]}).encode())
    for name in frame.columns:
        kind, values = _logical(frame[name])
        digest.update(b"\n")
        digest.update(json.dumps([str(name), kind, values], separators=(",", ":"), allow_nan=False).encode())
    return digest.hexdigest()


def _logical(column: pd.Series) -> tuple[str, list[Any]]:
    """The column's kind and its values as Python objects, missing ones None.

    Vectorised (a snapshot of 10^5-10^6 rows is hashed on every drift run that retrains), yet
    value for value what `bool`, `int`, `float` and `str` give, so snapshot ids never change.
    """
    missing = column.isna().to_numpy()
    dtype = column.dtype
    values: list[Any]
    if pd.api.types.is_bool_dtype(dtype):
        kind, values = "boolean", column.fillna(False).to_numpy(dtype=bool).tolist()
    elif pd.api.types.is_integer_dtype(dtype):
        kind, values = "integer", column.fillna(0).to_numpy().tolist()
    elif pd.api.types.is_float_dtype(dtype):
        kind, values = "float", column.fillna(0.0).to_numpy(dtype=np.float64).tolist()
    elif pd.api.types.is_datetime64_any_dtype(dtype):
        times = column.dt.tz_convert("UTC").dt.tz_localize(None) if column.dt.tz is not None else column
        # the text strftime("%Y-%m-%dT%H:%M:%S.%f") gives, at numpy's speed
        micros = times.to_numpy(dtype="datetime64[us]")
        kind, values = "datetime", np.datetime_as_string(micros, unit="us").tolist()
    else:
        kind, values = "string", list(map(str, column.astype(object).fillna("")))
    for index in np.flatnonzero(missing).tolist():
        values[index] = None
    return kind, values


# --- snapshots ------------------------------------------------------------------------------------


def create(
    frame: pd.DataFrame,
    source: str | dict[str, Any],
    *,
    contract: Contract | None = None,
    root: Path | str = SNAPSHOTS,
    created_at: str | None = None,
) -> Path:
    """Write ``frame`` as a snapshot and point ``latest`` at it; return the snapshot folder.

    Creating the same data twice returns the existing snapshot untouched (its manifest
    keeps the first ``created_at``), so re-running ``make data`` is free and stable.
    ``created_at`` recreates a snapshot made elsewhere with its original manifest (training
    derives the model version's timestamp from it).
    """
    contract = contract or load_contract()
    root = Path(root)
    data = canonical(frame, contract)
    mixed = [str(name) for name in data.columns if _mixes_types(data[name])]
    if mixed:
        raise SnapshotError(
            f"columns {mixed} mix text with other values, so they cannot be stored with one type: "
            "fix the source (run `make validate DATA=<file>` to see the offending values)"
        )
    sha256 = content_hash(data)
    snapshot_id = sha256[:ID_LENGTH]
    folder = root / snapshot_id
    if not (folder / "manifest.json").is_file():
        root.mkdir(parents=True, exist_ok=True)
        manifest = {
            "snapshot_id": snapshot_id,
            "sha256": sha256,
            "rows": len(data),
            "columns": {str(name): str(dtype) for name, dtype in data.dtypes.items()},
            "source": source,
            "time_window": _time_window(data),
            "contract_sha256": contract.digest or None,
            "created_at": created_at or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        staging = Path(tempfile.mkdtemp(prefix=f".{snapshot_id}-", dir=root))
        try:
            data.to_parquet(staging / "data.parquet", index=False)
            (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
            try:
                staging.rename(folder)
            except OSError:  # another process created it first: theirs is identical
                if not (folder / "manifest.json").is_file():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    _write_latest(root, snapshot_id)
    return folder


def _mixes_types(column: pd.Series) -> bool:
    if not pd.api.types.is_object_dtype(column.dtype):
        return False
    kinds = {type(value) for value in column.dropna()}
    return len(kinds) > 1


def _time_window(data: pd.DataFrame) -> dict[str, str | None]:
    if EVENT_TIME not in data.columns or not pd.api.types.is_datetime64_any_dtype(data[EVENT_TIME].dtype):
        return {"start": None, "end": None}
    times = data[EVENT_TIME].dropna()
    if times.empty:
        return {"start": None, "end": None}
    if times.dt.tz is not None:
        times = times.dt.tz_convert("UTC")
    return {"start": _iso(times.min()), "end": _iso(times.max())}


def _iso(moment: pd.Timestamp) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_latest(root: Path, snapshot_id: str) -> None:
    pointer = root / LATEST
    temporary = root / f".{LATEST}.{os.getpid()}"
    temporary.write_text(snapshot_id + "\n")
    temporary.replace(pointer)


def resolve(id_or_path: str | Path = LATEST, root: Path | str = SNAPSHOTS) -> Path:
    """Find a snapshot folder from an id (or unique prefix), ``latest``, or a path into one."""
    root = Path(root)
    candidate = Path(id_or_path)
    if candidate.is_file() and candidate.name in ("data.parquet", "manifest.json"):
        candidate = candidate.parent
    if candidate.is_dir() and (candidate / "manifest.json").is_file():
        return candidate
    wanted = str(id_or_path)
    if wanted == LATEST:
        pointer = root / LATEST
        if not pointer.is_file():
            raise SnapshotError(f"no snapshot yet in {root}: run `make data` first")
        wanted = pointer.read_text().strip()
    matches = sorted(path for path in root.glob(f"{wanted}*") if (path / "manifest.json").is_file())
    if len(matches) != 1 or not wanted:
        found = "no snapshot" if not matches else f"{len(matches)} snapshots"
        raise SnapshotError(f"snapshot '{wanted}': {found} in {root} match; give a full id or a folder path")
    return matches[0]


def load(
    id_or_path: str | Path = LATEST, *, root: Path | str = SNAPSHOTS
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Return a snapshot's rows and manifest, after checking the rows still match the hash."""
    folder = resolve(id_or_path, root)
    manifest = json.loads((folder / "manifest.json").read_text())
    frame = read_parquet(folder / "data.parquet")
    actual = content_hash(frame)
    if actual != manifest.get("sha256"):
        raise SnapshotError(
            f"snapshot {folder}: data.parquet hashes to {actual[:ID_LENGTH]}, but its manifest says "
            f"{str(manifest.get('sha256'))[:ID_LENGTH]}: the data changed after the snapshot was made"
        )
    return frame, manifest


# --- retraining requests --------------------------------------------------------------------------

REQUEST_MANIFEST = "snapshot-manifest.json"  # the snapshot's manifest, as the drift run wrote it
REQUEST_DATA = "snapshot.parquet"  # the snapshot's data.parquet, byte for byte
# What a retraining request without segments in its manifest trains on (requests made before
# `retrain.data` existed): the window's labelled rows alone. Newer requests state their segments.
RETRAINING_SET = (
    "the labelled rows of the captured production window alone (a request made before retrain.data: "
    "its manifest lists no segments)"
)


def has_request(request_dir: Path | str) -> bool:
    """Whether a folder holds a retraining request's snapshot (either of its two files)."""
    folder = Path(request_dir)
    return (folder / REQUEST_MANIFEST).is_file() or (folder / REQUEST_DATA).is_file()


def read_request(request_dir: Path | str) -> dict[str, Any]:
    """The manifest of a retraining request's snapshot, after checking both files are there."""
    folder = Path(request_dir)
    manifest_path = folder / REQUEST_MANIFEST
    for path in (manifest_path, folder / REQUEST_DATA):
        if not path.is_file():
            raise SnapshotError(
                f"retraining request {folder}: {path.name} is missing, so the request's snapshot cannot be "
                "rebuilt; restore the file from the request's commit, run `make retrain-pr` again, or "
                "pass --ignore-request to build from the configured source"
            )
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as error:
        raise SnapshotError(f"retraining request {manifest_path}: not readable JSON ({error})") from None
    wanted = manifest.get("sha256") if isinstance(manifest, dict) else None
    if not isinstance(wanted, str) or len(wanted) != 64:
        raise SnapshotError(
            f"retraining request {manifest_path}: field 'sha256' must be 64 hex digits (got {wanted!r})"
        )
    if manifest.get("snapshot_id") != wanted[:ID_LENGTH]:
        raise SnapshotError(
            f"retraining request {manifest_path}: field 'snapshot_id' {manifest.get('snapshot_id')!r} is "
            f"not the first {ID_LENGTH} digits of its sha256 {wanted!r}"
        )
    return manifest


def from_request(
    request_dir: Path | str,
    *,
    contract: Contract | None = None,
    root: Path | str = SNAPSHOTS,
    check: Callable[[pd.DataFrame], None] | None = None,
    max_mb: int = MAX_FILE_MB,
) -> Path:
    """Rebuild the snapshot a committed retraining request names; refuse anything else.

    The request folder holds the snapshot's manifest and its Parquet file. The rows must hash
    to the manifest's sha256 (a file edited, truncated or swapped after the request was made
    is refused), and the contract must be the one the rows were validated under. ``check``
    (``make data`` passes the contract's validation) sees the rows before anything is
    written and raises to refuse them. The rebuilt snapshot keeps the manifest's source and
    created_at, so it is the requested snapshot in every respect, on any machine, on every run.
    """
    contract = contract or load_contract()
    folder = Path(request_dir)
    manifest = read_request(folder)
    snapshot_id, wanted = manifest["snapshot_id"], manifest["sha256"]
    made_under = manifest.get("contract_sha256")
    if made_under and contract.digest and made_under != contract.digest:
        raise SnapshotError(
            f"retraining request {folder}: snapshot {snapshot_id} was validated under data contract "
            f"{made_under[:ID_LENGTH]}, the current contract is {contract.digest[:ID_LENGTH]}: run the drift "
            "check again under this contract, or pass --ignore-request"
        )
    try:
        frame = read_table(folder / REQUEST_DATA, max_mb)
    except UnreadableBatch as error:
        raise SnapshotError(
            f"retraining request {folder}: {error.message}; refusing to train on it"
        ) from None
    actual = content_hash(canonical(frame, contract))
    if actual != wanted:
        raise SnapshotError(
            f"retraining request {folder}: {REQUEST_DATA} hashes to {actual[:ID_LENGTH]} "
            f"(sha256 {actual}), but the request names snapshot {snapshot_id} (sha256 {wanted}): the file "
            "changed after the request was made; refusing to train on it"
        )
    if check is not None:
        check(frame)
    return create(
        frame,
        manifest.get("source") or {"kind": "retraining_request", "path": str(folder)},
        contract=contract,
        root=root,
        created_at=manifest.get("created_at"),
    )
