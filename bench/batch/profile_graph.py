"""Where the model's session.run spends its time: onnxruntime's own profiler, per operator type.

Why: the batch goal (issue 16) is bounded by the ceiling, the model's session.run alone; to
make the exported graph cheaper one must know which of its nodes cost what. This runs the
project's registered model (or --model FILE) over ROWS example rows in the batch scorer's
batch size on one thread, with SessionOptions.enable_profiling, and prints per operator type
its share of the node time and the CPU seconds per million rows, plus the whole run's time.
The figures of two models (--model A --model B) come from the same run, on the same rows.

Usage (inside a generated project's environment, from the project's folder):
    PYTHONPATH=. .venv/bin/python ../bench/batch/profile_graph.py [--rows 1000000] [--model FILE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path


def rows_feeds(rows: int) -> list[dict]:
    """The example generator's rows (with its missing values), encoded as serving encodes them."""
    from data_pipelines.example import generate
    from governance.core.contract import load
    from governance.core.encoding import feeds
    from monitoring.batch_score import BATCH_ROWS

    contract = load()
    frame = generate(rows, seed=0)[contract.feature_names]
    columns = {
        feature.name: frame[feature.name].to_numpy(dtype="float64", na_value=float("nan"))
        if feature.is_numeric
        else frame[feature.name].fillna("").to_numpy(dtype=object)
        for feature in contract.features
    }
    return [
        feeds({name: values[start : start + BATCH_ROWS] for name, values in columns.items()}, contract)
        for start in range(0, rows, BATCH_ROWS)
    ]


def profile(model: Path, batches: list[dict], rows: int) -> dict:
    """Run every batch once (after one warm-up run) with the profiler on; sum node time per op type."""
    import onnxruntime as ort
    from governance.core.encoding import session_options

    options = session_options(threads=1)
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "ort")
    session = ort.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
    outputs = [output.name for output in session.get_outputs()]
    session.run(outputs, batches[0])
    started = time.perf_counter()
    for feed in batches:
        session.run(outputs, feed)
    seconds = time.perf_counter() - started
    trace = json.loads(Path(session.end_profiling()).read_text())
    per_op: dict[str, float] = defaultdict(float)
    for event in trace:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"] / 1e6
    # the trace holds the warm-up run too: node time is per row of every run it saw
    traced = rows + len(next(iter(batches[0].values())))
    total = sum(per_op.values())
    return {
        "run_s_per_million": seconds * 1e6 / rows,
        "nodes_s_per_million": total * 1e6 / traced,
        "ops": {op: value * 1e6 / traced for op, value in sorted(per_op.items(), key=lambda item: -item[1])},
    }


def report(name: str, result: dict) -> None:
    total = result["nodes_s_per_million"]
    print(f"\n{name}")
    print(f"  session.run: {result['run_s_per_million']:.3f} s per million rows (node time {total:.3f} s)")
    print(f"  {'op':<24} {'s / M rows':>10} {'share':>7}")
    for op, seconds in result["ops"].items():
        print(f"  {op:<24} {seconds:>10.3f} {seconds / total:>7.1%}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--model", type=Path, action="append", help="an ONNX file, repeatable (default: the registered one)"
    )
    args = parser.parse_args()
    models = args.model
    if not models:
        from governance.core.paths import PATHS
        from monitoring.batch_score import resolve_model

        content = resolve_model(PATHS, None)[0]
        path = Path(tempfile.mkdtemp()) / "registered.onnx"
        path.write_bytes(content)
        models = [path]
    print(f"==> encoding {args.rows:,} example rows", flush=True)
    batches = rows_feeds(args.rows)
    results = {}
    for model in models:
        print(f"==> profiling {model}", flush=True)
        results[str(model)] = profile(model, batches, args.rows)
    for name, result in results.items():
        report(name, result)
    names = list(results)
    base = results[names[0]]
    for name in names[1:]:
        result = results[name]
        print(
            f"\n{name} against {names[0]} (same rows, same run): session.run "
            f"{base['run_s_per_million'] / result['run_s_per_million']:.2f}x as fast, node time "
            f"{base['nodes_s_per_million'] / result['nodes_s_per_million']:.2f}x as fast"
        )
    print(f"(load average when done: {', '.join(f'{value:.1f}' for value in os.getloadavg())})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
