"""`make bench`: every benchmark in bench/, on one shared baked project, in one table.

Why one runner: each figure only means something next to its baseline measured on the
same machine in the same run (other jobs on a shared machine move absolute numbers a lot,
ratios much less). So this bakes the template's defaults once (build/bench/shared/),
installs, trains and registers there, then runs each benchmark against that project and
prints one table: figure, its baseline, the ratio.

- serving (bench/serve): the onnxruntime service vs scikit-learn + pandas in FastAPI, and the
  same service with shadow scoring on vs off;
- image size (bench/image): the serving image vs a scikit-learn-based image, same base;
- drift check on 1,000,000 captured rows (bench/drift): the whole check vs reading the
  window alone;
- the PR pipeline under act (bench/act): `make ci` time to green, warm (and cold), vs the
  same make targets run directly;
- explanations (bench/explain): `make train`'s permutation importance and partial dependence
  step vs the rest of its work on the same snapshot;
- experiment tracking (bench/track): `make train` with an MLflow run vs without, and
  `make tune` trials per minute vs plain training runs per minute;
- batch scoring of 10,000,000 rows (bench/batch), embedded and on a local Dask cluster, vs
  pandas + scikit-learn predict_proba on the same rows (--batch-rows for a shorter run).

Usage: make bench   (or: .venv/bin/python bench/run_all.py [--only serve,image,drift,act,explain,track,batch])
Needs a Docker-API engine for the image and act benchmarks; scripts/container-engine.sh
gives one where Docker is missing. Results: build/bench/results.json and results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import demo_engine  # the engine finder `make demo` uses (scripts/demo_engine.py)

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "build" / "bench"

BENCHES = ("serve", "image", "drift", "act", "explain", "track", "batch")
DROPPED = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "VIRTUAL_ENV", "CAPTURE_URI", "IMAGE", "TAG")


class BenchError(RuntimeError):
    """A benchmark failed or printed something this runner cannot read."""


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    memory = next(
        (
            f"{int(line.split()[1]) / 2**20:.0f} GiB"
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        ),
        "? GiB",
    )
    return (
        f"{len(os.sched_getaffinity(0))} cores ({cpu}), {memory}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def run(command: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT) -> str:
    """Run one benchmark with its output in a log (and echoed); raise BenchError when it fails."""
    print(f"==> {' '.join(command)}  (log: {log.relative_to(ROOT)})", flush=True)
    started = time.perf_counter()
    lines = []
    with log.open("w") as handle:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert process.stdout is not None
        for line in process.stdout:
            handle.write(line)
            lines.append(line)
            if line.startswith(("==>", "|", "bench/")) or "round" in line:
                print(f"    {line.rstrip()}", flush=True)
        code = process.wait()
    print(f"    exit {code} in {time.perf_counter() - started:.0f} s", flush=True)
    if code != 0:
        raise BenchError(f"{' '.join(command)} failed with exit code {code} (log: {log})")
    return "".join(lines)


def shared_project(env: dict[str, str]) -> Path:
    """The defaults, baked with git (act needs a commit), installed, trained and registered."""
    out = WORK / "shared"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cookiecutter = str(ROOT / ".venv" / "bin" / "cookiecutter")
    subprocess.run([cookiecutter, "--no-input", "-o", str(out), str(ROOT), "git_init=yes"], check=True)
    project = next(path for path in out.iterdir() if path.is_dir())
    log = WORK / "shared-setup.log"
    run(["make", "install", "data", "train", "register"], env, log, cwd=project)
    return project


def number(text: str) -> float:
    return float(text.replace(",", ""))


def serve_rows(output: str) -> list[dict]:
    """Rows of bench/serve's Markdown table: server, rows/request, requests/s, ..., CPU ms."""
    found = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[1].isdigit():
            found[(cells[0], int(cells[1]))] = {
                "rps": number(cells[2]),
                "p50_ms": number(cells[4]),
                "p99_ms": number(cells[5]),
                "cpu_ms": number(cells[6]),
            }
    ours = {rows: value for (name, rows), value in found.items() if "onnxruntime" in name}
    theirs = {rows: value for (name, rows), value in found.items() if "scikit-learn" in name}
    if not ours or set(ours) != set(theirs):
        raise BenchError("bench/serve printed no comparable table")
    table = []
    for rows in sorted(ours):
        table.append(
            {
                "figure": f"serving, {rows} row(s)/request: requests/s (onnxruntime service)",
                "value": ours[rows]["rps"],
                "baseline": "scikit-learn + pandas in FastAPI, same server settings",
                "baseline_value": theirs[rows]["rps"],
                "ratio": ours[rows]["rps"] / theirs[rows]["rps"],
                "meaning": "x the throughput",
                "unit": "req/s",
            }
        )
        table.append(
            {
                "figure": f"serving, {rows} row(s)/request: p99 latency",
                "value": ours[rows]["p99_ms"],
                "baseline": "the same baseline's p99",
                "baseline_value": theirs[rows]["p99_ms"],
                "ratio": theirs[rows]["p99_ms"] / ours[rows]["p99_ms"],
                "meaning": "x lower",
                "unit": "ms",
            }
        )
        table.append(
            {
                "figure": f"serving, {rows} row(s)/request: server CPU per request",
                "value": ours[rows]["cpu_ms"],
                "baseline": "the same baseline's CPU per request",
                "baseline_value": theirs[rows]["cpu_ms"],
                "ratio": theirs[rows]["cpu_ms"] / ours[rows]["cpu_ms"],
                "meaning": "x less CPU",
                "unit": "ms",
            }
        )
    return table + shadow_rows(found, ours)


