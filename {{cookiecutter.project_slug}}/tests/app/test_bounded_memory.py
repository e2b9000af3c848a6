"""A hostile client cannot make the service outgrow its pod: bounded bodies, rows and requests in flight.

The attack of issue 13: many concurrent 4 MiB bodies of empty records (`{"records": [{}, {}, ...]}`),
each one only a 422, once pushed a real server's memory past the pod's limit (deploy/base), because
the whole body was read and parsed into 1.4 million dicts before the row limit was checked, and
nothing bounded how many such bodies were in flight.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.validation import RequestError, Validator, containers_outside_strings
from tests.support.serving import MODEL_NAME, sample_records, wait_until_ready

ROOT = Path(__file__).resolve().parents[2]
ATTACK_BYTES = 4 * 1024 * 1024


def empty_records(size: int) -> bytes:
    """`{"records": [{}, {}, ...]}` of about `size` bytes: the cheapest body to send, costly to parse."""
    count = (size - 16) // 3
    return b'{"records":[' + b"{}," * (count - 1) + b"{}]}"


def pod_memory_limit() -> int:
    """The container memory limit of deploy/base/deployment.yaml, in bytes (e.g. 512Mi)."""
    text = (ROOT / "deploy" / "base" / "deployment.yaml").read_text()
    limits = text.split("limits:", 1)[1]
    number, unit = re.search(r"memory:\s*\"?(\d+)(Mi|Gi)", limits).groups()  # type: ignore[union-attr]
    return int(number) * (1024**2 if unit == "Mi" else 1024**3)


# -- the body limit follows the row limit ---------------------------------------------------------
def test_the_body_limit_is_sized_from_the_row_limit_and_capped_by_max_body_bytes(settings_for, contract):
    small = create_app(settings_for(max_batch_rows=10)).service.body_limit
    large = create_app(settings_for(max_batch_rows=1000)).service.body_limit
    capped = create_app(settings_for(max_batch_rows=1000, max_body_bytes=64 * 1024)).service.body_limit
    assert small < large <= 4 * 1024 * 1024
    assert capped == 64 * 1024
    # The largest legal request fits, even pretty-printed with long floats.
    body = orjson.dumps({"records": sample_records(contract, 1000)}, option=orjson.OPT_INDENT_2)
    assert len(body) <= large


def test_a_body_over_the_row_sized_limit_is_413_before_it_is_read(settings_for, contract):
    with TestClient(create_app(settings_for(max_batch_rows=10))) as client:
        limit = client.app.service.body_limit  # type: ignore[attr-defined]
        response = client.post(
            "/predict", content=empty_records(limit + 100), headers={"content-type": "application/json"}
        )
        assert response.status_code == 413
        body = response.json()
        assert (body["field"], body["rule"]) == ("body", "max_bytes")
        assert str(limit) in body["error"]
        ok = client.post("/predict", json={"records": sample_records(contract, 10)})
        assert ok.status_code == 200


# -- rows are counted before the body is materialised ----------------------------------------------
@pytest.mark.parametrize("route", ["/predict", "/feedback", "infer"])
def test_too_many_rows_are_refused_without_parsing_them(settings_for, contract, route):
    service = create_app(settings_for(max_batch_rows=1000)).service
    size = 1024 * 1024  # handlers are called directly: no body limit in the way
    rows = (size - 64) // 3
    if route == "/predict":
        body, call = empty_records(size), lambda: service.predict(body)
    elif route == "/feedback":
        body = b"[" + b"{}," * (rows - 1) + b"{}]"
        call = lambda: service.feedback(body)  # noqa: E731
    else:
        body = b'{"inputs":[' + b"{}," * (rows - 1) + b"{}]}"
        call = lambda: service.infer(body, MODEL_NAME, None)  # noqa: E731
    service.start()
    try:
        tracemalloc.start()
        with pytest.raises(RequestError) as refused:
            call()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    finally:
        service.stop()
    assert refused.value.rule == "max_rows"
    assert refused.value.status in (400, 422)
    assert "1000" in refused.value.message
    # Parsing them would hold a dict (64 bytes) per `{}` (3 bytes): 36 times the body (measured);
    # counting them takes a few byte masks of the body's length.
    assert peak < 4 * len(body), f"{peak} bytes traced for a {len(body)}-byte body"


def test_brackets_inside_strings_are_not_counted_as_rows(settings_for):
    validator: Validator = create_app(settings_for(max_batch_rows=2)).service.validator
    legal = orjson.dumps({"records": [{"note": '{"a": [1]}, ' * 500}] * 2})
    validator.check_containers(legal, "records", 422)  # 4 containers, 2,000 of them in strings
    with pytest.raises(RequestError):
        validator.check_containers(b'{"records": [' + b'{"a": "]"},' * 500 + b"{}]}", "records", 422)


@pytest.mark.parametrize("text", ['{"a": [1]}', "\\", '\\"{[', '"{', '\\\\"[', "{[" * 300 + "\\", "é{"])
def test_escaped_quotes_and_backslashes_do_not_confuse_the_count(text):
    body = orjson.dumps({"records": [{"note": text, "other": [text]}] * 3})
    assert containers_outside_strings(body) == 2 + 3 * 2  # the envelope; a record and its list each


# -- requests in flight are bounded -----------------------------------------------------------------
def test_requests_over_the_concurrency_limit_get_503_with_retry_after(settings_for, contract):
    with TestClient(create_app(settings_for(max_concurrent_requests=1))) as client:
        app = client.app
        app.in_flight = 1  # type: ignore[attr-defined]  # one request is being read or scored
        busy = client.post("/predict", json={"records": sample_records(contract, 1)})
        app.in_flight = 0  # type: ignore[attr-defined]
        free = client.post("/predict", json={"records": sample_records(contract, 1)})
        assert client.app.in_flight == 0  # type: ignore[attr-defined]  # released after each answer
    assert busy.status_code == 503
    assert busy.headers["retry-after"] == "1"
    assert (busy.json()["field"], busy.json()["rule"]) == ("requests", "max_concurrent")
    assert "MAX_CONCURRENT_REQUESTS=1" in busy.json()["error"]
    assert free.status_code == 200


def test_a_body_that_does_not_arrive_in_time_is_408_and_frees_its_slot(settings_for):
    """A client trickling its body cannot hold one of the MAX_CONCURRENT_REQUESTS slots for ever."""
    app = create_app(settings_for(body_timeout_seconds=0.2, max_concurrent_requests=1))
    sent: list[dict[str, Any]] = []

    async def never() -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/predict",
        "headers": [(b"content-type", b"application/json")],
    }
    started = time.monotonic()
    asyncio.run(asyncio.wait_for(app(scope, never, send), 5))
    assert time.monotonic() - started < 2
    assert sent[0]["status"] == 408
    answer = orjson.loads(sent[1]["body"])
    assert (answer["field"], answer["rule"]) == ("body", "timeout")
    assert "BODY_TIMEOUT_SECONDS=0.2" in answer["error"]
    assert app.in_flight == 0


# -- the attack, against a real server process -------------------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def memory(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (the peak) of a process, in bytes."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {key: int(fields[key].split()[0]) * 1024 for key in ("VmRSS", "VmHWM")}


@pytest.fixture
def server(model_file: Path, contract_path: Path, tmp_path: Path) -> Iterator[tuple[int, int]]:
    """`python -m app` with the defaults a pod gets; yields (pid, port)."""
    port = free_port()
    env = os.environ | {
        "PORT": str(port),
        "MODEL_PATH": str(model_file),
        "CONTRACT_PATH": str(contract_path),
        "CAPTURE_URI": str(tmp_path / "capture"),
        "ORT_INTRA_OP_THREADS": "1",
        "LOG_LEVEL": "warning",
    }
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "app"], cwd=ROOT, env=env, stderr=log)
    try:
        wait_until_ready(process, port, lambda: (tmp_path / "server.log").read_text())
        yield process.pid, port
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        log.close()


def post(port: int, body: Any, chunked: bool = False) -> int:
    """POST /predict; the status, or 0 when the server closed the connection before answering."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        headers = {"content-type": "application/json"}
        if chunked:
            connection.request("POST", "/predict", body, headers, encode_chunked=True)
        else:
            connection.request("POST", "/predict", body, headers)
        response = connection.getresponse()
        response.read()
        return response.status
    except (ConnectionError, http.client.HTTPException):
        return 0
    finally:
        connection.close()


