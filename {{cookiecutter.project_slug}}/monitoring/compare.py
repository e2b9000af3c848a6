"""`make compare`: the champion and a challenger scored in shadow, on the same live rows.

With SHADOW_MODEL_PATH set, serving writes the challenger's answer to every row the champion
answered (a `ShadowRecord`, same prediction_id). This module pairs the two answers of each row,
with the label fed back for it, and checks the challenger against governance/policy.yaml's
`promotion:` rules: how often both answer alike, how far apart their score (or value)
distributions are (two-sample KS statistic), the primary metric and the bias gap on the labelled
rows (training's definitions, through monitoring/performance.py), and the p99 scoring time of
each on the same batches. The verdict:

- `hold`: not enough evidence yet (fewer rows answered by both, or fewer labelled rows, than the
  policy asks) and no rule broken on what is known;
- `reject`: a rule is broken (each reason names the rule, the value and the bound);
- `promote`: every rule holds on enough rows.

The same pairing serves `make post-deploy-check` (monitoring/post_deploy.py), which compares a
promoted version's live answers with its own shadow phase.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

from governance.core import policy as policy_file
from governance.core import progress
from governance.core.contract import Contract, Target
from governance.core.contract import load as load_contract
from governance.core.errors import InputError
from governance.core.paths import Paths
from governance.core.policy import Policy, PromotionPolicy
from governance.core.records import Check, Comparison, Performance, SideBySide
from governance.core.tasks import METRICS, worsening
from governance.core.text import fmt
from monitoring import comparison_report
from monitoring.capture import capture_uri, read_shadow, read_window
from monitoring.performance import evaluate
from monitoring.predictions import from_window, signal_columns

# monitoring/performance.py's note when no registry entry is given: irrelevant to a comparison.
NO_REGISTERED = "the champion has no registered"
# The window's column that holds a model's answer (a class value, or the predicted number).
ANSWER = "predicted_label"


class CompareError(InputError):
    """The capture holds no comparison to make; the message says what is missing and how to get it."""


@dataclass(frozen=True)
class Options:
    uri: str | None = None
    since: str | None = None
    until: str | None = None
    days: float | None = None
    version: str | None = None  # the challenger's version, when the capture holds more than one


def window_start(since: str | None, days: float | None) -> Any:
    if days is not None and since is None:
        return datetime.now(UTC) - timedelta(days=days)
    return since


def pick_challenger(shadow: pd.DataFrame, version: str | None) -> tuple[pd.DataFrame, str]:
    """The shadow rows of one challenger: the one named, or the only one the window holds."""
    versions = sorted(str(value) for value in shadow["model_version"].dropna().unique())
    if version is not None:
        if version not in versions:
            raise CompareError(
                f"option '--version': the capture window holds no shadow answers of {version!r} "
                f"(challengers in it: {versions or 'none'})"
            )
        return shadow[shadow["model_version"] == version], version
    if not versions:
        raise CompareError(
            "the capture window holds no shadow answers: serve with SHADOW_MODEL_PATH set to the "
            "challenger's model, then compare (or widen the window with --since/--days)"
        )
    if len(versions) > 1:
        raise CompareError(f"option '--version' is required: the window holds challengers {versions}")
    return shadow, versions[0]


def pair(window: pd.DataFrame, shadow: pd.DataFrame, target: Target) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(baseline, subject): the rows both answered, as windows; the subject carries the shadow answers.

    Both frames hold the same rows in the same order, with the labels and the sensitive attribute
    from the window, so every measure compares like with like.
    """
    answers = [ANSWER, *signal_columns(target)]
    ids = shadow.set_index(shadow["prediction_id"].astype(str))
    keep = window["prediction_id"].astype(str).isin(ids.index)
    baseline = window[keep].reset_index(drop=True)
    matched = ids.loc[baseline["prediction_id"].astype(str)].reset_index(drop=True)
    subject = baseline.copy()
    for name in answers:
        subject[name] = matched[name].to_numpy()
    for name in ("latency_ms", "champion_latency_ms"):
        subject[name] = matched[name].to_numpy(dtype=np.float64)
    subject["model_version"] = matched["model_version"].astype(str).to_numpy()
    return baseline, subject


