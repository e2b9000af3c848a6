"""Builders of the serving tests: a small ONNX model with the project's model interface.

The tests must not wait for training, so they build their own model from the data contract:
a scikit-learn pipeline on synthetic rows, exported with skl2onnx to exactly the interface
the real export follows (one [N, 1] input per feature, float or string; a classifier answers
`label` int64 [N], the class index in the contract's order, and `probabilities` float
[N, classes]; a regressor `value` float [N, 1]; metadata props). Serving code never sees
scikit-learn: only the .onnx file crosses over. Every task of the contract is built, so the
serving tests run in a bake of any task. `bench/serve` of the template reuses these
helpers to train the model it serves both ways.

The pytest fixtures built on these helpers (`contract`, `model_file`, `settings_for`,
`client`) live in tests/app/conftest.py; this module only builds things and raises errors
instead of asserting, so it works the same outside pytest (`bench/serve/prepare.py`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from governance.core.contract import Contract, load

MODEL_NAME = "test_model"


# -- data and model ---------------------------------------------------------------------------
def synthetic_frame(contract: Contract, rows: int, seed: int = 0) -> Any:
    """Rows inside the contract, with a target that depends on the features (so a model learns).

    Binary: the second class more likely as the signal grows (so AUC > 0.5); multiclass: the
    signal's quantiles pick the class; regression: the signal plus noise, as a number.
    """
    import pandas as pd

    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    signal = np.zeros(rows)
    for feature in contract.numeric:
        low = feature.min if feature.min is not None else 0.0
        high = feature.max if feature.max is not None else low + 100.0
        values = rng.uniform(low, high, rows)
        signal += (values - low) / max(high - low, 1e-9) - 0.5
        if feature.dtype == "int64":
            values = np.round(values)
        if feature.nullable:
            values[rng.random(rows) < 0.05] = np.nan
        columns[feature.name] = values
    for feature in contract.categorical:
        values = rng.choice(list(feature.categories), rows).astype(object)
        signal += np.where(values == feature.categories[0], 0.8, 0.0)
        if feature.nullable:
            values[rng.random(rows) < 0.05] = ""
        columns[feature.name] = values
    if contract.sensitive is not None:
        columns[contract.sensitive.name] = rng.choice(list(contract.sensitive.categories or ("a", "b")), rows)
    target = contract.target
    noisy = 3.0 * signal + rng.normal(0.0, 0.5, rows)
    if not target.is_classification:
        values = 10.0 * noisy + 50.0
        columns[target.name] = np.round(values) if target.dtype == "int64" else values
        return pd.DataFrame(columns)
    if len(target.classes) == 2:
        indices = (rng.random(rows) < 1.0 / (1.0 + np.exp(-noisy))).astype(np.int64)
    else:
        edges = np.quantile(noisy, np.linspace(0, 1, len(target.classes) + 1)[1:-1])
        indices = np.digitize(noisy, edges)
    columns[target.name] = pd.Series(target.class_values(indices))
    return pd.DataFrame(columns)


def true_labels(contract: Contract, rows: int) -> list[Any]:
    """Valid /feedback labels for `rows` predictions: the classes in turn, or numbers (regression)."""
    target = contract.target
    if target.is_classification:
        return [target.classes[row % len(target.classes)] for row in range(rows)]
    return [float(row) + 0.5 if target.dtype != "int64" else row for row in range(rows)]


def training_frame(contract: Contract, rows: int, seed: int = 0) -> Any:
    """The project's example generator when it exists and fits the contract, else synthetic rows."""
    try:
        from data_pipelines.example import generate
    except ImportError:
        return synthetic_frame(contract, rows, seed)
    frame = generate(rows, seed=seed)
    if not set(contract.feature_names) | {contract.target.name} <= set(frame.columns):
        return synthetic_frame(contract, rows, seed)
    for feature in contract.categorical:
        frame[feature.name] = frame[feature.name].fillna("").astype(object)
    return frame


