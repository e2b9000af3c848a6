"""Shadow scoring: a challenger model answers every scored request too, off the response path.

Why: a candidate model's answers on live traffic are the evidence a promotion needs (`make
compare` joins them with the champion's and with the labels fed back), and collecting them must
cost the clients nothing. So the request path only appends the request's already validated and
encoded feeds to a bounded list (under a lock, well under a microsecond) and answers with the
champion's result; one worker thread wakes every POLL_SECONDS (or when the list is half full),
scores everything waiting with the challenger in one call (onnxruntime releases the GIL while
it runs) and captures each row's answer as a `ShadowRecord` beside the champion's prediction.

Why batches and a timer instead of a queue that wakes the worker per request: on a busy server
each wake-up is a thread switch and a fight for the GIL with the event loop, which showed as a
higher p99; one model call for many small requests also costs a fraction of one call each. Each
request's `latency_ms` is therefore its rows' share of the call that scored it.

The captured scoring times (`latency_ms`, `champion_latency_ms`) are CPU time of the thread that
made the call, not wall time: this worker thread waits for the GIL while the event loop holds it
(up to the 5 ms switch interval, longer on a busy machine) and for a core, which the champion's
call on the request path waits for far less, so wall times made a challenger look up to 4x
slower than the same model (`make compare`'s latency rule rejected it in a loaded CI run). The
Prometheus histograms keep wall time: that is what a client waits for.

What it never does: delay or fail an answer. A full list drops the request's shadow rows and
counts them (`shadow_dropped_total{reason="queue_full"}`); a challenger that raises is counted
(`shadow_errors_total`, per request) and logged at most once per ERROR_LOG_SECONDS; a capture
buffer more than half full refuses shadow rows (app/capture.py), so the champion keeps the rest
of it. At shutdown the worker gets SHADOW_DRAIN_SECONDS to score what is waiting before capture
closes; what is left is dropped and counted (reason "shutdown").
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from app.capture import CaptureStore, CaptureUnavailable, NoCapture
from app.metrics import CHALLENGER, Metrics
from app.model import Model
from governance.core.encoding import Scores

log = logging.getLogger("app.shadow")
POLL_SECONDS = 0.01
ERROR_LOG_SECONDS = 60.0
DROP_REASONS = ("queue_full", "capture_full", "shutdown")

# What the service's answer mapping returns for a batch: class indices (None for regression),
# the answers (class values or numbers) and the class probabilities per row.
Answers = Callable[[Scores], tuple[list[int] | None, list[Any], list[list[float]]]]


class Job(NamedTuple):
    """One scored request waiting for the challenger: its feeds as the champion got them."""

    request_id: str
    feeds: dict[str, np.ndarray]
    rows: int
    champion_version: str
    champion_seconds: float  # CPU time of the champion's call (see the module's docstring)


class Shadow:
    """The challenger, the bounded list of requests waiting for it, and the worker thread."""

    def __init__(
        self,
        model: Model,
        answers: Answers,
        capture: CaptureStore | NoCapture,
        metrics: Metrics,
        queue_size: int,
    ) -> None:
        self.model = model
        self.answers = answers
        self.capture = capture
        self.scoring_metrics = metrics
        self.queue_size = queue_size
        self._waiting: list[Job] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.dropped = dict.fromkeys(DROP_REASONS, 0)
        self.errors = 0
        self.scored = 0
        self._last_report = float("-inf")
        self._unreported = 0

    # -- request path -------------------------------------------------------------------
    def submit(
        self, request_id: str, feeds: dict[str, np.ndarray], rows: int, champion_version: str, seconds: float
    ) -> None:
        """Offer a scored request to the challenger, or drop it (counted) when the list is full."""
        with self._lock:
            if self._closed:
                self.dropped["shutdown"] += 1
                return
            waiting = len(self._waiting)
            if waiting >= self.queue_size:
                self.dropped["queue_full"] += 1
                return
            self._waiting.append(Job(request_id, feeds, rows, champion_version, seconds))
        if waiting + 1 == self.queue_size // 2:
            self._wake.set()  # half full: score now rather than at the next tick

    @property
    def depth(self) -> int:
        return len(self._waiting)

    # -- worker -------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="shadow-scorer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(POLL_SECONDS)
            self._wake.clear()
            with self._lock:
                jobs, self._waiting = self._waiting, []
            if jobs:
                self._score(jobs)
            if self._stop.is_set() and not self._waiting:
                return

    def _score(self, jobs: list[Job]) -> None:
        """Score the jobs in one challenger call; capture and count each request's rows."""
        try:
            first = jobs[0].feeds
            feeds = (
                first
                if len(jobs) == 1
                else {name: np.concatenate([job.feeds[name] for job in jobs]) for name in first}
            )
            started, cpu = time.perf_counter(), time.thread_time()
            scores = self.model.predict(feeds)
            seconds, cpu_seconds = time.perf_counter() - started, time.thread_time() - cpu
            indices, answers, score_list = self.answers(scores)
        except Exception as error:  # a challenger's failure must never reach a client or stop the worker
            self._failed(error, len(jobs))
            return
        total, offset, now = len(answers), 0, time.time()
        for job in jobs:
            end = offset + job.rows
            share, cpu_share = (value * job.rows / max(total, 1) for value in (seconds, cpu_seconds))
            try:
                self.capture.record_shadow(
                    job.request_id,
                    now,
                    self.model.name,
                    self.model.version,
                    job.champion_version,
                    answers[offset:end],
                    score_list[offset:end],
                    cpu_share * 1000,
                    job.champion_seconds * 1000,
                )
            except CaptureUnavailable:
                with self._lock:
                    self.dropped["capture_full"] += 1
            else:
                rows_indices = indices[offset:end] if indices is not None else None
                self.scoring_metrics.observe_scoring(
                    CHALLENGER, self.model.version, share, rows_indices, job.rows
                )
                self.scored += 1
            offset = end

    def _failed(self, error: Exception, requests: int) -> None:
        """Count the failed requests; log at most once per ERROR_LOG_SECONDS, with how many went unlogged."""
        now = time.monotonic()
        with self._lock:
            self.errors += requests
            if now - self._last_report < ERROR_LOG_SECONDS:
                self._unreported += requests
                return
            unreported, self._unreported, self._last_report = self._unreported, 0, now
        log.error(
            "challenger %s version %s failed to score %d request(s) (%d more failures since the last report; "
            "clients are not affected): %s: %s",
            self.model.name,
            self.model.version,
            requests,
            unreported,
            type(error).__name__,
            str(error)[:300],
        )

    def close(self, timeout: float) -> None:
        """Stop taking requests; give the worker `timeout` seconds to score what waits, drop the rest."""
        with self._lock:
            self._closed = True
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            left, self._waiting = self._waiting, []
            self.dropped["shutdown"] += len(left)
        if left:
            log.warning(
                "shadow requests not scored within SHADOW_DRAIN_SECONDS=%g: %d dropped", timeout, len(left)
            )

    # -- metrics ------------------------------------------------------------------------
    def metrics(self) -> Iterator[Metric]:
        with self._lock:
            dropped, errors, depth = dict(self.dropped), self.errors, len(self._waiting)
        family = CounterMetricFamily(
            "shadow_dropped", "Requests the challenger did not score, by reason", labels=["reason"]
        )
        for reason, count in dropped.items():
            family.add_metric([reason], count)
        yield family
        yield CounterMetricFamily("shadow_errors", "Requests the challenger failed to score", value=errors)
        yield GaugeMetricFamily("shadow_queue_depth", "Requests waiting for the challenger", value=depth)
        family = GaugeMetricFamily(
            "shadow_model_info",
            "The challenger scored in shadow (1 while loaded)",
            labels=["model_name", "model_version"],
        )
        family.add_metric([self.model.name, self.model.version], 1.0)
        yield family
