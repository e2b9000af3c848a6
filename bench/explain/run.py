"""What explanations cost `make train`: the explanation step next to the rest of the run.

Why: permutation importance scores the model once per column per shuffle, and partial
dependence once per grid value per top feature, on the whole test split; ml/explain.py keeps
REPEATS, TOP_FEATURES and GRID_POINTS small so `make train` stays fast. The baseline is
everything else `make train` computes in the same process on the same snapshot: fit, ONNX
export, evaluation, parity, latency, the champion and the gates.

Usage:
    python bench/explain/run.py --project DIR [--repeat 3]
DIR is a generated project after `make install data train` (the shared project of `make bench`).
Result: build/bench/explain/result.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "build" / "bench" / "explain"
HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", required=True, type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    project = args.project.resolve()
    out = WORK / "result.json"
    command = [
        str(project / ".venv" / "bin" / "python"),
        str(HERE / "measure.py"),
        "--repeat",
        str(args.repeat),
        "--out",
        str(out),
    ]
    print(f"==> {' '.join(command)}", flush=True)
    if subprocess.run(command, cwd=project, check=False).returncode != 0:
        raise SystemExit("bench/explain: the measurement failed")
    result = json.loads(out.read_text())
    seconds = result["seconds"]
    baseline, figure = seconds["rest of train (baseline)"], seconds["explain"]
    print(
        f"\n{result['task']}, {result['family']}, {result['features']} features, "
        f"{result['test_rows']} test rows; "
        f"{result['repeats']} shuffles per column, {result['top_features']} dependence curves of "
        f"{result['grid_points']} points; champion explained: {result['champion_explained']}"
    )
    print("| step | median s | x the rest of train |")
    print("|---|---:|---:|")
    print(f"| rest of train (fit, export, evaluate, parity, gates) | {baseline:.2f} | 1.00 |")
    print(f"| explanations (importance + partial dependence) | {figure:.2f} | {figure / baseline:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
