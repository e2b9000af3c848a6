"""`make post-deploy-check`: is the promoted model answering live as it did in its shadow phase?

Before promotion the challenger scored live rows in shadow (`ShadowRecord` lines carrying its
version); since promotion it answers them (`PredictionRecord` lines carrying the same version).
This check compares the two on governance/policy.yaml's `promotion:` bounds:

- score shift: the two-sample KS statistic between the shadow phase's and the live window's score
  (or value) distributions, against `max_score_distance`;
- labelled metric: the primary metric on the live labelled rows against the shadow phase's own
  labelled metric, against `max_live_metric_drop` (looser than the paired `max_metric_drop`:
  the two are measured on different rows);
- live metric: the same labelled metric against the policy's own bound for any model
  (`model.min_primary_metric`, or `max_` when lower is better): a model that was forced into
  production without passing its gates, or that was as bad in shadow as it is live, breaches
  this one even when it behaves live exactly as it did in shadow.

A breach is verdict `rollback` (`make rollback ROLLBACK_ARGS="--check ..."` then opens the
rollback pull request); too few rows on either side is `insufficient_data`; else `healthy`.

Error rate is not checked here: the capture holds only answered rows (serving writes no line for
a request it refused or failed), so it cannot say how many requests failed. Failed requests are
counted by the service's Prometheus metrics (app/metrics.py); alert on those in the cluster's
monitoring, not from the capture.

The live window starts at the champion's `promoted_at` in the registry (when its promotion
pull request was made; rows it scored before the merge deployed it do not exist) unless
`--since` says otherwise, and holds only rows the champion's version answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from governance import registry
from governance.core import policy as policy_file
from governance.core import progress
from governance.core.contract import load as load_contract
from governance.core.paths import Paths
from governance.core.records import Check, Comparison, SideBySide
from governance.core.tasks import METRICS, higher_is_better
from monitoring import comparison_report
from monitoring.capture import capture_uri, read_shadow, read_window, to_utc
from monitoring.compare import judged, metric_check, pair, reason, rule, score_distance
from monitoring.performance import evaluate
from monitoring.predictions import from_window

ERROR_RATE_NOTE = (
    "error rate: not checked from the capture, which holds answered rows only; failed requests are "
    "counted by the service's Prometheus metrics (app/metrics.py)"
)


@dataclass(frozen=True)
class Options:
    uri: str | None = None
    since: str | None = None  # default: the champion's promoted_at
    until: str | None = None


def post_deploy_reports(paths: Paths) -> Path:
    return paths.reports / "post_deploy"


def run(paths: Paths, options: Options) -> Comparison:
    """Compare the champion's live answers with its shadow phase; write check.json and the reports."""
    contract = load_contract(paths.contract)
    policy = policy_file.load(paths.policy, task=contract.task)
    champion = registry.load(paths.registry).champion
    uri = capture_uri(options.uri)
    if champion is None:  # a fresh project: the schedule has nothing to check yet, and says so
        return nothing_deployed(paths, uri)
    version = champion.version
    since = to_utc(options.since or champion.promoted_at, "since")
    until = to_utc(options.until, "until")
    target = contract.target
    with progress.step(f"reading the capture from {uri}"):
        # all of it: the shadow phase is older than the live window, and its labels may be newer
        window = read_window(uri, until=until, contract=contract, relabel=policy.feedback.relabel)
        shadow = read_shadow(uri, until=until, contract=contract)
    shadow = shadow[shadow["model_version"] == version]
    live = window[window["model_version"] == version]
    if since is not None:
        live = live[live["timestamp"] >= pd.Timestamp(since)]
    live = live.reset_index(drop=True)
    _, phase = pair(window, shadow, target)
    progress.note(f"{len(live)} live rows of {version}, {len(phase)} rows of its shadow phase")
    checks, measures, notes, distance = examine(live, phase, contract, policy)
    notes.append(ERROR_RATE_NOTE)
    breaches = [check for check in checks if check.triggered and check.name not in ("rows", "shadow_rows")]
    short = [check for check in checks if check.triggered and check.name in ("rows", "shadow_rows")]
    if breaches:
        verdict = "rollback"
        reasons = [
            reason(check, BOUNDS[check.name]).replace("promotion.model.", "model.") for check in breaches
        ]
    elif short:
        verdict = "insufficient_data"
        reasons = [f"not enough evidence: {reason(check, 'min_rows')}" for check in short]
    else:
        verdict, reasons = "healthy", []
    comparison = Comparison(
        kind="post_deploy",
        run_at=datetime.now(UTC).isoformat(timespec="seconds"),
        uri=uri,
        since=since.isoformat() if since else None,
        until=until.isoformat() if until else None,
        baseline_name="shadow phase",
        subject_name="live",
        baseline_version=version,
        subject_version=version,
        rows=len(live),
        labelled_rows=int(live[target.name].notna().sum()) if len(live) else 0,
        score_distance=distance,
        measures=measures,
        checks=tuple(checks),
        verdict=verdict,
        reasons=tuple(reasons),
        notes=tuple(notes),
    )
    out = post_deploy_reports(paths)
    with progress.step("writing the reports"):
        comparison_report.write(comparison, out, phase, live, target)
    progress.note(f"verdict: {verdict}; reports in {paths.relative(out)}")
    return comparison


