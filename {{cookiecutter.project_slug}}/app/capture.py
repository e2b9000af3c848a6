"""Production capture: every scored row and every ground-truth label, append-only.

Layout under CAPTURE_URI (a local folder, or any fsspec URL such as s3://bucket/capture):
`date=YYYY-MM-DD/<hostname>-<pid>-<start>-<n>.jsonl`, one JSON object per line: a
`PredictionRecord`, a `FeedbackRecord` or a challenger's `ShadowRecord` (governance/core/capture.py,
the schema monitoring reads with). Each process writes only its own
stream, so replicas never contend for a file and nothing is ever rewritten. Readers take
every `date=*/*.jsonl`. Locally `<n>` advances when a file is rotated; on object stores,
which cannot append, each flush of the stream becomes its own object.

Durability, and why it is done this way: the request path only appends the already
validated request to an in-memory buffer (microseconds); a writer thread serialises and
writes the buffer when it holds CAPTURE_FLUSH_ROWS rows or CAPTURE_FLUSH_SECONDS have passed,
and `close()` writes whatever is left. The service calls `close()` in its lifespan shutdown,
which the server runs on SIGTERM only after every in-flight request has been answered, so
every acknowledged prediction reaches the store across a graceful restart. Writing to the
store before each response instead would cost a system call (local) or an object upload
(remote) per request, the largest cost on the request path. What it gives up: a hard kill
(SIGKILL, OOM, power loss) loses at most the last flush interval. A store that fails keeps
the rows buffered and retries; when the buffer reaches CAPTURE_MAX_BUFFER_ROWS the service
stops acknowledging predictions (503) rather than answering without capturing.

A full disk, and why no line is ever half written or written twice: a flush is one batch, and
a batch is written whole or not at all. Before writing to a local file the store notes the
file's size; if any write of the batch fails (ENOSPC, EIO), every file the batch touched is
truncated back to its noted size and the whole batch goes back to the buffer, so the retry
after space returns writes each row exactly once. Writes are unbuffered (`os.write`), so no
library buffer can replay half a batch later when a handle is closed. On an object store each
flush writes one object per date whose name only advances after a successful flush, so a retry
replaces what a failed flush left behind instead of adding to it.

The volume never fills: a local file is rotated when it reaches CAPTURE_MAX_FILE_BYTES, and
each new file enforces retention (files older than CAPTURE_RETENTION_DAYS, then the oldest
files beyond CAPTURE_RETENTION_BYTES, are deleted), so the folder stays under the retention
size plus one file. The service turns unready (`problem`) while the volume has less than
CAPTURE_MIN_FREE_BYTES free, and ready again when space returns. Local capture is for
development and staging; production captures to object storage (deploy/README.md).
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import fsspec
import orjson
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from governance.core.capture import feedback_line, prediction_id, prediction_line, shadow_line

log = logging.getLogger("app.capture")
LOCAL_PROTOCOLS = {"file", "local"}


class CaptureUnavailable(RuntimeError):
    """The store is not accepting rows; the prediction must not be acknowledged."""


class CaptureStore:
    """One append-only JSONL stream per process, flushed on size, on time and on close."""

    def __init__(
        self,
        uri: str,
        feature_names: Sequence[str],
        sensitive_name: str | None,
        flush_rows: int = 1000,
        flush_seconds: float = 1.0,
        max_buffer_rows: int = 200_000,
        max_file_bytes: int = 64 * 1024**2,
        retention_bytes: int = 768 * 1024**2,
        retention_days: float = 30,
        min_free_bytes: int = 128 * 1024**2,
    ) -> None:
        self.uri = uri
        self.fs, self.root = fsspec.core.url_to_fs(uri)
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        self.local = bool(LOCAL_PROTOCOLS.intersection(protocols))
        started = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        self.stream = f"{socket.gethostname()}-{os.getpid()}-{started}"
        self.feature_names = tuple(feature_names)
        self.sensitive_name = sensitive_name
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.max_buffer_rows = max_buffer_rows
        self.max_file_bytes = max_file_bytes
        self.retention_bytes = retention_bytes
        self.retention_days = retention_days
        self.min_free_bytes = min_free_bytes
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._pending: list[tuple[Any, ...]] = []
        self._pending_rows = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._files: dict[str, LocalFile] = {}  # the open file of each date partition
        self._retired: list[LocalFile] = []  # replaced during this flush; closed once it ends
        self._sequence = 0
        self._closed = False
        self.rows_written = 0
        self.write_errors = 0
        self.files_deleted = 0
        self._failing = False

    # -- request path -------------------------------------------------------------------
    @property
    def available(self) -> bool:
        return not self._closed and self._pending_rows < self.max_buffer_rows

    def problem(self) -> str | None:
        """Why the service should not take traffic now (readiness), or None.

        A local volume is unready before it is full: below CAPTURE_MIN_FREE_BYTES free, the
        next flushes could fail half way, and a full emptyDir gets the pod evicted.
        """
        if self._closed:
            return "capture store is closed"
        if not self.available:
            return f"capture buffer full ({self._pending_rows} rows waiting for the store)"
        if self.local:
            try:
                free = shutil.disk_usage(self.root).free
            except OSError as error:
                return f"capture volume {self.root} cannot be inspected: {error}"
            if free < self.min_free_bytes:
                return (
                    f"capture volume {self.root} has {free} bytes free, below "
                    f"CAPTURE_MIN_FREE_BYTES={self.min_free_bytes}"
                )
        return None

    def record_predictions(
        self,
        request_id: str,
        timestamp: float,
        model_name: str,
        model_version: str,
        rows: Any,
        labels: list[Any],
        scores: list[list[float]],
    ) -> None:
        """Buffer one request's scored rows.

        rows: the request's records (a list of {name: value}, the sensitive attribute
        included when sent) or its columns ({name: [values]}); expanded by the writer.
        labels: per row, the answered class value or the predicted number (regression).
        scores: per row, the class probabilities in contract order; empty for regression.
        """
        self._append(("prediction", request_id, timestamp, model_name, model_version, rows, labels, scores))

    def record_feedback(
        self, timestamp: float, items: list[tuple[str, int, Any]], labelled_by: str | None = None
    ) -> None:
        """Buffer ground-truth labels: (request_id, row, label) each, from the API key `labelled_by`.

        label: the true class value, or the observed number (regression).
        """
        self._append(("feedback", timestamp, items, labelled_by))

    def record_shadow(
        self,
        request_id: str,
        timestamp: float,
        model_name: str,
        model_version: str,
        champion_version: str,
        labels: list[Any],
        scores: list[list[float]],
        latency_ms: float,
        champion_latency_ms: float,
    ) -> None:
        """Buffer a challenger's answers to a request the champion answered (app/shadow.py).

        Shadow rows may fill at most half of CAPTURE_MAX_BUFFER_ROWS: a slow store then refuses
        them (CaptureUnavailable) while the champion's predictions still have the other half.
        """
        entry = ("shadow", request_id, timestamp, model_name, model_version, champion_version)
        self._append((*entry, labels, scores, latency_ms, champion_latency_ms))

    def _append(self, entry: tuple[Any, ...]) -> None:
        rows = len(entry[2]) if entry[0] == "feedback" else len(entry[6])  # items, or labels
        with self._lock:
            if entry[0] == "shadow" and self._pending_rows + rows > self.max_buffer_rows // 2:
                raise CaptureUnavailable(
                    f"capture buffer half full ({self._pending_rows} rows): shadow rows wait"
                )
            if not self.available:
                raise CaptureUnavailable(
                    "capture store is closed"
                    if self._closed
                    else f"capture buffer full ({self._pending_rows} rows)"
                )
            self._pending.append(entry)
            self._pending_rows += rows
            wake = self._pending_rows >= self.flush_rows
        if wake:
            self._wake.set()

    # -- writer -------------------------------------------------------------------------
    def start(self) -> None:
        """Start the writer. A store that cannot be reached yet is retried, not fatal:
        rows wait in the buffer, and the service turns unready only when it fills."""
        if self.local:
            try:
                os.makedirs(self.root, exist_ok=True)
            except OSError as error:
                log.error(
                    "capture store %s cannot be created yet (%s); writes will be retried", self.uri, error
                )
            self._enforce_retention()
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            if not self._stop.is_set():
                self.flush()

    def flush(self) -> int:
        """Write everything buffered; on failure keep it buffered for the next try."""
        with self._write_lock:
            # The rows in flight stay counted in _pending_rows until they are written, so the
            # buffer limit (and readiness) sees them while a slow or failing store holds them.
            with self._lock:
                batch, self._pending = self._pending, []
                rows = self._pending_rows
            if not batch:
                return 0
            written: list[tuple[LocalFile, int]] = []  # each local file touched, with its size before
            try:
                for date, chunk in self._serialise(batch).items():
                    self._write(date, chunk, written)
            except Exception as error:  # any storage failure: undo the batch, keep its rows, retry later
                self._undo(written)
                self._close_retired()
                with self._lock:
                    self._pending[:0] = batch
                self.write_errors += 1
                if not self._failing:
                    log.error(
                        "capture store %s: write failed, %d rows kept for retry: %s", self.uri, rows, error
                    )
                self._failing = True
                return 0
            self._close_retired()
            self._sequence += 1  # the next flush writes new objects; a failed one reuses its names
            if self._failing:
                log.warning("capture store %s: writing again", self.uri)
                self._failing = False
            with self._lock:
                self._pending_rows -= rows
            self.rows_written += rows
            return rows

    def close(self, timeout: float = 30.0) -> None:
        """Stop the writer and write what is left; called from the lifespan shutdown."""
        with self._lock:
            self._closed = True
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.flush()
        if self._pending_rows:
            log.error(
                "capture store %s: %d rows could not be written at shutdown", self.uri, self._pending_rows
            )
        self._close_files()

    def _close_files(self) -> None:
        for file in self._files.values():
            file.close()
        self._files.clear()
        self._close_retired()

    def _close_retired(self) -> None:
        for file in self._retired:
            file.close()
        self._retired.clear()

    def _undo(self, written: list[tuple[LocalFile, int]]) -> None:
        """Truncate every file the failed batch touched back to its size before the batch.

        Shrinking a file needs no free space, so this works on a full disk. A file that cannot
        be truncated is closed and never appended to again: the retry goes to a new file, and
        the reader skips (and counts) the partial line left behind.
        """
        for file, size in reversed(written):
            try:
                os.ftruncate(file.fd, size)
                file.size = size
            except OSError as error:
                log.error("capture store %s: could not truncate %s: %s", self.uri, file.path, error)
                self._files = {date: kept for date, kept in self._files.items() if kept is not file}
                file.close()

    def _serialise(self, batch: list[tuple[Any, ...]]) -> dict[str, bytes]:
        """JSON lines grouped by the UTC date of each request (the partition)."""
        by_date: dict[str, list[bytes]] = {}
        dumps = orjson.dumps
        for entry in batch:
            if entry[0] == "prediction":
                _, request_id, timestamp, model_name, model_version, rows, labels, scores = entry
                stamp = datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="microseconds")
                lines = by_date.setdefault(stamp[:10], [])
                no_scores: list[float] = []  # regression: no class probabilities
                for index, (features, sensitive) in enumerate(self._rows(rows, len(labels))):
                    line = prediction_line(
                        request_id=request_id,
                        row=index,
                        timestamp=stamp,
                        model_name=model_name,
                        model_version=model_version,
                        features=features,
                        sensitive=sensitive,
                        label=labels[index],
                        scores=scores[index] if scores else no_scores,
                    )
                    lines.append(dumps(line))
            elif entry[0] == "shadow":
                lines = self._shadow_lines(entry, by_date)
            else:
                _, timestamp, items, labelled_by = entry
                stamp = datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="microseconds")
                lines = by_date.setdefault(stamp[:10], [])
                for request_id, row, label in items:
                    line = feedback_line(
                        request_id=request_id, row=row, label=label, timestamp=stamp, labelled_by=labelled_by
                    )
                    lines.append(dumps(line))
        return {date: b"\n".join(lines) + b"\n" for date, lines in by_date.items() if lines}

    @staticmethod
    def _shadow_lines(entry: tuple[Any, ...], by_date: dict[str, list[bytes]]) -> list[bytes]:
        """One `ShadowRecord` line per row of a request.

        Only the prediction id, row, label and scores differ between a request's rows, so the
        record is built once by `shadow_line` (its fields and their order) and those four are
        set per row: half the cost of building every row anew, which showed at 100 rows.
        """
        _, request_id, timestamp, model_name, model_version, champion_version, labels, scores, *ms = entry
        stamp = datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="microseconds")
        lines = by_date.setdefault(stamp[:10], [])
        if not labels:
            return lines
        line = shadow_line(
            request_id=request_id,
            row=0,
            timestamp=stamp,
            model_name=model_name,
            model_version=model_version,
            champion_version=champion_version,
            label=labels[0],
            scores=scores[0] if scores else [],
            latency_ms=round(ms[0], 4),
            champion_latency_ms=round(ms[1], 4),
        )
        dumps = orjson.dumps
        for index, label in enumerate(labels):
            line["prediction_id"] = prediction_id(request_id, index)
            line["row"] = index
            line["label"] = label
            if scores:
                line["scores"] = scores[index]
            lines.append(dumps(line))
        return lines

    def _rows(self, rows: Any, count: int) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        names, sensitive = self.feature_names, self.sensitive_name
        if isinstance(rows, dict):  # columns (Open Inference Protocol)
            for index in range(count):
                features = {name: rows[name][index] for name in names}
                extra = {sensitive: rows[sensitive][index]} if sensitive and sensitive in rows else {}
                yield features, extra
            return
        count = len(names)
        for record in rows:  # records (/predict): validated, so only the sensitive key can be extra
            if len(record) == count:
                yield record, {}
            else:
                yield {name: record[name] for name in names}, {sensitive: record[sensitive]}

    def _write(self, date: str, chunk: bytes, written: list[tuple[LocalFile, int]]) -> None:
        folder = f"{self.root.rstrip('/')}/date={date}"
        if not self.local:
            self.fs.makedirs(folder, exist_ok=True)
            self.fs.pipe_file(f"{folder}/{self.stream}-{self._sequence:06d}.jsonl", chunk)
            return
        file = self._files.get(date)
        if file is not None and file.size and file.size + len(chunk) > self.max_file_bytes:
            file = None  # rotate: the next file starts with this batch
        if file is None:
            self._retired.extend(self._files.values())  # the batch may still have to undo them
            os.makedirs(folder, exist_ok=True)
            self._sequence += 1
            file = LocalFile.create(f"{folder}/{self.stream}-{self._sequence:06d}.jsonl")
            self._files = {date: file}
            self._enforce_retention()
        written.append((file, file.size))
        file.append(chunk)

    def _enforce_retention(self) -> None:
        """Delete files older than the retention age, then the oldest beyond the retention size.

        Runs whenever a new file is opened (rotation, a new day, start), so the folder stays
        under CAPTURE_RETENTION_BYTES plus one file. Files still open are never deleted.
        """
        keep = {file.path for file in [*self._files.values(), *self._retired]}
        found = []
        try:
            for partition in os.scandir(self.root):
                if partition.is_dir() and partition.name.startswith("date="):
                    for entry in os.scandir(partition.path):
                        if entry.name.endswith(".jsonl") and entry.path not in keep:
                            stat = entry.stat()
                            found.append((stat.st_mtime, entry.path, stat.st_size))
        except OSError as error:
            log.warning("capture store %s: retention could not list the files: %s", self.uri, error)
            return
        found.sort()
        total = sum(size for _, _, size in found) + sum(file.size for file in self._files.values())
        oldest = time.time() - self.retention_days * 86400 if self.retention_days else float("-inf")
        for mtime, path, size in found:
            if mtime >= oldest and total <= self.retention_bytes:
                break
            try:
                os.remove(path)
            except OSError as error:
                log.warning("capture store %s: retention could not delete %s: %s", self.uri, path, error)
                continue
            total -= size
            self.files_deleted += 1
            log.info("capture store %s: retention deleted %s (%d bytes)", self.uri, path, size)

    # -- metrics ------------------------------------------------------------------------
    def metrics(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "capture_rows_written", "Rows written to the capture store", value=self.rows_written
        )
        yield CounterMetricFamily("capture_write_errors", "Failed capture flushes", value=self.write_errors)
        yield GaugeMetricFamily(
            "capture_buffered_rows", "Rows waiting to be written", value=self._pending_rows
        )
        yield CounterMetricFamily(
            "capture_files_deleted", "Capture files deleted by retention", value=self.files_deleted
        )


class LocalFile:
    """One local capture file, appended with unbuffered writes and its size tracked for undo."""

    def __init__(self, path: str, fd: int, size: int) -> None:
        self.path, self.fd, self.size = path, fd, size

    @classmethod
    def create(cls, path: str) -> LocalFile:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        return cls(path, fd, os.fstat(fd).st_size)

    def append(self, chunk: bytes) -> None:
        """Write all of `chunk` and make it durable; raises on a short or failed write."""
        view = memoryview(chunk)
        while view:
            count = os.write(self.fd, view)
            if count == 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.path)
            view = view[count:]
        os.fsync(self.fd)
        self.size += len(chunk)

    def close(self) -> None:
        """Close once: a second call must not close a descriptor number the OS gave to another file."""
        if self.fd < 0:
            return
        fd, self.fd = self.fd, -1
        try:
            os.close(fd)
        except OSError as error:
            log.warning("capture: closing %s failed: %s", self.path, error)


class NoCapture:
    """Capture switched off (allowed only with APP_ENV=development)."""

    uri = ""
    available = True
    stream = ""

    def problem(self) -> str | None:
        return None

    def record_predictions(self, *args: Any, **kwargs: Any) -> None:
        return None

    def record_feedback(self, *args: Any, **kwargs: Any) -> None:
        return None

    def record_shadow(self, *args: Any, **kwargs: Any) -> None:
        return None

    def start(self) -> None:
        log.warning("capture is off (CAPTURE_URI empty): predictions are not recorded")

    def flush(self) -> int:
        return 0

    def close(self, timeout: float = 30.0) -> None:
        return None

    def metrics(self) -> Iterator[Metric]:
        return iter(())
