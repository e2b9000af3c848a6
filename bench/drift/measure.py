"""Time the drift check on 1,000,000 captured rows; runs inside a generated project (its venv, its root).

Called by bench/drift/run.py. Steps, each timed on its own:
  read      monitoring.capture.read_window over the whole capture store (the baseline: I/O + parse)
  scipy     the per-feature tests with the scipy backend (fit on the reference + check)
  alibi     the same with alibi-detect's TabularDrift (its import timed apart)
  full      `mlops drift` in a fresh process, as `make drift` runs it (imports,
            read, both kinds of drift, performance, bias, decision, new snapshot + validation
            when it says retrain, reports), per backend
  compacted the capture after `make compact` (each day one Parquet file): the read and the
            full scipy check again, which must find the same drifted features
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import numpy as np
import orjson
from data_pipelines import example
from governance.core import policy as policy_file
from governance.core.capture import feedback_line, prediction_line
from governance.core.contract import load
from governance.core.paths import PATHS
from monitoring import compact, reference
from monitoring.capture import read_window
from monitoring.detectors import make_detector

START = datetime(2024, 6, 1, tzinfo=UTC)


def clean(value: object) -> object:
    if value is None or (isinstance(value, float) and value != value):
        return None
    return value


def write_capture(root: Path, rows: int, seed: int, drift: float, streams: int, labelled: float) -> float:
    """Capture files as serving writes them (predictions by day, one file per stream), feedback included."""
    contract = load()
    frame = example.generate(rows, seed=seed, covariate_drift=drift, start=START)
    champion, _ = reference.champion(PATHS)
    model = reference.model_path(PATHS, champion) if champion else None
    scores = (
        reference.model_scores(model, frame, contract).probabilities[:, contract.target.positive_index]
        if model and model.is_file()
        else np.random.default_rng(seed).random(rows)
    )
    names = contract.feature_names
    sensitive = contract.sensitive.name if contract.sensitive else None
    columns = {name: frame[name].astype(object).where(frame[name].notna(), None).tolist() for name in names}
    groups = frame[sensitive].astype(object).tolist() if sensitive else [None] * rows
    truth = frame[contract.target.name].astype(int).tolist()
    rng = np.random.default_rng(seed)
    has_label = rng.random(rows) < labelled
    step = timedelta(days=4) / rows
    files: dict[Path, list[bytes]] = {}
    dumps = orjson.dumps
    for index in range(rows):
        moment = START + step * index
        stream = f"bench-{index % streams}-0"
        request, row = f"{stream}-{index // (10 * streams)}", (index // streams) % 10
        score = float(scores[index])
        line = dumps(
            prediction_line(
                request_id=request,
                row=row,
                timestamp=moment.isoformat(timespec="microseconds"),
                model_name="bench",
                model_version="bench",
                features={name: clean(columns[name][index]) for name in names},
                sensitive={sensitive: groups[index]} if sensitive else {},
                label=int(score >= 0.5),
                scores=[1.0 - score, score],
            )
        )
        files.setdefault(root / f"date={moment.date()}" / f"{stream}.jsonl", []).append(line)
        if has_label[index]:
            later = moment + timedelta(hours=30)
            feedback = dumps(
                feedback_line(
                    request_id=request,
                    row=row,
                    label=truth[index],
                    timestamp=later.isoformat(timespec="microseconds"),
                )
            )
            files.setdefault(root / f"date={later.date()}" / f"{stream}.jsonl", []).append(feedback)
    size = 0
    for path, lines in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as handle:
            handle.write(b"\n".join(lines) + b"\n")
        size += path.stat().st_size
    return size / 1e6


def timed(results: dict[str, float], name: str, action):
    """Wall seconds, and CPU seconds of this process (all threads), which other load does not inflate."""
    started, cpu = time.perf_counter(), time.process_time()
    value = action()
    results[name] = time.perf_counter() - started
    results[f"{name} (CPU s)"] = time.process_time() - cpu
    print(f"  {name:<34} {results[name]:7.2f} s", flush=True)
    return value


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    capture = args.out / "capture"
    results: dict[str, float] = {}
    contract, policy = load(), policy_file.load()
    if not capture.exists():
        print(f"generating {args.rows} captured rows (not timed) ...", flush=True)
        started = time.perf_counter()
        size = write_capture(capture, args.rows, seed=11, drift=0.5, streams=8, labelled=0.3)
        print(f"  {size:.0f} MB of JSON lines in {time.perf_counter() - started:.0f} s", flush=True)
    champion, _ = reference.champion(PATHS)
    ref = reference.load_reference(PATHS, champion)
    print(f"reference: snapshot {ref.snapshot_id} ({len(ref.frame)} rows); timings:", flush=True)
    window = timed(results, "read window (baseline)", lambda: read_window(str(capture), contract=contract))
    rows = len(window)

    def tests(backend: str) -> object:
        return (
            make_detector(backend, contract, policy.drift.p_value, policy.drift.correction)
            .fit(ref.frame)
            .check(window)
        )

    timed(results, "feature drift, scipy backend", lambda: tests("scipy"))
    timed(results, "alibi-detect import", lambda: __import__("alibi_detect.cd"))
    timed(results, "feature drift, alibi backend", lambda: tests("alibi"))
    outcome = {}
    for backend in ("scipy", "alibi"):
        # A fresh process, as `make drift` runs it: interpreter start and every import are included.
        command = [
            sys.executable, "-m", "governance.cli", "--quiet", "drift", "--capture-uri", str(capture),
            "--since", "1970-01-01T00:00:00+00:00", "--detector", backend, "--no-history",
        ]  # fmt: skip
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        timed(results, f"full check, {backend} backend", partial(subprocess.run, command, check=True))
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        # CPU seconds do not depend on what else the machine runs; wall seconds do.
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        results[f"full check, {backend} backend (CPU s)"] = cpu
        print(f"  {'  of which CPU time':<34} {cpu:7.2f} s", flush=True)
        summary = json.loads((PATHS.drift_reports / "drift.json").read_text())
        outcome[backend] = {
            "status": summary["decision"]["status"],
            "drifted": summary["drift"]["drifted_features"] if summary.get("drift") else None,
            "timings": summary["timings"],
        }
    # The same window after `make compact` (monitoring/compact.py): each finished day one Parquet file.
    compacted = args.out / "capture-compacted"
    if not compacted.exists():
        shutil.copytree(capture, compacted)
        timed(
            results, "compact (once per finished day)", lambda: compact.run(str(compacted), contract=contract)
        )
    timed(results, "read window, compacted", lambda: read_window(str(compacted), contract=contract))
    command = [
        sys.executable, "-m", "governance.cli", "--quiet", "drift", "--capture-uri", str(compacted),
        "--since", "1970-01-01T00:00:00+00:00", "--detector", "scipy", "--no-history",
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    timed(results, "full check, scipy backend, compacted", partial(subprocess.run, command, check=True))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    results["full check, scipy backend, compacted (CPU s)"] = cpu
    summary = json.loads((PATHS.drift_reports / "drift.json").read_text())
    outcome["scipy, compacted"] = {
        "status": summary["decision"]["status"],
        "drifted": summary["drift"]["drifted_features"] if summary.get("drift") else None,
        "timings": summary["timings"],
    }
    if outcome["scipy, compacted"]["drifted"] != outcome["scipy"]["drifted"]:
        raise SystemExit("bench/drift: the compacted window gave another decision than the JSON lines")
    print(json.dumps(outcome, indent=2), flush=True)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    (args.out / "result.json").write_text(
        json.dumps({"rows": rows, "cores": cores, "seconds": results, "outcome": outcome}, indent=2) + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
