"""Prometheus metrics, counted cheaply on the request path and rendered at scrape time.

Why a custom collector instead of prometheus-client's Counter/Histogram objects: those
take a lock per value and walk the buckets in Python on every observation, several times
per request and once more per scored row. Here a request adds to plain integer tables
under one lock (a bisect finds the bucket), and the metric families are built only when
/metrics is scraped.
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
)

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
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

    def __init__(self, classes: tuple[int, ...]) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = {}
        self._latency: dict[str, _Histogram] = {}
        self._classes: dict[int, int] = dict.fromkeys(classes, 0)
        self._scores = _Histogram(SCORE_BUCKETS)
        self._model: dict[str, str] | None = None
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

    def observe_predictions(self, labels: list[int], scores: list[list[float]], positive: int) -> None:
        """Count each row's predicted class and its positive-class probability."""
        classes, observe = self._classes, self._scores.observe
        with self._lock:
            for label, row in zip(labels, scores, strict=True):
                classes[label] = classes.get(label, 0) + 1
                observe(row[positive])

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
            classes = dict(self._classes)
            scores = (self._scores.buckets(), self._scores.total)
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
        family = CounterMetricFamily("model_predictions", "Scored rows by predicted class", labels=["class"])
        for label, count in sorted(classes.items()):
            family.add_metric([str(label)], count)
        yield family
        family = HistogramMetricFamily("model_score", "Probability of the positive class per scored row")
        family.add_metric([], scores[0], scores[1])
        yield family
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
