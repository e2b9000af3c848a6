"""`make train`: snapshot -> split -> fit -> evaluate -> ONNX export -> parity -> gates -> records.

Each step is one named function below; `train` only calls them in order. What a run leaves in
artifacts/models/<version>/: model.onnx, metrics.json (`Quality`), parity.json (`Parity`),
gates.json (`GateReport`), explanations.json (`Explanations`) and training.json
(`TrainingRecord`), with artifacts/models/latest naming the version. `make register` reads
exactly these records.

A retraining snapshot (built by monitoring/dataset.py) records its row segments in its
manifest: its reference hold-out slice is never trained on but scored (metrics.json
`reference`, gate `reference_holdout`), and the main held-out split is drawn from its window
segment only. Any other snapshot is split as it always was.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sklearn.pipeline import Pipeline

from data_pipelines import snapshot
from governance import registry
from governance.core import policy as policy_file
from governance.core import progress, recording
from governance.core.contract import Contract
from governance.core.contract import load as load_contract
from governance.core.encoding import Scorer
from governance.core.errors import InputError
from governance.core.paths import Paths
from governance.core.policy import Policy
from governance.core.records import (
    REFERENCE_HOLDOUT,
    WINDOW_SEGMENT,
    Artifact,
    Baseline,
    DataLineage,
    DataSegment,
    Explanations,
    GateReport,
    Parity,
    Quality,
    ReferenceScore,
    RegistryEntry,
    TrainingRecord,
    write_json,
)
from ml import tracking
from ml.evaluate import evaluate
from ml.explain import explain
from ml.export import convert, metadata, parity, stamp
from ml.features import model_frame
from ml.gates import champion_baseline, check, single_row_latency_ms
from ml.train import Params, Split, fit, labels, load_params, split


@dataclass(frozen=True)
class Inputs:
    """Everything a training run reads before it computes anything."""

    policy: Policy
    params: Params
    contract: Contract
    champion: RegistryEntry | None
    data: pd.DataFrame
    manifest: dict


@dataclass(frozen=True)
class Candidate:
    """The exported model and what was measured on it."""

    version: str
    content: bytes
    quality: Quality
    parity: Parity
    baseline: Baseline | None
    gates: GateReport


def load_inputs(paths: Paths, snapshot_ref: str | None) -> Inputs:
    contract = load_contract(paths.contract)
    policy = policy_file.load(paths.policy, task=contract.task)
    params = load_params(paths.params)
    champion = registry.load(paths.registry).champion
    folder = snapshot.resolve(snapshot_ref or snapshot.LATEST, root=paths.snapshots)
    with progress.step(f"loading snapshot {folder.name}"):
        data, manifest = snapshot.load(folder)
    if manifest.get("contract_sha256") != contract.digest:
        raise InputError(
            f"snapshot {folder.name} was made under data contract {manifest.get('contract_sha256')!r}, "
            f"the current contract is {contract.digest!r}: run `make data` to snapshot under this contract"
        )
    return Inputs(policy, params, contract, champion, data, manifest)


@dataclass(frozen=True)
class Parts:
    """The split trained and scored on, and the reference hold-out slice (retraining snapshots only)."""

    split: Split
    reference: pd.DataFrame | None = None
    reference_id: str | None = None


def segments(manifest: dict) -> list[DataSegment]:
    """The row segments a retraining snapshot's manifest records, in row order; [] for any other."""
    source = manifest.get("source")
    items = source.get("segments") if isinstance(source, dict) else None
    return [DataSegment.model_validate(item) for item in items or ()]


def split_data(inputs: Inputs) -> Parts:
    """The run's split (see `split_snapshot`)."""
    return split_snapshot(inputs.data, inputs.manifest, inputs.contract, inputs.params)


def split_snapshot(data: pd.DataFrame, manifest: dict, contract: Contract, params: Params) -> Parts:
    """Train/test split; a retraining snapshot's reference hold-out is set aside and its test split
    comes from the window segment alone (rows neither the champion nor the candidate was fitted on).

    monitoring/dataset.py calls it on the champion's snapshot too, so the next reference hold-out
    is exactly what the champion was not trained on, whichever kind of snapshot it came from.
    """
    found = segments(manifest)
    if not found:
        return Parts(split(data, contract, params))
    pieces, start = {}, 0
    for segment in found:
        pieces.setdefault(segment.source, []).append(data.iloc[start : start + segment.rows])
        start += segment.rows
    if start != len(data) or WINDOW_SEGMENT not in pieces:
        raise InputError(
            f"snapshot {manifest.get('snapshot_id')}: manifest field source.segments must cover "
            f"every row and name a '{WINDOW_SEGMENT}' segment; it counts {start} rows in "
            f"{sorted(pieces)}, the data has {len(data)}: rebuild it with `make drift`"
        )
    holdout = pd.concat(pieces.pop(REFERENCE_HOLDOUT, []) or [data.iloc[0:0]])
    window = split(pd.concat(pieces.pop(WINDOW_SEGMENT)), contract, params)
    train = pd.concat([*(frame for frames in pieces.values() for frame in frames), window.train])
    reference_id = next((s.snapshot_id for s in found if s.source == REFERENCE_HOLDOUT), None)
    return Parts(Split(train, window.test), holdout if len(holdout) else None, reference_id)


