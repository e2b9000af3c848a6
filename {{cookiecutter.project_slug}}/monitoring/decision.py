"""The governance decision: does the policy say retrain, and why. Every run is recorded.

The decision only reads governance/policy.yaml (the ground `Policy`), so changing when the
model is retrained is a reviewed edit of that file, never of this code. A window too small to
judge yields no decision rather than a guess; a retrain whose new data fails validation is
"blocked": reported, but never trained on.
"""

from __future__ import annotations

import os
from pathlib import Path

from governance.core.policy import Policy
from governance.core.records import Check, Decision, DriftResult, FeatureDrift, HistoryRecord, Performance
from governance.core.tasks import METRICS, higher_is_better, worsening


def window_check(policy: Policy, window_rows: int) -> Decision | None:
    """No decision on a window smaller than the policy's minimum."""
    minimum = policy.drift.min_window_rows
    if window_rows >= minimum:
        return None
    return Decision(
        status="insufficient_data",
        notes=(f"{window_rows} captured rows, fewer than drift.min_window_rows={minimum}: no decision",),
    )


def drift_checks(
    policy: Policy,
    drift: DriftResult | None,
    score: FeatureDrift | None,
    signal: str = "positive-class probability",
) -> list[Check]:
    """Feature drift against the policy's share, and drift of the model's answers (`signal` names them)."""
    checks = []
    if drift is not None:
        share = drift.drifted_share
        names = ", ".join(drift.drifted_features) or "none"
        checks.append(
            Check(
                name="drifted_feature_share",
                value=round(share, 6),
                limit=policy.retrain.max_drifted_feature_share,
                triggered=share > policy.retrain.max_drifted_feature_share,
                detail=f"{len(drift.drifted_features)}/{len(drift.features)} features drifted ({names}); "
                f"{drift.correction} threshold p < {drift.threshold:.3g}",
            )
        )
    if score is not None:
        checks.append(
            Check(
                name="score_drift",
                value=score.drifted,
                limit=policy.retrain.on_score_drift,
                triggered=score.drifted and policy.retrain.on_score_drift,
                detail=f"{score.test.replace('ks', 'KS')} on the {signal}: statistic {score.statistic:.4f}, "
                f"p = {score.p_value:.3g}",
            )
        )
    return checks


def performance_checks(policy: Policy, performance: Performance) -> list[Check]:
    """The primary metric against the policy's bound and the champion, in the metric's direction.

    A metric where higher is better (roc_auc, r2) must stay at least `min_primary_metric`; one
    where lower is better (rmse, log_loss) at most `max_primary_metric`. The drop versus the
    champion is `tasks.worsening`: how much worse, whichever way worse is.
    """
    checks = []
    metric, value, champion = performance.metric, performance.value, performance.champion_value
    direction = METRICS[metric].direction if metric in METRICS else "higher is better"
    if value is not None and champion is not None:
        drop = worsening(metric, value, champion)
        checks.append(
            Check(
                name="metric_drop",
                value=round(drop, 6),
                limit=policy.retrain.max_metric_drop,
                triggered=drop > policy.retrain.max_metric_drop,
                detail=f"{metric} {value:.4f} on {performance.labelled_rows} labelled rows vs champion "
                f"{champion:.4f} ({direction})",
            )
        )
    if value is not None:
        higher = higher_is_better(metric)
        bound = policy.model.threshold
        checks.append(
            Check(
                name="min_primary_metric" if higher else "max_primary_metric",
                value=round(value, 6),
                limit=bound,
                triggered=value < bound if higher else value > bound,
                detail=f"{metric} {value:.4f} vs the policy {'minimum' if higher else 'maximum'} {bound}",
            )
        )
    if performance.bias_gap is not None:
        rates = ", ".join(f"{group} {rate:.3f}" for group, rate in sorted(performance.group_rates.items()))
        checks.append(
            Check(
                name="bias_gap",
                value=round(performance.bias_gap, 6),
                limit=policy.retrain.max_bias_gap,
                triggered=performance.bias_gap > policy.retrain.max_bias_gap,
                detail=f"{performance.bias_metric} by group: {rates}",
            )
        )
    return checks


def decide(
    policy: Policy,
    window_rows: int,
    drift: DriftResult | None,
    score: FeatureDrift | None,
    performance: Performance | None,
    signal: str = "positive-class probability",
) -> Decision:
    """Apply the retrain rules of the policy; each rule becomes one recorded check.

    `signal` names what score drift compared (monitoring/predictions.py DESCRIPTION).
    """
    too_small = window_check(policy, window_rows)
    if too_small is not None:
        return too_small
    checks = drift_checks(policy, drift, score, signal)
    notes = [] if score is not None else ["score drift not checked (no reference scores)"]
    if performance is not None:
        notes.extend(performance.notes)
        checks += performance_checks(policy, performance)
    reasons = tuple(f"{check.name}: {check.detail} ({_limit(check)})" for check in checks if check.triggered)
    return Decision(
        status="retrain" if reasons else "no_retrain",
        reasons=reasons,
        checks=tuple(checks),
        notes=tuple(notes),
    )


def _limit(check: Check) -> str:
    if isinstance(check.limit, bool):
        return f"policy: retrain on {check.name.replace('_', ' ')}"
    return f"policy limit {check.limit}"


def append_history(path: Path, record: HistoryRecord) -> None:
    """Append one JSON line: past records are never rewritten, so the history is an audit trail."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(record.model_dump_json() + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_history(path: Path) -> list[HistoryRecord]:
    if not path.exists():
        return []
    return [
        HistoryRecord.model_validate_json(line)
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
