"""The ASGI application: `uvicorn app.main:app` (or `python -m app`).

Two layers, one behaviour. FastAPI declares every route (so /docs and /openapi.json show
the contract-derived schemas) and answers the light ones: health, metadata, /feedback,
/metrics. The two scoring routes, `POST /predict` and `POST /v2/models/{name}/infer`, are
answered by `ServingApp` directly from the ASGI callable, with the same handlers the
FastAPI routes call. Why: on one core the framework's per-request machinery (routing,
dependency resolution, middleware, response objects) costs several times more than
validating a row and running the model (measured in ../bench/serve of the template), and
these two routes are where the traffic is. Every other request passes through unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import onnxruntime as ort
import orjson
from fastapi import FastAPI, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPBearer
from starlette.exceptions import HTTPException

from app import binary_tensors, schema
from app.asgi import ClientDisconnected, Receive, Send, chunks, header, read_json_body, send_json
from app.metrics import CONTENT_TYPE
from app.service import Result, Service
from app.settings import Settings
from app.validation import RequestError

log = logging.getLogger("app")
INFER = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")
MODEL_ROUTES = (
    (re.compile(r"^/v2/models/[^/]+$"), "/v2/models/{name}"),
    (re.compile(r"^/v2/models/[^/]+/ready$"), "/v2/models/{name}/ready"),
    (re.compile(r"^/v2/models/[^/]+/versions/[^/]+$"), "/v2/models/{name}/versions/{version}"),
    (re.compile(r"^/v2/models/[^/]+/versions/[^/]+/ready$"), "/v2/models/{name}/versions/{version}/ready"),
    (re.compile(r"^/v2/models/[^/]+/infer$"), "/v2/models/{name}/infer"),
    (re.compile(r"^/v2/models/[^/]+/versions/[^/]+/infer$"), "/v2/models/{name}/versions/{version}/infer"),
)
# OIP server metadata: Triton's binary tensor data extension (app/binary_tensors.py).
EXTENSIONS = ("binary_tensor_data",)
BEARER = HTTPBearer(auto_error=False, description="a key of FEEDBACK_API_KEYS_FILE (when it is set)")
STATIC_ROUTES = frozenset(
    {
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/metrics",
        "/predict",
        "/feedback",
        "/docs",
        "/openapi.json",
    }
)


def route_label(path: str) -> str:
    """The route template a path belongs to: bounded label values for the metrics."""
    if path in STATIC_ROUTES:
        return path
    if path.startswith("/v2/models/"):
        for pattern, label in MODEL_ROUTES:
            if pattern.match(path):
                return label
    return "other"


def json_response(status: int, content: Any) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


def result_response(result: Result) -> Response:
    headers = {"x-request-id": result.request_id} if result.request_id else {}
    media_type = "application/json"
    if result.header_length is not None:  # binary tensor data (app/binary_tensors.py)
        headers["inference-header-content-length"] = str(result.header_length)
        media_type = "application/octet-stream"
    return Response(result.payload, status_code=result.status, media_type=media_type, headers=headers)


async def read_body(
    service: Service,
    content_type: str | None,
    content_length: str | None,
    parts: AsyncIterator[bytes],
    oip: bool = False,
) -> bytes:
    """The body within the body limit and within BODY_TIMEOUT_SECONDS (408 after it).

    Why a deadline: a request holds one of the MAX_CONCURRENT_REQUESTS slots while its body
    arrives, so clients trickling bodies would otherwise keep every slot and starve the rest.
    """
    seconds = service.settings.body_timeout_seconds
    try:
        async with asyncio.timeout(seconds):
            return await read_json_body(content_type, content_length, parts, service.body_limit, oip)
    except TimeoutError:
        raise RequestError(
            408, "body", "timeout", f"did not arrive within BODY_TIMEOUT_SECONDS={seconds:g} s"
        ) from None


def build_api(service: Service) -> FastAPI:
    """The FastAPI application: every route, its OpenAPI description, and the lifespan."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            service.stop()

    contract, settings = service.contract, service.settings
    reject_unknown = settings.unknown_category == "reject"
    api = FastAPI(
        title=f"{contract.dataset} model service",
        description="onnxruntime behind the Open Inference Protocol v2, /predict, and production capture.",
        version="1",
        lifespan=lifespan,
    )

    @api.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> Response:
        return json_response(error.status_code, {"error": str(error.detail)})

    @api.exception_handler(RequestValidationError)
    async def validation_error(_: Request, error: RequestValidationError) -> Response:
        return json_response(422, {"error": str(error.errors()[:1])})

    async def body_of(request: Request, oip: bool = False) -> bytes:
        return await read_body(
            service,
            request.headers.get("content-type"),
            request.headers.get("content-length"),
            request.stream(),
            oip,
        )

    def error_response(error: RequestError) -> Response:
        return Response(error.body(), status_code=error.status, media_type="application/json")

    async def answer(request: Request, handler: Any, *args: Any, oip: bool = False) -> Response:
        try:
            return result_response(await service.call(handler, await body_of(request, oip), *args))
        except RequestError as error:
            return error_response(error)

    @api.get("/v2", tags=["Open Inference Protocol"])
    async def server_metadata() -> Response:
        return json_response(
            200,
            {"name": "onnxruntime-fastapi", "version": ort.__version__, "extensions": list(EXTENSIONS)},
        )

    @api.get("/v2/health/live", tags=["Open Inference Protocol"])
    async def live() -> Response:
        return json_response(200, {"live": True})

    @api.get("/v2/health/ready", tags=["Open Inference Protocol"], responses={503: schema.ERRORS[503]})
    async def ready() -> Response:
        problem = service.readiness_problem()
        if problem:
            return json_response(503, {"ready": False, "error": problem})
        return json_response(200, {"ready": True})

    @api.get("/v2/models/{name}", tags=["Open Inference Protocol"])
    @api.get("/v2/models/{name}/versions/{version}", tags=["Open Inference Protocol"])
    async def model_metadata(name: str, version: str | None = None) -> Response:
        try:
            return json_response(200, service.model_metadata(name, version))
        except RequestError as error:
            return error_response(error)

    @api.get("/v2/models/{name}/ready", tags=["Open Inference Protocol"])
    @api.get("/v2/models/{name}/versions/{version}/ready", tags=["Open Inference Protocol"])
    async def model_ready(name: str, version: str | None = None) -> Response:
        try:
            service.require_model(name, version)
        except RequestError as error:
            return error_response(error)
        if not service.ready:
            return json_response(503, {"name": name, "ready": False, "error": service.readiness_problem()})
        return json_response(200, {"name": name, "ready": True})

    infer_doc = {
        "tags": ["Open Inference Protocol"],
        "openapi_extra": schema.json_body(schema.infer_request(contract, settings.max_batch_rows)),
        "responses": {
            200: schema.json_response(
                schema.infer_response(contract.target), "the outputs of the contract's task"
            ),
            **schema.ERRORS,
        },
    }

    @api.post("/v2/models/{name}/infer", **infer_doc)
    @api.post("/v2/models/{name}/versions/{version}/infer", **infer_doc)
    async def infer(name: str, request: Request, version: str | None = None) -> Response:
        """Score tensors (one per feature, [N, 1]); errors are 400 with {"error"}.

        The body may also be binary tensor data: a JSON header of `Inference-Header-Content-Length`
        bytes, then each input with `parameters.binary_data_size` as raw little-endian bytes."""
        length = binary_tensors.header_length(
            request.headers.get("inference-header-content-length"), request.headers.get("content-type")
        )
        return await answer(request, service.infer, name, version, length, oip=True)

    @api.post(
        "/predict",
        tags=["Scoring"],
        openapi_extra=schema.json_body(
            schema.predict_request(contract, settings.max_batch_rows, reject_unknown)
        ),
        responses={
            200: schema.json_response(schema.predict_response(contract.target), "one prediction per record"),
            **schema.ERRORS,
        },
    )
    async def predict(request: Request) -> Response:
        """Score records keyed by feature name; every field is checked against the data contract."""
        return await answer(request, service.predict)

    @api.post(
        "/feedback",
        tags=["Scoring"],
        status_code=202,
        openapi_extra=schema.json_body(schema.feedback_request(contract.target)),
        responses=schema.FEEDBACK_ERRORS,
        # Declares the bearer scheme in /docs when keys are configured; the check itself is below.
        dependencies=[Security(BEARER)] if service.api_keys is not None else None,
    )
    async def feedback(request: Request) -> Response:
        """Record ground-truth labels of earlier predictions, each named by its feedback_token."""
        try:
            labelled_by = service.authorize_feedback(request.headers.get("authorization"))
        except RequestError as error:  # checked before the body is read
            return Response(
                error.body(),
                status_code=error.status,
                media_type="application/json",
                headers={"www-authenticate": 'Bearer realm="feedback"'},
            )
        return await answer(request, service.feedback, labelled_by)

    @api.get("/metrics", tags=["Operations"])
    async def metrics() -> Response:
        return Response(service.metrics.render(), media_type=CONTENT_TYPE)

    return api