def valid_answers(frame: pd.DataFrame, target: Target) -> pd.Series:
    if target.is_classification:
        return frame[ANSWER].isin(target.classes)
    return pd.to_numeric(frame[ANSWER], errors="coerce").notna()


def agreement(baseline: pd.DataFrame, subject: pd.DataFrame, target: Target) -> float | None:
    """Classification: the share of rows where both answer the same class. Regression: None."""
    if not target.is_classification or not len(baseline):
        return None
    return float(np.mean(target.class_indices(baseline[ANSWER]) == target.class_indices(subject[ANSWER])))


def value_difference(baseline: pd.DataFrame, subject: pd.DataFrame, target: Target) -> float | None:
    """Regression: mean |subject - baseline| over mean |baseline| (scale-free). Classification: None."""
    if target.is_classification or not len(baseline):
        return None
    ours = pd.to_numeric(baseline[ANSWER]).to_numpy(dtype=np.float64)
    theirs = pd.to_numeric(subject[ANSWER]).to_numpy(dtype=np.float64)
    scale = float(np.mean(np.abs(ours)))
    return float(np.mean(np.abs(theirs - ours)) / scale) if scale > 0 else None


def score_distance(baseline: np.ndarray, subject: np.ndarray) -> float | None:
    """The largest two-sample KS statistic over the signal columns: 0 same distribution, 1 disjoint."""
    statistics = []
    for column in range(baseline.shape[1]):
        ours, theirs = baseline[:, column], subject[:, column]
        ours, theirs = ours[~np.isnan(ours)], theirs[~np.isnan(theirs)]
        if len(ours) and len(theirs):
            statistics.append(float(ks_2samp(ours, theirs).statistic))
    return max(statistics) if statistics else None


def p99(values: Any) -> float | None:
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(np.percentile(values, 99)) if len(values) else None


def judged(policy: Policy) -> Policy:
    """The policy whose labelled-row minimum is the promotion's, for monitoring/performance.evaluate."""
    drift = policy.drift.model_copy(update={"min_labelled_rows": policy.promotion.min_labelled_rows})
    return policy.model_copy(update={"drift": drift})


def rule(name: str, value: float | None, limit: float, broken: bool, detail: str) -> Check:
    return Check(
        name=name,
        value=None if value is None else round(value, 6),
        limit=limit,
        triggered=broken,
        detail=detail,
    )


def evidence_checks(policy: Policy, rows: int, labelled: int) -> list[Check]:
    rules = policy.promotion
    return [
        rule("rows", rows, rules.min_rows, rows < rules.min_rows, f"{rows} rows answered by both"),
        rule(
            "labelled_rows",
            labelled,
            rules.min_labelled_rows,
            labelled < rules.min_labelled_rows,
            f"{labelled} of them labelled through /feedback",
        ),
    ]


def metric_check(
    baseline: Performance, subject: Performance, names: tuple[str, str], limit: float
) -> Check | None:
    """The primary metric's drop from baseline to subject, in its direction, against `limit`."""
    if baseline.value is None or subject.value is None:
        return None
    metric = baseline.metric
    drop = worsening(metric, subject.value, baseline.value)
    direction = METRICS[metric].direction if metric in METRICS else ""
    return rule(
        "metric_drop",
        drop,
        limit,
        drop > limit,
        f"{metric} {subject.value:.4f} ({names[1]}) vs {baseline.value:.4f} ({names[0]}) on "
        f"{subject.labelled_rows} labelled rows ({direction})",
    )


def reason(check: Check, bound: str) -> str:
    return f"{check.name} {fmt(check.value)} breaks promotion.{bound} {fmt(check.limit)}: {check.detail}"


