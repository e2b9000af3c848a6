"""The policy gates: requirements from governance/policy.yaml checked against a candidate.

A gate is data ({name, passed, value, threshold, margin}) so that CI comments, the registry
and the model card all show the same numbers. A positive margin is room to spare; a
negative one is by how much the requirement was missed.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd

from data_pipelines.contract import Contract
from governance.files import numeric_items, read_yaml_mapping
from ml.evaluate import GROUP_METRICS, HIGHER_IS_BETTER, task_metrics
from ml.export import predict, session
from ml.features import onnx_inputs

POLICY_PATH = Path(__file__).resolve().parents[1] / "governance" / "policy.yaml"
LATENCY_RUNS = 200
LATENCY_WARMUP = 20
REGRESSION_FALLBACKS = ("fail", "registered_metric")
FETCH_HINT = "fetch the champion's model with `make champion` before `make train`"


class PolicyError(ValueError):
    """governance/policy.yaml breaks a rule the gates rely on; the message names the key."""


@dataclass(frozen=True)
class Policy:
    primary_metric: str
    min_primary_metric: float
    max_regression_vs_champion: float
    bias_metric: str
    max_bias_gap: float
    opset: int
    parity_tolerance: float
    max_single_row_latency_ms: float
    regression_fallback: str = "fail"
    path: str = str(POLICY_PATH)


@dataclass(frozen=True)
class Gate:
    name: str
    passed: bool
    value: float | None
    threshold: float
    margin: float | None
    requirement: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Baseline:
    """The champion's primary metric, and how it was obtained.

    `comparable` is False when the figure was not measured on the candidate's test split (the
    champion's registered metric): a drop against it may be data drift, not a worse model.
    `metrics` holds every metric on the same basis, so the PR comment's table compares like
    with like, as the gate does.
    """

    version: str
    value: float
    basis: str
    comparable: bool = True
    metrics: dict[str, float] = field(default_factory=dict)


def _number(raw: dict, section: str, key: str, low: float, high: float) -> float:
    value = (raw.get(section) or {}).get(key)
    if not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high:
        raise PolicyError(f"policy '{section}.{key}' must be a number from {low} to {high} (got {value!r})")
    return float(value)


def load_policy(path: Path | str = POLICY_PATH) -> Policy:
    """Read the requirements, refusing a policy the gates could misread."""
    raw = read_yaml_mapping(path, PolicyError, "policy file")
    primary = (raw.get("model") or {}).get("primary_metric")
    if primary not in HIGHER_IS_BETTER:
        raise PolicyError(
            f"policy 'model.primary_metric' must be one of {list(HIGHER_IS_BETTER)} (got {primary!r})"
        )
    bias_metric = (raw.get("bias") or {}).get("metric")
    if bias_metric not in GROUP_METRICS:
        raise PolicyError(
            f"policy 'bias.metric' must be one of {sorted(GROUP_METRICS)} (got {bias_metric!r})"
        )
    fallback = (raw.get("model") or {}).get("regression_fallback", "fail")
    if fallback not in REGRESSION_FALLBACKS:
        raise PolicyError(
            f"policy 'model.regression_fallback' must be one of {list(REGRESSION_FALLBACKS)} "
            f"(got {fallback!r})"
        )
    opset = (raw.get("onnx") or {}).get("opset")
    if not isinstance(opset, int) or isinstance(opset, bool) or not 9 <= opset <= 21:
        raise PolicyError(f"policy 'onnx.opset' must be an integer from 9 to 21 (got {opset!r})")
    return Policy(
        primary_metric=primary,
        min_primary_metric=_number(raw, "model", "min_primary_metric", 0.0, 1.0),
        max_regression_vs_champion=_number(raw, "model", "max_regression_vs_champion", 0.0, 1.0),
        bias_metric=bias_metric,
        max_bias_gap=_number(raw, "bias", "max_gap", 0.0, 1.0),
        opset=opset,
        parity_tolerance=_number(raw, "onnx", "parity_tolerance", 1e-12, 1.0),
        max_single_row_latency_ms=_number(raw, "onnx", "max_single_row_latency_ms", 1e-6, 60_000.0),
        regression_fallback=fallback,
        path=str(path),
    )


def single_row_latency_ms(runner: ort.InferenceSession, frame: pd.DataFrame, contract: Contract) -> float:
    """Median wall time of one-row onnxruntime calls: the serving path's model cost per request."""
    rows = [onnx_inputs(frame.iloc[[index % len(frame)]], contract) for index in range(min(len(frame), 50))]
    for index in range(LATENCY_WARMUP):
        runner.run(None, rows[index % len(rows)])
    timings = []
    for index in range(LATENCY_RUNS):
        feed = rows[index % len(rows)]
        start = time.perf_counter()
        runner.run(None, feed)
        timings.append(time.perf_counter() - start)
    return statistics.median(timings) * 1000.0


