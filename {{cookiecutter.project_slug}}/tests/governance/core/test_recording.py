"""Readers of run.json wait for a run still being recorded in the background, and report its trouble once.

These tests play the logger's side with the module's own functions (no MLflow, no training):
the end-to-end path (train, then register at once) is in tests/ml/test_tracking.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from governance.core import recording
from governance.core.records import TrackedRun

RUN = TrackedRun(run_id="c" * 32, experiment="loan", experiment_id="1", tracking_uri="sqlite:///x.db")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    model = tmp_path / "20260101000000-abcdef12"
    model.mkdir()
    return model


@pytest.fixture
def logger_stand_in():
    """A live process to name as the logger (it only sleeps), stopped after the test."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


def warnings_in(captured: str) -> list[str]:
    return [line for line in captured.splitlines() if line.startswith("warning:")]


def test_nothing_pending_returns_at_once_with_or_without_a_run(folder, logger_stand_in, capsys):
    assert recording.wait(folder) is False
    recording.mark_pending(folder, logger_stand_in.pid)
    assert recording.finish(folder, logger_stand_in.pid, RUN)
    started = time.monotonic()
    assert recording.wait(folder) is True
    assert time.monotonic() - started < 1
    assert not (folder / recording.MARKER).exists()
    assert warnings_in(capsys.readouterr().err) == []


def test_a_reader_waits_until_the_logger_writes_the_run(folder, logger_stand_in, capsys):
    recording.mark_pending(folder, logger_stand_in.pid)
    writer = threading.Timer(1.0, recording.finish, (folder, logger_stand_in.pid, RUN))
    writer.start()
    started = time.monotonic()
    try:
        assert recording.wait(folder, timeout_s=30) is True
    finally:
        writer.join()
    assert time.monotonic() - started >= 0.9, "it returned before the run was written"
    assert json.loads((folder / recording.RECORD).read_text())["run_id"] == RUN.run_id
    captured = capsys.readouterr()
    assert warnings_in(captured.err) == []
    assert f"waiting for the MLflow run of model {folder.name}" in captured.err


def test_the_loggers_warning_reaches_the_first_reader_only(folder, logger_stand_in, capsys):
    recording.mark_pending(folder, logger_stand_in.pid)
    down = "MLflow tracking server http://down:5000 is unreachable; local store"
    assert recording.finish(folder, logger_stand_in.pid, RUN, down)
    assert recording.wait(folder) is True
    assert recording.wait(folder) is True
    assert warnings_in(capsys.readouterr().err) == [
        "warning: MLflow tracking server http://down:5000 is unreachable; local store"
    ]


def test_a_failed_recording_leaves_no_run_and_one_warning(folder, logger_stand_in, capsys):
    recording.mark_pending(folder, logger_stand_in.pid)
    assert recording.fail(folder, logger_stand_in.pid, "MLflow tracking failed (disk full); model x")
    assert recording.wait(folder) is False
    assert recording.wait(folder) is False
    assert warnings_in(capsys.readouterr().err) == ["warning: MLflow tracking failed (disk full); model x"]


def test_a_logger_that_died_is_not_waited_for_and_its_last_words_are_shown(folder, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (folder / recording.LOG).write_text("Traceback ...\nsqlite3.OperationalError: database is locked\n")
    recording.mark_pending(folder, dead.pid)
    started = time.monotonic()
    assert recording.wait(folder, timeout_s=60) is False
    assert time.monotonic() - started < 10
    (warning,) = warnings_in(capsys.readouterr().err)
    assert f"logger (pid {dead.pid}) stopped without recording" in warning
    assert "database is locked" in warning
    assert not (folder / recording.MARKER).exists()


def test_a_recording_that_outlasts_the_bound_costs_a_warning_and_stays_pending(
    folder, logger_stand_in, capsys
):
    recording.mark_pending(folder, logger_stand_in.pid)
    assert recording.wait(folder, timeout_s=1) is False
    (warning,) = warnings_in(capsys.readouterr().err)
    assert f"no MLflow run of model {folder.name} after 1s" in warning
    assert f"logger pid {logger_stand_in.pid} still recording" in warning
    assert recording.read_marker(folder / recording.MARKER).state == "pending"  # a later reader waits again


def test_a_recording_pending_on_another_machine_is_not_waited_for(folder, capsys):
    marker = recording.Recording(state="pending", pid=1, host="ci-runner-7", started=time.time())
    (folder / recording.MARKER).write_text(marker.model_dump_json())
    assert recording.wait(folder, timeout_s=60) is False
    (warning,) = warnings_in(capsys.readouterr().err)
    assert "recorded on host ci-runner-7" in warning and "make track-wait" in warning


def test_a_logger_overtaken_by_a_newer_training_of_the_same_version_writes_nothing(folder, logger_stand_in):
    recording.mark_pending(folder, logger_stand_in.pid + 100_000)  # the newer training's logger
    assert not recording.finish(folder, logger_stand_in.pid, RUN, "a warning of the older run")
    assert not recording.fail(folder, logger_stand_in.pid, "a failure of the older run")
    assert not (folder / recording.RECORD).exists()
    kept = recording.read_marker(folder / recording.MARKER)
    assert kept.state == "pending" and kept.pid == logger_stand_in.pid + 100_000
