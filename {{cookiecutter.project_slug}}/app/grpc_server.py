"""The Open Inference Protocol v2 over gRPC (GRPC_PORT), in the process that serves REST.

Why gRPC too: the clients built for OIP servers (Triton's, KServe's) speak it, and it carries
tensors as raw little-endian bytes instead of JSON numbers. Why in-process, on the REST server's
event loop (grpc.aio): both transports then share one Service, so one set of rules, one model,
one capture store and one /metrics; a request decoded here goes through the same
`Service.infer_tensors` as the REST infer route, and a client mistake is refused with the same
field, rule and message (as INVALID_ARGUMENT, never INTERNAL).

The health service (grpc.health.v1) answers from the Service's live state: "" is SERVING while
the process runs (the liveness probe), "inference.GRPCInferenceService" only while the model
and the capture store take requests (readiness). Watch is not offered.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2, health_pb2_grpc

from app import binary_tensors
from app import grpc_predict_v2_pb2 as pb
from app.service import Inference, Service
from app.settings import Settings
from app.validation import ALL_DATATYPES, RequestError, Validator, shown

log = logging.getLogger("app")
SERVICE = "inference.GRPCInferenceService"
SERVER_NAME = "onnxruntime-fastapi"  # the name REST's GET /v2 answers
# The InferTensorContents field of each datatype (FP16 has none: raw contents only).
TYPED_FIELDS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
FLOATS = frozenset({"FP16", "FP32", "FP64"})
# A RequestError's HTTP status as a gRPC status; anything else is the server's fault (INTERNAL).
STATUS_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    503: grpc.StatusCode.UNAVAILABLE,
}


# -- requests: protobuf tensors -> the JSON-shaped tensors the Validator checks ---------------------
def decode_inputs(request: pb.ModelInferRequest, validator: Validator) -> list[dict[str, Any]]:
    """The request's inputs as {name, shape, datatype, data}, from typed contents or raw bytes.

    The row limit is checked from each shape before any value is decoded, so a request claiming a
    million rows costs nothing; the contract's rules are the Validator's (Service.infer_tensors).
    """
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise RequestError(
            400,
            "raw_input_contents",
            "count",
            f"holds {len(raw)} entries for {len(request.inputs)} inputs (one per input, in order)",
        )
    tensors = []
    for position, tensor in enumerate(request.inputs):
        name, datatype, shape = tensor.name, tensor.datatype, list(tensor.shape)
        where = f"inputs[{name}]" if name in validator.keys_with_sensitive else f"inputs[{position}]"
        if not 1 <= len(shape) <= 2 or any(size < 0 for size in shape) or shape[1:] not in ([], [1]):
            raise RequestError(400, f"{where}.shape", "shape", f"must be [N] or [N, 1] (got {shape})")
        validator.check_rows(shape[0], f"{where}.shape", 400)
        if datatype not in ALL_DATATYPES:
            raise RequestError(
                400, f"{where}.datatype", "datatype", f"must be an OIP datatype (got {shown(datatype)})"
            )
        if raw:
            if tensor.HasField("contents"):
                raise RequestError(
                    400,
                    f"{where}.contents",
                    "raw_and_contents",
                    "must be unset when raw_input_contents carries the values",
                )
            data = from_raw(raw[position], datatype, shape, f"raw_input_contents[{position}]", where)
        else:
            data = from_contents(tensor.contents, datatype, shape, where)
        tensors.append({"name": name, "shape": shape, "datatype": datatype, "data": data})
    return tensors


def from_raw(buffer: bytes, datatype: str, shape: list[int], field: str, where: str) -> list[Any]:
    """Values of one raw input: the layout of REST's binary tensor data, decoded by the same code."""
    return binary_tensors.decode(datatype, shape, buffer, where, max(shape[0], 1), size_field=field)


