"""The generated project's configuration is well-formed and `make help` lists the whole lifecycle."""

import re
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
LIFECYCLE_TARGETS = [
    "install",
    "lint",
    "test",
    "data",
    "validate",
    "contract",
    "train",
    "register",
    "serve",
    "image",
    "image-test",
    "drift",
    "retrain-pr",
    "ci",
    "ci-drift",
    "pr-comment",
    "image-push",
    "pin-staging",
    "promote",
]


def load(relative: str) -> dict:
    return yaml.safe_load((ROOT / relative).read_text())


def test_policy_states_every_requirement_the_gates_read():
    policy = load("governance/policy.yaml")
    assert 0 < policy["model"]["min_primary_metric"] <= 1
    assert policy["onnx"]["parity_tolerance"] > 0
    assert policy["onnx"]["max_single_row_latency_ms"] > 0
    assert 0 < policy["drift"]["p_value"] < 1
    assert 0 <= policy["retrain"]["max_drifted_feature_share"] <= 1


def test_registry_is_versioned():
    """Empty in a fresh project; `make register` adds entries (tests/test_registry.py validates them)."""
    registry = load("governance/registry.yaml")
    assert registry["version"] == 1
    assert isinstance(registry["models"], list)


def test_training_parameters_name_a_configured_family():
    params = load("ml/params.yaml")
    assert params["model_family"] in params["estimators"]


def test_make_help_lists_every_lifecycle_target():
    shown = subprocess.run(["make", "help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    listed = {line.split()[0] for line in re.sub(r"\x1b\[[0-9;]*m", "", shown).splitlines() if line.strip()}
    missing = [target for target in LIFECYCLE_TARGETS if target not in listed]
    assert not missing, f"make help does not list {missing}"