def fit_model(inputs: Inputs) -> tuple[Parts, Pipeline]:
    with progress.step(f"training {inputs.params.model_family} on {len(inputs.data)} rows"):
        parts = split_data(inputs)
        return parts, fit(parts.split.train, inputs.contract, inputs.params)


def score_reference(paths: Paths, inputs: Inputs, parts: Parts, pipeline: Pipeline) -> ReferenceScore | None:
    """The candidate and the champion on the reference hold-out slice, when the snapshot has one."""
    rows, contract = parts.reference, inputs.contract
    if rows is None:
        return None
    with progress.step(f"scoring on {len(rows)} reference hold-out rows"):
        frame, y_true = model_frame(rows, contract), labels(rows, contract)
        proba = pipeline.predict_proba(frame) if contract.target.is_classification else None
        metrics, _, _ = evaluate(
            rows, y_true, pipeline.predict(frame), proba, contract, inputs.policy.bias.metric
        )
        champion = champion_baseline(
            inputs.champion, paths.root, frame, y_true, contract, inputs.policy.model.primary_metric
        )
    return ReferenceScore(snapshot_id=parts.reference_id, rows=len(rows), metrics=metrics, champion=champion)


def export_model(inputs: Inputs, pipeline: Pipeline) -> tuple[bytes, str]:
    opset = inputs.policy.onnx.opset
    with progress.step(f"exporting to ONNX (opset {opset})"):
        props = metadata(
            inputs.params.model_name,
            inputs.params.model_family,
            inputs.contract,
            str(inputs.manifest["sha256"]),
        )
        model = convert(pipeline, inputs.contract, opset, inputs.params.model_name)
        return stamp(model, props, str(inputs.manifest["created_at"]))


def measure(
    paths: Paths, inputs: Inputs, split_parts: Parts, pipeline: Pipeline, content: bytes, version: str
) -> Candidate:
    """Quality on the held-out split, ONNX parity and latency, the champion on the same rows, the gates."""
    contract, policy, parts = inputs.contract, inputs.policy, split_parts.split
    with progress.step(f"evaluating on {len(parts.test)} held-out rows"):
        frame = model_frame(parts.test, contract)
        y_test = labels(parts.test, contract)
        proba = pipeline.predict_proba(frame) if contract.target.is_classification else None
        metrics, bias, details = evaluate(
            parts.test, y_test, pipeline.predict(frame), proba, contract, policy.bias.metric
        )
    with progress.step("checking parity (onnxruntime vs scikit-learn) and single-row latency"):
        scorer = Scorer(content)
        parity_result = parity(scorer, pipeline, frame, contract, policy.onnx.parity_tolerance, version)
        latency = single_row_latency_ms(scorer, frame, contract)
    with progress.step("scoring the champion on the same rows"):
        baseline = champion_baseline(
            inputs.champion, paths.root, frame, y_test, contract, policy.model.primary_metric
        )
    reference = score_reference(paths, inputs, split_parts, pipeline)
    gates = check(policy, metrics, bias, parity_result, latency, baseline, contract.task, reference)
    quality = Quality(
        version=version,
        model_family=inputs.params.model_family,
        metrics=metrics,
        bias=bias,
        diagnostics=details,
        reference=reference,
    )
    report = GateReport(
        version=version,
        passed=all(gate.passed for gate in gates),
        policy=paths.relative(paths.policy),
        champion=baseline,
        gates=tuple(gates),
    )
    return Candidate(version, content, quality, parity_result, baseline, report)


def explain_model(
    paths: Paths, inputs: Inputs, split_parts: Parts, pipeline: Pipeline, candidate: Candidate
) -> Explanations:
    """Permutation importance and partial dependence on the held-out split (ml/explain.py); the
    champion too when the regression gate re-scored it on these rows."""
    contract, test = inputs.contract, split_parts.split.test
    champion = inputs.champion
    with progress.step(
        f"explaining the model (permutation importance, partial dependence) on {len(test)} rows"
    ):
        return explain(
            pipeline,
            model_frame(test, contract),
            labels(test, contract),
            contract,
            inputs.policy.model.primary_metric,
            inputs.params.seed,
            candidate.version,
            candidate.baseline,
            paths.root / champion.artifact.path if champion else None,
        )


