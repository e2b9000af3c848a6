"""`make drift`: one scheduled drift run, as a list of named steps.

captured window -> reference (champion + its training snapshot) -> per-feature and score
drift -> performance and bias -> policy decision -> (if retrain) new snapshot, validated ->
reports -> one line of monitoring history. Each step is a function below (or a module of its
own); `run` only orders them and collects what they found into the `DriftSummary` that the
reports and the retraining pull request are made from.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from governance.core import policy as policy_file
from governance.core import progress
from governance.core.contract import Contract
from governance.core.contract import load as load_contract
from governance.core.paths import Paths
from governance.core.policy import Policy
from governance.core.records import (
    Decision,
    DriftResult,
    DriftSummary,
    FeatureDrift,
    MonitoringSettings,
    Performance,
    RegistryEntry,
    Window,
    write_json,
)
from monitoring import dataset, reference, report
from monitoring import engine as engines
from monitoring.capture import BAD_LINES, DUPLICATES, capture_uri, read_window
from monitoring.config import load_settings
from monitoring.decision import append_history, decide
from monitoring.detectors import make_detector, prediction_drift
from monitoring.performance import evaluate
from monitoring.predictions import describe, from_window, signal_columns
from monitoring.snapshot_worker import SnapshotWorker


@dataclass(frozen=True)
class Options:
    uri: str | None = None
    since: str | None = None
    until: str | None = None
    last_n: int | None = None
    days: float | None = None
    reference: str | None = None  # a snapshot id or path instead of the champion's
    record: bool = True  # append to the monitoring history
    detector: str | None = None  # alibi | scipy, instead of monitoring.yaml's


@dataclass
class Findings:
    """What the steps found; None where a step did not run (a window too small to judge)."""

    drift: DriftResult | None = None
    score: FeatureDrift | None = None
    per_class: tuple[FeatureDrift, ...] = ()  # multiclass: the per-class tests behind `score`
    performance: Performance | None = None
    reference_scores: np.ndarray | None = None  # the champion's prediction signal on the reference


class Timer:
    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.timings: dict[str, float] = {}

    def lap(self, name: str, since: float) -> float:
        now = time.perf_counter()
        self.timings[name] = round(now - since, 3)
        return now


def window_bounds(options: Options, settings: MonitoringSettings) -> tuple[Any, Any, int | None]:
    """CLI flags win over monitoring.yaml; a time window wins over a row count."""
    since, until, last_n = options.since, options.until, options.last_n
    days = options.days if options.days is not None else (None if (since or last_n) else settings.window.days)
    if days is not None and since is None:
        since = datetime.now(UTC) - timedelta(days=days)
    if since is None and until is None and last_n is None:
        last_n = settings.window.last_n
    return since, until, last_n


def describe_window(
    window: pd.DataFrame, contract: Contract, uri: str, bounds: tuple[Any, Any, int | None]
) -> Window:
    since, until, last_n = bounds
    rows = len(window)
    return Window(
        uri=uri,
        rows=rows,
        labelled_rows=int(window[contract.target.name].notna().sum()) if rows else 0,
        relabelled_rows=int(window["relabelled"].sum()) if rows else 0,
        start=window["timestamp"].min().isoformat() if rows else None,
        end=window["timestamp"].max().isoformat() if rows else None,
        since=str(since) if since else None,
        until=str(until) if until else None,
        last_n=last_n,
        model_versions=tuple(sorted(str(v) for v in window["model_version"].dropna().unique()))
        if rows
        else (),
    )


def relabel_note(count: int, relabel: str) -> str:
    kept = "first" if relabel == "first_wins" else "newest"
    return (
        f"{count} prediction(s) in the window got disagreeing labels through /feedback; the {kept} "
        f"label of each is used (policy feedback.relabel: {relabel}), every label stays in the capture"
    )


def examine_window(
    paths: Paths,
    backend: str,
    policy: Policy,
    contract: Contract,
    champion: RegistryEntry | None,
    ref: reference.Reference,
    window: pd.DataFrame,
    notes: list[str],
) -> Findings:
    """Feature drift, drift of the model's answers (monitoring/predictions.py), performance and bias."""
    findings = Findings()
    with progress.step(f"testing {len(contract.features)} features with the {backend} backend"):
        detector = make_detector(backend, contract, policy.drift.p_value, policy.drift.correction)
        findings.drift = detector.fit(ref.frame).check(window)
    with progress.step("score drift and performance"):
        findings.reference_scores, score_note = reference.reference_scores(paths, champion, ref, contract)
        if findings.reference_scores is not None:
            findings.score, findings.per_class = prediction_drift(
                findings.reference_scores,
                from_window(window, contract.target),
                signal_columns(contract.target),
                policy.drift.p_value,
                policy.drift.correction,
            )
        if score_note:
            notes.append(score_note)
        findings.performance = evaluate(window, contract, policy, champion)
    return findings


