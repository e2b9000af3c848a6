"""A bounded gRPC load generator for the service's ModelInfer (the Open Inference Protocol over gRPC).

Same shape as loadgen.py: fixed concurrency, each caller sending its next call as soon as the
previous answer arrived (closed loop), bounded by duration and by a call count; prints one JSON
line: requests, errors, requests/s, p50 and p99 in ms. The request is a serialized
ModelInferRequest (prepare.py writes it with raw_input_contents, as Triton's client sends numpy
arrays), sent as bytes on one HTTP/2 channel per caller, so no generated module is needed here.

Runs with the project's Python (its serving group has grpcio). Like loadgen.py it is slower than
the server at generating load, so compare the server CPU per request more than requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import grpc
from loadgen import summary  # beside this script: the same figures as the HTTP load

METHOD = "/inference.GRPCInferenceService/ModelInfer"


async def caller(
    target: str, request: bytes, deadline: float, budget: list[int], latencies: list[float], errors: list[int]
) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        infer = channel.unary_unary(METHOD)  # no (de)serializers: bytes in, bytes out
        while time.perf_counter() < deadline and budget[0] > 0:
            budget[0] -= 1
            started = time.perf_counter()
            try:
                await infer(request, timeout=30)
            except grpc.aio.AioRpcError:
                errors[0] += 1
            latencies.append(time.perf_counter() - started)


async def run(target: str, request: bytes, connections: int, seconds: float, max_requests: int) -> dict:
    latencies: list[float] = []
    errors, budget = [0], [max_requests]
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(
        *(caller(target, request, deadline, budget, latencies, errors) for _ in range(connections))
    )
    return summary(latencies, errors[0], time.perf_counter() - started)


def answer(target: str, request: bytes) -> dict:
    """One call's FP32 outputs as lists (run from the project folder: its generated module decodes)."""
    import numpy as np
    from app import grpc_predict_v2_pb2 as pb

    with grpc.insecure_channel(target) as channel:
        reply = channel.unary_unary(METHOD)(request, timeout=30)
    response = pb.ModelInferResponse.FromString(reply)
    return {
        tensor.name: np.frombuffer(raw, "<f4").reshape(tuple(tensor.shape)).tolist()
        for tensor, raw in zip(response.outputs, response.raw_output_contents, strict=True)
        if tensor.datatype == "FP32"
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="host:port of the gRPC server")
    parser.add_argument("--request", required=True, help="file with the serialized ModelInferRequest")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    parser.add_argument("--check", action="store_true", help="one call; print its FP32 outputs")
    args = parser.parse_args()
    with open(args.request, "rb") as handle:
        request = handle.read()
    if args.check:
        print(json.dumps(answer(args.target, request)))
        return
    print(
        json.dumps(asyncio.run(run(args.target, request, args.connections, args.seconds, args.max_requests)))
    )


if __name__ == "__main__":
    main()