def from_contents(contents: pb.InferTensorContents, datatype: str, shape: list[int], where: str) -> list[Any]:
    """Values of one typed input, from the contents field of its datatype."""
    if datatype not in TYPED_FIELDS:
        raise RequestError(
            400,
            f"{where}.contents",
            "datatype",
            f"{datatype} has no typed field: send it in raw_input_contents",
        )
    field = TYPED_FIELDS[datatype]
    values = getattr(contents, field)
    if len(values) != shape[0]:
        raise RequestError(
            400,
            f"{where}.contents.{field}",
            "shape",
            f"holds {len(values)} values but the shape {shape} needs {shape[0]} "
            f"({datatype} values go in {field})",
        )
    if datatype == "BYTES":
        return binary_tensors.texts(list(values), where)
    if datatype in FLOATS:  # FP32 as its exact float64 widening: the model reads the same float32
        return binary_tensors.missing_as_none(np.asarray(values, dtype=np.float64))
    return list(values)


# -- answers: scores -> protobuf outputs ---------------------------------------------------------
def add_outputs(response: pb.ModelInferResponse, inference: Inference, raw: bool) -> None:
    """The outputs REST answers (Service.infer_tensors), as raw bytes when the request was raw.

    Why raw when raw: Triton's client reads outputs from raw_output_contents when it sent raw
    inputs (its as_numpy), and typed contents otherwise.
    """
    for output in inference.outputs:
        tensor = response.outputs.add(name=output.name, datatype=output.datatype, shape=output.shape)
        values = output.data
        if raw:
            response.raw_output_contents.append(binary_tensors.encode(output.datatype, values))
        elif output.datatype == "BYTES":
            tensor.contents.bytes_contents.extend(str(value).encode() for value in values)
        elif output.datatype == "FP32":
            tensor.contents.fp32_contents.extend(np.asarray(values, np.float32).reshape(-1).tolist())
        elif output.datatype == "INT64":
            tensor.contents.int64_contents.extend(values)
        else:  # BOOL
            tensor.contents.bool_contents.extend(values)


# -- the services ----------------------------------------------------------------------------------
# The service's methods: request and response message types. Requests arrive as bytes and are
# parsed here, so a malformed message is the client's INVALID_ARGUMENT (gRPC's own parsing
# would answer UNKNOWN).
METHODS = {
    "ServerLive": (pb.ServerLiveRequest, pb.ServerLiveResponse),
    "ServerReady": (pb.ServerReadyRequest, pb.ServerReadyResponse),
    "ModelReady": (pb.ModelReadyRequest, pb.ModelReadyResponse),
    "ServerMetadata": (pb.ServerMetadataRequest, pb.ServerMetadataResponse),
    "ModelMetadata": (pb.ModelMetadataRequest, pb.ModelMetadataResponse),
    "ModelInfer": (pb.ModelInferRequest, pb.ModelInferResponse),
}


