"""Runs inside a generated project's environment (bench/batch/run.py starts it): the measurements.

prepare   writes the input: ROWS example applications in Parquet row groups of up to 1,000,000
baseline  pandas + scikit-learn, the usual way: the same estimator fitted on the project's
          snapshot, then for each row group: to_pandas, predict_proba, write the answers (timed
          from the first read to the last write; the fit is not timed)
ceiling   onnxruntime's session.run alone on one row group fed beforehand as `make score` feeds
          it, batches on every core: the graph's own speed, which no batch scorer can beat
score     `mlops score` on the input, embedded or with ENGINE=dask-local

Each mode runs as its own process under `tree`, which samples the resident memory of that
process and all its children (the Dask workers too) every 0.1 s, so peak RSS is what the whole
run held, not one process of it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/shared.py
from shared import measured_tree

CHUNK = 1_000_000


def prepare(rows: int, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from data_pipelines.example import generate
    from governance.core.contract import load

    if path.exists() and pq.ParquetFile(path).metadata.num_rows == rows:
        print(f"==> input {path} ({rows:,} rows) already there", flush=True)
        return
    names = load().feature_names
    writer = None
    for start in range(0, rows, CHUNK):
        size = min(CHUNK, rows - start)
        table = pa.Table.from_pandas(generate(size, seed=start // CHUNK)[names], preserve_index=False)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=CHUNK)
        print(f"    generated {start + size:,} / {rows:,} rows", flush=True)
    assert writer is not None
    writer.close()


def baseline(path: Path, out: Path) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from governance.core.paths import PATHS
    from ml.features import model_frame
    from ml.pipeline import fit_model, load_inputs

    inputs = load_inputs(PATHS, None)
    _, pipeline = fit_model(inputs)
    started = time.perf_counter()
    rows = 0
    source = pq.ParquetFile(path)
    for group in range(source.num_row_groups):
        frame = source.read_row_group(group).to_pandas()
        probabilities = pipeline.predict_proba(model_frame(frame, inputs.contract))
        answers = {f"probability_{index}": probabilities[:, index] for index in range(probabilities.shape[1])}
        pq.write_table(pa.table(answers), out / f"part-{group:05d}.parquet")
        rows += len(frame)
        print(f"    baseline: {rows:,} rows", flush=True)
    seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": seconds, "rows_per_second": rows / seconds}


def ceiling(path: Path) -> dict:
    """The model's own speed: onnxruntime's session.run alone on the first row group, fed
    beforehand (not timed) as `make score` feeds it, its batches on every core. No way of scoring
    through this graph (`make score` included) can beat it: it bounds what batch scoring can reach."""
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow.parquet as pq
    from governance.core.contract import load
    from governance.core.paths import PATHS
    from monitoring.batch_score import BATCH_ROWS, feed, resolve_model, scorer_for

    contract = load(PATHS.contract)
    model, _ = scorer_for("ceiling", resolve_model(PATHS, None)[0])
    text = [feature.name for feature in contract.categorical]
    table = pq.ParquetFile(path, read_dictionary=text).read_row_group(0, columns=contract.feature_names)
    batches = [
        feed(model, table.slice(start, BATCH_ROWS), contract) for start in range(0, len(table), BATCH_ROWS)
    ]
    model.scorer.score(batches[0])  # the session's first run allocates its buffers
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(model.scorer.score, batches))
    seconds = time.perf_counter() - started
    return {"rows": len(table), "seconds": seconds, "rows_per_second": len(table) / seconds}


def tree(command: list[str], env: dict[str, str]) -> dict:
    """Run `command`; wall time and the peak of the summed RSS of it and its children."""
    measured = measured_tree(command, env)
    if measured["returncode"] != 0:
        raise SystemExit(f"bench/batch: {' '.join(command)} failed with exit code {measured['returncode']}")
    return {"wall_s": measured["wall_s"], "peak_rss_mb": measured["peak_rss_mb"]}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--mode", choices=("all", "baseline", "ceiling"), default="all")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / f"input-{args.rows}.parquet"
    if args.mode == "baseline":
        folder = args.out / "baseline"
        folder.mkdir(exist_ok=True)
        (args.out / "baseline.json").write_text(json.dumps(baseline(data, folder)))
        return 0
    if args.mode == "ceiling":
        (args.out / "ceiling.json").write_text(json.dumps(ceiling(data)))
        return 0
    prepare(args.rows, data)
    env = {key: value for key, value in os.environ.items() if key not in ("ENGINE", "DASK_SCHEDULER_ADDRESS")}
    result: dict = {"rows": args.rows, "cores": os.cpu_count()}
    print("==> baseline: pandas + scikit-learn predict_proba, row group by row group", flush=True)
    measured = tree([sys.executable, __file__, "--rows", str(args.rows), "--out", str(args.out), "--mode",
                     "baseline"], env)  # fmt: skip
    result["baseline"] = {**json.loads((args.out / "baseline.json").read_text()), **measured}
    print("==> ceiling: onnxruntime session.run alone on pre-encoded rows, on every core", flush=True)
    measured = tree([sys.executable, __file__, "--rows", str(args.rows), "--out", str(args.out), "--mode",
                     "ceiling"], env)  # fmt: skip
    result["ceiling"] = {**json.loads((args.out / "ceiling.json").read_text()), **measured}
    mlops = str(Path(sys.executable).parent / "mlops")
    for name, engine in (("embedded", None), ("dask-local", "dask-local")):
        print(f"==> mlops score, engine {name}", flush=True)
        run_env = {**env, **({"ENGINE": engine} if engine else {})}
        target = args.out / f"scored-{name}"
        measured = tree([mlops, "score", "--data", str(data), "--out", str(target), "--force"], run_env)
        summary = json.loads((target / "summary.json").read_text())
        timings = ("seconds", "engine_start_seconds", "rows_per_second")
        result[name] = {**measured, **{key: summary[key] for key in timings}}
    result["load_average"] = os.getloadavg()
    (args.out / "result.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
