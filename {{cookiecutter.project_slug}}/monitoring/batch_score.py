"""`make score`: batch predictions with the ONNX model, embedded or on a Dask cluster.

The input (a Parquet or CSV file, a folder of them, or any fsspec URL) is cut into pieces: one
per Parquet row group, one per CSV file. A piece is read in record batches, each row checked
against the data contract (monitoring/row_rules.py), the good rows scored by the ground's
encoder and scorer (the very code serving runs; a category goes in as its position where the
graph allows it, monitoring/coded_inputs.py), and written as one Parquet part:

    OUT/predictions/part-00000.parquet  source, row, [key], prediction, probability_<class>
                                        (or value), model_version
    OUT/rejects/part-00000.parquet      source, row, [key], field, rule, reason, the row's features
    OUT/summary.json, summary.html      counts, rejects per rule, engine, model, timings

Why pieces: memory stays bounded by (pieces in flight) x (batches in flight) x (batch rows)
whatever the input's size, and the same `score_piece` runs on either engine
(monitoring/engine.py): here, one piece after another with its batches on all cores, or on
Dask workers, each of which loads the model once. A piece's output depends on the piece
alone, so the two engines write the same files.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas  # noqa: F401  pyarrow imports it on its first array conversion: here, not in the timed run
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from governance import registry
from governance.core import progress
from governance.core.contract import Contract, Feature
from governance.core.contract import load as load_contract
from governance.core.encoding import MISSING_TEXT, Scorer, encode_column, encode_words
from governance.core.errors import InputError
from governance.core.paths import Paths
from governance.core.records import Record
from governance.documents import render
from monitoring import coded_inputs, row_rules
from monitoring import engine as engines

PARQUET = (".parquet", ".pq")
CSV = (".csv",)
BATCH_ROWS = 65_536
PREDICTIONS, REJECTS = "predictions", "rejects"
FEW_VALUED = ("source", "model_version", "field", "rule")  # stored as Parquet dictionaries


class ScoreInputError(InputError):
    """The input or output location breaks a rule; the message names it."""


@dataclass(frozen=True)
class Piece:
    """One unit of work: a Parquet row group, or a whole CSV file (read as a stream)."""

    index: int
    url: str
    row_group: int | None
    first_row: int  # the row number of the piece's first row in its file

    @property
    def name(self) -> str:
        return f"part-{self.index:05d}.parquet"


@dataclass(frozen=True)
class Job:
    """What every piece needs besides the model's bytes (which travel once per worker)."""

    contract: Contract
    model_digest: str
    model_version: str
    out: str
    key: str | None = None
    batch_rows: int = BATCH_ROWS
    threads: int = 1  # batches of one piece checked and scored at once


@dataclass(frozen=True)
class PieceResult:
    index: int
    rows: int
    scored: int
    rejected: int
    rules: dict[str, int]
    pid: int
    model_loads: int  # models this process has loaded so far: 1 on a worker that reused its model
    position_inputs: tuple[str, ...]  # the categorical inputs fed as positions (coded_inputs.py)


class ScoreSummary(Record):
    input: str
    output: str
    engine: str
    model_version: str
    model_sha256: str
    pieces: int
    rows: int
    scored: int
    rejected: int
    rejects_by_rule: dict[str, int]
    position_inputs: list[str]  # categorical inputs fed as positions, not text (coded_inputs.py)
    seconds: float  # from the start of the engine to the last part written
    engine_start_seconds: float  # of which the engine took to be ready (a local cluster starting)
    rows_per_second: float


# -- one piece -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchScorer:
    """The model loaded for batch scoring: its categorical inputs take positions where the graph
    allows it (monitoring/coded_inputs.py), so `lookups` names the inputs that do."""

    scorer: Scorer
    lookups: dict[str, coded_inputs.Lookup]


_SCORERS: dict[str, BatchScorer] = {}
_LOADS = 0
_LOCK = threading.Lock()


