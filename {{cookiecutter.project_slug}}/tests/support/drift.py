"""Builders for the monitoring tests: example data, capture files in the serving format, and the
records a drift run hands on (a champion's registry entry, a drift summary, a retraining request)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import yaml
from sklearn.linear_model import LogisticRegression, Ridge

from data_pipelines.example import EXAMPLE_CONTRACT, generate
from governance.core.capture import feedback_line, prediction_line
from governance.core.contract import Contract
from governance.core.encoding import Scores
from governance.core.paths import PATHS, Paths
from governance.core.records import DriftSummary, RegistryEntry
from monitoring.capture import TARGET_PANDAS
from monitoring.predictions import from_scores, signal_columns
from monitoring.retrain_pr import Plan, make_plan

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


def fake_scores(frame: pd.DataFrame, contract: Contract) -> Scores:
    """Deterministic answers of the contract's task for tests that only need numbers to round-trip.

    Binary: the positive-class probability rises with debt_to_income; multiclass: the classes
    take turns as it rises; regression: a value that rises with it.
    """
    rising = 1 / (1 + np.exp(-(frame["debt_to_income"].to_numpy(dtype=float) * 4 - 2)))
    target = contract.target
    if not target.is_classification:
        return Scores(value=rising * 20)
    if len(target.classes) == 2:
        probabilities = np.empty((len(frame), 2))
        probabilities[:, target.positive_index] = rising
        probabilities[:, 1 - target.positive_index] = 1 - rising
    else:
        logits = -((rising[:, None] * (len(target.classes) - 1) - np.arange(len(target.classes))) ** 2)
        probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return Scores(label=probabilities.argmax(axis=1), probabilities=probabilities)


def another_label(value: Any, contract: Contract) -> Any:
    """A label other than `value` of the contract's type (the next class, or the number plus one)."""
    target = contract.target
    if not target.is_classification:
        return float(value) + 1.0
    index = int(target.class_indices([value])[0])
    return target.classes[(index + 1) % len(target.classes)]


class ToyModel:
    """A small linear model of the contract's task standing in for the champion (trains in milliseconds).

    Classifiers fit class indices, as training does, and answer `Scores` as the ONNX scorer does.
    """

    def __init__(self, contract: Contract, reference: pd.DataFrame) -> None:
        self.contract = contract
        self.medians = {f.name: float(pd.to_numeric(reference[f.name]).median()) for f in contract.numeric}
        target = contract.target
        if target.is_classification:
            labels = target.class_indices(reference[target.name])
            self.model = LogisticRegression(max_iter=1000).fit(self._matrix(reference), labels)
        else:
            self.model = Ridge().fit(self._matrix(reference), pd.to_numeric(reference[target.name]))

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

    def scores(self, frame: pd.DataFrame) -> Scores:
        matrix = self._matrix(frame)
        if not self.contract.target.is_classification:
            return Scores(value=self.model.predict(matrix))
        probabilities = self.model.predict_proba(matrix)
        return Scores(label=probabilities.argmax(axis=1), probabilities=probabilities)

    def window(self, frame: pd.DataFrame) -> pd.DataFrame:
        """`frame` as the capture reader returns it: served answers, the prediction signal, labels."""
        target = self.contract.target
        scores = self.scores(frame)
        frame = frame.copy()
        for name, column in zip(signal_columns(target), from_scores(scores, target).T, strict=True):
            frame[name] = column
        if target.is_classification:
            frame["predicted_label"] = pd.Series(target.class_values(scores.label), index=frame.index)
        else:
            frame["predicted_label"] = scores.value
        dtype = TARGET_PANDAS.get(target.dtype if target.is_classification else "float64", object)
        frame[target.name] = frame[target.name].astype(dtype)  # nullable, as the reader types it
        return frame


def _jsonable(value: object) -> object:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def served(scores: np.ndarray | Scores, contract: Contract) -> list[tuple[Any, list[float]]]:
    """(label, scores) per row as serving captures them, for any task.

    `scores` is the scorer's answer (`Scores`: class indices + probabilities, or values), or
    for a binary contract just the positive-class probabilities (the class at 0.5).
    """
    target = contract.target
    if isinstance(scores, Scores):
        if not target.is_classification:
            return [(float(value), []) for value in np.asarray(scores.value).ravel()]
        labels = target.class_values(scores.label)
        return [
            (label, [float(p) for p in row]) for label, row in zip(labels, scores.probabilities, strict=True)
        ]
    answers = []
    positive, other = target.positive_index, 1 - target.positive_index
    for probability in np.asarray(scores, dtype=np.float64):
        row = [0.0, 0.0]
        row[positive], row[other] = float(probability), 1 - float(probability)
        answers.append((target.classes[positive if probability >= 0.5 else other], row))
    return answers


