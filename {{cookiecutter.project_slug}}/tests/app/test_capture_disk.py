"""Capture on a full or filling disk: no torn or repeated line after recovery, a bounded folder,
and a pod that turns unready before its volume is full (issue 13, findings 3 and 4)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.capture import CaptureStore
from app.main import create_app
from tests.support.serving import sample_records

PROJECT = Path(__file__).resolve().parents[2]
DAY_ONE = datetime(2024, 1, 1, 12, tzinfo=UTC).timestamp()
DAY_TWO = datetime(2024, 1, 2, 12, tzinfo=UTC).timestamp()


def audit(root: Path) -> dict[str, int]:
    """What a reader finds: lines, lines that are not JSON, repeated prediction ids, bytes."""
    lines = bad = 0
    ids: list[str] = []
    size = 0
    for path in root.rglob("*.jsonl"):
        data = path.read_bytes()
        size += len(data)
        for line in data.splitlines():
            lines += 1
            try:
                ids.append(json.loads(line)["prediction_id"])
            except ValueError:
                bad += 1
    return {"lines": lines, "bad": bad, "duplicates": len(ids) - len(set(ids)), "bytes": size}


def record(capture: CaptureStore, request_id: str, moment: float, rows: int = 5) -> None:
    capture.record_predictions(
        request_id, moment, "m", "v", [{"x": index} for index in range(rows)], [1] * rows, [[0.3, 0.7]] * rows
    )


def test_a_batch_that_fails_half_way_is_undone_and_written_once_when_space_returns(tmp_path, monkeypatch):
    """One batch over two date partitions: the first file is written, the second runs out of space."""
    capture = CaptureStore(str(tmp_path), ["x"], None, flush_seconds=3600)
    record(capture, "day-one", DAY_ONE)
    record(capture, "day-two", DAY_TWO)
    real_fsync, calls = os.fsync, []

    def full_on_second_file(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", full_on_second_file)
        assert capture.flush() == 0
    assert capture.write_errors == 1
    assert capture.flush() == 10  # space is back: the whole batch, once
    capture.close()
    assert audit(tmp_path) | {"bytes": 0} == {"lines": 10, "bad": 0, "duplicates": 0, "bytes": 0}


SHORT_WRITES = textwrap.dedent(
    """
    import json, resource, signal, sys, time
    from app.capture import CaptureStore

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG), as on a full disk
    root, limit = sys.argv[1], int(sys.argv[2])
    capture = CaptureStore(root, ["x"], None, flush_seconds=3600)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    rows = 0
    for batch in range(40):
        rows += 7
        records = [{"x": i} for i in range(7)]
        capture.record_predictions(f"r{batch}", time.time(), "m", "v", records, [1] * 7, [[0.3, 0.7]] * 7)
        capture.flush()
    failed = capture.write_errors
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # space returns
    capture.flush()
    capture.close()
    print(json.dumps({"rows": rows, "failed_flushes": failed}))
    """
)


def test_short_writes_on_a_full_volume_leave_no_torn_or_repeated_line(tmp_path):
    """A real kernel short write: the file size limit cuts a write mid-line, like ENOSPC does.

    Run in a child process so the limit (RLIMIT_FSIZE) does not touch the test runner's files.
    """
    limit = 8 * 1024
    done = subprocess.run(
        [sys.executable, "-c", SHORT_WRITES, str(tmp_path), str(limit)],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(done.stdout.splitlines()[-1])
    found = audit(tmp_path)
    print(f"short writes at {limit} bytes: {result} -> {found}")
    assert result["failed_flushes"] > 0  # the limit was really hit
    assert found["bad"] == 0
    assert found["duplicates"] == 0
    assert found["lines"] == result["rows"]


def test_rotation_and_retention_bound_the_folder(tmp_path):
    max_file, retained = 4096, 16384
    capture = CaptureStore(
        str(tmp_path), ["x"], None, flush_seconds=3600, max_file_bytes=max_file, retention_bytes=retained
    )
    capture.start()
    for batch in range(300):
        record(capture, f"r{batch}", time.time())
        capture.flush()
    capture.close()
    files = list(tmp_path.rglob("*.jsonl"))
    found = audit(tmp_path)
    print(f"300 batches: {len(files)} files, {found['bytes']} bytes kept, {capture.files_deleted} deleted")
    assert capture.files_deleted > 0
    assert found["bytes"] <= retained + max_file
    assert all(path.stat().st_size <= max_file for path in files)
    newest = json.loads(max(files, key=lambda path: path.name).read_bytes().splitlines()[-1])
    assert newest["request_id"] == "r299"


def test_files_older_than_the_retention_age_are_deleted_at_start(tmp_path):
    old = tmp_path / "date=2024-01-01" / "host-1-2.jsonl"
    old.parent.mkdir()
    old.write_bytes(b'{"kind": "prediction"}\n')
    recent = tmp_path / "date=2024-01-02" / "host-1-3.jsonl"
    recent.parent.mkdir()
    recent.write_bytes(b'{"kind": "prediction"}\n')
    month_ago = time.time() - 31 * 86400
    os.utime(old, (month_ago, month_ago))
    capture = CaptureStore(str(tmp_path), ["x"], None, flush_seconds=3600, retention_days=30)
    capture.start()
    capture.close()
    assert not old.exists()
    assert recent.exists()


def test_the_pod_turns_unready_before_the_capture_volume_is_full_and_ready_when_space_returns(
    settings_for, contract, monkeypatch
):
    settings = settings_for(capture_min_free_bytes="100MiB")
    free = {"bytes": 50 * 1024**2}
    real = shutil.disk_usage

    def disk_usage(path: Any) -> Any:
        usage = real(path)
        return usage._replace(free=free["bytes"])

    monkeypatch.setattr(shutil, "disk_usage", disk_usage)
    with TestClient(create_app(settings)) as client:
        unready = client.get("/v2/health/ready")
        free["bytes"] = 500 * 1024**2
        ready = client.get("/v2/health/ready")
        answered = client.post("/predict", json={"records": sample_records(contract, 1)})
    assert unready.status_code == 503
    error = unready.json()["error"]
    assert "CAPTURE_MIN_FREE_BYTES=104857600" in error and str(50 * 1024**2) in error
    assert settings.capture_uri in error
    assert ready.status_code == 200
    assert answered.status_code == 200


def test_capture_sizes_read_units_and_production_refuses_a_file_larger_than_the_retention(settings_for):
    assert settings_for(capture_max_file_bytes="1MiB").capture_max_file_bytes == 1024**2
    refused = "CAPTURE_MAX_FILE_BYTES=2097152 exceeds CAPTURE_RETENTION_BYTES=1048576"
    with pytest.raises(ValueError, match=refused):
        settings_for(capture_max_file_bytes="2MiB", capture_retention_bytes="1MiB")