def scorer_for(digest: str, content: bytes) -> tuple[BatchScorer, int]:
    """The process's scorer for this model, created on first use: a worker loads a model once."""
    global _LOADS
    with _LOCK:
        if digest not in _SCORERS:
            coded = coded_inputs.derive(content)
            _SCORERS[digest] = BatchScorer(Scorer(coded.content, threads=1), coded.lookups)
            _LOADS += 1
        return _SCORERS[digest], _LOADS


def _batches(piece: Piece, job: Job) -> Iterator[pa.RecordBatch]:
    fs, path = fsspec.core.url_to_fs(piece.url)
    wanted = [*job.contract.feature_names, *([job.key] if job.key else [])]
    with fs.open(path, "rb") as handle:
        if piece.row_group is not None:
            parquet = pq.ParquetFile(handle)
            text = _text_columns(parquet.schema_arrow, job.contract)
            parquet = pq.ParquetFile(handle, metadata=parquet.metadata, read_dictionary=text)
            names = parquet.schema_arrow.names
            _require(names, job, piece.url)
            yield from parquet.iter_batches(
                batch_size=job.batch_rows, row_groups=[piece.row_group], columns=wanted, use_threads=False
            )
            return
        types = {feature.name: row_rules.arrow_type(feature) for feature in job.contract.features}
        reader = pcsv.open_csv(
            handle,
            read_options=pcsv.ReadOptions(block_size=1 << 22, use_threads=False),
            convert_options=pcsv.ConvertOptions(column_types=types, strings_can_be_null=True),
        )
        _require(reader.schema.names, job, piece.url)
        for batch in reader:
            yield batch.select(wanted)


def _text_columns(schema: pa.Schema, contract: Contract) -> list[str]:
    """The categorical features stored as text: read as Arrow dictionaries (see _text_values)."""
    names = set(schema.names)
    return [
        feature.name
        for feature in contract.categorical
        if feature.name in names and pa.types.is_string(schema.field(feature.name).type)
    ]


def _require(names: list[str], job: Job, source: str) -> None:
    row_rules.require_columns(names, job.contract, source)
    if job.key and job.key not in names:
        raise ScoreInputError(f"{source}: the key column {job.key!r} (--key) is missing")


def feed(model: BatchScorer, table: pa.Table, contract: Contract) -> dict[str, np.ndarray]:
    """The model's inputs for a table of contract-conforming rows."""
    return {
        feature.name: encode_column(feature, table.column(feature.name).to_numpy())
        if feature.is_numeric
        else _text_values(feature, table.column(feature.name), model.lookups.get(feature.name))
        for feature in contract.features
    }


def _answers(model: BatchScorer, table: pa.Table, contract: Contract) -> dict[str, pa.Array]:
    scorer = model.scorer
    scores = scorer.score(feed(model, table, contract))
    target = contract.target
    if scorer.is_regressor:
        return {"value": pa.array(scores.value, pa.float64())}
    classes = pa.array(list(target.classes))  # int64, string or bool, as the capture types them
    answers = {"prediction": classes.take(pa.array(scores.label, pa.int64()))}
    for position, key in enumerate(target.class_keys):
        answers[f"probability_{key}"] = pa.array(scores.probabilities[:, position], pa.float32())
    return answers


def _text_values(feature: Feature, column: pa.ChunkedArray, lookup: coded_inputs.Lookup | None) -> np.ndarray:
    """A text column as the model's [N, 1] input: each row's text, a missing value as its own
    text, or, when the model takes this input coded, each row's position (the text's lookup).

    Why through a dictionary: a category column holds a handful of distinct strings, so each
    becomes one Python object shared by its rows (a numpy take) instead of one object per row.
    Parquet columns arrive as dictionaries already (read_dictionary), CSV ones are encoded here.
    """
    array = column.combine_chunks()
    if not pa.types.is_dictionary(array.type):
        array = pc.dictionary_encode(array)
    words = pc.fill_null(array.dictionary, MISSING_TEXT).to_numpy(zero_copy_only=False)
    words = np.append(words, MISSING_TEXT)  # the last word stands for a missing value
    indices = pc.fill_null(array.indices, len(words) - 1).to_numpy()
    if lookup is None:
        return encode_words(feature, words, indices)
    return lookup.of(encode_column(feature, words).reshape(-1))[indices].reshape(-1, 1)


