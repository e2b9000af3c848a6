"""`make demo` smoke test: the lifecycle runs green from a fresh bake, twice in a row."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow

STEPS = ("scaffold", "install", "lint", "test", "data", "validate", "train", "register")


def run_demo() -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py")], capture_output=True, text=True, timeout=1800
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout


def test_demo_runs_every_step_green_and_again_from_a_fresh_bake():
    for _ in range(2):  # the second run must not trip over the first one's state
        summary = run_demo()
        rows = {
            line.split("|")[1].strip(): line.split("|")[2].strip()
            for line in summary.splitlines()
            if line.startswith("| ") and "---" not in line
        }
        for step in STEPS:
            assert rows.get(step) == "ok", f"demo step {step}: {rows.get(step)}"
        assert "FAILED" not in rows.values()
    project = ROOT / "build" / "demo" / "loan-default-model"
    assert (project / "reports" / "data_docs").is_dir()
    assert list((project / "governance" / "model_cards").glob("*.md"))
    assert Path(project / "artifacts" / "models" / "latest").exists()
