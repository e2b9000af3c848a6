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
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

import onnxruntime as ort
import orjson

from app import binary_tensors
from app import model as model_loader
from app.capture import CaptureStore, CaptureUnavailable, NoCapture
from app.feedback import ApiKeys, FeedbackTokens
from app.metrics import CHAMPION, Metrics
from app.settings import Settings
from app.shadow import Shadow
from app.validation import RequestError, Validator, feedback_items, parse_json, shown
from governance.core.contract import load as load_contract
from governance.core.encoding import Scores, outputs_for

log = logging.getLogger("app")
INFER_KEYS = frozenset({"id", "parameters", "inputs", "outputs"})
NUMPY = orjson.OPT_SERIALIZE_NUMPY


class Result(NamedTuple):
    """A handler's answer: status, body, request id; for binary tensor data, the JSON header's length."""

    status: int
    payload: bytes
    request_id: str | None
    header_length: int | None = None


@dataclass
class Output:
    """One OIP output tensor: `data` flat in row-major order (a list, or a numpy array)."""

    name: str
    datatype: str
    shape: list[int]
    data: Any


@dataclass
class Inference:
    """What an OIP transport encodes: the request id, one feedback token per row, the outputs."""

    request_id: str
    tokens: list[str]
    outputs: list[Output]

    def parameters(self) -> dict[str, str]:
        # OIP parameter values are strings, numbers or booleans, never lists: the row tokens are
        # one string, comma-separated in row order (a token never holds a comma).
        return {"request_id": self.request_id, "feedback_tokens": ",".join(self.tokens)}


