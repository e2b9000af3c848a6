"""Experiment tracking's cost on `make train`, and `make tune`'s throughput, on one baked project.

Figures, each beside a baseline measured in the same run on the same project:
- tracking overhead: `mlops train` with MLFLOW_TRACKING=on (an MLflow run in the embedded
  SQLite store) against MLFLOW_TRACKING=off, alternated ROUNDS times, medians compared: the wall
  time a user waits for `make train` (goal: under 10 %). The run is recorded by a detached logger
  after train returns, so a second figure says when it is done: the time until run.json exists
  (train + recording), against the same baseline. Their CPU seconds too (the logger's included:
  this process adopts it as a subreaper), which a loaded machine moves much less than wall time;
- tuning throughput: trials per minute of `mlops tune --trials TRIALS` (Optuna, 3-fold
  cross-validation per trial, nested MLflow runs) against plain `mlops train` runs per minute
  (tracking off): how many trials one training run's time buys.

The study starts fresh (artifacts/mlflow/optuna.db removed) and ml/params.yaml is restored
afterwards, so the project is left as it was. Results: build/bench/track/result.json.

Usage: python bench/track/run.py --project <baked project> [--rounds 3] [--trials 20] [--jobs 1]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/shared.py
from shared import byte_compile  # noqa: E402

OUT = ROOT / "build" / "bench" / "track"


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


PR_SET_CHILD_SUBREAPER = 36


def adopt_orphans() -> bool:
    """Become the parent of orphaned descendants (Linux), so the detached logger's CPU is counted."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def reap_orphans() -> None:
    """Wait for every adopted descendant (the logger, once it has written the run)."""
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def until_recorded(project: Path, started: float, timeout_s: float = 600) -> float:
    """Seconds from train's start until the latest model's run.json exists (its recording done)."""
    models = project / "artifacts" / "models"
    folder = models / (models / "latest").read_text().strip()
    deadline = time.perf_counter() + timeout_s
    while not (folder / "run.json").is_file() or (folder / "recording.json").is_file():
        if time.perf_counter() > deadline:
            sys.exit(f"bench/track: no run.json in {folder} {timeout_s:.0f}s after train (see tracking.log)")
        time.sleep(0.05)
    return time.perf_counter() - started


