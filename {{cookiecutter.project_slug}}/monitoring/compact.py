"""`make compact`: each finished day of the capture rewritten as one Parquet file.

Serving appends JSON lines, one file per process, because appending is all a hot path can
afford. Reading them back means parsing every line again on every drift run: on a window of
millions of rows that parse is most of the read. A day that is over never changes again
(feedback lands in the partition of the day it arrives), so it is parsed once here, with the
reader's own schema and its handling of torn and repeated lines, and written next to where its
lines were:

    <root>/date=2026-11-30/compacted-<sha256 of the sources, 12>.parquet

The reader (monitoring/capture.py) takes Parquet and JSON-line files of a partition alike.
Lines of kinds the monitoring reader does not use (a challenger's `shadow` answers, anything a
later writer adds) are not lost: they stay as JSON lines in `other-kinds-<hash>.jsonl` beside
the Parquet file, for the readers that want them. The JSON-line files are deleted only after
the Parquet file is written and read back with the same row count. Today's partition (UTC),
where serving still writes, is never touched.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq

from governance.core import progress
from governance.core.contract import Contract, load
from monitoring.capture import CaptureError, _read_file, capture_uri, list_files, schema

USED_KINDS = ("prediction", "feedback")
OTHER_KINDS = "other-kinds-"


@dataclass(frozen=True)
class CompactedDay:
    day: date
    files: int
    rows: int
    parquet: str


def _other_kinds(fs: fsspec.AbstractFileSystem, path: str) -> list[bytes]:
    """The JSON lines of one file whose kind the monitoring reader does not use."""
    kept = []
    with fs.open(path, "rb") as handle:
        for line in handle.read().splitlines(keepends=True):
            try:
                record = json.loads(line)
            except ValueError:
                continue  # torn lines are skipped as the reader skips them
            if isinstance(record, dict) and record.get("kind") not in USED_KINDS:
                kept.append(line if line.endswith(b"\n") else line + b"\n")
    return kept


def run(
    uri: str | None = None, before: str | date | None = None, contract: Contract | None = None
) -> list[CompactedDay]:
    """Compact every day before `before` (default: today, UTC) that still has JSON-line files."""
    contract = contract or load()
    if before is None:
        before = datetime.now(UTC).date()
    elif isinstance(before, str):
        try:
            before = date.fromisoformat(before)
        except ValueError:
            raise CaptureError(f"before: must be a date YYYY-MM-DD (got {before!r})") from None
    fs, files = list_files(capture_uri(uri))
    parse = pj.ParseOptions(explicit_schema=schema(contract), unexpected_field_behavior="ignore")
    lines = [item for item in files if item.path.endswith(".jsonl") and OTHER_KINDS not in item.path]
    days = sorted({item.day for item in lines if item.day < before})
    done = []
    for day in days:
        sources = [item.path for item in lines if item.day == day]
        with progress.step(f"compacting {day} ({len(sources)} file(s))"):
            done.append(_compact_day(fs, day, sources, parse, len(contract.target.classes)))
    if not days:
        progress.note(f"nothing to compact before {before}")
    return done


def _compact_day(
    fs: fsspec.AbstractFileSystem, day: date, sources: list[str], parse: pj.ParseOptions, classes: int
) -> CompactedDay:
    tables, others = [], []
    for path in sources:
        table, _ = _read_file(fs, path, parse, classes)
        used = pc.is_in(table["kind"], value_set=pa.array(USED_KINDS))
        if not pc.all(used).as_py():
            others.extend(_other_kinds(fs, path))
        tables.append(table.filter(used))
    table = pa.concat_tables(tables) if tables else parse.explicit_schema.empty_table()
    folder = sources[0].rsplit("/", 1)[0]
    digest = hashlib.sha256("\n".join(sources).encode()).hexdigest()[:12]
    target = f"{folder}/compacted-{digest}.parquet"
    with fs.open(target, "wb") as handle:
        pq.write_table(table, handle, compression="zstd", row_group_size=1 << 20)
    with fs.open(target, "rb") as handle:
        written = pq.ParquetFile(handle).metadata.num_rows
    if written != len(table):
        raise CaptureError(f"{target}: wrote {written} rows, expected {len(table)}; the JSON lines are kept")
    if others:
        with fs.open(f"{folder}/{OTHER_KINDS}{digest}.jsonl", "wb") as handle:
            handle.write(b"".join(others))
    for path in sources:
        fs.rm(path)
    return CompactedDay(day, len(sources), len(table), target)
