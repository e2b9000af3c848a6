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
  no drift  a window of the same size without drift, compacted: the check as most scheduled runs
            see it (no retraining snapshot to build)
  scaled    with --scale K: the compacted window copied K times (ids made unique per copy), so
            K x rows captured rows without K x the generation time; the full scipy check on it
Every full check also reports its peak resident memory: the check's process and its snapshot
worker together (bench/shared.py says why sampled).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from data_pipelines import example
from governance.core import policy as policy_file
from governance.core.capture import feedback_line, prediction_line
from governance.core.contract import load
from governance.core.paths import PATHS
from monitoring import compact, reference
from monitoring.capture import read_window
from monitoring.detectors import make_detector

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/shared.py
from shared import measured_tree

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


def scaled_copy(compacted: Path, target: Path, copies: int) -> None:
    """The compacted window `copies` times over: copy k's prediction ids and request ids get the
    prefix `k-`, so every copy's predictions are distinct and still meet their own feedback."""
    for source in sorted(compacted.glob("date=*/*.parquet")):
        table = pq.read_table(source)
        for copy in range(copies):
            prefixed = table
            for name in ("prediction_id", "request_id"):
                column = pc.binary_join_element_wise(pa.scalar(f"{copy}-"), table[name], "")
                prefixed = prefixed.set_column(prefixed.schema.get_field_index(name), name, column)
            folder = target / source.parent.name
            folder.mkdir(parents=True, exist_ok=True)
            pq.write_table(prefixed, folder / f"{source.stem}-copy{copy:02d}.parquet")


def full_check(results: dict[str, float], name: str, capture: Path, backend: str) -> dict:
    """`mlops drift` in a fresh process, as `make drift` runs it (interpreter start and imports
    included): wall and CPU seconds, peak RSS, and what it decided."""
    command = [
        sys.executable, "-m", "governance.cli", "--quiet", "drift", "--capture-uri", str(capture),
        "--since", "1970-01-01T00:00:00+00:00", "--detector", backend, "--no-history",
    ]  # fmt: skip
    measured = measured_tree(command)
    results[name] = measured["wall_s"]
    if measured["returncode"] != 0:
        raise SystemExit(f"bench/drift: {' '.join(command)} failed with exit code {measured['returncode']}")
    # CPU seconds do not depend on what else the machine runs; wall seconds do.
    results[f"{name} (CPU s)"] = measured["cpu_s"]
    results[f"{name} (peak RSS MB)"] = measured["peak_rss_mb"]  # the check and its snapshot worker
    print(
        f"  {name:<34} {results[name]:7.2f} s, CPU {results[f'{name} (CPU s)']:.2f} s, "
        f"peak RSS {results[f'{name} (peak RSS MB)']:.0f} MiB",
        flush=True,
    )
    summary = json.loads((PATHS.drift_reports / "drift.json").read_text())
    return {
        "status": summary["decision"]["status"],
        "rows": summary["window"]["rows"],
        "drifted": summary["drift"]["drifted_features"] if summary.get("drift") else None,
        "timings": summary["timings"],
        "snapshot_rows": summary["dataset"]["rows"] if summary.get("dataset") else None,
        "wall_s": results[name],
        "peak_rss_mb": results[f"{name} (peak RSS MB)"],
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--scale", type=int, default=0, help="also check the compacted window copied K times")
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
    outcome = {
        backend: full_check(results, f"full check, {backend} backend", capture, backend)
        for backend in ("scipy", "alibi")
    }
    # The same window after `make compact` (monitoring/compact.py): each finished day one Parquet file.
    compacted = args.out / "capture-compacted"
    if not compacted.exists():
        shutil.copytree(capture, compacted)
        timed(
            results, "compact (once per finished day)", lambda: compact.run(str(compacted), contract=contract)
        )
    timed(results, "read window, compacted", lambda: read_window(str(compacted), contract=contract))
    name = "full check, scipy backend, compacted"
    outcome["scipy, compacted"] = full_check(results, name, compacted, "scipy")
    if outcome["scipy, compacted"]["drifted"] != outcome["scipy"]["drifted"]:
        raise SystemExit("bench/drift: the compacted window gave another decision than the JSON lines")
    # Most scheduled runs see no drift: the check decides without a snapshot, and its worker is
    # stopped unused. A window like the first, from the same generator without the covariate shift.
    steady = args.out / "capture-steady"
    if not steady.exists():
        print(f"generating {args.rows} captured rows without drift, compacted (not timed) ...", flush=True)
        write_capture(steady, args.rows, seed=12, drift=0.0, streams=8, labelled=0.3)
        compact.run(str(steady), contract=contract)
    name = "full check, scipy backend, compacted, no drift"
    outcome["scipy, compacted, no drift"] = full_check(results, name, steady, "scipy")
    if args.scale > 1:
        scaled = args.out / f"capture-compacted-x{args.scale}"
        if not scaled.exists():
            print(f"copying the compacted window {args.scale} times (not timed) ...", flush=True)
            scaled_copy(compacted, scaled, args.scale)
        name = f"full check, scipy backend, compacted x{args.scale}"
        outcome[f"scipy, compacted x{args.scale}"] = full_check(results, name, scaled, "scipy")
    print(json.dumps(outcome, indent=2), flush=True)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    (args.out / "result.json").write_text(
        json.dumps({"rows": rows, "cores": cores, "seconds": results, "outcome": outcome}, indent=2) + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
