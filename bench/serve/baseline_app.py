"""The baseline: the same model served the plain way, scikit-learn + pandas inside FastAPI.

What a tutorial-style service looks like: typed pydantic record models (generated from the
same data contract), a synchronous endpoint that FastAPI runs in its thread pool, a
pandas DataFrame per request and the joblib-loaded pipeline's `predict_proba`. It answers
the same JSON shape as the project's `/predict` without the feedback tokens. It does less
than the real service (no range checks, no capture, no feedback tokens, no metrics), so the
comparison favours the baseline.

Run (bench/serve/run.py does): BENCH_MODEL=model.joblib BENCH_PROJECT=<project> \
    python -m uvicorn baseline_app:app --loop uvloop --http httptools --no-access-log
"""

from __future__ import annotations

import os
import sys
import uuid
from typing import Any

import joblib
import pandas as pd
from fastapi import FastAPI
from pydantic import BaseModel, create_model

sys.path.insert(0, os.environ["BENCH_PROJECT"])

from governance.core.contract import load

CONTRACT = load()
MODEL = joblib.load(os.environ["BENCH_MODEL"])
TYPES: dict[str, Any] = {"int64": int, "float64": float, "string": str}


def field(feature: Any) -> tuple[Any, Any]:
    kind = TYPES[feature.dtype]
    return (kind | None, ...) if feature.nullable else (kind, ...)


Record = create_model("Record", **{feature.name: field(feature) for feature in CONTRACT.features})


class PredictRequest(BaseModel):
    records: list[Record]  # type: ignore[valid-type]


app = FastAPI(title="scikit-learn baseline")


@app.get("/health")
def health() -> dict[str, bool]:
    return {"ok": True}


@app.post("/predict")
def predict(request: PredictRequest) -> dict[str, Any]:
    frame = pd.DataFrame([record.model_dump() for record in request.records], columns=CONTRACT.feature_names)
    for feature in CONTRACT.categorical:
        frame[feature.name] = frame[feature.name].fillna("")
    probabilities = MODEL.predict_proba(frame)
    labels = MODEL.classes_[probabilities.argmax(axis=1)]
    return {
        "request_id": uuid.uuid4().hex,
        "model_name": "bench",
        "model_version": "joblib",
        "predictions": [
            {"label": int(label), "probabilities": {"0": float(row[0]), "1": float(row[1])}}
            for label, row in zip(labels, probabilities, strict=True)
        ],
    }
