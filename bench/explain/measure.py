"""Time `make train`'s explanation step against the rest of its work; runs inside a generated project.

Called by bench/explain/run.py with the project's venv and the project as working directory.
Each step is the ml/pipeline.py function `make train` calls, timed in one process on the
project's latest snapshot, `--repeat` times (the median is reported):
  rest     fit + ONNX export + evaluation, parity, latency, champion and gates (the baseline)
  explain  permutation importance of every contract column and partial dependence of the top ones
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from governance.core.paths import PATHS
from ml import explain
from ml.pipeline import explain_model, export_model, fit_model, load_inputs, measure


def timed(step, *args):
    started = time.perf_counter()
    result = step(*args)
    return result, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    inputs = load_inputs(PATHS, None)
    rest, explaining = [], []
    for round_ in range(1, args.repeat + 1):
        (parts, pipeline), fit_s = timed(fit_model, inputs)
        (content, version), export_s = timed(export_model, inputs, pipeline)
        candidate, measure_s = timed(measure, PATHS, inputs, parts, pipeline, content, version)
        found, explain_s = timed(explain_model, PATHS, inputs, parts, pipeline, candidate)
        rest.append(fit_s + export_s + measure_s)
        explaining.append(explain_s)
        print(f"round {round_}: rest {rest[-1]:.2f} s, explain {explain_s:.2f} s", flush=True)
    result = {
        "family": inputs.params.model_family,
        "task": inputs.contract.task,
        "features": len(inputs.contract.features),
        "test_rows": found.rows,
        "repeats": explain.REPEATS,
        "top_features": explain.TOP_FEATURES,
        "grid_points": explain.GRID_POINTS,
        "champion_explained": found.champion is not None,
        "seconds": {
            "rest of train (baseline)": statistics.median(rest),
            "explain": statistics.median(explaining),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