def shadow_rows(found: dict, off: dict) -> list[dict]:
    """Shadow scoring's cost: the same service with a challenger (SHADOW_MODEL_PATH) against without.

    The issue's goal: at most 10 % lower throughput and at most 10 % higher p99 with shadow on.
    """
    on = {rows: value for (name, rows), value in found.items() if "shadow on" in name}
    table = []
    for rows in sorted(set(on) & set(off)):
        table.append(
            {
                "figure": f"serving with shadow scoring on, {rows} row(s)/request: requests/s",
                "value": on[rows]["rps"],
                "baseline": "the same service, shadow off, same run",
                "baseline_value": off[rows]["rps"],
                "ratio": on[rows]["rps"] / off[rows]["rps"],
                "meaning": "x the throughput (goal: at least 0.90x)",
                "unit": "req/s",
            }
        )
        table.append(
            {
                "figure": f"serving with shadow scoring on, {rows} row(s)/request: p99 latency",
                "value": on[rows]["p99_ms"],
                "baseline": "the same service's p99, shadow off",
                "baseline_value": off[rows]["p99_ms"],
                "ratio": on[rows]["p99_ms"] / off[rows]["p99_ms"],
                "meaning": "x the p99 (goal: at most 1.10x)",
                "unit": "ms",
            }
        )
    return table


def image_rows() -> list[dict]:
    sizes = json.loads((WORK / "image" / "result.json").read_text())["sizes_mb"]
    base, ours, theirs = sizes.values()
    return [
        {
            "figure": "serving image size (onnxruntime)",
            "value": ours,
            "baseline": "scikit-learn + pandas + joblib image, same base and build",
            "baseline_value": theirs,
            "ratio": theirs / ours,
            "meaning": "x smaller",
            "unit": "MB",
        },
        {
            "figure": "serving image: MB added to the base image",
            "value": ours - base,
            "baseline": "what the scikit-learn image adds",
            "baseline_value": theirs - base,
            "ratio": (theirs - base) / (ours - base),
            "meaning": "x less added",
            "unit": "MB",
        },
    ]


def drift_rows(rows: int) -> list[dict]:
    result = json.loads((WORK / "drift" / f"rows-{rows}" / "result.json").read_text())
    seconds = result["seconds"]
    baseline = seconds["read window (baseline)"]
    return (
        [
            {
                "figure": f"drift check on {rows:,} captured rows, {backend} backend (wall)",
                "value": seconds[f"full check, {backend} backend"],
                "baseline": "reading the window alone (parse JSON lines, join labels)",
                "baseline_value": baseline,
                "ratio": seconds[f"full check, {backend} backend"] / baseline,
                "meaning": "x the read time",
                "unit": "s",
            }
            for backend in ("scipy", "alibi")
        ]
        + [
            {
                "figure": f"drift check on {rows:,} captured rows after make compact, scipy backend (wall)",
                "value": seconds["full check, scipy backend, compacted"],
                "baseline": "the same check on the JSON lines (above)",
                "baseline_value": seconds["full check, scipy backend"],
                "ratio": seconds["full check, scipy backend"]
                / seconds["full check, scipy backend, compacted"],
                "meaning": "x faster",
                "unit": "s",
            },
            {
                "figure": f"reading {rows:,} captured rows after make compact (Parquet days)",
                "value": seconds["read window, compacted"],
                "baseline": "reading the JSON lines (parse, join labels)",
                "baseline_value": baseline,
                "ratio": baseline / seconds["read window, compacted"],
                "meaning": "x faster",
                "unit": "s",
            },
        ]
        + [
            {
                "figure": f"drift check on {outcome['rows']:,} captured rows ({name}), peak RSS "
                f"{outcome['peak_rss_mb']:.0f} MiB (wall)",
                "value": outcome["wall_s"],
                "baseline": "of it: waiting for the retraining snapshot (built by a worker during the plots)",
                "baseline_value": outcome["timings"].get("dataset_s", 0.0),
                "ratio": outcome["timings"].get("dataset_s", 0.0) / outcome["wall_s"],
                "meaning": "share of the wall time",
                "unit": "s",
            }
            for name, outcome in result["outcome"].items()
            if "compacted" in name
        ]
    )