class InferenceServicer:
    """GRPCInferenceService over one Service; each call is counted in /metrics like a REST route.

    The request metrics label gRPC calls route="/inference.GRPCInferenceService/<Method>",
    method="GRPC" and the HTTP status the same error gets on REST, so alerts on 5xx cover both.
    """

    def __init__(self, service: Service) -> None:
        self.service = service

    def handler(self) -> grpc.GenericRpcHandler:
        def bind(name: str, request_type: Any, response_type: Any) -> grpc.RpcMethodHandler:
            async def handle(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
                return await self.answer(name, request_type, raw, context)

            return grpc.unary_unary_rpc_method_handler(
                handle, request_deserializer=None, response_serializer=response_type.SerializeToString
            )

        methods = {name: bind(name, *types) for name, types in METHODS.items()}
        return grpc.method_handlers_generic_handler(SERVICE, methods)

    async def answer(
        self, name: str, request_type: Any, raw: bytes, context: grpc.aio.ServicerContext
    ) -> Any:
        """Parse, run the method, count the call; a RequestError becomes its gRPC status."""
        started, status = time.perf_counter(), 200
        problem: RequestError | None = None
        try:
            try:
                request = request_type.FromString(raw)
            except DecodeError as error:
                raise RequestError(
                    400, "request", "protobuf", f"is not a valid {request_type.__name__} ({error})"
                ) from None
            result = getattr(self, name)(request)
            return await result if inspect.isawaitable(result) else result
        except RequestError as error:
            status, problem = error.status, error
        except Exception:
            log.exception("unexpected error in gRPC %s", name)
            status = 500
        finally:
            self.service.metrics.observe_request(
                f"/{SERVICE}/{name}", "GRPC", status, time.perf_counter() - started
            )
        if problem is None:
            await context.abort(grpc.StatusCode.INTERNAL, "internal error; see the service log")
        await context.abort(
            STATUS_CODES.get(problem.status, grpc.StatusCode.INTERNAL),
            f"{problem} (rule: {problem.rule})",
            trailing_metadata=(("field", problem.field), ("rule", problem.rule)),
        )
        return None  # not reached: abort raises

    def ServerLive(self, request: pb.ServerLiveRequest) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    def ServerReady(self, request: pb.ServerReadyRequest) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.service.ready)

    def ServerMetadata(self, request: pb.ServerMetadataRequest) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=ort.__version__, extensions=[])

    def ModelReady(self, request: pb.ModelReadyRequest) -> pb.ModelReadyResponse:
        """Unknown name or version: NOT_FOUND; known but not loaded: ready=false (REST: 503)."""
        try:
            self.service.require_model(request.name, request.version or None)
        except RequestError as error:
            if error.status != 503:
                raise
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=self.service.ready)

    def ModelMetadata(self, request: pb.ModelMetadataRequest) -> pb.ModelMetadataResponse:
        document = self.service.model_metadata(request.name, request.version or None)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=document["name"],
            versions=document["versions"],
            platform=document["platform"],
            inputs=[tensor(**item) for item in document["inputs"]],
            outputs=[tensor(**item) for item in document["outputs"]],
        )

    def ModelInfer(self, request: pb.ModelInferRequest) -> Any:
        """Small requests are answered on the event loop, larger ones in the scoring threads (as REST)."""
        if request.ByteSize() <= self.service.settings.inline_body_bytes:
            return self.infer(request)
        return asyncio.get_running_loop().run_in_executor(self.service.executor, self.infer, request)

    def infer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        service = self.service
        model = service.require_model(request.model_name, request.model_version or None)
        inputs = decode_inputs(request, service.validator)
        wanted = service.requested_outputs([{"name": item.name} for item in request.outputs] or None)
        inference = service.infer_tensors(model, inputs, wanted)
        response = pb.ModelInferResponse(model_name=model.name, model_version=model.version, id=request.id)
        # As on REST: the request id, and the rows' feedback tokens comma-separated in row order.
        for key, value in inference.parameters().items():
            response.parameters[key].string_param = value
        add_outputs(response, inference, raw=bool(request.raw_input_contents))
        return response


class Health(health_pb2_grpc.HealthServicer):
    """grpc.health.v1 Check from the Service's state: "" = the process is up, SERVICE = ready."""

    def __init__(self, service: Service) -> None:
        self.service = service

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        serving, not_serving = (
            health_pb2.HealthCheckResponse.SERVING,
            health_pb2.HealthCheckResponse.NOT_SERVING,
        )
        if request.service == "":
            return health_pb2.HealthCheckResponse(status=serving)
        if request.service == SERVICE:
            return health_pb2.HealthCheckResponse(status=serving if self.service.ready else not_serving)
        await context.abort(
            grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r} (serving {SERVICE!r})"
        )
        raise AssertionError("not reached")  # abort raises


async def start(service: Service, settings: Settings) -> grpc.aio.Server:
    """A started gRPC server on HOST:GRPC_PORT answering OIP and grpc.health.v1 for `service`.

    Its limits are REST's: a message may be as large as a request body (the body limit that
    MAX_BATCH_ROWS sizes), and at most MAX_CONCURRENT_REQUESTS calls run at once (more are
    refused with RESOURCE_EXHAUSTED, REST's 503).
    """
    server = grpc.aio.server(
        maximum_concurrent_rpcs=settings.max_concurrent_requests,
        options=[
            ("grpc.max_receive_message_length", service.body_limit),
            # gRPC shares a port between processes that both ask (SO_REUSEPORT) by default: a second
            # service on a taken port would start and take half the calls. Refuse to start instead.
            ("grpc.so_reuseport", 0),
        ],
    )
    server.add_generic_rpc_handlers((InferenceServicer(service).handler(),))
    health_pb2_grpc.add_HealthServicer_to_server(Health(service), server)
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    address = f"{host}:{settings.grpc_port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as error:
        raise OSError(f"cannot listen for gRPC on {address}: {error}") from None
    if not bound:
        raise OSError(f"cannot listen for gRPC on {address}")
    await server.start()
    log.info("Open Inference Protocol over gRPC on %s", address)
    return server