def measures(
    baseline: Performance, subject: Performance, latencies: tuple[float | None, float | None]
) -> tuple[SideBySide, ...]:
    """The side-by-side table of the report: every task metric, the bias gap and the p99 latency."""
    rows = [
        SideBySide(
            name=name,
            baseline=baseline.metrics.get(name),
            subject=subject.metrics.get(name),
            direction=METRICS[name].direction,
        )
        for name in METRICS
        if name in baseline.metrics or name in subject.metrics
    ]
    rows.append(
        SideBySide(
            name=f"{baseline.bias_metric} gap",
            baseline=baseline.bias_gap,
            subject=subject.bias_gap,
            direction="lower is better",
        )
    )
    if latencies != (None, None):
        rows.append(
            SideBySide(
                name="p99 latency (ms)",
                baseline=latencies[0],
                subject=latencies[1],
                direction="lower is better",
            )
        )
    return tuple(rows)


@dataclass
class Findings:
    """What the rules measured on the paired rows; None where a measure could not be taken."""

    checks: list[Check] = field(default_factory=list)
    labelled: int = 0
    agreement: float | None = None
    distance: float | None = None
    baseline: Performance | None = None  # the champion's metric and bias on these rows
    subject: Performance | None = None  # the challenger's
    latency: tuple[float | None, float | None] = (None, None)  # p99 ms: champion, challenger

    def add(self, name: str, value: float | None, limit: float, broken: bool, detail: str) -> None:
        if value is not None:
            self.checks.append(rule(name, value, limit, broken, detail))


def judge(baseline: pd.DataFrame, subject: pd.DataFrame, contract: Contract, policy: Policy) -> Findings:
    """Every `promotion:` rule applied to the paired rows (each check records its value and bound)."""
    target, rules = contract.target, policy.promotion
    labelled = int(baseline[target.name].notna().sum()) if len(baseline) else 0
    found = Findings(checks=evidence_checks(policy, len(baseline), labelled), labelled=labelled)
    if len(baseline) < rules.min_rows:
        return found
    found.agreement = agreement(baseline, subject, target)
    found.add(
        "agreement",
        found.agreement,
        rules.min_agreement,
        found.agreement is not None and found.agreement < rules.min_agreement,
        "share of rows where both answer the same class",
    )
    difference = value_difference(baseline, subject, target)
    found.add(
        "value_difference",
        difference,
        rules.max_value_difference,
        difference is not None and difference > rules.max_value_difference,
        "mean |challenger - champion| / mean |champion|",
    )
    found.distance = score_distance(from_window(baseline, target), from_window(subject, target))
    found.add(
        "score_distance",
        found.distance,
        rules.max_score_distance,
        found.distance is not None and found.distance > rules.max_score_distance,
        "two-sample KS statistic between the score (value) distributions",
    )
    policy = judged(policy)
    found.baseline = evaluate(baseline, contract, policy, None)
    found.subject = evaluate(subject, contract, policy, None)
    metric = metric_check(found.baseline, found.subject, ("champion", "challenger"), rules.max_metric_drop)
    if metric is not None:
        found.checks.append(metric)
    gap = found.subject.bias_gap
    found.add(
        "bias_gap",
        gap,
        rules.max_bias_gap,
        gap is not None and gap > rules.max_bias_gap,
        f"the challenger's largest {found.subject.bias_metric} gap between groups",
    )
    ours, theirs = found.latency = (p99(subject["champion_latency_ms"]), p99(subject["latency_ms"]))
    if ours and theirs is not None:
        found.add(
            "latency_ratio",
            theirs / ours,
            rules.max_latency_ratio,
            too_slow(ours, theirs, rules),
            f"p99 scoring time {theirs:.3g} ms (challenger) vs {ours:.3g} ms (champion), "
            f"a difference over {rules.latency_slack_ms:g} ms counts",
        )
    return found


