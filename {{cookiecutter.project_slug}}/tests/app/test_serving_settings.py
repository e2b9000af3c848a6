"""Serving settings: read from the environment, defaults from the policy, unsafe values refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from app.settings import Settings, cpu_limit
from governance.core.paths import PATHS
from governance.core.policy import PolicyError

ROOT = Path(__file__).resolve().parents[2]
AFFINITY = len(os.sched_getaffinity(0))


def cgroup(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "150000 100000\n"}, min(2, AFFINITY)),
        ({"cpu.max": "50000 100000\n"}, 1),
        ({"cpu.max": "max 100000\n"}, AFFINITY),
        ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, AFFINITY),
        ({"cpu.max": "6400000 100000\n"}, AFFINITY),
        ({}, AFFINITY),
    ],
    ids=[
        "v2-1.5-cpus",
        "v2-half-cpu",
        "v2-unlimited",
        "v1-one-cpu",
        "v1-unlimited",
        "v2-above-affinity",
        "none",
    ],
)
def test_onnxruntime_threads_follow_the_container_cpu_limit(tmp_path, files, expected):
    assert cpu_limit(cgroup(tmp_path, files)) == expected


def test_settings_come_from_environment_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("PORT", "9123")
    monkeypatch.setenv("MAX_BATCH_ROWS", "17")
    monkeypatch.setenv("UNKNOWN_CATEGORY", "score")
    monkeypatch.setenv("CAPTURE_URI", "memory://capture")
    settings = Settings()
    assert (settings.port, settings.max_batch_rows, settings.unknown_category) == (9123, 17, "score")
    assert settings.capture_enabled


def test_an_object_store_url_without_its_fsspec_backend_is_refused_at_start(monkeypatch):
    """The serving image ships s3fs (production captures to S3); another store needs its backend."""
    monkeypatch.setenv("CAPTURE_URI", "gs://bucket/capture")
    with pytest.raises(ValidationError, match="gcsfs"):
        Settings()


def test_the_production_overlays_object_store_url_opens_with_the_serving_dependencies(monkeypatch):
    monkeypatch.setenv("CAPTURE_URI", "s3://loan-capture/production")
    assert Settings().capture_uri == "s3://loan-capture/production"


def policy_with(tmp_path: Path, **serving: object) -> Path:
    """The project's policy with its `serving:` section changed, written to tmp_path."""
    raw = yaml.safe_load(PATHS.policy.read_text())
    raw["serving"] = {**(raw.get("serving") or {}), **serving}
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_serving_limits_default_to_the_policy_file(monkeypatch, tmp_path):
    monkeypatch.setenv(
        "POLICY_PATH", str(policy_with(tmp_path, max_batch_rows=250, unknown_category="score"))
    )
    assert (Settings().max_batch_rows, Settings().unknown_category) == (250, "score")
    monkeypatch.setenv("MAX_BATCH_ROWS", "9")
    assert Settings().max_batch_rows == 9, "an environment variable overrides the policy"


def test_the_project_policy_sets_the_batch_limit():
    raw = yaml.safe_load(PATHS.policy.read_text())
    assert Settings().max_batch_rows == raw["serving"]["max_batch_rows"]


def test_a_policy_that_breaks_a_rule_is_refused_naming_the_file_and_the_key(monkeypatch, tmp_path):
    path = policy_with(tmp_path, max_batch_rows=0)
    monkeypatch.setenv("POLICY_PATH", str(path))
    with pytest.raises(PolicyError, match=r"serving\.max_batch_rows") as refused:
        Settings()
    assert str(path) in str(refused.value)


def test_a_bad_value_is_refused_naming_the_variable(monkeypatch):
    monkeypatch.setenv("UNKNOWN_CATEGORY", "guess")
    with pytest.raises(ValidationError, match="unknown_category"):
        Settings()


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [("CAPTURE_URI", "", "CAPTURE_URI"), ("CAPTURE_FLUSH_SECONDS", "600", "CAPTURE_FLUSH_SECONDS")],
)
def test_production_refuses_unsafe_settings_that_development_allows(monkeypatch, variable, value, words):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=words):
        Settings()
    monkeypatch.setenv("APP_ENV", "development")
    Settings()


@pytest.mark.parametrize("fault", ["variable", "policy"])
def test_python_m_app_exits_with_one_clear_line_on_bad_settings(tmp_path, fault):
    if fault == "variable":
        env, named = {"APP_ENV": "production", "CAPTURE_URI": "off"}, "CAPTURE_URI"
    else:
        env, named = {"POLICY_PATH": str(policy_with(tmp_path, max_batch_rows=0))}, "serving.max_batch_rows"
    result = subprocess.run(
        [sys.executable, "-m", "app"],
        cwd=ROOT,
        env=os.environ | env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("invalid settings:")
    assert named in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_mlops_serve_reads_the_policy_of_the_project_root_it_is_given(tmp_path):
    root = tmp_path / "project"
    (root / "governance").mkdir(parents=True)
    broken = policy_with(root / "governance", max_batch_rows=0)
    env = {name: value for name, value in os.environ.items() if not name.endswith(("_PATH", "PROJECT_ROOT"))}
    # Capture off: a service that ignored --root would stop too (on that), never start serving.
    env |= {"PATH": os.environ.get("PATH", ""), "APP_ENV": "production", "CAPTURE_URI": "off"}
    result = subprocess.run(
        [sys.executable, "-m", "governance.cli", "--root", str(root), "serve"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert str(broken) in result.stderr and "serving.max_batch_rows" in result.stderr


def test_python_m_app_refuses_to_start_on_a_contract_that_breaks_a_rule(tmp_path):
    contract = tmp_path / "contract.yaml"
    contract.write_text(yaml.safe_dump({"target": {"name": "label"}, "features": []}))
    env = os.environ | {"CONTRACT_PATH": str(contract), "CAPTURE_URI": str(tmp_path / "capture")}
    result = subprocess.run(
        [sys.executable, "-m", "app"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.startswith("cannot start:")
    assert f"{contract}: field 'features' must be a non-empty list" in result.stderr