def timed(command: list[str], project: Path, env: dict[str, str]) -> tuple[float, str, float]:
    """Wall seconds of one command in the project, its combined output (it must succeed), and the
    CPU seconds it and its children used (which, unlike wall time, other jobs barely move)."""
    started, cpu = time.perf_counter(), children_cpu()
    done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, check=False)
    seconds, cpu = time.perf_counter() - started, children_cpu() - cpu
    if done.returncode != 0:
        sys.exit(f"bench/track: {' '.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return seconds, done.stdout + done.stderr, cpu


# Counts the newest tuning run's nested runs with MLflow's client, in the project's environment.
COUNT_TRIAL_RUNS = """
from mlflow.tracking import MlflowClient
from governance.core.paths import PATHS
from ml import tracking
client = MlflowClient(tracking_uri=tracking.local_uri(PATHS))
runs = client.search_runs(
    [e.experiment_id for e in client.search_experiments()], order_by=["attributes.start_time DESC"]
)
parent = next(run for run in runs if run.data.tags.get("kind") == "tuning")
print(sum(run.data.tags.get("mlflow.parentRunId") == parent.info.run_id for run in runs))
"""


def check_tuning(project: Path, trials: int, output: str) -> None:
    """What `make tune` must leave: one nested run per trial, the Pareto picture, a params diff."""
    counted = subprocess.run(
        [str(project / ".venv" / "bin" / "python"), "-c", COUNT_TRIAL_RUNS],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[-1]
    picture = project / "reports" / "tuning" / "pareto.png"
    print(f"==> tune left {counted} nested MLflow runs, {picture.stat().st_size} bytes of Pareto picture")
    if int(counted) != trials:
        sys.exit(f"bench/track: {trials} trials left {counted} nested MLflow runs")
    if "--- a/ml/params.yaml" not in output and "already holds the chosen settings" not in output:
        sys.exit(f"bench/track: the tune output shows no params diff:\n{output}")


def main() -> int:
    sys.stdout.reconfigure(line_buffering=True)  # progress lines reach run_all's log as they happen
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    project = args.project.resolve()
    mlops = str(project / ".venv" / "bin" / "mlops")
    dropped = ("MLFLOW_TRACKING_URI", "TRIALS", "TIMEOUT", "JOBS")
    base = {k: v for k, v in os.environ.items() if k not in dropped}
    seconds: dict[str, list[float]] = {"off": [], "on": []}
    recorded: list[float] = []
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    byte_compile(project)
    adopted = adopt_orphans()
    if not adopted:
        print("==> note: cannot adopt the detached logger here: CPU figures leave it out", flush=True)
    for round_number in range(1, args.rounds + 1):
        for switch in ("off", "on"):
            cpu_before, started = children_cpu(), time.perf_counter()
            took, _, _ = timed([mlops, "train"], project, {**base, "MLFLOW_TRACKING": switch})
            line = f"train, tracking {switch}: {took:.1f} s"
            if switch == "on":
                recorded.append(until_recorded(project, started))
                line += f", run.json after {recorded[-1]:.1f} s"
            reap_orphans()
            used = children_cpu() - cpu_before
            seconds[switch].append(took)
            cpu[switch].append(used)
            print(f"==> round {round_number}/{args.rounds}: {line} ({used:.1f} s CPU)")
    off, on = statistics.median(seconds["off"]), statistics.median(seconds["on"])
    until_run = statistics.median(recorded)
    cpu_off, cpu_on = statistics.median(cpu["off"]), statistics.median(cpu["on"])

    params = project / "ml" / "params.yaml"
    kept = params.read_text()
    (project / "artifacts" / "mlflow" / "optuna.db").unlink(missing_ok=True)
    print(f"==> tune: {args.trials} trials, {args.jobs} job(s) (one line per trial in the log)", flush=True)
    try:
        wall, output, _ = timed(
            [mlops, "tune", "--trials", str(args.trials), "--jobs", str(args.jobs)],
            project,
            {**base, "MLFLOW_TRACKING": "on", "CI": "1"},
        )
    finally:
        params.write_text(kept)
    check_tuning(project, args.trials, output)
    found = re.search(r"tuning \S+: .*: done in ([0-9.]+)s", output)
    if not found:
        sys.exit(f"bench/track: the tune output has no timing line:\n{output}")
    search = float(found.group(1))
    result = {
        "rounds": args.rounds,
        "train_seconds": seconds,
        "train_off_median_s": off,
        "train_on_median_s": on,
        "tracking_overhead_pct": 100 * (on - off) / off,
        "until_run_json_seconds": recorded,
        "until_run_json_median_s": until_run,
        "until_run_json_overhead_pct": 100 * (until_run - off) / off,
        "cpu_includes_logger": adopted,
        "train_cpu_seconds": cpu,
        "train_cpu_off_median_s": cpu_off,
        "train_cpu_on_median_s": cpu_on,
        "tracking_cpu_overhead_pct": 100 * (cpu_on - cpu_off) / cpu_off,
        "trials": args.trials,
        "jobs": args.jobs,
        "tune_search_s": search,
        "tune_wall_s": wall,
        "trials_per_minute": 60 * args.trials / search,
        "trains_per_minute": 60 / off,
        "cores": len(os.sched_getaffinity(0)),
        "load_average_after": os.getloadavg()[0],
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "result.json").write_text(json.dumps(result, indent=2))
    print("| figure | value | baseline | ratio |")
    print("|---|---:|---:|---:|")
    print(f"| train with tracking on, what the user waits for (median of {args.rounds}) | {on:.1f} s | "
          f"{off:.1f} s off | {result['tracking_overhead_pct']:+.1f} % |")  # fmt: skip
    print(f"| train with tracking on, until run.json exists (train + recording) | {until_run:.1f} s | "
          f"{off:.1f} s off | {result['until_run_json_overhead_pct']:+.1f} % |")  # fmt: skip
    logger = "logger included" if adopted else "logger NOT included"
    print(f"| train CPU with tracking on ({logger}, median of {args.rounds}) | {cpu_on:.1f} s | "
          f"{cpu_off:.1f} s off | {result['tracking_cpu_overhead_pct']:+.1f} % |")  # fmt: skip
    ratio = result["trials_per_minute"] / result["trains_per_minute"]
    print(f"| tune: trials per minute ({args.jobs} job(s)) | {result['trials_per_minute']:.2f} | "
          f"{result['trains_per_minute']:.2f} trains/min | {ratio:.2f}x |")  # fmt: skip
    met = "met" if result["tracking_overhead_pct"] < 10 else "NOT met"
    print(f"goal, tracking overhead on what `make train` makes a user wait under 10 %: {met} "
          f"({result['tracking_overhead_pct']:+.1f} %)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