def write_outputs(
    paths: Paths, inputs: Inputs, split_parts: Parts, candidate: Candidate, explanations: Explanations
) -> Path:
    out = paths.models / candidate.version
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / "model.onnx"
    model_path.write_bytes(candidate.content)
    write_json(candidate.quality, out / "metrics.json")
    write_json(candidate.parity, out / "parity.json")
    write_json(candidate.gates, out / "gates.json")
    write_json(explanations, out / "explanations.json")
    manifest, params, parts = inputs.manifest, inputs.params, split_parts.split
    training = TrainingRecord(
        version=candidate.version,
        model_name=params.model_name,
        model_family=params.model_family,
        estimator=params.estimator,
        seed=params.seed,
        test_size=params.test_size,
        opset=inputs.policy.onnx.opset,
        contract_sha256=inputs.contract.digest,
        artifact=Artifact(
            path=paths.relative(model_path), sha256=hashlib.sha256(candidate.content).hexdigest()
        ),
        data=DataLineage(
            snapshot_id=str(manifest["snapshot_id"]),
            sha256=str(manifest["sha256"]),
            rows=int(manifest.get("rows", len(inputs.data))),
            source=manifest.get("source"),
            time_window=manifest.get("time_window"),
            train_rows=len(parts.train),
            test_rows=len(parts.test),
        ),
    )
    write_json(training, out / "training.json")
    (paths.models / "latest").write_text(candidate.version + "\n")
    return out


def tracking_job(paths: Paths, inputs: Inputs, candidate: Candidate, out: Path) -> tracking.Job:
    """What the MLflow run records: parameters, data and contract hashes, metrics, gates, bias, files."""
    params, quality = inputs.params, candidate.quality
    metrics: dict[str, float] = {k: float(v) for k, v in quality.metrics.items() if v is not None}
    metrics.update({f"bias_gap.{k}": float(v) for k, v in quality.bias.gaps.items() if v is not None})
    for gate in candidate.gates.gates:
        metrics[f"gate.{gate.name}.passed"] = float(gate.passed)
        if gate.value is not None:
            metrics[f"gate.{gate.name}.value"] = float(gate.value)
    metrics["parity.max_abs_diff"] = float(candidate.parity.max_abs_diff)
    return tracking.Job(
        tracking_uri=tracking.target_uri(paths),
        local_uri=tracking.local_uri(paths),
        local_artifacts=tracking.local_artifacts(paths),
        experiment=tracking.experiment_name(params.model_name),
        run_name=candidate.version,
        params={
            "model_family": params.model_family,
            "seed": str(params.seed),
            "test_size": str(params.test_size),
            "opset": str(inputs.policy.onnx.opset),
            **{f"estimator.{key}": str(value) for key, value in params.estimator.items()},
            "contract_sha256": inputs.contract.digest,
            "snapshot_id": str(inputs.manifest["snapshot_id"]),
            "snapshot_sha256": str(inputs.manifest["sha256"]),
        },
        metrics=metrics,
        tags={
            **tracking.git_tags(paths.root),
            "model_version": candidate.version,
            "model_name": params.model_name,
            "gates_passed": str(candidate.gates.passed).lower(),
        },
        artifacts=[
            str(out / name)
            for name in ("model.onnx", "metrics.json", "gates.json", "parity.json", "training.json")
        ],
    )


def track_run(
    paths: Paths, inputs: Inputs, candidate: Candidate, out: Path, logger: tracking.Logger | None
) -> None:
    """Hand the finished run to the logger, which writes run.json beside the model in the background."""
    recording.clear(out)
    if logger is None:
        return
    logger.hand_over(tracking_job(paths, inputs, candidate, out), out)
    if (out / recording.MARKER).is_file():
        progress.note(
            f"MLflow run being recorded in the background ({paths.relative(out / recording.LOG)}); "
            "`make register` waits for it"
        )


def train(paths: Paths, snapshot_ref: str | None = None, logger: tracking.Logger | None = None) -> GateReport:
    """Train and gate one candidate; returns its gate report (passed or not), records written.

    `logger`: a tracking logger the caller started before importing this module (the command line
    does, so MLflow's import also overlaps scikit-learn's and pandas'); else one starts here.
    """
    logger = logger or tracking.start_logger(paths)  # MLflow loads in its own process meanwhile
    try:
        inputs = load_inputs(paths, snapshot_ref)
        parts, pipeline = fit_model(inputs)
        content, version = export_model(inputs, pipeline)
        candidate = measure(paths, inputs, parts, pipeline, content, version)
        explanations = explain_model(paths, inputs, parts, pipeline, candidate)
        out = write_outputs(paths, inputs, parts, candidate, explanations)
    except BaseException:
        if logger is not None:
            logger.cancel()
        raise
    progress.note(f"model {version} -> {paths.relative(out)}")
    track_run(paths, inputs, candidate, out, logger)
    return candidate.gates