def champion_baseline(
    champion: dict[str, Any] | None,
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
    version = str(champion["version"])
    registered = float(champion["metrics"][metric])
    recorded = numeric_items(champion["metrics"])
    artifact = root / champion["artifact"]["path"]
    if champion.get("contract_sha256") != contract.digest:
        return Baseline(
            version,
            registered,
            "registered metric on its own test split (it was built for another data contract)",
            comparable=False,
            metrics=recorded,
        )
    if not artifact.is_file():
        return Baseline(
            version,
            registered,
            f"registered metric on its own test split ({champion['artifact']['path']} is not here)",
            comparable=False,
            metrics=recorded,
        )
    content = artifact.read_bytes()
    if hashlib.sha256(content).hexdigest() != champion["artifact"]["sha256"]:
        return Baseline(
            version,
            registered,
            f"registered metric on its own test split ({champion['artifact']['path']} does not match "
            "its registered sha256)",
            comparable=False,
            metrics=recorded,
        )
    runner = session(content)
    labels, proba = predict(runner, frame, contract)
    classes = json.loads(runner.get_modelmeta().custom_metadata_map["classes"])
    positive = contract.target.positive_class
    scores = task_metrics(
        (np.asarray(y_true) == positive).astype(np.int64),
        (labels == positive).astype(np.int64),
        proba[:, classes.index(positive)],
    )
    return Baseline(
        version,
        float(scores[metric]),
        "re-scored on this candidate's test split",
        metrics=numeric_items(scores),
    )


def _at_least(name: str, value: float | None, threshold: float, requirement: str, what: str) -> Gate:
    if value is None:
        return Gate(name, False, None, threshold, None, requirement, f"{what} could not be computed")
    margin = value - threshold
    passed = margin >= 0
    if passed:
        message = f"{what} {value:.4f} meets the minimum {threshold:.4f} (margin {margin:.4f})"
    else:
        message = f"{what} {value:.4f} is {-margin:.4f} below the minimum {threshold:.4f}"
    return Gate(name, passed, value, threshold, margin, requirement, message)


def _at_most(name: str, value: float | None, threshold: float, requirement: str, what: str) -> Gate:
    if value is None:
        return Gate(name, False, None, threshold, None, requirement, f"{what} could not be computed")
    margin = threshold - value
    passed = margin >= 0
    if passed:
        message = f"{what} {value:.4g} is within the maximum {threshold:.4g}"
    else:
        message = f"{what} {value:.4g} exceeds the maximum {threshold:.4g} by {-margin:.4g}"
    return Gate(name, passed, value, threshold, margin, requirement, message)


def check(
    policy: Policy,
    metrics: dict[str, Any],
    bias: dict[str, Any],
    parity: dict[str, Any],
    latency_ms: float,
    baseline: Baseline | None,
) -> list[Gate]:
    """Every gate, passed or not, in a fixed order."""
    primary = metrics.get(policy.primary_metric)
    gates = [
        _at_least(
            "primary_metric",
            primary,
            policy.min_primary_metric,
            "model.min_primary_metric",
            f"held-out {policy.primary_metric}",
        )
    ]
    if bias.get("sensitive_attribute") is None:
        gates.append(
            Gate(
                "bias_gap",
                True,
                None,
                policy.max_bias_gap,
                None,
                "bias.max_gap",
                "not applicable: the data contract declares no sensitive attribute",
            )
        )
    else:
        gates.append(
            _at_most(
                "bias_gap",
                bias.get("gaps", {}).get(policy.bias_metric),
                policy.max_bias_gap,
                "bias.max_gap",
                f"largest {policy.bias_metric} gap across '{bias['sensitive_attribute']}'",
            )
        )
    parity_gate = _at_most(
        "onnx_parity",
        parity["max_abs_diff"],
        policy.parity_tolerance,
        "onnx.parity_tolerance",
        "max |p_onnx - p_sklearn| on the test split",
    )
    if not parity["labels_equal"]:
        parity_gate = Gate(
            parity_gate.name,
            False,
            parity_gate.value,
            parity_gate.threshold,
            parity_gate.margin,
            parity_gate.requirement,
            f"{parity['mismatched_labels']} label(s) differ between onnxruntime and scikit-learn; "
            + parity_gate.message,
        )
    gates.append(parity_gate)
    gates.append(
        _at_most(
            "onnx_latency",
            latency_ms,
            policy.max_single_row_latency_ms,
            "onnx.max_single_row_latency_ms",
            "median single-row onnxruntime latency (ms)",
        )
    )
    if baseline is None:
        gates.append(
            Gate(
                "regression_vs_champion",
                True,
                None,
                policy.max_regression_vs_champion,
                None,
                "model.max_regression_vs_champion",
                "no champion in production yet: nothing to compare with",
            )
        )
    elif primary is None:
        gates.append(
            Gate(
                "regression_vs_champion",
                False,
                None,
                policy.max_regression_vs_champion,
                None,
                "model.max_regression_vs_champion",
                f"{policy.primary_metric} could not be computed",
            )
        )
    elif not baseline.comparable and policy.regression_fallback == "fail":
        gates.append(
            Gate(
                "regression_vs_champion",
                False,
                None,
                policy.max_regression_vs_champion,
                None,
                "model.regression_fallback",
                f"not comparable: champion {baseline.version}'s {policy.primary_metric} "
                f"{baseline.value:.4f} is its {baseline.basis}, not a score on this candidate's test "
                f"split; {FETCH_HINT} (or set model.regression_fallback: registered_metric to accept "
                "a comparison across test splits)",
            )
        )
    else:
        drop = baseline.value - primary
        gate = _at_most(
            "regression_vs_champion",
            drop,
            policy.max_regression_vs_champion,
            "model.max_regression_vs_champion",
            f"drop in {policy.primary_metric} versus champion {baseline.version} "
            f"({baseline.value:.4f}, {baseline.basis})",
        )
        gates.append(gate)
    return gates


def failures(gates: list[Gate], policy_path: str) -> list[str]:
    """One line per failed gate naming the policy requirement and the shortfall."""
    return [
        f"gate '{gate.name}' failed ({policy_path}: {gate.requirement}): {gate.message}"
        for gate in gates
        if not gate.passed
    ]