def too_slow(champion_ms: float, challenger_ms: float, rules: PromotionPolicy) -> bool:
    """More than `max_latency_ratio` times the champion's p99 and more than `latency_slack_ms` slower."""
    return (
        challenger_ms / champion_ms > rules.max_latency_ratio
        and challenger_ms - champion_ms > rules.latency_slack_ms
    )


BOUNDS = {
    "rows": "min_rows",
    "labelled_rows": "min_labelled_rows",
    "agreement": "min_agreement",
    "value_difference": "max_value_difference",
    "score_distance": "max_score_distance",
    "metric_drop": "max_metric_drop",
    "bias_gap": "max_bias_gap",
    "latency_ratio": "max_latency_ratio",
}
EVIDENCE = ("rows", "labelled_rows")


def verdict(checks: list[Check]) -> tuple[str, list[str]]:
    """reject when a rule is broken; hold when the evidence is short; promote otherwise."""
    broken = [check for check in checks if check.triggered and check.name not in EVIDENCE]
    if broken:
        return "reject", [reason(check, BOUNDS[check.name]) for check in broken]
    short = [check for check in checks if check.triggered]
    if short:
        return "hold", [f"not enough evidence: {reason(check, BOUNDS[check.name])}" for check in short]
    return "promote", []


def run(paths: Paths, options: Options) -> Comparison:
    """Read the window, pair the answers, apply the policy, write compare.json, summary.md and report.html."""
    contract = load_contract(paths.contract)
    policy = policy_file.load(paths.policy, task=contract.task)
    uri = capture_uri(options.uri)
    since = window_start(options.since, options.days)
    with progress.step(f"reading the challenger's shadow answers from {uri}"):
        shadow, version = pick_challenger(read_shadow(uri, since, options.until, contract), options.version)
    with progress.step("reading the champion's answers and the labels"):
        window = read_window(
            uri, since=since, until=options.until, contract=contract, relabel=policy.feedback.relabel
        )
    target = contract.target
    baseline, subject = pair(window, shadow, target)
    notes = []
    keep = valid_answers(baseline, target) & valid_answers(subject, target)
    if not keep.all():
        notes.append(f"{int((~keep).sum())} row(s) whose answer is not a class of the contract: left out")
        baseline, subject = baseline[keep].reset_index(drop=True), subject[keep].reset_index(drop=True)
    if len(shadow) > len(baseline):
        notes.append(
            f"{len(shadow) - len(baseline)} shadow answer(s) have no champion prediction in the window"
        )
    champions = sorted(str(value) for value in baseline["model_version"].dropna().unique())
    progress.note(
        f"{len(baseline)} rows answered by champion {', '.join(champions) or 'n/a'} and challenger {version}"
    )
    with progress.step("applying the promotion policy"):
        found = judge(baseline, subject, contract, policy)
        status, reasons = verdict(found.checks)
    for side, performance in (("champion", found.baseline), ("challenger", found.subject)):
        notes.extend(
            f"{side}: {note}"
            for note in (performance.notes if performance else ())
            if not note.startswith(NO_REGISTERED)  # compared with each other, not with the registry
        )
    comparison = Comparison(
        kind="compare",
        run_at=datetime.now(UTC).isoformat(timespec="seconds"),
        uri=uri,
        since=str(since) if since else None,
        until=options.until,
        baseline_name="champion",
        subject_name="challenger",
        baseline_version=", ".join(champions) or None,
        subject_version=version,
        rows=len(baseline),
        labelled_rows=found.labelled,
        agreement=found.agreement,
        score_distance=found.distance,
        measures=measures(found.baseline, found.subject, found.latency)
        if found.baseline and found.subject
        else (),
        checks=tuple(found.checks),
        verdict=status,
        reasons=tuple(reasons),
        notes=tuple(notes),
    )
    with progress.step("writing the reports"):
        comparison_report.write(comparison, compare_reports(paths), baseline, subject, target)
    progress.note(f"verdict: {status}; reports in {paths.relative(compare_reports(paths))}")
    return comparison


def compare_reports(paths: Paths) -> Path:
    return paths.reports / "compare"