def batch_rows(rows: int) -> list[dict]:
    result = json.loads((WORK / "batch" / f"rows-{rows}" / "result.json").read_text())
    base = result["baseline"]
    table = []
    for name in ("embedded", "dask-local"):
        way = result[name]
        table.append(
            {
                "figure": f"batch scoring of {rows:,} rows, make score {name}: rows/s",
                "value": way["rows_per_second"],
                "baseline": "pandas + scikit-learn predict_proba on the same rows",
                "baseline_value": base["rows_per_second"],
                "ratio": way["rows_per_second"] / base["rows_per_second"],
                "meaning": "x the rows/s",
                "unit": "rows/s",
            }
        )
        table.append(
            {
                "figure": f"batch scoring of {rows:,} rows, make score {name}: peak RSS (process tree)",
                "value": way["peak_rss_mb"],
                "baseline": "the same baseline's peak RSS",
                "baseline_value": base["peak_rss_mb"],
                "ratio": base["peak_rss_mb"] / way["peak_rss_mb"],
                "meaning": "x less memory",
                "unit": "MiB",
            }
        )
    if "ceiling" in result:  # what no scorer of this model can beat: is the goal reachable at all?
        table.append(
            {
                "figure": "batch scoring ceiling: session.run alone on pre-encoded rows, every core",
                "value": result["ceiling"]["rows_per_second"],
                "baseline": "pandas + scikit-learn predict_proba on the same rows",
                "baseline_value": base["rows_per_second"],
                "ratio": result["ceiling"]["rows_per_second"] / base["rows_per_second"],
                "meaning": "x the rows/s",
                "unit": "rows/s",
            }
        )
    return table


def act_rows() -> list[dict]:
    result = json.loads((WORK / "act" / "result.json").read_text())
    rows = []
    for label in ("warm", "cold"):
        act, direct = result[f"act_{label}"], result[f"direct_{label}"]["seconds"]
        if not act["green"]:
            raise BenchError(f"make ci ({label}) was not green: {act['jobs']}")
        rows.append(
            {
                "figure": f"PR pipeline under act (make ci), time to green, {label}",
                "value": act["seconds"],
                "baseline": f"the same make targets run directly, no act ({label})",
                "baseline_value": direct,
                "ratio": act["seconds"] / direct,
                "meaning": "x the direct time",
                "unit": "s",
            }
        )
    return rows


def explain_rows() -> list[dict]:
    result = json.loads((WORK / "explain" / "result.json").read_text())
    seconds, size = result["seconds"], f"{result['features']} columns, {result['test_rows']} test rows"
    return [
        {
            "figure": f"make train's explanations ({size})",
            "value": seconds["explain"],
            "baseline": "the rest of make train in the same process (fit, export, evaluate, parity, gates)",
            "baseline_value": seconds["rest of train (baseline)"],
            "ratio": seconds["explain"] / seconds["rest of train (baseline)"],
            "meaning": "x the rest of train",
            "unit": "s",
        }
    ]


def track_rows() -> list[dict]:
    result = json.loads((WORK / "track" / "result.json").read_text())
    return [
        {
            "figure": "`make train` with an MLflow run (tracking overhead, goal < 10 %)",
            "value": result["train_on_median_s"],
            "baseline": "the same `make train` with MLFLOW_TRACKING=off",
            "baseline_value": result["train_off_median_s"],
            "ratio": result["train_on_median_s"] / result["train_off_median_s"],
            "meaning": "x the untracked time",
            "unit": "s",
        },
        {
            "figure": "`make train` until its MLflow run is recorded (run.json, by the background logger)",
            "value": result["until_run_json_median_s"],
            "baseline": "the same `make train` with MLFLOW_TRACKING=off",
            "baseline_value": result["train_off_median_s"],
            "ratio": result["until_run_json_median_s"] / result["train_off_median_s"],
            "meaning": "x the untracked time",
            "unit": "s",
        },
        {
            "figure": "CPU of `make train` with an MLflow run (the logger process included)",
            "value": result["train_cpu_on_median_s"],
            "baseline": "the same `make train`'s CPU with MLFLOW_TRACKING=off",
            "baseline_value": result["train_cpu_off_median_s"],
            "ratio": result["train_cpu_on_median_s"] / result["train_cpu_off_median_s"],
            "meaning": "x the untracked CPU",
            "unit": "s",
        },
        {
            "figure": f"`make tune`: trials per minute ({result['jobs']} job(s), {result['cores']} cores)",
            "value": result["trials_per_minute"],
            "baseline": "plain `make train` runs per minute (tracking off)",
            "baseline_value": result["trains_per_minute"],
            "ratio": result["trials_per_minute"] / result["trains_per_minute"],
            "meaning": "x as many trials as trainings",
            "unit": "/min",
        },
    ]


