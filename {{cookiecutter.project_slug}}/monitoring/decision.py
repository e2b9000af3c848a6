"""The governance decision: does the policy say retrain, and why. Every run is recorded.

The decision only reads governance/policy.yaml (through `config.Policy`), so changing when
the model is retrained is a reviewed edit of that file, never of this code. A window too
small to judge yields no decision rather than a guess; a retrain whose new data fails
validation is "blocked": reported, but never trained on.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from monitoring.config import Policy
from monitoring.detectors import DriftResult, FeatureDrift
from monitoring.performance import Performance

RETRAIN = "retrain"
NO_RETRAIN = "no_retrain"
INSUFFICIENT = "insufficient_data"
BLOCKED = "retrain_blocked"


@dataclass(frozen=True)
class Check:
    name: str
    value: float | bool | None
    limit: float | bool | None
    triggered: bool
    detail: str


@dataclass
class Decision:
    status: str
    reasons: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def retrain(self) -> bool:
        return self.status == RETRAIN

    def block(self, reason: str) -> None:
        """The policy asks for retraining, but the new data cannot be trained on."""
        self.status = BLOCKED
        self.notes.append(reason)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "retrain": self.retrain,
            "reasons": list(self.reasons),
            "checks": [asdict(check) for check in self.checks],
            "notes": list(self.notes),
        }


def decide(
    policy: Policy,
    window_rows: int,
    drift: DriftResult | None,
    score: FeatureDrift | None,
    performance: Performance | None,
) -> Decision:
    """Apply the retrain rules of the policy; each rule becomes one recorded check."""
    if window_rows < policy.min_window_rows:
        return Decision(
            INSUFFICIENT,
            notes=[
                f"{window_rows} captured rows, fewer than drift.min_window_rows={policy.min_window_rows}: "
                "no decision"
            ],
        )
    checks: list[Check] = []
    notes: list[str] = []
    if drift is not None:
        share = drift.drifted_share
        names = ", ".join(drift.drifted_features) or "none"
        checks.append(
            Check(
                "drifted_feature_share",
                round(share, 6),
                policy.max_drifted_feature_share,
                share > policy.max_drifted_feature_share,
                f"{len(drift.drifted_features)}/{len(drift.features)} features drifted ({names}); "
                f"{drift.correction} threshold p < {drift.threshold:.3g}",
            )
        )
    if score is not None:
        checks.append(
            Check(
                "score_drift",
                score.drifted,
                policy.on_score_drift,
                score.drifted and policy.on_score_drift,
                f"KS on the positive-class scores: statistic {score.statistic:.4f}, p = {score.p_value:.3g}",
            )
        )
    else:
        notes.append("score drift not checked (no reference scores)")
    if performance is not None:
        notes.extend(performance.notes)
        drop = performance.drop
        if drop is not None:
            checks.append(
                Check(
                    "metric_drop",
                    round(drop, 6),
                    policy.max_metric_drop,
                    drop > policy.max_metric_drop,
                    f"{performance.metric} {performance.value:.4f} on {performance.labelled_rows} "
                    f"labelled rows vs champion {performance.champion_value:.4f}",
                )
            )
        if performance.value is not None:
            checks.append(
                Check(
                    "min_primary_metric",
                    round(performance.value, 6),
                    policy.min_primary_metric,
                    performance.value < policy.min_primary_metric,
                    f"{performance.metric} {performance.value:.4f} vs the policy minimum "
                    f"{policy.min_primary_metric}",
                )
            )
        if performance.bias_gap is not None:
            rates = ", ".join(
                f"{group} {rate:.3f}" for group, rate in sorted(performance.group_rates.items())
            )
            checks.append(
                Check(
                    "bias_gap",
                    round(performance.bias_gap, 6),
                    policy.max_bias_gap,
                    performance.bias_gap > policy.max_bias_gap,
                    f"{performance.bias_metric} by group: {rates}",
                )
            )
    reasons = [f"{check.name}: {check.detail} ({_limit(check)})" for check in checks if check.triggered]
    return Decision(RETRAIN if reasons else NO_RETRAIN, reasons=reasons, checks=checks, notes=notes)


def _limit(check: Check) -> str:
    if isinstance(check.limit, bool):
        return f"policy: retrain on {check.name.replace('_', ' ')}"
    return f"policy limit {check.limit}"


def append_history(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line: past records are never rewritten, so the history is an audit trail."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=True, default=str)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_history(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
