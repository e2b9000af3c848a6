"""The policy gates: requirements from governance/policy.yaml checked against a candidate.

A gate is a record (`GateResult`: name, passed, value, threshold, margin) so that CI comments,
the registry and the model card all show the same numbers. A positive margin is room to
spare; a negative one is by how much the requirement was missed.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd

from governance.core.contract import Contract
from governance.core.encoding import Scorer
from governance.core.policy import Policy
from governance.core.records import (
    Baseline,
    Bias,
    GateResult,
    Parity,
    ReferenceScore,
    RegistryEntry,
    numeric_items,
)
from governance.core.tasks import BINARY, METRICS, MULTICLASS, REGRESSION, higher_is_better, worsening
from ml.evaluate import task_metrics
from ml.features import onnx_inputs

LATENCY_RUNS = 200
LATENCY_WARMUP = 20
# What ml.export.parity measures per task (the parity gate's message says it).
PARITY_MEASURE = {
    BINARY: "max |p_onnx - p_sklearn| on the test split",
    MULTICLASS: "max |p_onnx - p_sklearn| over the classes on the test split",
    REGRESSION: "max |onnx - sklearn| / (1 + |sklearn|) on the test split",
}
FETCH_HINT = "fetch the champion's model with `make champion` before `make train`"


def single_row_latency_ms(scorer: Scorer, frame: pd.DataFrame, contract: Contract) -> float:
    """Median wall time of one-row onnxruntime calls: the serving path's model cost per request."""
    rows = [onnx_inputs(frame.iloc[[index % len(frame)]], contract) for index in range(min(len(frame), 50))]
    for index in range(LATENCY_WARMUP):
        scorer.score(rows[index % len(rows)])
    timings = []
    for index in range(LATENCY_RUNS):
        feed = rows[index % len(rows)]
        start = time.perf_counter()
        scorer.score(feed)
        timings.append(time.perf_counter() - start)
    return statistics.median(timings) * 1000.0


def champion_baseline(
    champion: RegistryEntry | None,
    root: Path,
    frame: pd.DataFrame,
    y_true: np.ndarray,
    contract: Contract,
    metric: str,
) -> Baseline | None:
    """The production model's primary metric, measured on the candidate's own test split when possible.

    Scores from different test splits are not comparable, so when the champion's ONNX file
    is here (sha256 as registered) and was built for the current contract, it is re-scored
    on exactly the rows the candidate was scored on. Otherwise its registered figure comes back
    marked not comparable, and `check` applies the policy's `model.regression_fallback`.
    """
    if champion is None:
        return None
    registered = float(champion.metrics.get(metric) or 0.0)
    recorded = numeric_items(champion.metrics)
    artifact = root / champion.artifact.path

    def not_comparable(why: str) -> Baseline:
        basis = f"registered metric on its own test split ({why})"
        return Baseline(
            version=champion.version, value=registered, basis=basis, comparable=False, metrics=recorded
        )

    if champion.contract_sha256 != contract.digest:
        return not_comparable("it was built for another data contract")
    if not artifact.is_file():
        return not_comparable(f"{champion.artifact.path} is not here")
    content = artifact.read_bytes()
    if hashlib.sha256(content).hexdigest() != champion.artifact.sha256:
        return not_comparable(f"{champion.artifact.path} does not match its registered sha256")
    scorer = Scorer(content)
    classes = json.loads(scorer.metadata.get("classes", "[]"))
    if contract.target.is_classification and classes != list(contract.target.classes):
        return not_comparable(f"its classes {classes} are not the contract's {list(contract.target.classes)}")
    scores = rescore(scorer, frame, y_true, contract)
    if scores.get(metric) is None:
        return not_comparable(f"its {metric} is undefined on this candidate's test split")
    return Baseline(
        version=champion.version,
        value=float(scores[metric]),
        basis="re-scored on this candidate's test split",
        metrics=numeric_items(scores),
    )


def rescore(scorer: Scorer, frame: pd.DataFrame, y_true: np.ndarray, contract: Contract) -> dict:
    """A model's task metrics on rows (`y_true`: class indices, or numbers for regression)."""
    target = contract.target
    scored = scorer.score(onnx_inputs(frame, contract))
    positive = target.positive_index if contract.task == BINARY else 1
    return task_metrics(y_true, scored.predicted, scored.probabilities, contract.task, positive)


def _gate(
    name: str, value: float | None, threshold: float, requirement: str, what: str, *, at_least: bool
) -> GateResult:
    if value is None:
        return GateResult(
            name=name,
            passed=False,
            value=None,
            threshold=threshold,
            margin=None,
            requirement=requirement,
            message=f"{what} could not be computed",
        )
    margin = value - threshold if at_least else threshold - value
    passed = margin >= 0
    if at_least:
        message = (
            f"{what} {value:.4f} meets the minimum {threshold:.4f} (margin {margin:.4f})"
            if passed
            else f"{what} {value:.4f} is {-margin:.4f} below the minimum {threshold:.4f}"
        )
    else:
        message = (
            f"{what} {value:.4g} is within the maximum {threshold:.4g}"
            if passed
            else f"{what} {value:.4g} exceeds the maximum {threshold:.4g} by {-margin:.4g}"
        )
    message += (
        f" (required: at least {threshold:.4f})" if at_least else f" (required: at most {threshold:.4g})"
    )
    return GateResult(
        name=name,
        passed=passed,
        value=value,
        threshold=threshold,
        margin=margin,
        requirement=requirement,
        message=message,
    )


