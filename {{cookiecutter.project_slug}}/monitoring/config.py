"""The monitoring settings: the requirements from governance/policy.yaml, the mechanics from
monitoring/monitoring.yaml, each value checked once here so a typo stops the run at the start
with the file, the key and the value named.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from governance.files import read_yaml_mapping
from monitoring.detectors import BACKENDS, CORRECTIONS

ROOT = Path(__file__).resolve().parents[1]
POLICY_PATH = ROOT / "governance" / "policy.yaml"
SETTINGS_PATH = Path(__file__).with_name("monitoring.yaml")
# The cookiecutter prompt offers "alibi-detect"; the code calls the backend "alibi".
ALIASES = {"alibi-detect": "alibi", "alibi_detect": "alibi"}


class ConfigError(ValueError):
    """A policy or monitoring setting is missing or invalid; the message names file, key and value."""


@dataclass(frozen=True)
class Policy:
    """The keys of governance/policy.yaml that the drift decision reads."""

    primary_metric: str
    min_primary_metric: float
    p_value: float
    correction: str
    min_window_rows: int
    min_labelled_rows: int
    max_drifted_feature_share: float
    on_score_drift: bool
    max_metric_drop: float
    max_bias_gap: float
    bias_metric: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Settings:
    root: Path
    detector: str
    last_n: int | None
    days: float | None
    reports: Path
    history: Path
    branch: str
    base: str | None
    request_dir: Path


def _read(path: Path) -> dict[str, Any]:
    return read_yaml_mapping(path, ConfigError, "file")


def _get(raw: dict[str, Any], dotted: str, source: Path, default: Any = ...) -> Any:
    value: Any = raw
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            if default is not ...:
                return default
            raise ConfigError(f"{source.name}: key '{dotted}' is required")
        value = value[key]
    return value


def _number(value: Any, where: str, low: float, high: float, integer: bool = False) -> Any:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{where} must be {kind} between {low} and {high} (got {value!r})")
    return value


def load_policy(path: Path = POLICY_PATH) -> Policy:
    """Read the drift and retrain requirements (the same file the CI gates read)."""
    raw = _read(path)
    name = path.name

    def number(key: str, low: float, high: float, integer: bool = False, default: Any = ...) -> Any:
        return _number(_get(raw, key, path, default), f"{name}: {key}", low, high, integer)

    correction = _get(raw, "drift.correction", path, "bonferroni")
    if correction not in CORRECTIONS:
        raise ConfigError(f"{name}: drift.correction must be one of {CORRECTIONS} (got {correction!r})")
    on_score_drift = _get(raw, "retrain.on_score_drift", path, True)
    if not isinstance(on_score_drift, bool):
        raise ConfigError(f"{name}: retrain.on_score_drift must be true or false (got {on_score_drift!r})")
    return Policy(
        primary_metric=str(_get(raw, "model.primary_metric", path)),
        min_primary_metric=number("model.min_primary_metric", 0, 1),
        p_value=_number(_get(raw, "drift.p_value", path), f"{name}: drift.p_value", 1e-12, 0.5),
        correction=correction,
        min_window_rows=number("drift.min_window_rows", 1, 10**12, integer=True),
        min_labelled_rows=number("drift.min_labelled_rows", 1, 10**12, integer=True, default=100),
        max_drifted_feature_share=number("retrain.max_drifted_feature_share", 0, 1),
        on_score_drift=on_score_drift,
        max_metric_drop=number("retrain.max_metric_drop", 0, 1),
        max_bias_gap=number("retrain.max_bias_gap", 0, 1),
        bias_metric=str(_get(raw, "bias.metric", path, "selection_rate")),
    )


def backend_name(value: Any, where: str) -> str:
    name = ALIASES.get(str(value), str(value))
    if name not in BACKENDS:
        raise ConfigError(f"{where} must be one of {BACKENDS} (got {value!r})")
    return name


def load_settings(path: Path = SETTINGS_PATH, root: Path = ROOT) -> Settings:
    """Read monitoring.yaml; DETECTOR in the environment overrides the backend for one run."""
    raw = _read(path)
    name = path.name
    detector = os.environ.get("DETECTOR") or _get(raw, "detector", path, "alibi")
    where = "DETECTOR" if os.environ.get("DETECTOR") else f"{name}: detector"
    last_n = _get(raw, "window.last_n", path, None)
    days = _get(raw, "window.days", path, None)
    if last_n is not None:
        _number(last_n, f"{name}: window.last_n", 1, 10**12, integer=True)
    if days is not None:
        _number(days, f"{name}: window.days", 1e-6, 10**5)
    branch = str(_get(raw, "retraining.branch", path, "retrain/auto"))
    if not branch or branch.startswith(("-", "/")) or ".." in branch or " " in branch:
        raise ConfigError(f"{name}: retraining.branch is not a valid branch name (got {branch!r})")
    base = _get(raw, "retraining.base", path, None)
    return Settings(
        root=root,
        detector=backend_name(detector, where),
        last_n=last_n,
        days=days,
        reports=root / str(_get(raw, "reports", path, "reports/drift")),
        history=root / str(_get(raw, "history", path, "governance/monitoring_history.jsonl")),
        branch=branch,
        base=str(base) if base else None,
        request_dir=root / str(_get(raw, "retraining.request_dir", path, "governance/retraining")),
    )
