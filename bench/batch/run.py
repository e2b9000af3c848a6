"""Batch scoring of N rows (default 10,000,000): `make score` embedded and on a local Dask cluster,
next to pandas + scikit-learn `predict_proba` on the same rows, measured in the same run.

Why: batch scoring must stay well ahead of the way a data scientist would score a file by hand
(the issue's goal: at least 5x the pandas + scikit-learn rows/s), with memory bounded whatever
the input's size. It also measures the ceiling: the model's own onnxruntime session.run alone
on rows fed beforehand as `make score` feeds them, on every core, which no scorer of this
graph can beat (whether the goal is reachable at all).
Figures: rows/s (from the start of the engine to the last part written;
a local cluster's start is counted, and shown apart) and the peak resident memory of the whole
process tree (the Dask workers included), sampled every 0.1 s.

Usage:
    python bench/batch/run.py --project DIR [--rows 10000000]
The project must have a registered model (`make data train register`). The input (about 0.3 GB
per 10 M rows) and the outputs stay in build/bench/batch/rows-N/ for re-runs. --rows keeps a CI
run short; the full-size figures take several minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/shared.py
from shared import byte_compile  # noqa: E402

WORK = ROOT / "build" / "bench" / "batch"
HERE = Path(__file__).resolve().parent
GOAL_RATIO = 5.0


def measure(project: Path, rows: int) -> dict:
    out = WORK / f"rows-{rows}"
    out.mkdir(parents=True, exist_ok=True)
    if "models: []" in (project / "governance" / "registry.yaml").read_text():
        raise SystemExit(f"bench/batch: {project} has no registered model: run `make data train register`")
    byte_compile(project)
    python = project / ".venv" / "bin" / "python"
    env = {**os.environ, "PYTHONPATH": str(project)}  # measure.py imports the project's modules
    command = [str(python), str(HERE / "measure.py"), "--rows", str(rows), "--out", str(out)]
    print(f"==> {' '.join(command)}", flush=True)
    subprocess.run(command, cwd=project, env=env, check=True)
    return json.loads((out / "result.json").read_text())


def report(result: dict) -> None:
    base = result["baseline"]
    print(f"\nBatch scoring of {result['rows']:,} rows, {result['cores']} cores:")
    print(f"  {'way':<44} {'rows/s':>10} {'x base':>7} {'peak RSS MiB':>12} {'start s':>8} {'wall s':>8}")
    ways = [("pandas + scikit-learn predict_proba (baseline)", base)]
    ways += [(f"make score, {name}", result[name]) for name in ("embedded", "dask-local")]
    for name, way in ways:
        ratio = way["rows_per_second"] / base["rows_per_second"]
        print(
            f"  {name:<44} {way['rows_per_second']:>10,.0f} {ratio:>7.2f} "
            f"{way['peak_rss_mb']:>12,.0f} {way.get('engine_start_seconds', 0.0):>8.1f} {way['wall_s']:>8.1f}"
        )
    ratio = result["embedded"]["rows_per_second"] / base["rows_per_second"]
    verdict = "meets" if ratio >= GOAL_RATIO else "MISSES"
    print(f"  embedded: {ratio:.2f}x the baseline's rows/s, {verdict} the {GOAL_RATIO:.0f}x goal")
    if "ceiling" in result:
        bound = result["ceiling"]["rows_per_second"]
        print(
            f"  ceiling: the model's session.run alone (rows fed beforehand, all cores): {bound:,.0f} rows/s"
            f" = {bound / base['rows_per_second']:.2f}x the baseline; `make score` reaches"
            f" {result['embedded']['rows_per_second'] / bound:.0%} of it"
        )
    print(f"  (load average when done: {', '.join(f'{value:.1f}' for value in result['load_average'])})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", required=True, help="a generated project with a registered model")
    parser.add_argument("--rows", type=int, default=10_000_000)
    args = parser.parse_args()
    report(measure(Path(args.project).resolve(), args.rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