def wave(port: int, clients: int, body: bytes, chunked: bool) -> list[int]:
    statuses: list[int] = []
    lock = threading.Lock()

    def one() -> None:
        sent = (body[i : i + 65536] for i in range(0, len(body), 65536)) if chunked else body
        status = post(port, sent, chunked)
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=one) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return statuses


@pytest.mark.slow
def test_concurrent_floods_of_empty_records_stay_under_the_pod_memory_limit(server, contract):
    pid, port = server
    limit = pod_memory_limit()
    normal = orjson.dumps({"records": sample_records(contract, 5)})
    assert post(port, normal) == 200
    before = memory(pid)
    attack = empty_records(ATTACK_BYTES)
    for clients, chunked in ((16, False), (40, False), (40, True)):
        statuses = wave(port, clients, attack, chunked)
        after = memory(pid)
        print(
            f"{clients} concurrent {len(attack)}-byte bodies (chunked={chunked}): "
            f"answers {sorted(set(statuses))}; "
            f"RSS {before['VmRSS'] / 2**20:.0f} MiB before, peak {after['VmHWM'] / 2**20:.0f} MiB, "
            f"pod limit {limit / 2**20:.0f} MiB"
        )
        # Refused (413 too large, 422 too many rows, 503 busy) or cut off; never scored, never a 500.
        assert set(statuses) <= {0, 413, 422, 503}, statuses
        assert after["VmHWM"] < limit
        assert post(port, normal) == 200
    # Legal bodies of the most rows, more at once than the limit of requests in flight: each is
    # scored or answered 503 (retry), and memory stays bounded all the same.
    statuses = wave(port, 40, orjson.dumps({"records": sample_records(contract, 1000)}), False)
    peak = memory(pid)["VmHWM"]
    print(f"40 concurrent 1,000-row bodies: {sorted(set(statuses))}; peak {peak / 2**20:.0f} MiB")
    assert 200 in statuses and set(statuses) <= {200, 503}, statuses
    assert peak < limit
    # A body under the byte limit but with too many rows is refused too, as cheaply.
    small_attack = empty_records(200 * 1024)
    statuses = wave(port, 40, small_attack, False)
    peak = memory(pid)["VmHWM"]
    print(
        f"40 concurrent {len(small_attack)}-byte bodies: {sorted(set(statuses))}; peak {peak / 2**20:.0f} MiB"
    )
    assert set(statuses) <= {413, 422, 503}, statuses
    assert peak < limit
    assert post(port, normal) == 200
