"""Each baked combination passes its own `make lint test`: the project's checks are the proof."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import complete, covering_matrix, default_combination

pytestmark = pytest.mark.slow


def project_env() -> dict[str, str]:
    """Reuse the template venv's uv (and its cache) so each baked install takes seconds."""
    uv = Path(sys.executable).with_name("uv")
    env = {**os.environ, "GX_ANALYTICS_ENABLED": "false"}
    if uv.exists():
        env["UV"] = str(uv)
    return env


def run_make(project: Path, *targets: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", *targets], cwd=project, env=project_env(), capture_output=True, text=True, timeout=2400
    )


# Every value of every choice runs the project's own checks once (the licence only picks a file).
# The defaults' `make lint test` runs in test_act.py, as the pull-request workflow's first job.
@pytest.mark.parametrize(
    "combination",
    covering_matrix(ignore=("license",), already_run=(default_combination(),)),
    ids=lambda c: "-".join(c.values()),
)
def test_baked_project_passes_its_own_lint_and_tests(cookies, combination, task_files):
    result = cookies.bake(extra_context=complete(combination, task_files))
    assert result.exit_code == 0, result.exception
    outcome = run_make(Path(result.project_path), "install", "lint", "test")
    assert outcome.returncode == 0, outcome.stdout[-6000:] + outcome.stderr[-3000:]
    assert " passed" in outcome.stdout