def _constant(value: str, rows: int) -> pa.DictionaryArray:
    """One value repeated `rows` times, stored once (a dictionary column)."""
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, np.int32)), pa.array([value], pa.string()))


def _batch_outputs(
    batch: pa.RecordBatch, first_row: int, piece: Piece, job: Job, scorer: BatchScorer
) -> tuple[pa.Table | None, pa.Table | None]:
    """One record batch checked and scored: (its predictions, its rejects), either None when empty."""
    table = row_rules.conform(batch, job.contract, piece.url)
    verdict = row_rules.check(table, job.contract)
    ids = {
        "source": _constant(piece.url.rsplit("/", 1)[-1], batch.num_rows),
        "row": pa.array(np.arange(first_row, first_row + batch.num_rows)),
    }
    if job.key:
        ids[job.key] = batch.column(job.key)
    ids_table = pa.table(ids)
    good = pc.invert(verdict.bad)
    clean = not pc.any(verdict.bad).as_py()  # the usual batch: nothing to filter (a filter copies)
    accepted = table if clean else table.filter(good)
    predictions = rejects = None
    if len(accepted):
        predictions = ids_table if clean else ids_table.filter(good)
        for name, column in _answers(scorer, accepted, job.contract).items():
            predictions = predictions.append_column(name, column)
        predictions = predictions.append_column("model_version", _constant(job.model_version, len(accepted)))
    if len(accepted) < batch.num_rows:  # the few bad rows picked first, then decoded
        rejects = ids_table.append_column("field", verdict.field).append_column("rule", verdict.rule)
        rejects = rejects.append_column("reason", verdict.reason).filter(verdict.bad)
        bad = table.filter(verdict.bad)
        for name in bad.column_names:  # text as text, whether it was read as a dictionary or not
            rejects = rejects.append_column(name, row_rules.plain(bad.column(name)))
    return predictions, rejects


def score_piece(piece: Piece, job: Job, model: bytes) -> PieceResult:
    """Read, check, score and write one piece; the same function on every engine.

    Batches are read in order and checked and scored on `job.threads` threads (onnxruntime and
    pyarrow release the GIL), at most two per thread in flight, and written in read order: the
    parts are the same whatever the thread count, and memory stays bounded.
    """
    scorer, loads = scorer_for(job.model_digest, model)
    fs, out = fsspec.core.url_to_fs(job.out)
    rows = scored = 0
    rules: Counter[str] = Counter()
    writers: dict[str, pq.ParquetWriter] = {}
    handles: list[Any] = []

    def write(kind: str, table: pa.Table | None) -> None:
        if table is None:
            return
        if kind not in writers:
            handle = fs.open(f"{out}/{kind}/{piece.name}", "wb")
            handles.append(handle)
            # Dictionary pages only for the few-valued columns: building one for every probability
            # costs more than the scoring (measured: 0.9 s of writing per million rows, 0.4 s without).
            few = [name for name in FEW_VALUED if name in table.column_names]
            writers[kind] = pq.ParquetWriter(handle, table.schema, use_dictionary=few)
        writers[kind].write_table(table)

    def finish(future: Future) -> None:
        nonlocal scored
        predictions, rejects = future.result()
        scored += len(predictions) if predictions is not None else 0
        if rejects is not None:
            rules.update(str(value) for value in rejects.column("rule").to_pylist())
        write(PREDICTIONS, predictions)
        write(REJECTS, rejects)

    pending: deque[Future] = deque()
    try:
        with ThreadPoolExecutor(max_workers=job.threads) as pool:
            for batch in _batches(piece, job):
                if not batch.num_rows:
                    continue
                pending.append(pool.submit(_batch_outputs, batch, piece.first_row + rows, piece, job, scorer))
                rows += batch.num_rows
                if len(pending) >= 2 * job.threads:
                    finish(pending.popleft())
            while pending:
                finish(pending.popleft())
    finally:
        for writer in writers.values():
            writer.close()
        for handle in handles:
            handle.close()
    return PieceResult(
        piece.index, rows, scored, rows - scored, dict(rules), os.getpid(), loads, tuple(scorer.lookups)
    )