def fit_pipeline(contract: Contract, frame: Any) -> Any:
    """Impute + scale numbers, one-hot the categories (unknown and "" ignored), a linear model.

    Classifiers (logistic regression) are fitted on class indices, as ml/ trains them, so the
    ONNX label is the index for any class type; regressors are ridge regressions.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [feature.name for feature in contract.numeric]
    categorical = [feature.name for feature in contract.categorical]
    prepare = ColumnTransformer(
        [
            (
                "numeric",
                Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]),
                numeric,
            ),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), categorical),
        ]
    )
    target = contract.target
    model = LogisticRegression(max_iter=500) if target.is_classification else Ridge()
    pipeline = Pipeline([("prepare", prepare), ("model", model)])
    features = frame[contract.feature_names].copy()
    for name in numeric:
        features[name] = features[name].astype(np.float32)
    y = frame[target.name]
    return pipeline.fit(features, target.class_indices(y) if target.is_classification else y.to_numpy())


def export_onnx(pipeline: Any, contract: Contract, folder: Path, model_name: str = MODEL_NAME) -> Path:
    """Write `folder/<version>/model.onnx` with the project's interface; return the file."""
    import onnx
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType

    inputs = [
        (feature.name, FloatTensorType([None, 1]) if feature.is_numeric else StringTensorType([None, 1]))
        for feature in contract.features
    ]
    target = contract.target
    if target.is_classification:
        outputs = [
            ("label", Int64TensorType([None])),
            ("probabilities", FloatTensorType([None, len(target.classes)])),
        ]
        options = {id(pipeline.steps[-1][1]): {"zipmap": False}}
    else:
        outputs, options = [("value", FloatTensorType([None, 1]))], None
    model = convert_sklearn(
        pipeline, initial_types=inputs, final_types=outputs, options=options, target_opset=17
    )
    digest = hashlib.sha256(model.SerializeToString()).hexdigest()[:8]
    version = f"{datetime.now(UTC):%Y%m%d%H%M%S}-{digest}"
    onnx.helper.set_model_props(
        model,
        {
            "model_name": model_name,
            "version": version,
            "contract_sha256": contract.digest,
            "feature_order": json.dumps(contract.feature_names),
            "model_family": "linear",
            "task": contract.task,
            "classes": json.dumps(list(target.classes)),
        },
    )
    path = folder / version / "model.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    (folder / "latest").write_text(version + "\n")
    return path


def build_model(
    folder: Path, contract: Contract | None = None, rows: int = 2000, seed: int = 0
) -> tuple[Path, Any]:
    """Train on synthetic rows and export; returns the .onnx path and the fitted pipeline."""
    contract = contract or load()
    pipeline = fit_pipeline(contract, synthetic_frame(contract, rows, seed))
    return export_onnx(pipeline, contract, folder), pipeline


# -- request bodies ---------------------------------------------------------------------------
def sample_records(
    contract: Contract, rows: int, seed: int = 0, sensitive: bool = True
) -> list[dict[str, Any]]:
    """Valid /predict records (JSON types), the sensitive attribute included when asked."""
    rng = np.random.default_rng(seed)
    records = []
    for _ in range(rows):
        record: dict[str, Any] = {}
        for feature in contract.features:
            if feature.is_numeric:
                low = feature.min if feature.min is not None else 0.0
                high = feature.max if feature.max is not None else 100.0
                value = float(rng.uniform(low, high))
                record[feature.name] = round(value) if feature.dtype == "int64" else round(value, 3)
            else:
                record[feature.name] = str(rng.choice(list(feature.categories)))
        if sensitive and contract.sensitive is not None:
            record[contract.sensitive.name] = str(rng.choice(list(contract.sensitive.categories or ("a",))))
        records.append(record)
    return records


def infer_body(
    contract: Contract, records: list[dict[str, Any]], request_id: str | None = "req-1"
) -> dict[str, Any]:
    """The same records as an Open Inference Protocol request (column tensors [N, 1])."""
    inputs = [
        {
            "name": feature.name,
            "shape": [len(records), 1],
            "datatype": "FP32" if feature.is_numeric else "BYTES",
            "data": [record[feature.name] for record in records],
        }
        for feature in contract.features
    ]
    body: dict[str, Any] = {"inputs": inputs}
    if request_id is not None:
        body["id"] = request_id
    return body


