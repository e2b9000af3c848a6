"""The service's behaviour, independent of HTTP routing: validate, score, capture, count.

Each handler takes the raw body and returns (status, JSON bytes, request id), so the same
code answers the raw-ASGI fast routes and the FastAPI routes.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import onnxruntime as ort
import orjson

from app import model as model_loader
from app.capture import CaptureStore, CaptureUnavailable, NoCapture
from app.feedback import ApiKeys, FeedbackTokens
from app.metrics import Metrics
from app.settings import Settings
from app.validation import RequestError, Validator, feedback_items, parse_json, shown
from governance.core.contract import load as load_contract
from governance.core.encoding import Scores, outputs_for

log = logging.getLogger("app")
Result = tuple[int, bytes, str | None]
INFER_KEYS = frozenset({"id", "parameters", "inputs", "outputs"})
NUMPY = orjson.OPT_SERIALIZE_NUMPY


class Scored(NamedTuple):
    """One scored OIP request: what a transport needs to write its answer."""

    request_id: str
    answers: list[Any]  # class values, or predicted numbers
    scores: Scores
    wanted: set[str]  # the output names asked for
    tokens: list[str]  # one feedback token per row


class RequestIds:
    """Unique request ids: a random 64-bit prefix per process start, then a counter.

    As unique as a uuid4 across replicas and restarts, at a fraction of the cost;
    `next()` on an itertools.count is atomic under the GIL, so scoring threads share it.
    Unique, not secret: a label names its prediction by the feedback token (app/feedback.py).
    """

    def __init__(self) -> None:
        self.prefix = uuid.uuid4().hex[:16]
        self.counter = itertools.count()

    def __next__(self) -> str:
        return f"{self.prefix}{next(self.counter):016x}"


class Service:
    """Everything one serving process holds: contract, model, capture store and metrics."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.contract = load_contract(settings.contract_path)
        self.validator = Validator(self.contract, settings.max_batch_rows, settings.unknown_category)
        self.body_limit = self.validator.body_limit(settings.max_body_bytes)
        target = self.contract.target
        self.classification = target.is_classification
        self.classes = list(target.classes)  # index -> class value (the model answers indices)
        self.class_keys = target.class_keys
        self.outputs = outputs_for(self.contract.task)
        self.label_datatype = model_loader.LABEL_DATATYPES[target.dtype] if self.classification else ""
        self.metrics = Metrics(target)
        self.capture: CaptureStore | NoCapture = (
            CaptureStore(
                settings.capture_uri,
                self.contract.feature_names,
                self.contract.sensitive.name if self.contract.sensitive else None,
                settings.capture_flush_rows,
                settings.capture_flush_seconds,
                settings.capture_max_buffer_rows,
                max_file_bytes=settings.capture_max_file_bytes,
                retention_bytes=settings.capture_retention_bytes,
                retention_days=settings.capture_retention_days,
                min_free_bytes=settings.capture_min_free_bytes,
            )
            if settings.capture_enabled
            else NoCapture()
        )
        self.metrics.add_source(self.capture.metrics)
        self.model: model_loader.Model | None = None
        self.problem = "the model has not been loaded yet"
        self.threads = settings.intra_op_threads
        self.executor = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="score")
        self._ids = RequestIds()
        self.tokens = FeedbackTokens.from_settings(settings.feedback_key_file)
        self.api_keys = ApiKeys.from_settings(settings.feedback_api_keys_file)

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self.capture.start()
        try:
            self.model = model_loader.load(
                self.settings.model_path,
                self.contract,
                self.threads,
                name=self.settings.model_name,
                strict=self.settings.app_env == "production",
            )
        except model_loader.ModelError as error:
            self.problem = f"model not loaded: {error}"
            log.error(
                "%s; the service stays up but not ready (503) until a valid model is deployed", self.problem
            )
            return
        digest = self.model.metadata.get("contract_sha256", "")
        if digest != self.contract.digest:
            log.warning(
                "model %s was trained under another contract version (%s)", self.model.path, digest[:12]
            )
        self.metrics.set_model(
            {"name": self.model.name, "version": self.model.version, "contract_sha256": digest}
        )
        # Everything loaded so far (framework, model, contract) lives as long as the process:
        # moving it out of the collector's generations makes each full collection cheap, which
        # showed as a steady share of the time of 100-row requests otherwise.
        gc.freeze()
        log.info(
            "serving model %s version %s from %s (onnxruntime %s, %d intra-op threads, capture %s)",
            self.model.name,
            self.model.version,
            self.model.path,
            ort.__version__,
            self.threads,
            self.settings.capture_uri if self.settings.capture_enabled else "off",
        )

    def stop(self) -> None:
        self.capture.close(timeout=self.settings.graceful_shutdown_seconds)
        self.executor.shutdown(wait=True)

    @property
    def ready(self) -> bool:
        return self.readiness_problem() is None

    def readiness_problem(self) -> str | None:
        """Why the pod should get no traffic: no model, or a capture store that cannot take rows."""
        if self.model is None:
            return self.problem
        return self.capture.problem()

    def require_model(self, name: str | None = None, version: str | None = None) -> model_loader.Model:
        """The model asked for, or 404 (another name or version) / 503 (not loaded)."""
        served = self.model.name if self.model else self.settings.model_name
        if name is not None and served and name != served:
            raise RequestError(
                404, "model", "unknown_model", f"{name!r} is not served here (serving {served!r})"
            )
        if self.model is None:
            raise RequestError(503, "model", "not_ready", self.problem)
        if version is not None and version != self.model.version:
            raise RequestError(
                404,
                "model_version",
                "unknown_version",
                f"{version!r} is not served (serving {self.model.version!r})",
            )
        return self.model

    async def call(self, handler: Callable[..., Result], body: bytes, *args: Any) -> Result:
        """Run a handler inline when its body is small, else in the scoring threads.

        A small body takes about as long to handle as one model call, less than a thread
        hand-off would add; a large one (parsing a thousand records) would hold the event
        loop for milliseconds, so it goes to a thread and the loop keeps serving.
        """
        if len(body) <= self.settings.inline_body_bytes:
            return handler(body, *args)
        return await asyncio.get_running_loop().run_in_executor(self.executor, handler, body, *args)

    # -- handlers ---------------------------------------------------------------------------
    def _record(
        self, model: model_loader.Model, rows: Any, scores: Scores
    ) -> tuple[str, list[Any], list[Any]]:
        """Capture the scored rows, then count them; no capture, no answer (503).

        Returns the request id, the answers (class values, or predicted numbers) and the class
        probabilities per row (empty for regression), as captured and as the client sees them.
        """
        request_id = next(self._ids)
        if self.classification:
            indices = scores.label.tolist()  # type: ignore[union-attr]
            classes = self.classes
            answers = [classes[index] for index in indices]
            score_list = scores.probabilities.tolist()  # type: ignore[union-attr]
        else:
            answers = scores.value.tolist()  # type: ignore[union-attr]
            score_list = []
        try:
            self.capture.record_predictions(
                request_id, time.time(), model.name, model.version, rows, answers, score_list
            )
        except CaptureUnavailable as error:
            raise RequestError(
                503, "capture", "unavailable", f"{error}; the prediction was not recorded"
            ) from None
        if self.classification:
            self.metrics.observe_predictions(indices, score_list)
        else:
            self.metrics.observe_values(answers)
        return request_id, answers, score_list

    def predict(self, body: bytes) -> Result:
        model = self.require_model()
        records, feeds = self.validator.records(body)
        request_id, answers, score_list = self._record(model, records, model.predict(feeds))
        tokens = self.tokens.issue(request_id, len(answers))
        if self.classification:
            keys = self.class_keys
            predictions = [
                {"label": label, "probabilities": dict(zip(keys, row, strict=True)), "feedback_token": token}
                for label, row, token in zip(answers, score_list, tokens, strict=True)
            ]
        else:
            predictions = [
                {"value": value, "feedback_token": token}
                for value, token in zip(answers, tokens, strict=True)
            ]
        payload = orjson.dumps(
            {
                "request_id": request_id,
                "model_name": model.name,
                "model_version": model.version,
                "predictions": predictions,
            }
        )
        return 200, payload, request_id

    def infer(self, body: bytes, name: str, version: str | None) -> Result:
        model = self.require_model(name, version)
        self.validator.check_containers(body, "inputs", 400)
        document = parse_json(body)
        if type(document) is not dict:
            raise RequestError(400, "body", "type", "must be a JSON object with 'inputs'")
        extra = sorted(set(document) - INFER_KEYS)
        if extra:
            raise RequestError(400, extra[0], "unknown_field", "is not part of an inference request")
        request_ref = document.get("id")
        if request_ref is not None and type(request_ref) is not str:
            raise RequestError(400, "id", "type", "must be a string")
        if type(document.get("parameters", {})) is not dict:
            raise RequestError(400, "parameters", "type", "must be an object")
        wanted = self._requested_outputs(document.get("outputs"))
        _, columns, feeds = self.validator.tensors(document.get("inputs"))
        scores = model.predict(feeds)
        request_id, answers, _ = self._record(model, columns, scores)
        rows = len(answers)
        # Outputs as model metadata declares them (app/model.py served_outputs): class values
        # typed by the contract (BYTES, INT64 or BOOL) and probabilities [N, classes]; or values [N].
        outputs = []
        if "label" in wanted:
            outputs.append(
                {"name": "label", "shape": [rows], "datatype": self.label_datatype, "data": answers}
            )
        if "probabilities" in wanted:
            probabilities = scores.probabilities
            outputs.append(
                {
                    "name": "probabilities",
                    "shape": list(probabilities.shape),  # type: ignore[union-attr]
                    "datatype": "FP32",
                    "data": probabilities.reshape(-1),  # type: ignore[union-attr]
                }
            )
        if "value" in wanted:
            outputs.append({"name": "value", "shape": [rows], "datatype": "FP32", "data": scores.value})
        response: dict[str, Any] = {"model_name": model.name, "model_version": model.version}
        if request_ref is not None:
            response["id"] = request_ref
        # OIP parameter values are strings, numbers or booleans, never lists: the row tokens are
        # one string, comma-separated in row order (a token never holds a comma).
        response["parameters"] = {
            "request_id": request_id,
            "feedback_tokens": ",".join(self.tokens.issue(request_id, rows)),
        }
        response["outputs"] = outputs
        return 200, orjson.dumps(response, option=NUMPY), request_id

    def score_tensors(self, model: model_loader.Model, inputs: Any, outputs: Any) -> Scored:
        """Check OIP input tensors (JSON-shaped: name, shape, datatype, data), score, capture, count.

        Why: a transport that decodes its own envelope (gRPC, app/grpc_server.py) reaches the same
        rules, model, capture and metrics as the REST infer route, with no copy of them.
        """
        wanted = self._requested_outputs(outputs)
        _, columns, feeds = self.validator.tensors(inputs)
        scores = model.predict(feeds)
        request_id, answers, _ = self._record(model, columns, scores)
        return Scored(request_id, answers, scores, wanted, self.tokens.issue(request_id, len(answers)))

    def _requested_outputs(self, outputs: Any) -> set[str]:
        """The output names asked for: all of the task's when none are named; an unknown one is 400."""
        if outputs is None:
            return set(self.outputs)
        if type(outputs) is not list or not outputs:
            raise RequestError(400, "outputs", "type", 'must be a non-empty list of {"name": ...}')
        wanted = set()
        for index, item in enumerate(outputs):
            name = item.get("name") if type(item) is dict else None
            if name not in self.outputs:
                raise RequestError(
                    400,
                    f"outputs[{index}].name",
                    "unknown_output",
                    f"must be one of {list(self.outputs)} for a {self.contract.task} model "
                    f"(got {shown(name)})",
                )
            wanted.add(item["name"])
        return wanted

    def authorize_feedback(self, authorization: str | None) -> str | None:
        """Who sends labels: the API key's fingerprint (401 without a valid key); None without API keys."""
        return self.api_keys.check(authorization) if self.api_keys is not None else None

    def feedback(self, body: bytes, labelled_by: str | None = None) -> Result:
        """Labels for earlier predictions, each named by its feedback token; all recorded or none."""
        self.validator.check_containers(body, "body", 422)
        document = parse_json(body)
        items = feedback_items(
            document, self.contract.target, self.settings.max_batch_rows, self.tokens.verify
        )
        if isinstance(self.capture, NoCapture):
            raise RequestError(
                503, "capture", "disabled", "capture is off (CAPTURE_URI), labels cannot be stored"
            )
        try:
            self.capture.record_feedback(time.time(), items, labelled_by)
        except CaptureUnavailable as error:
            raise RequestError(
                503, "capture", "unavailable", f"{error}; the labels were not recorded"
            ) from None
        return 202, orjson.dumps({"recorded": len(items)}), None

    # -- metadata ---------------------------------------------------------------------------
    def model_metadata(self, name: str, version: str | None) -> dict[str, Any]:
        model = self.require_model(name, version)
        return {
            "name": model.name,
            "versions": [model.version],
            "platform": "onnxruntime_onnx",
            "inputs": model.inputs,
            "outputs": model.outputs,
        }
