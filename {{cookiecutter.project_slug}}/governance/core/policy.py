"""governance/policy.yaml, the requirements as code, read by exactly this one parser.

The CI gates (`ml`), the serving limits (`app`), the drift decision and the relabel rule
(`monitoring`) and the model card (`governance`) all read their section of this one record,
so changing what is required is one reviewed edit of one file, and a typo there stops the
first command that reads it with the key, the rule and the value named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, StrictBool, model_validator

from governance.core.errors import FieldRule, InputError
from governance.core.paths import PATHS
from governance.core.records import Record, parse, read_yaml
from governance.core.tasks import GROUP_METRICS, METRICS, higher_is_better, metrics_of

CORRECTIONS = ("bonferroni", "fdr")


class PolicyError(InputError):
    """governance/policy.yaml breaks a rule; the message names the key, the rule and the value."""


class ModelPolicy(Record):
    """The primary metric and its bound: `min_primary_metric` when higher is better, else `max_`.

    `max_regression_vs_champion` is how much worse than the champion a candidate may be, in the
    metric's own units, whichever its direction (governance/core/tasks.py).
    """

    primary_metric: Literal[tuple(METRICS)]  # type: ignore[valid-type]
    min_primary_metric: float | None = None
    max_primary_metric: float | None = None
    max_regression_vs_champion: float = Field(ge=0)
    # `fail` refuses to compare with a champion score from another test split; `registered_metric` allows it.
    regression_fallback: Literal["fail", "registered_metric"] = "fail"

    @model_validator(mode="after")
    def _bound_follows_direction(self) -> ModelPolicy:
        metric = METRICS[self.primary_metric]
        wanted, other = (
            ("min_primary_metric", "max_primary_metric")
            if metric.higher_is_better
            else ("max_primary_metric", "min_primary_metric")
        )
        if getattr(self, other) is not None:
            raise FieldRule(
                other,
                f"does not apply: for {metric.name} {metric.direction}, set {wanted}",
                getattr(self, other),
            )
        bound = getattr(self, wanted)
        if bound is None:
            raise FieldRule(
                wanted, f"is required: {metric.name} is the primary metric and {metric.direction}", None
            )
        if (metric.low is not None and bound < metric.low) or (
            metric.high is not None and bound > metric.high
        ):
            raise FieldRule(wanted, f"must lie in {metric.name}'s range [{metric.low}, {metric.high}]", bound)
        return self

    @property
    def threshold(self) -> float:
        """The primary metric's bound, whichever side it is on."""
        bound = self.min_primary_metric if higher_is_better(self.primary_metric) else self.max_primary_metric
        return float(bound)  # type: ignore[arg-type]


class BiasPolicy(Record):
    """The per-group metric compared across the sensitive attribute and the largest gap allowed.

    For classification the gap is a difference of rates (0..1); for regression it is relative
    to the overall value (see governance/core/tasks.py GROUP_METRICS).
    """

    metric: Literal[tuple(sorted({name for names in GROUP_METRICS.values() for name in names}))]  # type: ignore[valid-type]
    max_gap: float = Field(ge=0)


class OnnxPolicy(Record):
    opset: int = Field(ge=9, le=21, strict=True)
    parity_tolerance: float = Field(gt=0, le=1)
    max_single_row_latency_ms: float = Field(gt=0, le=60_000)


class ServingPolicy(Record):
    max_batch_rows: int = Field(1000, ge=1, le=100_000, strict=True)
    unknown_category: Literal["reject", "score"] = "reject"


class CanaryPolicy(Record):
    """The bounds a canary release is held to in the cluster (deploy/components/canary).

    Argo Rollouts cannot read this file, so the AnalysisTemplate carries the same numbers as its
    arguments and the project's tests hold the two equal. `max_prediction_shift` is in probability
    units for classification (mean model_score) and relative to the stable mean for regression.
    """

    max_error_rate: float = Field(0.01, ge=0, le=1)
    max_p99_latency_seconds: float = Field(0.25, gt=0, le=60)
    max_prediction_shift: float = Field(0.05, ge=0)


class FeedbackPolicy(Record):
    """Which label counts when a prediction is labelled more than once (every label stays captured).

    `first_wins`: a later label cannot overwrite the first one, so whoever holds a feedback token
    cannot rewrite an outcome already recorded (the safe default for data that becomes training
    data). `last_wins`: a later label corrects an earlier one (for sources that do send corrections).
    """

    relabel: Literal["first_wins", "last_wins"] = "first_wins"


class DriftPolicy(Record):
    p_value: float = Field(gt=0, le=0.5)
    correction: Literal["bonferroni", "fdr"] = "bonferroni"
    min_window_rows: int = Field(ge=1, strict=True)
    min_labelled_rows: int = Field(100, ge=1, strict=True)


RETRAIN_DATA = ("reference_and_window", "window", "sliding")


class RetrainPolicy(Record):
    """When to retrain, and on what (`data`; monitoring/dataset.py builds that set).

    `data`: `reference_and_window` (the champion's validated training rows plus the window's
    labelled rows: earlier data is kept, so a poisoned or skewed window cannot replace it),
    `window` (the window alone), or `sliding` (the windows of the last `sliding_snapshots`
    retraining snapshots plus this one). `max_window_rows`: the window's labelled rows the snapshot
    takes at most, the newest (null: all of them); the retraining pull request trains on it in CI.
    """

    max_drifted_feature_share: float = Field(ge=0, le=1)
    on_score_drift: StrictBool = True
    max_metric_drop: float = Field(ge=0)  # in the primary metric's units, whichever its direction
    max_bias_gap: float = Field(ge=0)
    data: Literal[RETRAIN_DATA] = "reference_and_window"  # type: ignore[valid-type]
    sliding_snapshots: int = Field(default=3, ge=1, strict=True)
    max_window_rows: int | None = Field(default=50_000, ge=1, strict=True)


