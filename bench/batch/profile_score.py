"""Runs inside a generated project's environment: one thread's time per million rows for each
part of `make score`'s embedded path, on the bench's input (bench/batch/run.py writes it).

Why: the rows/s of `make score` says how far it is from the goal, not where the time goes. The
parts are timed one after another on one thread, so their sum is the CPU time a row costs
before the thread pool spreads it over the cores:

read      the piece's record batches (monitoring.batch_score._batches)
check     the data contract (row_rules.conform + row_rules.check)
score     the feed, onnxruntime's session.run and the answers (batch_score._answers)
assemble  the rest of batch_score._batch_outputs (ids, filtering, the output tables)
write     the output tables written as score_piece writes them (one writer per kind)

Usage (from a baked project with a registered model):
    PYTHONPATH=. .venv/bin/python <template>/bench/batch/profile_score.py --data INPUT.parquet
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from governance.core.contract import load
from governance.core.paths import PATHS
from monitoring import batch_score, row_rules

KINDS = (batch_score.PREDICTIONS, batch_score.REJECTS)


def write(writers: dict[Path, pq.ParquetWriter], path: Path, table: pa.Table) -> None:
    """As score_piece writes: one writer per kind, dictionary pages for the few-valued columns."""
    if path not in writers:
        few = [name for name in batch_score.FEW_VALUED if name in table.column_names]
        writers[path] = pq.ParquetWriter(path, table.schema, use_dictionary=few)
    writers[path].write_table(table)


def profile(data: str, repeats: int) -> dict[str, float]:
    """Seconds per million rows of each part: the fastest of `repeats` passes over the input."""
    contract = load(PATHS.contract)
    content, version = batch_score.resolve_model(PATHS, None)
    scorer, _ = batch_score.scorer_for("profile", content)
    pieces = batch_score.plan(data)
    best: dict[str, float] = {}
    for attempt in range(repeats):
        spent: dict[str, float] = defaultdict(float)
        rows = 0
        with tempfile.TemporaryDirectory() as out:
            job = batch_score.Job(contract, "profile", version, out)
            writers: dict[Path, pq.ParquetWriter] = {}
            for piece in pieces:
                started = time.perf_counter()
                batches = list(batch_score._batches(piece, job))
                spent["read"] += time.perf_counter() - started
                for batch in batches:
                    started = time.perf_counter()
                    table = row_rules.conform(batch, contract, piece.url)
                    verdict = row_rules.check(table, contract)
                    checked = time.perf_counter()
                    accepted = table.filter(pc.invert(verdict.bad)) if pc.any(verdict.bad).as_py() else table
                    batch_score._answers(scorer, accepted, contract)
                    scored = time.perf_counter()
                    outputs = batch_score._batch_outputs(batch, piece.first_row + rows, piece, job, scorer)
                    whole = time.perf_counter()
                    spent["check"] += checked - started
                    spent["score"] += scored - checked
                    spent["assemble"] += max((whole - scored) - (scored - started), 0.0)  # less check + score
                    started = time.perf_counter()
                    for kind, table_out in zip(KINDS, outputs, strict=True):
                        if table_out is not None:
                            write(writers, Path(out) / f"{kind}.parquet", table_out)
                    spent["write"] += time.perf_counter() - started
                    rows += batch.num_rows
            for writer in writers.values():
                writer.close()
        per_million = {part: seconds * 1e6 / rows for part, seconds in spent.items()}
        best = {part: min(value, best.get(part, value)) for part, value in per_million.items()}
        print(f"    pass {attempt + 1}/{repeats}: {rows:,} rows", flush=True)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a Parquet/CSV file or folder, as for make score")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    parts = profile(args.data, args.repeats)
    print("one thread's seconds per million rows:")
    for part in ("read", "check", "score", "assemble", "write"):
        print(f"  {part:<9} {parts.get(part, 0.0):6.3f}")
    print(f"  {'sum':<9} {sum(parts.values()):6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
