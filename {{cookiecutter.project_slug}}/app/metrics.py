"""Prometheus metrics, counted cheaply on the request path and rendered at scrape time.

Why a custom collector instead of prometheus-client's Counter/Histogram objects: those
take a lock per value and walk the buckets in Python on every observation, several times
per request and once more per scored row. Here a request adds to plain integer tables
under one lock (a bisect finds the bucket), and the metric families are built only when
/metrics is scraped.

What the model metrics observe, per task (the contract's target):
- classification: `model_predictions_total{class}` counts scored rows by predicted class (the
  class key: strings as they are, other values as JSON, e.g. "0", "true"); `model_score` is a
  histogram of the positive-class probability (binary) or of the top-class probability, the
  model's confidence (multiclass); both lie in [0, 1], hence fixed buckets.
- regression: `model_value` is a summary (count and sum, so the mean prediction) of the predicted
  values: their scale is the target's own and unknown here, so no bucket bounds are guessed.

Per model (`role` champion or challenger, and `model_version`), for shadow scoring (app/shadow.py):
`model_inference_seconds`, the model call's time per request (the batch), and
`model_inference_rows_total` (by `class` too for classification), so the two models' latency and
answers compare on one dashboard.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)

from governance.core.contract import Target
from governance.core.tasks import BINARY

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
SCORING_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
CHAMPION, CHALLENGER = "champion", "challenger"
SCORE_BUCKETS = tuple(round(0.05 * step, 2) for step in range(1, 21))  # 0.05 .. 1.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Histogram:
    """Bucket counts (non-cumulative until rendered) and the running sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last slot is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return out


class Metrics:
    """Request, prediction and model metrics of one service instance (own registry per app)."""

    def __init__(self, target: Target) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = {}
        self._latency: dict[str, _Histogram] = {}
        self._class_keys = target.class_keys
        self._classes = [0] * len(target.classes)  # rows per class index
        self._positive = target.positive_index if target.task == BINARY else None
        self._regression = not target.is_classification
        self._scores = _Histogram(SCORE_BUCKETS)
        self._values = [0, 0.0]  # regression: rows scored, sum of the predicted values
        self._model: dict[str, str] | None = None
        # (role, model_version) -> model call time histogram, and rows per class index (one slot
        # for regression)
        self._scoring: dict[tuple[str, str], tuple[_Histogram, list[int]]] = {}
        self._extra: list[Callable[[], Iterator[Metric]]] = []
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)  # type: ignore[arg-type]

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, str(status))
        with self._lock:
            self._requests[key] = self._requests.get(key, 0) + 1
            histogram = self._latency.get(route)
            if histogram is None:
                histogram = self._latency[route] = _Histogram(LATENCY_BUCKETS)
            histogram.observe(seconds)

    def observe_predictions(self, indices: list[int], scores: list[list[float]]) -> None:
        """Classification: count each row's predicted class index and observe its score (see above)."""
        classes, observe, positive = self._classes, self._scores.observe, self._positive
        with self._lock:
            for index, row in zip(indices, scores, strict=True):
                classes[index] += 1
                observe(row[positive] if positive is not None else max(row))

    def observe_scoring(
        self, role: str, version: str, seconds: float, indices: list[int] | None, rows: int
    ) -> None:
        """One model call of `role` (champion or challenger): its time, and its rows by class index."""
        key = (role, version)
        with self._lock:
            entry = self._scoring.get(key)
            if entry is None:
                entry = self._scoring[key] = (_Histogram(SCORING_BUCKETS), [0] * max(len(self._classes), 1))
            entry[0].observe(seconds)
            counts = entry[1]
            if indices is None:
                counts[0] += rows
            else:
                for index in indices:
                    counts[index] += 1

    def observe_values(self, values: list[float]) -> None:
        """Regression: add the predicted values to the `model_value` summary."""
        with self._lock:
            self._values[0] += len(values)
            self._values[1] += sum(values)

    def set_model(self, info: dict[str, str] | None) -> None:
        self._model = info

    def add_source(self, source: Callable[[], Iterator[Metric]]) -> None:
        """Another component's metrics (the capture store), collected at scrape time."""
        self._extra.append(source)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            requests = dict(self._requests)
            latency = {route: (h.buckets(), h.total) for route, h in self._latency.items()}
            classes = list(self._classes)
            scores = (self._scores.buckets(), self._scores.total)
            value_rows, value_sum = self._values
            scoring = {
                key: (h.buckets(), h.total, list(counts)) for key, (h, counts) in self._scoring.items()
            }
        family: Any = CounterMetricFamily(
            "http_requests", "HTTP requests by route, method and status", labels=["route", "method", "status"]
        )
        for (route, method, status), count in sorted(requests.items()):
            family.add_metric([route, method, status], count)
        yield family
        family = HistogramMetricFamily(
            "http_request_duration_seconds", "Time from request start to response sent", labels=["route"]
        )
        for route, (buckets, total) in sorted(latency.items()):
            family.add_metric([route], buckets, total)
        yield family
        if self._regression:
            family = SummaryMetricFamily("model_value", "Predicted value per scored row")
            family.add_metric([], value_rows, value_sum)
            yield family
        else:
            family = CounterMetricFamily(
                "model_predictions", "Scored rows by predicted class", labels=["class"]
            )
            for key, rows in zip(self._class_keys, classes, strict=True):
                family.add_metric([key], rows)
            yield family
            what = "the positive class" if self._positive is not None else "the predicted (top) class"
            family = HistogramMetricFamily("model_score", f"Probability of {what} per scored row")
            family.add_metric([], scores[0], scores[1])
            yield family
        yield from self._per_model(scoring)
        family = GaugeMetricFamily(
            "model_info",
            "The served model (1 while loaded)",
            labels=["model_name", "model_version", "contract_sha256"],
        )
        if self._model:
            family.add_metric(
                [self._model["name"], self._model["version"], self._model["contract_sha256"]], 1.0
            )
        yield family
        yield GaugeMetricFamily(
            "model_ready", "1 when a model is loaded and scoring", value=float(bool(self._model))
        )
        for source in self._extra:
            yield from source()

    def _per_model(self, scoring: dict[tuple[str, str], tuple[Any, float, list[int]]]) -> Iterator[Metric]:
        family: Any = HistogramMetricFamily(
            "model_inference_seconds",
            "Time of the model call per request, by model",
            labels=["role", "model_version"],
        )
        for (role, version), (buckets, total, _) in sorted(scoring.items()):
            family.add_metric([role, version], buckets, total)
        yield family
        if self._regression:
            family = CounterMetricFamily(
                "model_inference_rows", "Rows scored, by model", labels=["role", "model_version"]
            )
            for (role, version), (_, _, counts) in sorted(scoring.items()):
                family.add_metric([role, version], counts[0])
        else:
            family = CounterMetricFamily(
                "model_inference_rows",
                "Rows scored, by model and predicted class",
                labels=["role", "model_version", "class"],
            )
            for (role, version), (_, _, counts) in sorted(scoring.items()):
                for key, rows in zip(self._class_keys, counts, strict=True):
                    family.add_metric([role, version, key], rows)
        yield family
