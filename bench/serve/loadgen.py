"""A bounded HTTP/1.1 load generator for machines without `wrk` (standard library only).

Fixed concurrency: N keep-alive connections, each sending the next request as soon as the
previous answer arrived (closed loop, like wrk). Bounded twice: by duration and by a
request count. Prints one JSON line: requests, errors, requests/s, p50 and p99 in ms.

Python is slower than wrk at generating load: above roughly 5,000 requests/s on one core
it measures itself more than the server, so run.py prefers wrk when installed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from urllib.parse import urlsplit


async def connection(
    host: str,
    port: int,
    request: bytes,
    deadline: float,
    budget: list[int],
    latencies: list[float],
    errors: list[int],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline and budget[0] > 0:
            budget[0] -= 1
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if not head.startswith((b"HTTP/1.1 2", b"HTTP/1.0 2")):
                errors[0] += 1
    finally:
        writer.close()


async def run(url: str, body: bytes, connections: int, seconds: float, max_requests: int) -> dict[str, float]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    latencies: list[float] = []
    errors, budget = [0], [max_requests]
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(
        *(connection(host, port, request, deadline, budget, latencies, errors) for _ in range(connections))
    )
    return summary(latencies, errors[0], time.perf_counter() - started)


def summary(latencies: list[float], errors: int, elapsed: float) -> dict:
    """Requests, errors, requests/s and the latency quantiles (ms) of one closed-loop run."""
    latencies = sorted(latencies)

    def quantile(q: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")
        )

    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / elapsed,
        "p50_ms": quantile(0.50),
        "p99_ms": quantile(0.99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--body", required=True, help="file with the JSON body")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    args = parser.parse_args()
    with open(args.body, "rb") as handle:
        body = handle.read()
    print(json.dumps(asyncio.run(run(args.url, body, args.connections, args.seconds, args.max_requests))))


if __name__ == "__main__":
    main()
