"""The generated project's configuration is well-formed, and `make help` and `mlops --help` list the
whole lifecycle: every step has a make target and an `mlops` subcommand, each with its help."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import yaml

from governance import cli
from governance.core.paths import PATHS

ROOT = PATHS.root
BIN = Path(sys.executable).parent
STEPS = sorted(typer.main.get_command(cli.app).commands)
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


def test_every_mlops_step_the_makefile_calls_exists():
    called = set(re.findall(r"\$\(MLOPS\) ([a-z][a-z-]*)", (ROOT / "Makefile").read_text()))
    assert called, "the Makefile calls no `mlops` step"
    assert called <= set(STEPS), f"the Makefile calls unknown steps {sorted(called - set(STEPS))}"


def test_mlops_help_lists_every_step(capsys):
    assert cli.main(["--help"]) == 0
    shown = capsys.readouterr().out
    missing = [step for step in STEPS if not re.search(rf"\b{re.escape(step)}\b", shown)]
    assert not missing, f"`mlops --help` does not list {missing}"


@pytest.mark.parametrize("step", STEPS)
def test_every_step_has_help_and_refuses_an_unknown_option(step, capsys):
    assert cli.main([step, "--help"]) == 0
    assert f"mlops {step}" in capsys.readouterr().out
    assert cli.main([step, "--no-such-option"]) == 2
    assert "No such option: --no-such-option" in capsys.readouterr().err


def test_an_unknown_step_or_a_bad_value_is_a_usage_error(capsys):
    assert cli.main(["no-such-step"]) == 2
    assert "No such command 'no-such-step'" in capsys.readouterr().err
    assert cli.main(["data", "--rows", "many"]) == 2
    assert "--rows" in capsys.readouterr().err


def test_the_installed_console_script_runs():
    result = subprocess.run([BIN / "mlops", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "train" in result.stdout and "image-test" in result.stdout
