"""Each baked combination passes its own `make lint test`: the project's checks are the proof."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import complete, covering_matrix, default_combination, run_make

pytestmark = pytest.mark.slow


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