def render(rows: list[dict], header: str) -> str:
    lines = [
        header,
        "",
        "| figure | value | baseline (same run) | baseline value | ratio |",
        "|---|---:|---|---:|---:|",
    ]
    for row in rows:
        unit = row["unit"]
        value = f"{row['value']:,.0f} {unit}" if row["value"] >= 100 else f"{row['value']:.2f} {unit}"
        base = row["baseline_value"]
        base_text = f"{base:,.0f} {unit}" if base >= 100 else f"{base:.2f} {unit}"
        ratio = f"{row['ratio']:.2f}{row['meaning']}"
        lines.append(f"| {row['figure']} | {value} | {row['baseline']} | {base_text} | {ratio} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(BENCHES), help=f"comma-separated subset of {BENCHES}")
    parser.add_argument("--drift-rows", type=int, default=1_000_000)
    parser.add_argument("--batch-rows", type=int, default=10_000_000, help="rows batch scoring scores")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(BENCHES))
    if unknown:
        parser.error(f"--only: unknown benchmark(s) {unknown}; choose from {BENCHES}")
    WORK.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    load_before = os.getloadavg()
    env = {k: v for k, v in os.environ.items() if k not in DROPPED and not k.startswith("GITHUB_")}
    env["GX_ANALYTICS_ENABLED"] = "false"
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env['PATH']}"
    env.setdefault("UV", str(ROOT / ".venv" / "bin" / "uv"))
    engine = demo_engine.find(ROOT, env, lambda text: print(text, file=sys.stderr))
    needs_engine = {"image", "act"} & set(chosen)
    if needs_engine and not engine.available:
        raise SystemExit(f"make bench: {sorted(needs_engine)} need a container engine: {engine.note}")
    env.update(engine.env)
    print(f"make bench on {machine()}; engine: {engine.note}", flush=True)
    project = shared_project(env)
    python = str(ROOT / ".venv" / "bin" / "python")
    rows: list[dict] = []
    failures: list[str] = []
    steps = {
        "serve": lambda: serve_rows(
            run([python, "bench/serve/run.py", "--project", str(project)], env, WORK / "serve.log")
        ),
        "image": lambda: (
            run(
                [python, "bench/image/run.py", "--project", str(project)]
                + (["--base-image", engine.env["BASE_IMAGE"]] if engine.env.get("BASE_IMAGE") else []),
                env,
                WORK / "image.log",
            ),
            image_rows(),
        )[1],
        "drift": lambda: (
            run(
                [python, "bench/drift/run.py", "--project", str(project), "--rows", str(args.drift_rows)],
                env,
                WORK / "drift.log",
            ),
            drift_rows(args.drift_rows),
        )[1],
        "batch": lambda: (
            run(
                [python, "bench/batch/run.py", "--project", str(project), "--rows", str(args.batch_rows)],
                env,
                WORK / "batch.log",
            ),
            batch_rows(args.batch_rows),
        )[1],
        "act": lambda: (
            run([python, "bench/act/run.py", "--project", str(project)], env, WORK / "act.log"),
            act_rows(),
        )[1],
        "explain": lambda: (
            run([python, "bench/explain/run.py", "--project", str(project)], env, WORK / "explain.log"),
            explain_rows(),
        )[1],
        "track": lambda: (
            run([python, "bench/track/run.py", "--project", str(project)], env, WORK / "track.log"),
            track_rows(),
        )[1],
    }
    for name in chosen:
        try:
            rows += steps[name]()
        except (BenchError, OSError, ValueError, KeyError, subprocess.SubprocessError) as error:
            failures.append(f"{name}: {error}")
            print(f"bench {name} FAILED: {error}", file=sys.stderr, flush=True)
    load = ", ".join(f"{value:.1f}" for value in (*load_before, *os.getloadavg()[:1]))
    header = (
        f"Measured {time.strftime('%Y-%m-%d')} on {machine()}; engine: {engine.note}; "
        f"load average before (1/5/15 min) and after: {load}; all benchmarks took "
        f"{(time.perf_counter() - started) / 60:.0f} min."
    )
    text = render(rows, header)
    print("\n" + text)
    (WORK / "results.md").write_text(text + "\n")
    (WORK / "results.json").write_text(
        json.dumps({"header": header, "rows": rows, "failures": failures}, indent=2)
    )
    if failures:
        print("\nmake bench: FAILED: " + "; ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