def scored(predictions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """/predict's predictions without their feedback tokens (unique per request): what was scored."""
    return [{key: value for key, value in item.items() if key != "feedback_token"} for item in predictions]


# -- an in-process ASGI driver ------------------------------------------------------------------
class AsgiDriver:
    """Calls an ASGI app directly, lifespan included: thousands of requests per second in tests."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._lifespan: asyncio.Task[None] | None = None
        self._to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def startup(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self._lifespan = asyncio.create_task(self.app(scope, self._to_app.get, self._from_app.put))
        await self._to_app.put({"type": "lifespan.startup"})
        message = await self._from_app.get()
        if message["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"the app did not start: {message}")

    async def shutdown(self) -> None:
        await self._to_app.put({"type": "lifespan.shutdown"})
        message = await self._from_app.get()
        if message["type"] != "lifespan.shutdown.complete":
            raise RuntimeError(f"the app did not stop cleanly: {message}")
        if self._lifespan is not None:
            await self._lifespan

    async def request(
        self, method: str, path: str, body: bytes = b"", content_type: str | None = "application/json"
    ) -> tuple[int, dict[str, str], bytes]:
        headers = [(b"content-length", str(len(body)).encode())]
        if content_type:
            headers.append((b"content-type", content_type.encode()))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8080),
            "state": {},
        }
        sent = False
        response: dict[str, Any] = {"status": 0, "headers": {}, "body": []}

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.sleep(3600)
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                response["status"] = message["status"]
                response["headers"] = {k.decode(): v.decode() for k, v in message.get("headers", [])}
            elif message["type"] == "http.response.body":
                response["body"].append(message.get("body", b""))

        await self.app(scope, receive, send)
        return response["status"], response["headers"], b"".join(response["body"])


# -- capture ---------------------------------------------------------------------------------------
def read_capture(root: Path) -> list[dict[str, Any]]:
    """Every captured line under a local capture root."""
    rows = []
    for file in sorted(root.glob("date=*/*.jsonl")):
        rows.extend(json.loads(line) for line in file.read_text().splitlines() if line)
    return rows


# -- what the service should answer ----------------------------------------------------------------
def onnx_answers(model_file: Path, contract: Contract, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What /predict should answer for the records (without tokens), from onnxruntime directly.

    Built outside the service (its own feed, its own index -> class mapping), so a test that
    compares the service's answers with these checks the service, not the code it shares.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    feeds = {}
    for feature in contract.features:
        values = [record[feature.name] for record in records]
        if feature.is_numeric:
            feeds[feature.name] = np.array([np.nan if v is None else v for v in values], np.float32).reshape(
                -1, 1
            )
        else:
            feeds[feature.name] = np.array(["" if v is None else v for v in values], object).reshape(-1, 1)
    target = contract.target
    if not target.is_classification:
        [values] = session.run(["value"], feeds)
        return [{"value": float(value)} for value in values.reshape(-1)]
    indices, probabilities = session.run(["label", "probabilities"], feeds)
    keys = [value if isinstance(value, str) else json.dumps(value) for value in target.classes]
    return [
        {"label": target.classes[int(index)], "probabilities": dict(zip(keys, row.tolist(), strict=True))}
        for index, row in zip(indices, probabilities, strict=True)
    ]


def served_outputs(contract: Contract) -> dict[str, dict[str, Any]]:
    """The OIP output tensors (name -> name, datatype, shape) a service of this contract declares."""
    target = contract.target
    if not target.is_classification:
        return {"value": {"name": "value", "datatype": "FP32", "shape": [-1]}}
    datatype = {"int64": "INT64", "string": "BYTES", "bool": "BOOL"}[target.dtype]
    return {
        "label": {"name": "label", "datatype": datatype, "shape": [-1]},
        "probabilities": {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(target.classes)]},
    }


def assert_answers(predictions: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """The service's predictions equal onnxruntime's: same labels (value and JSON type), close numbers."""
    import pytest

    assert len(predictions) == len(expected)
    for got, want in zip(scored(predictions), expected, strict=True):
        assert set(got) == set(want)
        if "value" in want:
            assert type(got["value"]) is float and got["value"] == pytest.approx(
                want["value"], rel=1e-5, abs=1e-4
            )
            continue
        assert got["label"] == want["label"] and type(got["label"]) is type(want["label"])
        assert list(got["probabilities"]) == list(want["probabilities"])  # every class, in contract order
        assert list(got["probabilities"].values()) == pytest.approx(
            list(want["probabilities"].values()), abs=1e-6
        )


def wait_until_ready(process: Any, port: int, why_not: Any, seconds: float = 30) -> None:
    """Poll /v2/health/ready of a service started as `process` until it answers 200.

    Fails with `why_not()` (its log) when the process exits first, or after `seconds`.
    """
    import http.client
    import time

    deadline = time.monotonic() + seconds
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", "/v2/health/ready")
            ready = connection.getresponse().status == 200
            connection.close()
            if ready:
                return
        except OSError:
            pass
        assert process.poll() is None, why_not()
        assert time.monotonic() < deadline, "the server did not become ready"
        time.sleep(0.1)