def flag(parameters: dict[str, Any], key: str, where: str) -> bool:
    """A boolean OIP parameter (false when absent); another type is 400."""
    value = parameters.get(key, False)
    if type(value) is not bool:
        raise RequestError(400, where, "type", f"must be true or false (got {shown(value)})")
    return value


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
        self.shadow = self._load_challenger()
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
        if self.shadow is not None:
            self.shadow.start()
            log.info(
                "shadow scoring with challenger %s version %s from %s (queue of %d requests)",
                self.shadow.model.name,
                self.shadow.model.version,
                self.shadow.model.path,
                self.settings.shadow_queue_size,
            )
        log.info(
            "serving model %s version %s from %s (onnxruntime %s, %d intra-op threads, capture %s)",
            self.model.name,
            self.model.version,
            self.model.path,
            ort.__version__,
            self.threads,
            self.settings.capture_uri if self.settings.capture_enabled else "off",
        )

    def _load_challenger(self) -> Shadow | None:
        """Load SHADOW_MODEL_PATH exactly as the served model is loaded, or refuse to start.

        A challenger answering another task, other classes or other features than the contract
        says could not be compared with the champion row by row: the process stops with the
        reason instead of serving without the shadow the deployment asked for.
        """
        path = self.settings.shadow_model_path
        if path is None:
            return None
        try:
            # One intra-op thread: the challenger runs beside the champion and must not take
            # the cores the champion's answers need.
            challenger = model_loader.load(
                path, self.contract, 1, strict=self.settings.app_env == "production"
            )
        except model_loader.ModelError as error:
            raise model_loader.ModelError(f"SHADOW_MODEL_PATH={path}: challenger refused: {error}") from None
        shadow = Shadow(
            challenger, self._answers, self.capture, self.metrics, self.settings.shadow_queue_size
        )
        self.metrics.add_source(shadow.metrics)
        return shadow

    def stop(self) -> None:
        if self.shadow is not None:
            self.shadow.close(self.settings.shadow_drain_seconds)
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
    def _answers(self, scores: Scores) -> tuple[list[int] | None, list[Any], list[list[float]]]:
        """A model's scores as answered: class indices (None for regression), answers, probabilities."""
        if self.classification:
            indices = scores.label.tolist()  # type: ignore[union-attr]
            classes = self.classes
            return indices, [classes[index] for index in indices], scores.probabilities.tolist()  # type: ignore[union-attr]
        return None, scores.value.tolist(), []  # type: ignore[union-attr]

    def _score(
        self, model: model_loader.Model, rows: Any, feeds: dict[str, Any]
    ) -> tuple[str, list[Any], list[Any], Scores]:
        """Score, capture the scored rows, count them, offer them to the challenger (if any).

        No capture, no answer (503). Returns the request id, the answers (class values, or
        predicted numbers), the class probabilities per row (empty for regression), as captured
        and as the client sees them, and the model's scores.
        """
        shadowed = self.shadow is not None  # only the shadow comparison reads CPU time (app/shadow.py)
        started, cpu = time.perf_counter(), time.thread_time() if shadowed else 0.0
        scores = model.predict(feeds)
        seconds = time.perf_counter() - started
        cpu_seconds = time.thread_time() - cpu if shadowed else 0.0
        request_id = next(self._ids)
        indices, answers, score_list = self._answers(scores)
        try:
            self.capture.record_predictions(
                request_id, time.time(), model.name, model.version, rows, answers, score_list
            )
        except CaptureUnavailable as error:
            raise RequestError(
                503, "capture", "unavailable", f"{error}; the prediction was not recorded"
            ) from None
        if indices is not None:
            self.metrics.observe_predictions(indices, score_list)
        else:
            self.metrics.observe_values(answers)
        self.metrics.observe_scoring(CHAMPION, model.version, seconds, indices, len(answers))
        if shadowed:
            self.shadow.submit(request_id, feeds, len(answers), model.version, cpu_seconds)
        return request_id, answers, score_list, scores

    def predict(self, body: bytes) -> Result:
        model = self.require_model()
        records, feeds = self.validator.records(body)
        request_id, answers, score_list, _ = self._score(model, records, feeds)
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
        return Result(200, payload, request_id)

    def infer(self, body: bytes, name: str, version: str | None, header_length: str | None = None) -> Result:
        """The REST infer call: a JSON request, or a JSON header + binary tensor data (app/binary_tensors.py).

        header_length: the Inference-Header-Content-Length the client sent (binary tensor data), or None.
        Outputs asked for as binary (`parameters.binary_data` per output, or the request's
        `parameters.binary_data_output`) follow the JSON answer as raw bytes, and the Result
        carries the answer's JSON length for the Inference-Header-Content-Length header.
        """
        model = self.require_model(name, version)
        header, raw = binary_tensors.split(body, header_length)
        self.validator.check_containers(header, "inputs", 400)
        document = parse_json(header)
        if type(document) is not dict:
            raise RequestError(400, "body", "type", "must be a JSON object with 'inputs'")
        extra = sorted(set(document) - INFER_KEYS)
        if extra:
            raise RequestError(400, extra[0], "unknown_field", "is not part of an inference request")
        request_ref = document.get("id")
        if request_ref is not None and type(request_ref) is not str:
            raise RequestError(400, "id", "type", "must be a string")
        parameters = document.get("parameters", {})
        if type(parameters) is not dict:
            raise RequestError(400, "parameters", "type", "must be an object")
        all_binary = flag(parameters, "binary_data_output", "parameters.binary_data_output")
        wanted = self.requested_outputs(document.get("outputs"), all_binary)
        inputs = document.get("inputs")
        binary_tensors.attach(inputs, raw, self.validator.max_rows)
        inference = self.infer_tensors(model, inputs, wanted)
        response: dict[str, Any] = {"model_name": model.name, "model_version": model.version}
        if request_ref is not None:
            response["id"] = request_ref
        response["parameters"] = inference.parameters()
        outputs, tail = [], []
        for output in inference.outputs:
            tensor: dict[str, Any] = {"name": output.name, "shape": output.shape, "datatype": output.datatype}
            if wanted[output.name]:
                data = binary_tensors.encode(output.datatype, output.data)
                tensor["parameters"] = {"binary_data_size": len(data)}
                tail.append(data)
            else:
                tensor["data"] = output.data
            outputs.append(tensor)
        response["outputs"] = outputs
        payload = orjson.dumps(response, option=NUMPY)
        if not tail:
            return Result(200, payload, inference.request_id)
        return Result(200, payload + b"".join(tail), inference.request_id, len(payload))

    def infer_tensors(self, model: model_loader.Model, inputs: Any, wanted: Collection[str]) -> Inference:
        """Validate OIP input tensors, score, capture; the outputs named in `wanted`. Transport-free.

        Seam of every OIP transport (REST JSON, REST binary, gRPC): each input is a dict
        {"name", "shape", "datatype", "data": flat list of JSON-like values} (binary and typed
        contents decoded by app/binary_tensors.decode), so validation, scoring and the captured
        rows are the same whichever way the tensors came. `wanted` comes from `requested_outputs`.
        """
        _, columns, feeds = self.validator.tensors(inputs)
        request_id, answers, _, scores = self._score(model, columns, feeds)
        rows = len(answers)
        # Outputs as model metadata declares them (app/model.py served_outputs): class values
        # typed by the contract (BYTES, INT64 or BOOL) and probabilities [N, classes]; or values [N].
        outputs = []
        if "label" in wanted:
            outputs.append(Output("label", self.label_datatype, [rows], answers))
        if "probabilities" in wanted:
            probabilities = scores.probabilities
            outputs.append(
                Output(
                    "probabilities",
                    "FP32",
                    list(probabilities.shape),  # type: ignore[union-attr]
                    probabilities.reshape(-1),  # type: ignore[union-attr]
                )
            )
        if "value" in wanted:
            outputs.append(Output("value", "FP32", [rows], scores.value))
        return Inference(request_id, self.tokens.issue(request_id, rows), outputs)

    def requested_outputs(self, outputs: Any, all_binary: bool = False) -> dict[str, bool]:
        """The outputs asked for, each with whether it is wanted as binary data.

        All of the task's outputs when none are named; an unknown name is 400. `binary_data` on
        an output overrides the request's `binary_data_output` (`all_binary`).
        """
        if outputs is None:
            return dict.fromkeys(self.outputs, all_binary)
        if type(outputs) is not list or not outputs:
            raise RequestError(400, "outputs", "type", 'must be a non-empty list of {"name": ...}')
        wanted = {}
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
            parameters = item.get("parameters", {})
            if type(parameters) is not dict:
                raise RequestError(400, f"outputs[{index}].parameters", "type", "must be an object")
            binary = flag(parameters, "binary_data", f"outputs[{index}].parameters.binary_data")
            wanted[name] = binary if "binary_data" in parameters else all_binary
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
        return Result(202, orjson.dumps({"recorded": len(items)}), None)

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
