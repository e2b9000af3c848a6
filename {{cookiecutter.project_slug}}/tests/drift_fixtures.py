"""Shared helpers for the monitoring tests: example data and capture files in the serving format."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
from sklearn.linear_model import LogisticRegression

from data_pipelines.contract import Contract
from data_pipelines.example import generate

START = datetime(2024, 5, 1, tzinfo=UTC)


def example(
    n_rows: int, seed: int = 0, covariate_drift: float = 0.0, concept_drift: float = 0.0
) -> pd.DataFrame:
    """The example data set (every contract column plus event_time), starting at START."""
    return generate(
        n_rows, seed=seed, covariate_drift=covariate_drift, concept_drift=concept_drift, start=START
    )


def inject(frame: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Drift in exactly three features, everything else untouched: what INJECTED names."""
    rng = np.random.default_rng(seed)
    frame = frame.copy()
    frame["income"] = (frame["income"] * 0.75).round(2)
    frame["debt_to_income"] = (frame["debt_to_income"] + 0.08).clip(upper=5)
    salaried = (frame["employment_type"] == "salaried").to_numpy() & (rng.random(len(frame)) < 0.4)
    frame.loc[salaried, "employment_type"] = "unemployed"
    return frame


INJECTED = {"income", "debt_to_income", "employment_type"}


def fake_scores(frame: pd.DataFrame) -> np.ndarray:
    """Deterministic scores in (0, 1) for tests that only need numbers to round-trip."""
    return 1 / (1 + np.exp(-(frame["debt_to_income"].to_numpy(dtype=float) * 4 - 2)))


class ToyModel:
    """A small logistic regression standing in for the champion (trains in milliseconds)."""

    def __init__(self, contract: Contract, reference: pd.DataFrame) -> None:
        self.contract = contract
        self.medians = {f.name: float(pd.to_numeric(reference[f.name]).median()) for f in contract.numeric}
        self.model = LogisticRegression(max_iter=1000).fit(
            self._matrix(reference), reference[contract.target.name]
        )

    def _matrix(self, frame: pd.DataFrame) -> np.ndarray:
        columns = []
        for feature in self.contract.features:
            if feature.is_numeric:
                values = pd.to_numeric(frame[feature.name]).astype(float).fillna(self.medians[feature.name])
                columns.append(
                    ((values - self.medians[feature.name]) / (abs(self.medians[feature.name]) + 1)).to_numpy()
                )
            else:
                as_text = frame[feature.name].astype("string")
                columns.extend(
                    (as_text == category).fillna(False).to_numpy(float) for category in feature.categories
                )
        return np.column_stack(columns)

    def scores(self, frame: pd.DataFrame) -> np.ndarray:
        return self.model.predict_proba(self._matrix(frame))[:, 1]


def _jsonable(value: object) -> object:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def write_capture(
    root: Path,
    frame: pd.DataFrame,
    contract: Contract,
    scores: np.ndarray,
    *,
    start: datetime = START,
    step: timedelta = timedelta(seconds=1),
    labels: pd.Series | None = None,
    feedback_every: int = 2,
    stream: str = "host-1-0",
    model_version: str = "v1",
    rows_per_request: int = 5,
) -> None:
    """Capture lines as serving writes them: predictions partitioned by day, feedback later."""
    lines: dict[str, list[bytes]] = {}
    labels = frame[contract.target.name] if labels is None else labels
    sensitive = contract.sensitive.name if contract.sensitive else None
    records = frame.to_dict("records")
    for index, record in enumerate(records):
        moment = start + step * index
        request_id, row = f"req-{stream}-{index // rows_per_request}", index % rows_per_request
        features = {name: _jsonable(record[name]) for name in contract.feature_names}
        extra = {sensitive: record[sensitive]} if sensitive and sensitive in record else {}
        line = {
            "kind": "prediction",
            "prediction_id": f"{request_id}:{row}",
            "request_id": request_id,
            "row": row,
            "timestamp": moment.isoformat(timespec="microseconds"),
            "model_name": "loan_default_model",
            "model_version": model_version,
            "features": features,
            "sensitive": extra,
            "label": int(scores[index] >= 0.5),
            "scores": [1 - float(scores[index]), float(scores[index])],
        }
        lines.setdefault(moment.date().isoformat(), []).append(orjson.dumps(line))
        if feedback_every and index % feedback_every == 0:
            later = moment + timedelta(days=1)
            feedback = {
                "kind": "feedback",
                "request_id": request_id,
                "row": row,
                "prediction_id": f"{request_id}:{row}",
                "label": int(labels.iloc[index]),
                "timestamp": later.isoformat(timespec="microseconds"),
            }
            lines.setdefault(later.date().isoformat(), []).append(orjson.dumps(feedback))
    for day, chunk in lines.items():
        folder = root / f"date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / f"{stream}.jsonl").open("ab") as handle:
            handle.write(b"\n".join(chunk) + b"\n")
