"""monitoring/monitoring.yaml: how the check runs, read as one record; DETECTOR overrides one run."""

from __future__ import annotations

import pytest

from monitoring.config import ConfigError, load_settings
from tests.support.drift import project_checkout


@pytest.fixture
def paths(tmp_path, monkeypatch):
    monkeypatch.delenv("DETECTOR", raising=False)
    return project_checkout(tmp_path / "project")


def test_detector_in_the_environment_wins_for_one_run(paths, monkeypatch):
    configured = load_settings(paths).backend
    other = "scipy" if configured == "alibi" else "alibi"
    monkeypatch.setenv("DETECTOR", other)
    assert load_settings(paths).backend == other
    monkeypatch.setenv("DETECTOR", "alibi-detect")
    assert load_settings(paths).backend == "alibi"
    monkeypatch.setenv("DETECTOR", "evidently")
    with pytest.raises(ConfigError, match=r"DETECTOR must be one of .* \(got 'evidently'\)"):
        load_settings(paths)


def test_a_mistyped_or_invalid_setting_is_named_with_its_value(paths):
    text = paths.monitoring.read_text()
    paths.monitoring.write_text(text.replace("last_n:", "last_m:"))
    with pytest.raises(ConfigError, match=r"field 'window\.last_m' is not a known field"):
        load_settings(paths)
    paths.monitoring.write_text(text.replace("branch: retrain/auto", "branch: -x"))
    with pytest.raises(ConfigError, match=r"field 'retraining\.branch' .*valid branch name \(got '-x'\)"):
        load_settings(paths)
    paths.monitoring.unlink()
    with pytest.raises(ConfigError, match=r"monitoring settings .* does not exist"):
        load_settings(paths)
