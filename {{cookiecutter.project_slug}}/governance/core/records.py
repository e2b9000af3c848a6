"""The records that cross domain boundaries, each defined once and validated where it is read.

Training writes a `TrainingRecord`, `Quality`, `Parity` and a `GateReport` for every model;
registering turns them into a `RegistryEntry` in governance/registry.yaml; the monitoring run
writes a `DriftSummary` that the retraining bot reads. Whoever reads one of these files
reads it through its model here, so a missing or mistyped field is one clear error naming the
file, the field, the rule and the value, instead of a KeyError three modules away.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    computed_field,
    field_validator,
    model_validator,
)

from governance.core.errors import InputError, describe
from governance.core.tasks import METRICS, worsening

SHA256 = r"^[0-9a-f]{64}$"
IMAGE_DIGEST = r"^sha256:[0-9a-f]{64}$"
VERSION = r"^[0-9A-Za-z][0-9A-Za-z._-]{0,127}$"
IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"
COMMIT = r"^([0-9a-f]{40}|[0-9a-f]{64}|unknown)$"
STAGES = ("candidate", "staging", "production", "archived")
Stage = Literal["candidate", "staging", "production", "archived"]
Number = float | int | None


class RecordError(InputError):
    """A record file is missing, unreadable or breaks its schema; the message names the field."""


class Record(BaseModel):
    """Frozen, strict about unknown fields: a typo in a reviewed file is an error, not a default."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


R = TypeVar("R", bound=BaseModel)


def now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse(model: type[R], raw: Any, source: str, error: type[InputError] = RecordError) -> R:
    """Validate `raw` as `model`; every problem becomes one line naming `source` and the field."""
    try:
        return model.model_validate(raw)
    except ValidationError as problem:
        raise error(describe(problem, source)) from None


def read_yaml(path: Path | str, what: str, error: type[InputError] = RecordError) -> dict[str, Any]:
    """The mapping in a YAML file people edit; a missing file or broken YAML is one sentence."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist") from None
    except yaml.YAMLError as problem:
        raise error(f"{what} {path} is not valid YAML: {problem}") from None
    if not isinstance(raw, dict):
        raise error(f"{what} {path} must be a mapping (got {type(raw).__name__})")
    return raw


def read_json(model: type[R], path: Path | str, hint: str = "") -> R:
    """A record written as JSON by an earlier step; `hint` says which step writes it."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise RecordError(f"{path} is missing{': ' + hint if hint else ''}") from None
    except ValueError as problem:
        raise RecordError(f"{path} is not valid JSON: {problem}") from None
    return parse(model, raw, str(path))


