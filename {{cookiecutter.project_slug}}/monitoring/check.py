"""One scheduled drift run, end to end.

captured window -> reference (champion + its training snapshot) -> per-feature and score
drift -> performance and bias -> policy decision -> (if retrain) new snapshot, validated ->
reports -> one line of monitoring history. Each step is a module of its own; this one only
orders them and collects what they found into the summary the reports and the retraining
pull request are made from.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from data_pipelines.contract import Contract
from monitoring import dataset, reference, report
from monitoring.capture import capture_uri, read_window
from monitoring.config import Policy, Settings
from monitoring.decision import append_history, decide
from monitoring.detectors import make_detector, score_drift
from monitoring.performance import evaluate


@dataclass(frozen=True)
class Options:
    uri: str | None = None
    since: str | None = None
    until: str | None = None
    last_n: int | None = None
    days: float | None = None
    reference: str | None = None  # a snapshot id or path instead of the champion's
    record: bool = True  # append to the monitoring history


def progress(message: str) -> None:
    print(f"drift: {message}", file=sys.stderr, flush=True)


def _window_bounds(options: Options, settings: Settings) -> tuple[Any, Any, int | None]:
    """CLI flags win over monitoring.yaml; a time window wins over a row count."""
    since, until, last_n = options.since, options.until, options.last_n
    days = options.days if options.days is not None else (None if (since or last_n) else settings.days)
    if days is not None and since is None:
        since = datetime.now(UTC) - timedelta(days=days)
    if since is None and until is None and last_n is None:
        last_n = settings.last_n
    return since, until, last_n


def run(options: Options, settings: Settings, policy: Policy, contract: Contract) -> dict[str, Any]:
    """Run the check and write its reports; returns the summary (also written as drift.json)."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    uri = capture_uri(options.uri)
    since, until, last_n = _window_bounds(options, settings)
    # The reference first: without one there is nothing to compare, so fail before reading the window.
    champion, notes = reference.champion(root=settings.root)
    ref = reference.load_reference(champion, options.reference, root=settings.root)
    timings["reference_s"] = time.perf_counter() - started
    step = time.perf_counter()
    progress(f"reading the capture window from {uri}")
    window = read_window(uri, since=since, until=until, last_n=last_n, contract=contract)
    timings["read_window_s"] = time.perf_counter() - step
    labelled = int(window[contract.target.name].notna().sum()) if len(window) else 0
    progress(f"{len(window)} captured rows ({labelled} labelled)")
    summary: dict[str, Any] = {
        "run_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "detector": settings.detector,
        "policy": policy.to_dict(),
        "window": {
            "uri": uri,
            "rows": len(window),
            "labelled_rows": labelled,
            "start": window["timestamp"].min().isoformat() if len(window) else None,
            "end": window["timestamp"].max().isoformat() if len(window) else None,
            "since": str(since) if since else None,
            "until": str(until) if until else None,
            "last_n": last_n,
            "model_versions": sorted(str(v) for v in window["model_version"].dropna().unique())
            if len(window)
            else [],
        },
        "reference": ref.describe(),
        "drift": None,
        "score_drift": None,
        "performance": None,
        "dataset": None,
    }
    served = summary["window"]["model_versions"]
    if champion and served and served != [champion.version]:
        notes.append(
            f"the window was scored by model version(s) {', '.join(served)}, "
            f"the champion is {champion.version}"
        )
    reference_scores = None
    if len(window) < policy.min_window_rows:
        decision = decide(policy, len(window), None, None, None)
    else:
        step = time.perf_counter()
        progress(f"testing {len(contract.features)} features with the {settings.detector} backend")
        detector = make_detector(settings.detector, contract, policy.p_value, policy.correction).fit(
            ref.frame
        )
        drift = detector.check(window)
        timings["feature_drift_s"] = time.perf_counter() - step
        step = time.perf_counter()
        reference_scores, score_note = reference.reference_scores(champion, ref, contract)
        score = (
            score_drift(reference_scores, window["score"].to_numpy(), policy.p_value)
            if reference_scores is not None
            else None
        )
        if score_note:
            notes.append(score_note)
        timings["score_drift_s"] = time.perf_counter() - step
        step = time.perf_counter()
        performance = evaluate(
            window,
            contract,
            policy.primary_metric,
            policy.min_labelled_rows,
            champion.metrics if champion else None,
            reference.champion_bias_gap(champion, policy.bias_metric),
            policy.bias_metric,
        )
        timings["performance_s"] = time.perf_counter() - step
        decision = decide(policy, len(window), drift, score, performance)
        summary.update(
            drift=drift.to_dict(),
            score_drift=asdict(score) if score else None,
            performance=performance.to_dict(),
        )
    decision.notes[:0] = notes
    if decision.retrain:
        step = time.perf_counter()
        progress("building the new dataset snapshot from the labelled window and validating it")
        source = {
            "kind": "capture",
            "uri": uri,
            "start": summary["window"]["start"],
            "end": summary["window"]["end"],
            "model_versions": summary["window"]["model_versions"],
        }
        built = dataset.build(
            window,
            contract,
            source,
            reports=settings.reports.parent,
            snapshots=settings.root / "artifacts" / "snapshots",
            min_rows=policy.min_labelled_rows,
        )
        summary["dataset"] = built
        if not built["valid"]:
            decision.block(f"the new data is not trained on: {'; '.join(built['errors'][:5])}")
        timings["dataset_s"] = time.perf_counter() - step
    summary["decision"] = decision.to_dict()
    step = time.perf_counter()
    paths = report.write(
        summary, settings.reports, ref.frame, window if len(window) else None, contract, reference_scores
    )
    timings["report_s"] = time.perf_counter() - step
    timings["total_s"] = time.perf_counter() - started
    summary["timings"] = {key: round(value, 3) for key, value in timings.items()}
    summary["history_record"] = _history(summary)
    report.write_json(summary, paths["json"])
    if options.record:
        append_history(settings.history, summary["history_record"])
    progress(f"decision: {decision.status}; reports in {settings.reports}")
    return summary


def _history(summary: dict[str, Any]) -> dict[str, Any]:
    decision = summary["decision"]
    dataset_info = summary.get("dataset") or {}
    return {
        "run_at": summary["run_at"],
        "status": decision["status"],
        "reasons": decision["reasons"],
        "notes": decision["notes"],
        "detector": summary["detector"],
        "window": {key: summary["window"][key] for key in ("uri", "rows", "labelled_rows", "start", "end")},
        "reference": summary["reference"],
        "drifted_features": (summary.get("drift") or {}).get("drifted_features", []),
        "score_drift": (summary.get("score_drift") or {}).get("drifted"),
        "snapshot_id": (dataset_info.get("manifest") or {}).get("snapshot_id"),
        "dataset_valid": dataset_info.get("valid"),
    }
