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
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson

from app import model as model_loader
from app.capture import CaptureStore, CaptureUnavailable, NoCapture
from app.feedback import ApiKeys, FeedbackTokens
from app.metrics import Metrics
from app.settings import Settings
from app.validation import RequestError, Validator, feedback_items, parse_json
from governance.core.contract import load as load_contract
from governance.core.encoding import CLASSIFIER_OUTPUTS as OUTPUTS

log = logging.getLogger("app")
Result = tuple[int, bytes, str | None]
INFER_KEYS = frozenset({"id", "parameters", "inputs", "outputs"})
NUMPY = orjson.OPT_SERIALIZE_NUMPY


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
        classes = self.contract.target.classes
        self.class_keys = tuple(str(value) for value in classes)
        self.positive_index = classes.index(self.contract.target.positive_class)
        self.metrics = Metrics(classes)
        self.capture: CaptureStore | NoCapture = (
            CaptureStore(
                settings.capture_uri,
                self.contract.feature_names,
                self.contract.sensitive.name if self.contract.sensitive else None,
                settings.capture_flush_rows,
                settings.capture_flush_seconds,
                settings.capture_max_buffer_rows,
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
        return self.model is not None and self.capture.available

    def readiness_problem(self) -> str | None:
        if self.model is None:
            return self.problem
        if not self.capture.available:
            return "capture store is not accepting rows"
        return None

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
        self, model: model_loader.Model, rows: Any, labels: np.ndarray, probabilities: np.ndarray
    ) -> tuple[str, list[int], list[list[float]]]:
        """Capture the scored rows, then count them; no capture, no answer (503)."""
        request_id = next(self._ids)
        label_list, score_list = labels.tolist(), probabilities.tolist()
        try:
            self.capture.record_predictions(
                request_id, time.time(), model.name, model.version, rows, label_list, score_list
            )
        except CaptureUnavailable as error:
            raise RequestError(
                503, "capture", "unavailable", f"{error}; the prediction was not recorded"
            ) from None
        self.metrics.observe_predictions(label_list, score_list, self.positive_index)
        return request_id, label_list, score_list

    def predict(self, body: bytes) -> Result:
        model = self.require_model()
        records, feeds = self.validator.records(body)
        labels, probabilities = model.predict(feeds)
        request_id, label_list, score_list = self._record(model, records, labels, probabilities)
        tokens = self.tokens.issue(request_id, len(label_list))
        first, second = self.class_keys
        payload = orjson.dumps(
            {
                "request_id": request_id,
                "model_name": model.name,
                "model_version": model.version,
                "predictions": [
                    {
                        "label": label,
                        "probabilities": {first: scores[0], second: scores[1]},
                        "feedback_token": token,
                    }
                    for label, scores, token in zip(label_list, score_list, tokens, strict=True)
                ],
            }
        )
        return 200, payload, request_id

    def infer(self, body: bytes, name: str, version: str | None) -> Result:
        model = self.require_model(name, version)
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
        labels, probabilities = model.predict(feeds)
        request_id, _, _ = self._record(model, columns, labels, probabilities)
        outputs = []
        if "label" in wanted:
            outputs.append({"name": "label", "shape": [len(labels)], "datatype": "INT64", "data": labels})
        if "probabilities" in wanted:
            outputs.append(
                {
                    "name": "probabilities",
                    "shape": list(probabilities.shape),
                    "datatype": "FP32",
                    "data": probabilities.reshape(-1),
                }
            )
        response: dict[str, Any] = {"model_name": model.name, "model_version": model.version}
        if request_ref is not None:
            response["id"] = request_ref
        # OIP parameter values are strings, numbers or booleans, never lists: the row tokens are
        # one string, comma-separated in row order (a token never holds a comma).
        response["parameters"] = {
            "request_id": request_id,
            "feedback_tokens": ",".join(self.tokens.issue(request_id, len(labels))),
        }
        response["outputs"] = outputs
        return 200, orjson.dumps(response, option=NUMPY), request_id

    @staticmethod
    def _requested_outputs(outputs: Any) -> set[str]:
        if outputs is None:
            return set(OUTPUTS)
        if type(outputs) is not list or not outputs:
            raise RequestError(400, "outputs", "type", 'must be a non-empty list of {"name": ...}')
        wanted = set()
        for index, item in enumerate(outputs):
            if type(item) is not dict or item.get("name") not in OUTPUTS:
                raise RequestError(
                    400,
                    f"outputs[{index}].name",
                    "unknown_output",
                    f"must be one of {list(OUTPUTS)}",
                )
            wanted.add(item["name"])
        return wanted

    def authorize_feedback(self, authorization: str | None) -> str | None:
        """Who sends labels: the API key's fingerprint (401 without a valid key); None without API keys."""
        return self.api_keys.check(authorization) if self.api_keys is not None else None

    def feedback(self, body: bytes, labelled_by: str | None = None) -> Result:
        """Labels for earlier predictions, each named by its feedback token; all recorded or none."""
        document = parse_json(body)
        items = feedback_items(
            document, self.contract.target.classes, self.settings.max_batch_rows, self.tokens.verify
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