# -- the run -------------------------------------------------------------------------------------


def input_files(data: str) -> list[str]:
    """The Parquet and CSV files of a file, folder or URL, as URLs, in name order."""
    fs, root = fsspec.core.url_to_fs(data)
    if not fs.exists(root):
        raise ScoreInputError(f"DATA: {data} does not exist (a Parquet/CSV file, a folder or a URL)")
    if fs.isdir(root):
        paths = sorted(path for path in fs.find(root) if path.endswith(PARQUET + CSV))
    else:
        paths = [root]
    for path in paths:
        if not path.endswith(PARQUET + CSV):
            raise ScoreInputError(f"DATA: {path} must end in .parquet, .pq or .csv")
    if not paths:
        raise ScoreInputError(f"DATA: {data} holds no .parquet or .csv file")
    return [fs.unstrip_protocol(path) for path in paths]


def plan(data: str) -> list[Piece]:
    """One piece per Parquet row group (from the file footers only) or per CSV file."""
    pieces: list[Piece] = []
    for url in input_files(data):
        if url.endswith(CSV):
            pieces.append(Piece(len(pieces), url, None, 0))
            continue
        fs, path = fsspec.core.url_to_fs(url)
        with fs.open(path, "rb") as handle:
            metadata = pq.ParquetFile(handle).metadata
        first = 0
        for group in range(metadata.num_row_groups):
            pieces.append(Piece(len(pieces), url, group, first))
            first += metadata.row_group(group).num_rows
    return pieces


def prepare_output(out: str, overwrite: bool) -> str:
    """The output root as a URL; earlier parts are refused (mixing two runs) unless overwriting."""
    fs, root = fsspec.core.url_to_fs(out)
    root = root.rstrip("/")
    existing = [kind for kind in (PREDICTIONS, REJECTS) if fs.exists(f"{root}/{kind}")]
    if existing and not overwrite:
        raise ScoreInputError(
            f"OUT: {out} already holds {', '.join(existing)}/ from an earlier run "
            "(choose another folder, or FORCE=1 to replace them)"
        )
    for kind in existing:
        fs.rm(f"{root}/{kind}", recursive=True)
    for kind in (PREDICTIONS, REJECTS):
        fs.makedirs(f"{root}/{kind}", exist_ok=True)
    return fs.unstrip_protocol(root)


def resolve_model(paths: Paths, model: str | None, version: str | None = None) -> tuple[bytes, str]:
    """The model file's bytes and its version: the one given (named `version`, else by its file
    name), else the champion (stage production; before the first promotion, the newest registered
    entry). The batch image carries one model, named by BATCH_MODEL_VERSION."""
    if model:
        path = Path(model)
        if not path.is_file():
            raise ScoreInputError(f"MODEL: {model} is not an ONNX file")
        return path.read_bytes(), version or f"file:{path.name}"
    # The drift check's rule (monitoring/reference.py), without importing the reference's data stack.
    models = registry.load(paths.registry)
    entry = models.champion or max(
        models.models, key=lambda item: (item.created_at, item.version), default=None
    )
    if entry is None:
        raise ScoreInputError(
            "MODEL: the registry holds no model: run `make data train register`, or pass MODEL=<file.onnx>"
        )
    path = Path(entry.artifact.path)
    return (path if path.is_absolute() else paths.root / path).read_bytes(), entry.version