class ModelCardPolicy(Record):
    """Statements reviewers sign off; every model card quotes them."""

    intended_use: str = (
        "Scores one tabular record at a time for the target in the data contract, to support "
        "(not replace) a human decision."
    )
    out_of_scope: str = ""
    limitations: tuple[str, ...] = (
        "Trained and evaluated on one dataset snapshot; performance on other populations is unknown.",
        "Bias is measured only for the sensitive attribute in the data contract, at one threshold (0.5).",
    )


class LicencePolicy(Record):
    """Licences the serving image's and the training environment's packages may carry (`make licences`).

    `accepted` names packages allowed despite their licence, each with the reason reviewers signed
    off, so an exception is explicit and reviewed (CODEOWNERS covers this file).
    """

    allowed: tuple[str, ...] = (
        "MIT", "MIT-0", "MIT-CMU", "BSD", "BSD-2-Clause", "BSD-3-Clause", "Apache-2.0", "ISC", "PSF-2.0",
        "HPND", "CNRI-Python", "MPL-2.0", "LGPL",
    )  # fmt: skip
    accepted: dict[str, str] = Field(default_factory=dict)


class PromotionPolicy(Record):
    """When a challenger scored in shadow beside the champion may replace it (`make compare`), and
    when a promoted model is rolled back (`make post-deploy-check`).

    Compared on the same live rows: `min_agreement` is the share of rows where both answer the
    same class (classification); `max_value_difference` the mean |challenger - champion| over the
    mean |champion| (regression). `max_score_distance` bounds the two-sample Kolmogorov-Smirnov
    statistic between their score (or value) distributions: the largest gap between the two
    cumulative distributions, in 0..1 whatever the task or the target's scale, and the statistic
    the drift check already uses; for multiclass, the largest over the class probabilities.
    `max_metric_drop` is in the primary metric's units, whichever its direction; `max_bias_gap`
    bounds the challenger's gap of `bias.metric`; `max_latency_ratio` the challenger's p99
    scoring time over the champion's, measured on the same batches, when it is also more than
    `latency_slack_ms` slower (p99s of about a millisecond differ by 2-3 ms from one busy moment
    of the machine, CPU time included: 3.41 vs 1.06 ms for like models on a loaded CI runner; a
    ratio no client notices). Fewer than `min_rows` rows
    answered by both, or `min_labelled_rows` labelled ones, is not enough evidence: hold.

    After promotion, the live metric is compared with the shadow phase's, measured on other
    rows: `max_live_metric_drop` is looser than the paired `max_metric_drop`, since two samples
    of a few hundred labelled rows differ by a point or two of a metric by chance alone.
    """

    min_rows: int = Field(200, ge=1, strict=True)
    min_labelled_rows: int = Field(100, ge=1, strict=True)
    min_agreement: float = Field(0.8, ge=0, le=1)
    max_value_difference: float = Field(0.2, ge=0)
    max_score_distance: float = Field(0.15, ge=0, le=1)
    max_metric_drop: float = Field(0.02, ge=0)
    max_bias_gap: float = Field(0.15, ge=0)
    max_latency_ratio: float = Field(2.0, gt=0)
    latency_slack_ms: float = Field(5.0, ge=0)
    max_live_metric_drop: float = Field(0.05, ge=0)


class Policy(Record):
    version: Literal[1] = 1
    model: ModelPolicy
    bias: BiasPolicy
    onnx: OnnxPolicy
    serving: ServingPolicy = ServingPolicy()
    canary: CanaryPolicy = CanaryPolicy()
    feedback: FeedbackPolicy = FeedbackPolicy()
    drift: DriftPolicy
    retrain: RetrainPolicy
    model_card: ModelCardPolicy = ModelCardPolicy()
    licences: LicencePolicy = LicencePolicy()
    promotion: PromotionPolicy = PromotionPolicy()


def load(path: Path | str | None = None, task: str | None = None) -> Policy:
    """The policy (default: governance/policy.yaml of this project), checked whole before any use.

    With `task` (the data contract's), the metrics it names must be ones that task computes.
    """
    path = Path(path) if path else PATHS.policy
    policy = parse(Policy, read_yaml(path, "policy file", PolicyError), str(path), PolicyError)
    if task is not None:
        check_task(policy, task, str(path))
    return policy


def check_task(policy: Policy, task: str, source: str = "policy") -> None:
    """Refuse a policy whose metrics the contract's task does not compute (e.g. roc_auc for regression)."""
    if policy.model.primary_metric not in metrics_of(task):
        raise PolicyError(
            f"{source}: field 'model.primary_metric' must be one of {metrics_of(task)} for task {task} "
            f"(got {policy.model.primary_metric!r})"
        )
    if policy.bias.metric not in GROUP_METRICS[task]:
        raise PolicyError(
            f"{source}: field 'bias.metric' must be one of {list(GROUP_METRICS[task])} for task {task} "
            f"(got {policy.bias.metric!r})"
        )