def write_json(record: BaseModel, path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(record.model_dump_json(indent=2) + "\n")
    return path


def write_atomically(path: Path | str, text: str) -> None:
    """Readers see the old or the new file, never half of it (temporary file, then os.replace)."""
    path = Path(path)
    temporary: Path | None = None
    try:
        with tempfile.NamedTemporaryFile(
            "w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
        ) as handle:
            temporary = Path(handle.name)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        os.replace(temporary, path)
    except BaseException:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
        raise


def sha256_of(path: Path) -> str:
    """The sha256 of a file's bytes, read in blocks (lineage of data files and model artifacts)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _timestamp(value: str) -> str:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("must be an ISO 8601 timestamp") from None
    return value


def numeric_items(mapping: dict[str, Any] | None) -> dict[str, float]:
    """The entries that are numbers (None, text and booleans left out): metrics to compare."""
    return {
        key: value
        for key, value in (mapping or {}).items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


# --- what training writes for every model ----------------------------------------------------------


class GateResult(Record):
    """One policy requirement checked against a candidate; margin > 0 is room to spare."""

    name: str
    passed: bool
    value: float | None
    threshold: float
    margin: float | None
    requirement: str
    message: str


class Baseline(Record):
    """The champion's primary metric and how it was obtained (`comparable`: on the same test split)."""

    version: str
    value: float
    basis: str
    comparable: bool = True
    metrics: dict[str, float] = Field(default_factory=dict)


class GateReport(Record):
    """gates.json: every gate, passed or not, and the champion the candidate was compared with."""

    version: str
    passed: bool
    policy: str
    champion: Baseline | None = None
    gates: tuple[GateResult, ...]

    def failures(self) -> list[str]:
        """One line per failed gate naming the policy requirement and the shortfall."""
        return [
            f"gate '{gate.name}' failed ({self.policy}: {gate.requirement}): {gate.message}"
            for gate in self.gates
            if not gate.passed
        ]


class Bias(Record):
    """Per-group metrics across the sensitive attribute and the largest gap (fairlearn's MetricFrame)."""

    sensitive_attribute: str | None = None
    metric: str
    largest_gap: float | None = None
    gaps: dict[str, float | None] = Field(default_factory=dict)
    by_group: dict[str, dict[str, float | None]] = Field(default_factory=dict)
    demographic_parity_difference: float | None = None
    equalized_odds_difference: float | None = None
    note: str | None = None


class ClassReport(Record):
    precision: float
    recall: float
    support: int


class ResidualBin(Record):
    """Residuals (truth - prediction) of the rows in one bin of predicted value."""

    predicted: float  # the bin's median prediction
    rows: int
    p5: float
    p25: float
    p50: float
    p75: float
    p95: float


class Residuals(Record):
    mean: float
    bins: tuple[ResidualBin, ...] = ()


class Diagnostics(Record):
    """What the model card draws: per-class precision/recall and the confusion matrix
    (rows: true class, columns: predicted, in contract class order), or the residuals."""

    task: str
    classes: tuple[str, ...] = ()
    per_class: dict[str, ClassReport] = Field(default_factory=dict)
    confusion: tuple[tuple[int, ...], ...] = ()
    residuals: Residuals | None = None


class ReferenceScore(Record):
    """The candidate (and the champion) on the reference hold-out slice of a retraining snapshot:
    rows of the champion's training snapshot that neither model was fitted on."""

    snapshot_id: str | None
    rows: int
    metrics: dict[str, Number]
    champion: Baseline | None = None


class Quality(Record):
    """metrics.json: held-out task metrics and bias (and, for a retraining snapshot, `reference`)."""

    version: str
    model_family: str
    metrics: dict[str, Number]
    bias: Bias
    diagnostics: Diagnostics | None = None
    reference: ReferenceScore | None = None


class Parity(Record):
    """parity.json: onnxruntime against scikit-learn on every held-out row."""

    version: str
    rows: int
    max_abs_diff: float = Field(ge=0)
    mean_abs_diff: float = Field(ge=0)
    labels_equal: bool
    mismatched_labels: int
    tolerance: float
    passed: bool


class FeatureImportance(Record):
    """One contract column's permutation importance: how much the primary metric worsens when
    the column's values are shuffled across the rows (mean and spread over the repeats)."""

    feature: str
    mean: float
    std: float


class Importance(Record):
    """One model's permutation importances on the test split, most important first."""

    version: str
    score: float | None  # the primary metric on the unshuffled rows
    features: tuple[FeatureImportance, ...]


class Dependence(Record):
    """Partial dependence of one feature: the model's average answer with the feature set to each
    grid value on every test row. `candidate[i][j]`/`champion[i][j]`: output `outputs[i]` at `grid[j]`."""

    feature: str
    kind: Literal["numeric", "categorical"]
    grid: tuple[float | str, ...]
    outputs: tuple[str, ...]  # "P(<positive class>)", one "P(<class>)" per class, or "prediction"
    candidate: tuple[tuple[float, ...], ...]
    champion: tuple[tuple[float, ...], ...] | None = None


class Explanations(Record):
    """explanations.json: permutation importance (candidate and, when its model is here, the champion,
    on the same rows and the same shuffles) and partial dependence of the candidate's top features."""

    version: str
    metric: str  # the policy's primary metric; importance is its worsening (positive: the feature helps)
    rows: int  # test rows importance is measured on
    dependence_rows: int  # test rows partial dependence averages over (a seeded sample when there are many)
    repeats: int
    seed: int
    candidate: Importance
    champion: Importance | None = None
    champion_note: str | None = None  # why the champion is not explained, when it is not
    dependence: tuple[Dependence, ...] = ()

    def comparison(self) -> list[tuple[str, float, float | None, str]]:
        """(feature, candidate importance, champion importance or None, rank change), candidate order.

        The rank change reads from the candidate's side: "up 2" means the candidate ranks the
        feature two places higher than the champion does.
        """
        ranks = (
            {item.feature: (rank, item.mean) for rank, item in enumerate(self.champion.features)}
            if self.champion
            else {}
        )
        rows = []
        for rank, item in enumerate(self.candidate.features):
            before = ranks.get(item.feature)
            if before is None:
                rows.append((item.feature, item.mean, None, "—"))
                continue
            moved = before[0] - rank
            change = "same" if moved == 0 else (f"up {moved}" if moved > 0 else f"down {-moved}")
            rows.append((item.feature, item.mean, before[1], change))
        return rows


class Artifact(Record):
    path: str = Field(min_length=1)
    sha256: str = Field(pattern=SHA256)


class DataLineage(Record):
    """The snapshot a model was trained on."""

    snapshot_id: str = Field(min_length=1)
    sha256: str = Field(pattern=SHA256)
    rows: int | None = None
    source: dict[str, Any] | str | None = None
    time_window: dict[str, str | None] | None = None
    train_rows: int | None = None
    test_rows: int | None = None


class TrainingRecord(Record):
    """training.json: what went into a model (parameters, data, contract) and where its bytes are."""

    version: str = Field(pattern=VERSION)
    model_name: str = Field(pattern=IDENTIFIER)
    model_family: str = Field(pattern=IDENTIFIER)
    estimator: dict[str, Any] = Field(default_factory=dict)
    seed: int
    test_size: float
    opset: int
    contract_sha256: str = Field(pattern=SHA256)
    artifact: Artifact
    data: DataLineage


class TrackedRun(Record):
    """run.json beside a trained model: the MLflow run that recorded it (lineage back to the run).

    `tracking_uri` never carries credentials; `fallback_from` names the server that could not be
    reached when the run went to the local store instead (to be synced later).
    """

    run_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    experiment: str = Field(min_length=1)
    experiment_id: str | None = None
    tracking_uri: str = Field(min_length=1)
    fallback_from: str | None = None


# An offending value may be inf or -inf: JSON has no such number, so it is written as a string.
VALUES_AS_STRINGS = ConfigDict(**Record.model_config, ser_json_inf_nan="strings")


class ValidationFailure(Record):
    """One failed expectation, in words a person can act on."""

    model_config = VALUES_AS_STRINGS

    expectation: str
    column: str | None = None
    rule: str
    detail: str
    examples: list[Any] = Field(default_factory=list)

    def line(self) -> str:
        where = f"column '{self.column}'" if self.column else "table"
        shown = f", e.g. {self.examples}" if self.examples else ""
        return f"  - {where}: {self.expectation} (rule: {self.rule}): {self.detail}{shown}"


class ValidationReport(Record):
    """reports/validation/<batch>.json: the verdict of `make validate` on one batch."""

    model_config = VALUES_AS_STRINGS

    name: str
    source: str
    success: bool
    rows: int | None = None
    contract_sha256: str | None = None
    failures: tuple[ValidationFailure, ...] = ()
    data_docs: str | None = None
    great_expectations: dict[str, Any] | None = None


class RetrainingSettings(Record):
    branch: str = "retrain/auto"
    base: str | None = None

    @field_validator("branch")
    @classmethod
    def _a_branch_name(cls, branch: str) -> str:
        if not branch or branch.startswith(("-", "/")) or ".." in branch or any(c.isspace() for c in branch):
            raise ValueError("is not a valid branch name")
        return branch


class WindowSettings(Record):
    last_n: int | None = Field(50000, ge=1)
    days: float | None = Field(None, gt=0, le=100_000)


class MonitoringSettings(Record):
    """monitoring/monitoring.yaml: how the scheduled drift check runs (what counts is in the policy)."""

    detector: Literal["alibi", "scipy", "alibi-detect"] = "scipy"
    window: WindowSettings = WindowSettings()
    retraining: RetrainingSettings = RetrainingSettings()

    @property
    def backend(self) -> str:
        return "alibi" if self.detector == "alibi-detect" else self.detector


# --- the registry (governance/registry.yaml) -----------------------------------------------------------


class GateSummary(Record):
    passed: bool
    value: float | None = None
    threshold: float | None = None
    margin: float | None = None


class ParitySummary(Record):
    max_abs_diff: float = Field(ge=0)
    labels_equal: bool
    rows: int | None = None
    tolerance: float | None = None


class ImageRef(Record):
    digest: str = Field(pattern=IMAGE_DIGEST)  # the serving image (deploy/Dockerfile)
    # The batch image of the same build (deploy/batch/Dockerfile), when cd.yml built one: what
    # deploy/batch pins once this version is production, so nightly scoring runs the champion.
    batch_digest: str | None = Field(default=None, pattern=IMAGE_DIGEST)


class RegistryEntry(Record):
    """One model version in the registry: what it is, what it was trained on, how it scored."""

    version: str = Field(pattern=VERSION)
    model_name: str = Field(pattern=IDENTIFIER)
    model_family: str = Field(pattern=IDENTIFIER)
    stage: Stage
    artifact: Artifact
    data: DataLineage
    contract_sha256: str = Field(pattern=SHA256)
    code_commit: str = Field(pattern=COMMIT)
    metrics: dict[str, Number] = Field(min_length=1)
    bias: Bias
    gates: dict[str, GateSummary] = Field(min_length=1)
    parity: ParitySummary
    created_at: str
    updated_at: str
    image: ImageRef | None = None
    diagnostics: Diagnostics | None = None  # the task, per-class results or residuals (model card)
    # When it last became production: the newest among the archived ones is what a rollback restores.
    promoted_at: str | None = None
    explanations: Explanations | None = None  # permutation importance and partial dependence (model card)
    run: TrackedRun | None = None  # the MLflow run `make train` recorded (absent with tracking off)
    # Registered although its gates failed (`mlops register --override "<reason>"`): the reason.
    override: str | None = None

    @field_validator("created_at", "updated_at")
    @classmethod
    def _iso_timestamps(cls, value: str) -> str:
        return _timestamp(value)

    @field_validator("promoted_at")
    @classmethod
    def _iso_promotion(cls, value: str | None) -> str | None:
        return None if value is None else _timestamp(value)

    @model_validator(mode="after")
    def _every_gate_passed(self) -> RegistryEntry:
        failed = sorted(name for name, gate in self.gates.items() if not gate.passed)
        if failed and not (self.override or "").strip():
            raise ValueError(
                f"field 'gates' must all have passed: a model that failed a gate {failed} is registered "
                "only with an override reason (mlops register --override)"
            )
        return self

    @classmethod
    def from_training(
        cls,
        training: TrainingRecord,
        quality: Quality,
        parity: Parity,
        gates: GateReport,
        commit: str,
        explanations: Explanations | None = None,
        run: TrackedRun | None = None,
        override: str | None = None,
    ) -> RegistryEntry:
        """A `candidate` entry assembled from what `make train` wrote for one version."""
        stamp = now()
        return cls(
            version=training.version,
            model_name=training.model_name,
            model_family=training.model_family,
            stage="candidate",
            artifact=training.artifact,
            data=training.data,
            contract_sha256=training.contract_sha256,
            code_commit=commit,
            metrics=quality.metrics,
            bias=quality.bias,
            diagnostics=quality.diagnostics,
            explanations=explanations,
            gates={
                gate.name: GateSummary(
                    passed=gate.passed, value=gate.value, threshold=gate.threshold, margin=gate.margin
                )
                for gate in gates.gates
            },
            parity=ParitySummary(
                max_abs_diff=parity.max_abs_diff,
                labels_equal=parity.labels_equal,
                rows=parity.rows,
                tolerance=parity.tolerance,
            ),
            created_at=stamp,
            updated_at=stamp,
            run=run,
            override=override,
        )

    def as_yaml(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class Registry(Record):
    """The whole file: schema version, unique versions, at most one champion."""

    version: Literal[1]
    models: tuple[RegistryEntry, ...] = ()

    @field_validator("models")
    @classmethod
    def _unique_and_one_champion(cls, models: tuple[RegistryEntry, ...]) -> tuple[RegistryEntry, ...]:
        seen: set[str] = set()
        for entry in models:
            if entry.version in seen:
                raise ValueError(f"must hold each version once ({entry.version!r} repeats)")
            seen.add(entry.version)
        champions = [entry.version for entry in models if entry.stage == "production"]
        if len(champions) > 1:
            raise ValueError(f"may hold at most one entry in stage 'production' (found {champions})")
        return models

    @property
    def champion(self) -> RegistryEntry | None:
        """The production entry, or None before the first promotion."""
        return next((entry for entry in self.models if entry.stage == "production"), None)

    def get(self, version: str) -> RegistryEntry | None:
        return next((entry for entry in self.models if entry.version == version), None)


# --- what a drift run finds and decides ----------------------------------------------------------------

DecisionStatus = Literal["retrain", "no_retrain", "insufficient_data", "retrain_blocked"]


class FeatureDrift(Record):
    name: str
    kind: str
    test: str
    statistic: float
    p_value: float
    drifted: bool


class DriftResult(Record):
    """Per-feature tests of one window against the reference, after the multiple-testing correction."""

    backend: str
    correction: str
    level: float
    threshold: float
    reference_rows: int
    current_rows: int
    features: tuple[FeatureDrift, ...]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def drifted_features(self) -> list[str]:
        return [feature.name for feature in self.features if feature.drifted]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def drifted_share(self) -> float:
        return len(self.drifted_features) / len(self.features) if self.features else 0.0


class Check(Record):
    """One retraining rule of the policy applied to a window."""

    name: str
    value: float | bool | None
    limit: float | bool | None
    triggered: bool
    detail: str


class Decision(Record):
    """What the policy says about a window, and why; `retrain_blocked` keeps the reason in notes."""

    status: DecisionStatus
    reasons: tuple[str, ...] = ()
    checks: tuple[Check, ...] = ()
    notes: tuple[str, ...] = ()

    @computed_field  # type: ignore[prop-decorator]
    @property
    def retrain(self) -> bool:
        return self.status == "retrain"

    def blocked(self, reason: str) -> Decision:
        """The policy asks to retrain, but the new data cannot be trained on."""
        return self.model_copy(update={"status": "retrain_blocked", "notes": (*self.notes, reason)})

    def noted(self, notes: list[str]) -> Decision:
        return self.model_copy(update={"notes": (*notes, *self.notes)})


class Performance(Record):
    """Task metric and bias gap of a window's labelled rows, next to the champion's registered values."""

    metric: str
    labelled_rows: int
    value: float | None = None
    champion_value: float | None = None
    metrics: dict[str, Number] = Field(default_factory=dict)
    bias_metric: str = "selection_rate"
    bias_rows: int = 0
    group_rates: dict[str, float] = Field(default_factory=dict)
    bias_gap: float | None = None
    champion_bias_gap: float | None = None
    notes: tuple[str, ...] = ()

    @computed_field  # type: ignore[prop-decorator]
    @property
    def drop(self) -> float | None:
        """How much worse than the champion's registered value the metric is, in its direction
        (governance/core/tasks.py: an rmse that rose is a drop); negative when it improved."""
        if self.value is None or self.champion_value is None:
            return None
        if self.metric in METRICS:
            return worsening(self.metric, self.value, self.champion_value)
        return self.champion_value - self.value


class Window(Record):
    uri: str
    rows: int
    labelled_rows: int
    relabelled_rows: int = Field(0, description="predictions whose /feedback labels disagree")
    start: str | None = None
    end: str | None = None
    since: str | None = None
    until: str | None = None
    last_n: int | None = None
    model_versions: tuple[str, ...] = ()


class ReferenceInfo(Record):
    snapshot_id: str | None = None
    rows: int = 0
    model_name: str | None = None
    model_version: str | None = None
    stage: str | None = None


REFERENCE_HOLDOUT = "reference_holdout"  # the segment the candidate is scored on, never trained on
WINDOW_SEGMENT = "window"  # the captured window's labelled rows: the main held-out split comes from it


class DataSegment(Record):
    """One source of a retraining snapshot's rows, in row order (manifest `source.segments`).

    `ml/pipeline.py` reads them back: the first segment may be the reference hold-out slice,
    the last is the window, whose own test split is the main held-out set.
    """

    source: str  # reference_holdout | reference | snapshot | window
    rows: int = Field(ge=0)
    snapshot_id: str | None = None


class NewDataset(Record):
    """The labelled window as a candidate snapshot: valid and written, or the reasons it is not."""

    valid: bool
    rows: int
    errors: tuple[str, ...] = ()
    manifest: dict[str, Any] | None = None
    validation: str | None = None
    data_docs: str | None = None
    path: str | None = None
    notes: tuple[str, ...] = ()  # e.g. the window's older labelled rows left out (retrain.max_window_rows)


class HistoryRecord(Record):
    """One line of governance/monitoring_history.jsonl."""

    run_at: str
    status: DecisionStatus
    reasons: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    detector: str
    window: dict[str, Any]
    reference: ReferenceInfo
    drifted_features: tuple[str, ...] = ()
    score_drift: bool | None = None
    snapshot_id: str | None = None
    dataset_valid: bool | None = None


class DriftSummary(Record):
    """drift.json: everything one drift run found, decided and wrote (reports, history, the bot)."""

    run_at: str
    detector: str
    policy: dict[str, Any]
    window: Window
    reference: ReferenceInfo
    drift: DriftResult | None = None
    score_drift: FeatureDrift | None = None
    # Multiclass: one row per class probability behind `score_drift` (empty for one-signal tasks).
    prediction_drift: tuple[FeatureDrift, ...] = ()
    performance: Performance | None = None
    dataset: NewDataset | None = None
    decision: Decision
    timings: dict[str, float] = Field(default_factory=dict)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def history_record(self) -> HistoryRecord:
        dataset = self.dataset
        return HistoryRecord(
            run_at=self.run_at,
            status=self.decision.status,
            reasons=self.decision.reasons,
            notes=self.decision.notes,
            detector=self.detector,
            window=self.window.model_dump(
                include={"uri", "rows", "labelled_rows", "relabelled_rows", "start", "end"}
            ),
            reference=self.reference,
            drifted_features=tuple(self.drift.drifted_features) if self.drift else (),
            score_drift=self.score_drift.drifted if self.score_drift else None,
            snapshot_id=(dataset.manifest or {}).get("snapshot_id") if dataset else None,
            dataset_valid=dataset.valid if dataset else None,
        )


def read_drift_summary(path: Path | str) -> DriftSummary:
    """drift.json, with the computed fields a writer adds left out before validation."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise RecordError(f"{path} does not exist: run `make drift` first") from None
    except ValueError as problem:
        raise RecordError(f"{path} is not valid JSON: {problem}") from None
    return parse(DriftSummary, strip_computed(DriftSummary, raw), str(path))


def strip_computed(model: type[BaseModel], raw: Any) -> Any:
    """Drop computed fields (written for readers, re-derived on load) from a dumped record."""
    if not isinstance(raw, dict):
        return raw
    cleaned = {key: value for key, value in raw.items() if key not in model.model_computed_fields}
    for name, field in model.model_fields.items():
        annotation = field.annotation
        for candidate in getattr(annotation, "__args__", (annotation,)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel) and name in cleaned:
                value = cleaned[name]
                if isinstance(value, dict):
                    cleaned[name] = strip_computed(candidate, value)
                elif isinstance(value, list):
                    cleaned[name] = [strip_computed(candidate, item) for item in value]
    return cleaned


# --- a challenger compared with the champion on live traffic (make compare, post-deploy check) ----------

Verdict = Literal["promote", "hold", "reject", "healthy", "rollback", "insufficient_data"]


class SideBySide(Record):
    """One measure of both models on the same rows (a metric, a bias gap, a p99 latency)."""

    name: str
    baseline: float | None = None
    subject: float | None = None
    direction: str = ""


class Comparison(Record):
    """compare.json / check.json: two answer sets on the same live rows, checked against `promotion:`.

    `make compare`: the baseline is the champion, the subject the challenger scored in shadow
    (verdict promote, hold or reject). `make post-deploy-check`: the baseline is the promoted
    version's own shadow phase, the subject its live answers since it went to production
    (verdict healthy, insufficient_data or rollback).
    """

    kind: Literal["compare", "post_deploy"]
    run_at: str
    uri: str
    since: str | None = None
    until: str | None = None
    baseline_name: str
    subject_name: str
    baseline_version: str | None = None
    subject_version: str | None = None
    rows: int = Field(ge=0)
    labelled_rows: int = Field(ge=0)
    agreement: float | None = None
    score_distance: float | None = None
    measures: tuple[SideBySide, ...] = ()
    checks: tuple[Check, ...] = ()
    verdict: Verdict
    reasons: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def read_comparison(path: Path | str) -> Comparison:
    """A comparison record written by `make compare` or `make post-deploy-check`."""
    return read_json(Comparison, Path(path), "run `make compare` (or `make post-deploy-check`) first")