def write_capture(
    root: Path,
    frame: pd.DataFrame,
    contract: Contract,
    scores: np.ndarray | Scores,
    *,
    start: datetime = START,
    step: timedelta = timedelta(seconds=1),
    labels: pd.Series | None = None,
    feedback_every: int = 2,
    stream: str = "host-1-0",
    model_version: str = "v1",
    rows_per_request: int = 5,
) -> None:
    """Capture lines as serving writes them: predictions partitioned by day, feedback later.

    `scores` as `served` takes them; `labels` (default: the frame's target column) are fed back.
    """
    lines: dict[str, list[bytes]] = {}
    answers = served(scores, contract)
    labels = frame[contract.target.name] if labels is None else labels
    sensitive = contract.sensitive.name if contract.sensitive else None
    records = frame.to_dict("records")
    for index, record in enumerate(records):
        moment = start + step * index
        request_id, row = f"req-{stream}-{index // rows_per_request}", index % rows_per_request
        features = {name: _jsonable(record[name]) for name in contract.feature_names}
        extra = {sensitive: record[sensitive]} if sensitive and sensitive in record else {}
        line = prediction_line(
            request_id=request_id,
            row=row,
            timestamp=moment.isoformat(timespec="microseconds"),
            model_name="loan_default_model",
            model_version=model_version,
            features=features,
            sensitive=extra,
            label=answers[index][0],
            scores=answers[index][1],
        )
        lines.setdefault(moment.date().isoformat(), []).append(orjson.dumps(line))
        if feedback_every and index % feedback_every == 0:
            later = moment + timedelta(days=1)
            feedback = feedback_line(
                request_id=request_id,
                row=row,
                label=_jsonable(labels.iloc[index]),
                timestamp=later.isoformat(timespec="microseconds"),
            )
            lines.setdefault(later.date().isoformat(), []).append(orjson.dumps(feedback))
    for day, chunk in lines.items():
        folder = root / f"date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / f"{stream}.jsonl").open("ab") as handle:
            handle.write(b"\n".join(chunk) + b"\n")


# -- the records a drift run reads and writes -------------------------------------------------------


def registry_entry(
    version: str = "v1",
    *,
    snapshot_id: str = "0123456789ab",
    stage: str = "production",
    metrics: dict[str, float] | None = None,
    bias_metric: str = "selection_rate",
    bias_gap: float | None = None,
    artifact: str = "model.onnx",
    artifact_sha256: str = "0" * 64,
) -> RegistryEntry:
    """A champion as governance/registry.yaml holds it, with only what a test cares about chosen."""
    return RegistryEntry(
        version=version,
        model_name="loans",
        model_family="linear",
        stage=stage,
        artifact={"path": artifact, "sha256": artifact_sha256},
        data={"snapshot_id": snapshot_id, "sha256": "1" * 64},
        contract_sha256="2" * 64,
        code_commit="unknown",
        metrics=metrics or {"roc_auc": 0.8},
        bias={"metric": bias_metric, "largest_gap": bias_gap},
        gates={"primary_metric": {"passed": True}},
        parity={"max_abs_diff": 1e-7, "labels_equal": True},
        created_at="2024-05-01T00:00:00Z",
        updated_at="2024-05-01T00:00:00Z",
    )


def drift_summary(manifest: dict[str, Any] | None = None, **changes: Any) -> DriftSummary:
    """A drift run that decided to retrain on the snapshot `manifest` describes (drift.json's record).

    `changes` replace top-level parts, as records or plain data (e.g. decision={...}, dataset={...}).
    """
    manifest = manifest or {"snapshot_id": "abc123def456", "rows": 2000, "sha256": "f" * 64}
    window = manifest.get("time_window") or {}
    raw: dict[str, Any] = {
        "run_at": "2024-06-01T06:00:00+00:00",
        "detector": "scipy",
        "policy": {"p_value": 0.05, "correction": "bonferroni"},
        "window": {
            "uri": "file://capture",
            "rows": 5000,
            "labelled_rows": manifest["rows"],
            "start": window.get("start"),
            "end": window.get("end"),
        },
        "reference": {"snapshot_id": "0123", "rows": 10000, "model_name": "loans", "model_version": "v1"},
        "drift": None,
        "decision": {
            "status": "retrain",
            "reasons": ["drifted_feature_share: 3/9 features drifted (limit 0.25)"],
            "checks": [],
            "notes": [],
        },
        "dataset": {"valid": True, "rows": manifest["rows"], "manifest": manifest},
    }
    return DriftSummary.model_validate({**raw, **changes})


def project_checkout(root: Path, source: dict[str, Any] | None = None) -> Paths:
    """A project-shaped folder with what `mlops data` and the drift run read from a checkout.

    The example generator's contract (so the tests also run in a project whose own contract is
    still a draft), `source` as data_pipelines/source.yaml (default: this project's) and this
    project's monitoring/monitoring.yaml.
    """
    paths = Paths(root)
    for path in (paths.contract, paths.source, paths.monitoring):
        path.parent.mkdir(parents=True, exist_ok=True)
    paths.contract.write_text(yaml.safe_dump(EXAMPLE_CONTRACT, sort_keys=False))
    if source is None:
        shutil.copy(PATHS.source, paths.source)
    else:
        paths.source.write_text(yaml.safe_dump(source))
    shutil.copy(PATHS.monitoring, paths.monitoring)
    return paths


def lay_out_request(checkout: Paths, manifest: dict[str, Any], snapshots_root: Path) -> Plan:
    """Write the retraining request of snapshot `manifest` into a checkout, as the bot commits it.

    The snapshot was built on the "drift machine" (`snapshots_root`); the request files are
    exactly the plan's files, the data file copied byte for byte.
    """
    plan = make_plan(
        drift_summary(manifest),
        branch="retrain/auto",
        base=None,
        request_dir=checkout.relative(checkout.retraining),
        history_path=None,
        history_name=checkout.relative(checkout.history),
        snapshots_root=snapshots_root,
    )
    for path, text in plan.files.items():
        (checkout.root / path).parent.mkdir(parents=True, exist_ok=True)
        (checkout.root / path).write_text(text)
    for path, local in plan.data_files.items():
        shutil.copyfile(local, checkout.root / path)
    return plan
