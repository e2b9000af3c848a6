"""governance/policy.yaml, the requirements as code, read by exactly this one parser.

The CI gates (`ml`), the serving limits (`app`), the drift decision and the relabel rule
(`monitoring`) and the model card (`governance`) all read their section of this one record,
so changing what is required is one reviewed edit of one file, and a typo there stops the
first command that reads it with the key, the rule and the value named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, StrictBool

from governance.core.errors import InputError
from governance.core.paths import PATHS
from governance.core.records import Record, parse, read_yaml

# The metrics training computes (ml/evaluate.py implements exactly these; a test holds them equal).
PRIMARY_METRICS = ("roc_auc", "accuracy", "f1", "precision", "recall")
GROUP_METRICS = ("selection_rate", "accuracy", "true_positive_rate", "false_positive_rate")
CORRECTIONS = ("bonferroni", "fdr")


class PolicyError(InputError):
    """governance/policy.yaml breaks a rule; the message names the key, the rule and the value."""


class ModelPolicy(Record):
    primary_metric: Literal["roc_auc", "accuracy", "f1", "precision", "recall"]
    min_primary_metric: float = Field(ge=0, le=1)
    max_regression_vs_champion: float = Field(ge=0, le=1)
    # `fail` refuses to compare with a champion score from another test split; `registered_metric` allows it.
    regression_fallback: Literal["fail", "registered_metric"] = "fail"


class BiasPolicy(Record):
    metric: Literal["selection_rate", "accuracy", "true_positive_rate", "false_positive_rate"]
    max_gap: float = Field(ge=0, le=1)


class OnnxPolicy(Record):
    opset: int = Field(ge=9, le=21, strict=True)
    parity_tolerance: float = Field(gt=0, le=1)
    max_single_row_latency_ms: float = Field(gt=0, le=60_000)


class ServingPolicy(Record):
    max_batch_rows: int = Field(1000, ge=1, le=100_000, strict=True)
    unknown_category: Literal["reject", "score"] = "reject"


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


class RetrainPolicy(Record):
    max_drifted_feature_share: float = Field(ge=0, le=1)
    on_score_drift: StrictBool = True
    max_metric_drop: float = Field(ge=0, le=1)
    max_bias_gap: float = Field(ge=0, le=1)


class ModelCardPolicy(Record):
    """Statements reviewers sign off; every model card quotes them."""

    intended_use: str = (
        "Scores one tabular record at a time for the binary target in the data contract, to support "
        "(not replace) a human decision."
    )
    out_of_scope: str = ""
    limitations: tuple[str, ...] = (
        "Trained and evaluated on one dataset snapshot; performance on other populations is unknown.",
        "Bias is measured only for the sensitive attribute in the data contract, at one threshold (0.5).",
    )


class Policy(Record):
    version: Literal[1] = 1
    model: ModelPolicy
    bias: BiasPolicy
    onnx: OnnxPolicy
    serving: ServingPolicy = ServingPolicy()
    feedback: FeedbackPolicy = FeedbackPolicy()
    drift: DriftPolicy
    retrain: RetrainPolicy
    model_card: ModelCardPolicy = ModelCardPolicy()


def load(path: Path | str | None = None) -> Policy:
    """The policy (default: governance/policy.yaml of this project), checked whole before any use."""
    path = Path(path) if path else PATHS.policy
    return parse(Policy, read_yaml(path, "policy file", PolicyError), str(path), PolicyError)
