"""One command line: every lifecycle step is a subcommand, one exit-code and error convention."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from governance.cli import app, main
from governance.core.paths import PATHS

LIFECYCLE_TARGETS = [
    *("contract", "data", "validate", "train", "champion", "register", "serve", "image", "image-test"),
    *("image-push", "drift", "retrain-pr", "pr-comment", "pin-staging", "promote"),
    *("compare", "post-deploy-check", "rollback"),
]


def test_every_lifecycle_make_target_calls_the_one_command_line():
    makefile = (PATHS.root / "Makefile").read_text()
    commands = set(typer.main.get_command(app).commands)
    for target in LIFECYCLE_TARGETS:
        recipe = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n|.*\\\n)+)", makefile, re.M)
        assert recipe, f"make {target} is missing"
        assert "$(MLOPS)" in recipe.group(1), f"make {target} does not call mlops"
        step = re.search(r"\$\(MLOPS\) ([a-z-]+)", recipe.group(1))
        assert step and step.group(1) in commands, f"make {target} calls an unknown step"


def test_bad_input_exits_2_with_one_error_line(tmp_path: Path, capsys):
    assert main(["--root", str(tmp_path), "train"]) == 2
    error = capsys.readouterr().err
    # The contract is read first: its task says which metrics the policy may name.
    assert error.startswith("error: ") and "contract file" in error and error.count("\n") == 1


def test_a_usage_mistake_exits_2(capsys):
    assert main(["no-such-step"]) == 2
    assert "No such command" in capsys.readouterr().err