class ServingApp:
    """The outermost ASGI callable: fast scoring routes, request metrics, then FastAPI."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.service = Service(self.settings)
        self.api = build_api(self.service)
        self.metrics = self.service.metrics
        self.in_flight = 0
        limit = self.settings.max_concurrent_requests
        self.busy = RequestError(
            503,
            "requests",
            "max_concurrent",
            f"{limit} requests are being read or scored, the limit of MAX_CONCURRENT_REQUESTS={limit}; "
            "retry after a second",
        ).body()

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        """Bound the POST requests in flight, then dispatch.

        Why: each holds its body (up to the body limit) and its parse; without a bound, memory
        grows with the number of clients. Excess requests are answered at once, before their
        body is read (503 with Retry-After: the load balancer or client retries, nothing queues).
        """
        if scope["type"] != "http" or scope["method"] != "POST":
            await self._dispatch(scope, receive, send)
            return
        if self.in_flight >= self.settings.max_concurrent_requests:
            started = time.perf_counter()
            await send_json(send, 503, self.busy, ((b"retry-after", b"1"),))
            self.metrics.observe_request(
                route_label(scope["path"]), "POST", 503, time.perf_counter() - started
            )
            return
        self.in_flight += 1
        try:
            await self._dispatch(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _dispatch(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        """The scoring routes straight from ASGI, everything else through FastAPI, all measured."""
        if scope["type"] != "http":
            await self.api(scope, receive, send)
            return
        started = time.perf_counter()
        method, path = scope["method"], scope["path"]
        if method == "POST":
            if path == "/predict":
                status = await self._score(scope, receive, send, self.service.predict)
                self.metrics.observe_request("/predict", method, status, time.perf_counter() - started)
                return
            match = INFER.match(path) if path.startswith("/v2/models/") else None
            if match:
                name, version = match.groups()
                length = binary_tensors.header_length(
                    header(scope, b"inference-header-content-length"), header(scope, b"content-type")
                )
                status = await self._score(
                    scope, receive, send, self.service.infer, name, version, length, oip=True
                )
                route = (
                    "/v2/models/{name}/infer"
                    if version is None
                    else "/v2/models/{name}/versions/{version}/infer"
                )
                self.metrics.observe_request(route, method, status, time.perf_counter() - started)
                return
        status = 500

        async def watch(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.api(scope, receive, watch)
        finally:
            self.metrics.observe_request(route_label(path), method, status, time.perf_counter() - started)

    async def _score(
        self, scope: dict[str, Any], receive: Receive, send: Send, handler: Any, *args: Any, oip: bool = False
    ) -> int:
        headers: tuple[tuple[bytes, bytes], ...] = ()
        content_type = b"application/json"
        try:
            body = await read_body(
                self.service,
                header(scope, b"content-type"),
                header(scope, b"content-length"),
                chunks(receive),
                oip,
            )
            status, payload, request_id, header_length = await self.service.call(handler, body, *args)
            if request_id:
                headers = ((b"x-request-id", request_id.encode()),)
            if header_length is not None:  # binary tensor data (app/binary_tensors.py)
                headers += ((b"inference-header-content-length", str(header_length).encode()),)
                content_type = b"application/octet-stream"
        except RequestError as error:
            status, payload = error.status, error.body()
        except ClientDisconnected:
            return 499
        except Exception:
            log.exception("unexpected error while scoring %s", scope["path"])
            status, payload = 500, orjson.dumps({"error": "internal error; see the service log"})
        await send_json(send, status, payload, headers, content_type)
        return status


def create_app(settings: Settings | None = None) -> ServingApp:
    """A new application; settings from the environment unless given."""
    return ServingApp(settings)


def __getattr__(name: str) -> Any:
    """`app.main.app`, built on first use so that importing this module has no side effects."""
    if name == "app":
        application = create_app()
        globals()["app"] = application
        return application
    raise AttributeError(name)
