"""Serving settings: read from the environment, defaults from the policy, unsafe values refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.settings import Settings, cpu_limit

ROOT = Path(__file__).resolve().parents[1]
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
    import importlib.util

    if importlib.util.find_spec("s3fs") is not None:
        pytest.skip("s3fs is installed here")
    monkeypatch.setenv("CAPTURE_URI", "s3://bucket/capture")
    with pytest.raises(ValidationError, match="s3fs"):
        Settings()


def test_serving_limits_default_to_the_policy_file(monkeypatch, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text("serving:\n  max_batch_rows: 250\n  unknown_category: score\n")
    monkeypatch.setenv("POLICY_PATH", str(policy))
    assert (Settings().max_batch_rows, Settings().unknown_category) == (250, "score")
    monkeypatch.setenv("MAX_BATCH_ROWS", "9")
    assert Settings().max_batch_rows == 9, "an environment variable overrides the policy"


def test_the_project_policy_sets_the_batch_limit():
    import yaml

    policy = yaml.safe_load((ROOT / "governance" / "policy.yaml").read_text())
    assert Settings().max_batch_rows == policy["serving"]["max_batch_rows"]


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


def test_python_m_app_exits_with_one_clear_line_on_bad_settings():
    env = os.environ | {"APP_ENV": "production", "CAPTURE_URI": "off"}
    result = subprocess.run(
        [sys.executable, "-m", "app"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.startswith("invalid settings:")
    assert "CAPTURE_URI" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