def nothing_deployed(paths: Paths, uri: str) -> Comparison:
    comparison = Comparison(
        kind="post_deploy",
        run_at=datetime.now(UTC).isoformat(timespec="seconds"),
        uri=uri,
        baseline_name="shadow phase",
        subject_name="live",
        rows=0,
        labelled_rows=0,
        verdict="insufficient_data",
        reasons=(f"{paths.relative(paths.registry)} holds no production version yet: nothing to check",),
    )
    comparison_report.write(comparison, post_deploy_reports(paths))
    return comparison


BOUNDS = {
    "score_shift": "max_score_distance",
    "metric_drop": "max_live_metric_drop",
    "min_primary_metric": "model.min_primary_metric",
    "max_primary_metric": "model.max_primary_metric",
}


def examine(
    live: pd.DataFrame, phase: pd.DataFrame, contract, policy
) -> tuple[list[Check], tuple[SideBySide, ...], list[str], float | None]:
    """The checks of the live window against the shadow phase, the side-by-side measures, notes."""
    rules, target = policy.promotion, contract.target
    checks = [
        rule(
            "rows",
            len(live),
            rules.min_rows,
            len(live) < rules.min_rows,
            f"{len(live)} live rows since the deploy",
        ),
        rule(
            "shadow_rows",
            len(phase),
            rules.min_rows,
            len(phase) < rules.min_rows,
            f"{len(phase)} rows scored in shadow before it",
        ),
    ]
    notes: list[str] = []
    if len(live) < rules.min_rows or len(phase) < rules.min_rows:
        return checks, (), notes, None
    distance = score_distance(from_window(phase, target), from_window(live, target))
    if distance is not None:
        checks.append(
            rule(
                "score_shift",
                distance,
                rules.max_score_distance,
                distance > rules.max_score_distance,
                "two-sample KS statistic, shadow phase vs live score (value) distribution",
            )
        )
    policy = judged(policy)
    before, after = evaluate(phase, contract, policy, None), evaluate(live, contract, policy, None)
    metric = metric_check(before, after, ("shadow phase", "live"), rules.max_live_metric_drop)
    if metric is not None:
        checks.append(metric)
    if after.value is not None and after.labelled_rows >= rules.min_labelled_rows:
        higher, bound = higher_is_better(after.metric), policy.model.threshold
        checks.append(
            rule(
                "min_primary_metric" if higher else "max_primary_metric",
                after.value,
                bound,
                after.value < bound if higher else after.value > bound,
                f"live {after.metric} {after.value:.4f} on {after.labelled_rows} labelled rows vs the "
                f"policy {'minimum' if higher else 'maximum'} {bound} (the gate every model passes)",
            )
        )
    if metric is None:
        notes.append(
            f"{before.metric}: not compared ({before.labelled_rows} labelled shadow rows, "
            f"{after.labelled_rows} labelled live rows; promotion.min_labelled_rows is "
            f"{rules.min_labelled_rows})"
        )
    measures = (
        SideBySide(
            name=before.metric,
            baseline=before.value,
            subject=after.value,
            direction=METRICS[before.metric].direction if before.metric in METRICS else "",
        ),
        SideBySide(
            name=f"{before.bias_metric} gap",
            baseline=before.bias_gap,
            subject=after.bias_gap,
            direction="lower is better",
        ),
    )
    return checks, measures, notes, distance