def _verdict(name: str, passed: bool, threshold: float, requirement: str, message: str) -> GateResult:
    """A gate decided without a measured value (not applicable, or not comparable)."""
    return GateResult(
        name=name,
        passed=passed,
        value=None,
        threshold=threshold,
        margin=None,
        requirement=requirement,
        message=message,
    )


def primary_gate(policy: Policy, metrics: dict[str, float | int | None]) -> GateResult:
    """At least `min_primary_metric` when higher is better, at most `max_primary_metric` otherwise."""
    metric = policy.model.primary_metric
    at_least = higher_is_better(metric)
    return _gate(
        "primary_metric",
        metrics.get(metric),
        policy.model.threshold,
        "model.min_primary_metric" if at_least else "model.max_primary_metric",
        f"held-out {metric}",
        at_least=at_least,
    )


def bias_gate(policy: Policy, bias: Bias) -> GateResult:
    if bias.sensitive_attribute is None:
        return _verdict(
            "bias_gap",
            True,
            policy.bias.max_gap,
            "bias.max_gap",
            "not applicable: the data contract declares no sensitive attribute",
        )
    return _gate(
        "bias_gap",
        bias.gaps.get(policy.bias.metric),
        policy.bias.max_gap,
        "bias.max_gap",
        f"largest {policy.bias.metric} gap across '{bias.sensitive_attribute}'",
        at_least=False,
    )


def parity_gate(policy: Policy, parity: Parity, task: str = BINARY) -> GateResult:
    gate = _gate(
        "onnx_parity",
        parity.max_abs_diff,
        policy.onnx.parity_tolerance,
        "onnx.parity_tolerance",
        PARITY_MEASURE[task],
        at_least=False,
    )
    if parity.labels_equal:
        return gate
    return gate.model_copy(
        update={
            "passed": False,
            "message": f"{parity.mismatched_labels} label(s) differ between onnxruntime and scikit-learn; "
            + gate.message,
        }
    )


def latency_gate(policy: Policy, latency_ms: float) -> GateResult:
    return _gate(
        "onnx_latency",
        latency_ms,
        policy.onnx.max_single_row_latency_ms,
        "onnx.max_single_row_latency_ms",
        "median single-row onnxruntime latency (ms)",
        at_least=False,
    )


def regression_gate(policy: Policy, primary: float | None, baseline: Baseline | None) -> GateResult:
    limit, metric = policy.model.max_regression_vs_champion, policy.model.primary_metric
    requirement = "model.max_regression_vs_champion"
    if baseline is None:
        return _verdict(
            "regression_vs_champion",
            True,
            limit,
            requirement,
            "no champion in production yet: nothing to compare with",
        )
    if primary is None:
        return _verdict(
            "regression_vs_champion", False, limit, requirement, f"{metric} could not be computed"
        )
    if not baseline.comparable and policy.model.regression_fallback == "fail":
        return _verdict(
            "regression_vs_champion",
            False,
            limit,
            "model.regression_fallback",
            f"not comparable: champion {baseline.version}'s {metric} {baseline.value:.4f} "
            f"is its {baseline.basis}, "
            f"not a score on this candidate's test split; {FETCH_HINT} (or set model.regression_fallback: "
            "registered_metric to accept a comparison across test splits)",
        )
    return _gate(
        "regression_vs_champion",
        worsening(metric, primary, baseline.value),
        limit,
        requirement,
        f"worsening of {metric} ({METRICS[metric].direction}) versus champion {baseline.version} "
        f"({baseline.value:.4f}, {baseline.basis})",
        at_least=False,
    )


def reference_gate(policy: Policy, reference: ReferenceScore) -> GateResult:
    """The primary metric's requirement again, on the reference hold-out slice of a retraining snapshot,
    so a candidate that learned only the drifted window cannot pass on that window alone."""
    metric = policy.model.primary_metric
    at_least = higher_is_better(metric)
    return _gate(
        "reference_holdout",
        reference.metrics.get(metric),
        policy.model.threshold,
        "model.min_primary_metric" if at_least else "model.max_primary_metric",
        f"{metric} on the {reference.rows} reference hold-out rows (snapshot {reference.snapshot_id})",
        at_least=at_least,
    )


def check(
    policy: Policy,
    metrics: dict[str, float | int | None],
    bias: Bias,
    parity: Parity,
    latency_ms: float,
    baseline: Baseline | None,
    task: str = BINARY,
    reference: ReferenceScore | None = None,
) -> list[GateResult]:
    """Every gate, passed or not, in a fixed order; `reference_holdout` only for a retraining snapshot."""
    gates = [
        primary_gate(policy, metrics),
        bias_gate(policy, bias),
        parity_gate(policy, parity, task),
        latency_gate(policy, latency_ms),
        regression_gate(policy, metrics.get(policy.model.primary_metric), baseline),
    ]
    return gates + ([reference_gate(policy, reference)] if reference is not None else [])