def hand_over_dataset(
    worker: SnapshotWorker,
    paths: Paths,
    window: pd.DataFrame,
    described: Window,
    contract: Contract,
    policy: Policy,
    ref: reference.Reference,
) -> None:
    """The retraining snapshot's rows to the worker (monitoring/snapshot_worker.py) before the
    decision: the window's labelled rows (the newest `retrain.max_window_rows`), validated there
    by the data pipeline's own suite at once, written as a snapshot with what the policy's
    `retrain.data` adds (monitoring/dataset.py) only when the decision is retrain."""
    rows = dataset.candidate(window, contract, policy.retrain.max_window_rows)
    source = {
        "kind": "capture",
        "uri": described.uri,
        "start": described.start,
        "end": described.end,
        "model_versions": list(described.model_versions),
    }
    job = {
        "root": str(paths.root),
        "labelled": rows.labelled,
        "notes": list(rows.notes),
        "source": source,
        "min_rows": policy.drift.min_labelled_rows,
        "choice": policy.retrain.data,
        "reference_id": ref.snapshot_id,
        "sliding_snapshots": policy.retrain.sliding_snapshots,
        "manifest": ref.manifest,
    }
    worker.submit(rows.batch, ref.frame, job)


def run(paths: Paths, options: Options, worker: SnapshotWorker | None = None) -> DriftSummary:
    """Run the check, write its reports and its history line; returns the summary (drift.json).

    `worker` builds a retraining snapshot (monitoring/snapshot_worker.py); started as early as the
    caller can (`mlops drift` starts it before importing this module), as it needs seconds to import.
    """
    if worker is not None:
        return check(paths, options, worker)
    with SnapshotWorker() as started:
        return check(paths, options, started)


def check(paths: Paths, options: Options, worker: SnapshotWorker) -> DriftSummary:
    """The steps in order; a retraining snapshot is built by `worker` while the plots are drawn."""
    timer = Timer()
    settings = load_settings(paths)
    backend = options.detector or settings.backend
    contract = load_contract(paths.contract)
    policy = policy_file.load(paths.policy, task=contract.task)
    uri = capture_uri(options.uri)
    bounds = window_bounds(options, settings)
    # The reference first: without one there is nothing to compare, so fail before reading the window.
    champion, notes = reference.champion(paths)
    ref = reference.load_reference(paths, champion, options.reference)
    step = timer.lap("reference_s", timer.started)
    engine = engines.choose()  # ENGINE / DASK_SCHEDULER_ADDRESS: where the capture files are parsed
    with (
        progress.step(f"reading the capture window from {uri} ({engine.describe()})"),
        engines.connect(engine) as client,
    ):
        window = read_window(
            uri,
            since=bounds[0],
            until=bounds[1],
            last_n=bounds[2],
            contract=contract,
            relabel=policy.feedback.relabel,
            client=client,
        )
    step = timer.lap("read_window_s", step)
    described = describe_window(window, contract, uri, bounds)
    if described.rows >= policy.drift.min_window_rows:  # validated in the worker while the tests run
        hand_over_dataset(worker, paths, window, described, contract, policy, ref)
    progress.note(f"{described.rows} captured rows ({described.labelled_rows} labelled)")
    if described.relabelled_rows:
        notes.append(relabel_note(described.relabelled_rows, policy.feedback.relabel))
    if window.attrs.get(BAD_LINES) or window.attrs.get(DUPLICATES):
        notes.append(
            f"capture: {window.attrs[BAD_LINES]} unreadable line(s) skipped, "
            f"{window.attrs[DUPLICATES]} repeated prediction line(s) kept once"
        )
    if champion and described.model_versions and list(described.model_versions) != [champion.version]:
        notes.append(
            f"the window was scored by model version(s) {', '.join(described.model_versions)}, "
            f"the champion is {champion.version}"
        )
    findings = Findings()
    if described.rows >= policy.drift.min_window_rows:
        findings = examine_window(paths, backend, policy, contract, champion, ref, window, notes)
        step = timer.lap("checks_s", step)
    decision: Decision = decide(
        policy,
        described.rows,
        findings.drift,
        findings.score,
        findings.performance,
        describe(contract.target),
    ).noted(notes)
    if decision.retrain:
        worker.commit()  # the worker keeps the validation and writes the snapshot during the plots
    else:
        worker.close()  # nothing to build: its core goes to the reports, the candidate leaves no trace
    summary = DriftSummary(
        run_at=datetime.now(UTC).isoformat(timespec="seconds"),
        detector=backend,
        policy={**policy.drift.model_dump(), **policy.retrain.model_dump()},
        window=described,
        reference=ref.describe(),
        drift=findings.drift,
        score_drift=findings.score,
        prediction_drift=findings.per_class,
        performance=findings.performance,
        decision=decision,
    )
    with progress.step("drawing the report's plots"):  # while the worker builds the snapshot
        images = report.plots(
            summary, ref.frame, window if described.rows else None, contract, findings.reference_scores
        )
    step = timer.lap("plots_s", step)
    if decision.retrain:
        with progress.step("building the new dataset snapshot from the labelled window and validating it"):
            built = worker.result()
        if not built.valid:
            decision = decision.blocked(f"the new data is not trained on: {'; '.join(built.errors[:5])}")
        summary = summary.model_copy(update={"dataset": built, "decision": decision})
        step = timer.lap("dataset_s", step)
    with progress.step("writing the reports"):
        report.write(summary, paths.drift_reports, images=images)
    timer.lap("report_s", step)
    timer.lap("total_s", timer.started)
    summary = summary.model_copy(update={"timings": timer.timings})
    write_json(summary, paths.drift_reports / report.JSON_NAME)  # again, now with the timings
    if options.record:
        append_history(paths.history, summary.history_record)
    progress.note(f"decision: {decision.status}; reports in {paths.relative(paths.drift_reports)}")
    return summary