def _run_pieces(
    pieces: list[Piece], job: Job, model: bytes, engine: engines.Engine, done: Callable[[PieceResult], None]
) -> tuple[list[PieceResult], float]:
    """Every piece's result, and the seconds the engine took to be ready (a local cluster starts)."""
    started = time.perf_counter()
    with engines.connect(engine, preload=(__name__,)) as client:  # local workers import this as they start
        ready = time.perf_counter() - started
        if client is None:  # one piece after another, each on every core
            results = []
            for piece in pieces:
                results.append(score_piece(piece, job, model))
                done(results[-1])
            return results, ready
        from distributed import as_completed as dask_completed

        shared = client.scatter(model, broadcast=True, hash=False)
        futures = client.map(score_piece, pieces, job=job, model=shared, pure=False)
        results = []
        for future in dask_completed(futures):
            results.append(future.result())
            done(results[-1])
        return results, ready


def write_summary(summary: ScoreSummary, root: str) -> None:
    """summary.json for machines, summary.html (governance/templates/batch_score.html.j2) for people."""
    fs, folder = fsspec.core.url_to_fs(root)
    with fs.open(f"{folder}/summary.json", "w") as handle:
        handle.write(summary.model_dump_json(indent=2) + "\n")
    html = render("batch_score.html.j2", summary=summary)
    with fs.open(f"{folder}/summary.html", "w") as handle:
        handle.write(html)


def run(
    paths: Paths,
    data: str,
    out: str,
    engine: engines.Engine | None = None,
    model: str | None = None,
    key: str | None = None,
    batch_rows: int = BATCH_ROWS,
    overwrite: bool = False,
    model_version: str | None = None,
) -> ScoreSummary:
    """Score every row of `data` into `out`; returns (and writes) the run's summary."""
    engine = engine or engines.choose()
    contract = load_contract(paths.contract)
    content, version = resolve_model(paths, model, model_version)
    pieces = plan(data)
    root = prepare_output(out, overwrite)
    threads = 1 if engine.distributed else (os.cpu_count() or 1)  # a Dask worker scores on its own thread
    job = Job(contract, hashlib.sha256(content).hexdigest(), version, root, key, batch_rows, threads)
    started = time.perf_counter()
    progress.note(f"{len(pieces)} piece(s) of {data} -> {root}, model {version}, engine: {engine.describe()}")
    seen = {"pieces": 0, "rows": 0}

    def done(result: PieceResult) -> None:
        seen["pieces"] += 1
        seen["rows"] += result.rows
        elapsed = time.perf_counter() - started
        progress.note(
            f"piece {seen['pieces']}/{len(pieces)}: {seen['rows']:,} rows "
            f"({seen['rows'] / max(elapsed, 1e-9):,.0f} rows/s)"
        )

    with progress.step(f"scoring {data} ({engine.name})"):
        results, ready = _run_pieces(pieces, job, content, engine, done)
    seconds = time.perf_counter() - started
    rules: Counter[str] = Counter()
    for result in results:
        rules.update(result.rules)
    rows = sum(result.rows for result in results)
    summary = ScoreSummary(
        input=data,
        output=root,
        engine=engine.describe(),
        model_version=version,
        model_sha256=job.model_digest,
        pieces=len(pieces),
        rows=rows,
        scored=sum(result.scored for result in results),
        rejected=sum(result.rejected for result in results),
        rejects_by_rule=dict(sorted(rules.items())),
        position_inputs=sorted({name for result in results for name in result.position_inputs}),
        seconds=round(seconds, 3),
        engine_start_seconds=round(ready, 3),
        rows_per_second=round(rows / max(seconds, 1e-9), 1),
    )
    write_summary(summary, root)
    return summary
