"""How the scheduled drift check runs: monitoring/monitoring.yaml, read as its ground record.

What counts as drift and when to retrain are requirements and live in governance/policy.yaml
(`governance.core.policy`); this file only says how the check runs (detector, window,
retraining branch). DETECTOR in the environment overrides the detector for one run.
"""

from __future__ import annotations

import os

from governance.core.errors import InputError
from governance.core.paths import Paths
from governance.core.records import MonitoringSettings, parse, read_yaml

BACKENDS = ("alibi", "scipy")
ALIASES = {"alibi-detect": "alibi", "alibi_detect": "alibi"}  # the prompt says alibi-detect


class ConfigError(InputError):
    """A monitoring setting is missing or invalid; the message names the file, key and value."""


def backend_name(value: str, where: str) -> str:
    name = ALIASES.get(str(value), str(value))
    if name not in BACKENDS:
        raise ConfigError(f"{where} must be one of {BACKENDS} (got {value!r})")
    return name


def load_settings(paths: Paths) -> MonitoringSettings:
    """monitoring.yaml, with DETECTOR from the environment winning for one run."""
    raw = read_yaml(paths.monitoring, "monitoring settings", ConfigError)
    override = os.environ.get("DETECTOR", "").strip()
    if override:
        raw = {**raw, "detector": backend_name(override, "DETECTOR")}
    settings = parse(MonitoringSettings, raw, str(paths.monitoring), ConfigError)
    return settings
