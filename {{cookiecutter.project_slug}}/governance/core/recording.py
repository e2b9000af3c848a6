"""The hand-over between `make train` and the MLflow logger that records its run in the background.

Training no longer waits for MLflow: it hands the finished run to a detached logger process and
returns. Beside the model, `recording.json` says a recording is pending (the logger's pid and
host); the logger writes `run.json` atomically when the run is in its store, and its output goes
to `tracking.log`. Whoever reads run.json (`make register`, the PR comment, `make track-sync`,
`make track-wait`) calls `wait` first: it waits, bounded and with a progress line, for a pending
recording, and passes on the logger's warning (an unreachable server, a failure) exactly once.
A recording that never comes costs a warning: the model goes on without a run, as with tracking
failing. This module is the ground both sides share, so the governance readers never import MLflow.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path
from typing import Literal

from governance.core import progress
from governance.core.records import Record, TrackedRun, write_atomically

RECORD = "run.json"
MARKER = "recording.json"
LOG = "tracking.log"
WAIT_S = 300.0  # a run takes seconds; minutes only when a server times out
POLL_S = 0.2


class Recording(Record):
    """recording.json: a run being recorded (pending), or the outcome a reader has still to report."""

    state: Literal["pending", "done", "failed"]
    pid: int
    host: str
    started: float  # seconds since the epoch
    warning: str | None = None  # what the reader shows the user once (fallback to the local store, failure)


def warn(message: str) -> None:
    """Tracking trouble is a warning on stderr, shown even with --quiet: the model is never held back."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def mark_pending(folder: Path, pid: int) -> None:
    """Training's side: the logger `pid` is recording this model's run now."""
    marker = Recording(state="pending", pid=pid, host=socket.gethostname(), started=time.time())
    write_atomically(folder / MARKER, marker.model_dump_json() + "\n")


def clear(folder: Path) -> None:
    """No run (tracking off, or a model retrained in the same folder): nothing pending, no record."""
    (folder / MARKER).unlink(missing_ok=True)
    (folder / RECORD).unlink(missing_ok=True)


def finish(folder: Path, logger_pid: int, run: TrackedRun, warning: str | None = None) -> bool:
    """The logger's side, on success: run.json first, then the marker goes (or keeps the warning).

    False, nothing written, when the marker no longer names this logger: the model was trained
    again meanwhile (same version folder), and the newer training's run is the one to keep.
    """
    if not mine(folder, logger_pid):
        return False
    write_atomically(folder / RECORD, run.model_dump_json(indent=2) + "\n")
    settle(folder, "done", warning)
    return True


def fail(folder: Path, logger_pid: int, warning: str) -> bool:
    """The logger's side, when even the local store failed: no run.json, a warning for the reader."""
    if not mine(folder, logger_pid):
        return False
    settle(folder, "failed", warning)
    return True


def mine(folder: Path, logger_pid: int) -> bool:
    pending = read_marker(folder / MARKER)
    return pending is not None and pending.state == "pending" and pending.pid == logger_pid


def settle(folder: Path, state: Literal["done", "failed"], warning: str | None) -> None:
    marker = folder / MARKER
    if not warning:
        marker.unlink(missing_ok=True)
        return
    pending = read_marker(marker)
    assert pending is not None, "settled by its own logger only"
    settled = pending.model_copy(update={"state": state, "warning": warning})
    write_atomically(marker, settled.model_dump_json() + "\n")


def read_marker(marker: Path) -> Recording | None:
    try:
        return Recording.model_validate_json(marker.read_text())
    except (OSError, ValueError):  # gone meanwhile, or not ours: nothing to wait for
        return None


def running(pid: int) -> bool:
    """Whether process `pid` still runs here (a finished child of this process is reaped, not counted)."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        return reaped == 0
    except ChildProcessError:  # not this process's child: ask the system
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process with that pid: it runs
        return True
    return True


def wait(folder: Path, timeout_s: float = WAIT_S) -> bool:
    """Wait for a pending recording of the model in `folder`; True when run.json is there afterwards.

    Returns at once when nothing is pending. A warning the logger left is printed here once, then
    the marker goes; a recording still running when the bound passes is left to a later reader.
    """
    marker = folder / MARKER
    found = read_marker(marker)
    if found is not None and found.state == "pending":
        found = wait_pending(folder, found, timeout_s)
    if found is not None and found.state != "pending":
        if found.warning:
            warn(found.warning)
        marker.unlink(missing_ok=True)
    return (folder / RECORD).is_file()


def wait_pending(folder: Path, pending: Recording, timeout_s: float) -> Recording | None:
    """The settled marker; a failed one when the logger is gone or elsewhere; still pending at the bound."""
    marker, log = folder / MARKER, folder / LOG
    if pending.host != socket.gethostname():
        return pending.model_copy(
            update={
                "state": "failed",
                "warning": f"the MLflow run of model {folder.name} was being recorded on host "
                f"{pending.host}, not here (`make track-wait` there lets it finish before copying the "
                "model); it goes on without a run",
            }
        )
    found: Recording | None = pending
    deadline = time.monotonic() + timeout_s
    with progress.step(f"waiting for the MLflow run of model {folder.name} (logger pid {pending.pid})"):
        while found is not None and found.state == "pending":
            if not running(pending.pid):
                found = read_marker(marker)  # it may have settled just before it ended
                if found is not None and found.state == "pending":
                    return found.model_copy(
                        update={
                            "state": "failed",
                            "warning": f"the MLflow logger (pid {pending.pid}) stopped without recording "
                            f"the run of model {folder.name} ({last_line(log)}); it goes on without a run",
                        }
                    )
                break
            if time.monotonic() > deadline:
                warn(
                    f"no MLflow run of model {folder.name} after {timeout_s:.0f}s (logger pid {pending.pid} "
                    f"still recording, see {log}); it goes on without a run for now"
                )
                return found
            time.sleep(POLL_S)
            found = read_marker(marker)
    return found


def last_line(log: Path) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return f"no log at {log}"
    return lines[-1][:300] if lines else f"nothing in {log}"
