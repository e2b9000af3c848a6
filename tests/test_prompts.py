"""Prompt validation: bad values fail fast with one clear line; hostile values never run."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from conftest import ROOT
from cookiecutter.exceptions import FailedHookException
from cookiecutter.main import cookiecutter


def bake_into(output: Path, **context: str) -> Path:
    return Path(cookiecutter(str(ROOT), no_input=True, output_dir=str(output), extra_context=context))


def rejected(output: Path, capfd, **context: str) -> str:
    """Bake, expect the pre-generation hook to refuse, and return its one-line message."""
    with pytest.raises(FailedHookException) as refusal:
        bake_into(output, **context)
    assert list(output.iterdir()) == [], "a rejected bake must leave no output folder"
    lines = [*capfd.readouterr().err.strip().splitlines(), str(refusal.value)]
    errors = [line for line in lines if line.startswith("ERROR: prompt")]
    assert len(errors) == 1, lines
    return errors[0]


BAD_VALUES = [
    ("project_slug", "my/model", "hyphens"),
    ("project_slug", "..", "hyphens"),
    ("project_slug", "../escape", "hyphens"),
    ("project_slug", "Upper-Case", "hyphens"),
    ("package_name", "my-package", "lowercase letters"),
    ("package_name", "class", "keyword"),
    ("package_name", "app", "folder names"),
    ("model_name", "model'; drop", "lowercase letters"),
    ("description", "line one\nline two", "one line"),
    ("project_name", "tab\tname", "control characters"),
    ("author_email", "not-an-email", "e-mail"),
    ("github_owner", "-leading-hyphen", "GitHub"),
    ("github_repo", "..", "only dots"),
    ("container_registry", "GHCR.IO/Org", "lowercase registry"),
    ("drift_schedule", "every monday", "five-field"),
    ("drift_schedule", "61 * * * *", "minute"),
    ("drift_schedule", "0 6 * * 8", "day of week"),
    ("target_column", "income", "'defaulted'"),
    ("data_path", "/tmp/x.csv", "empty when data_source is 'example'"),
]


@pytest.mark.parametrize(
    ("prompt", "value", "rule"), BAD_VALUES, ids=[f"{p}={v!r}" for p, v, _ in BAD_VALUES]
)
def test_bad_value_is_rejected_with_prompt_value_and_rule(tmp_path, capfd, prompt, value, rule):
    message = rejected(tmp_path, capfd, **{prompt: value})
    assert message.startswith(f"ERROR: prompt '{prompt}'")
    assert rule in message
    assert json.dumps(value) in message


@pytest.mark.parametrize(("prompt", "value"), [("python_version", "3.10"), ("model_family", "svm")])
def test_value_outside_a_choice_list_is_refused_before_generation(tmp_path, prompt, value):
    with pytest.raises(ValueError, match=f"{value} provided for choice variable {prompt}"):
        bake_into(tmp_path, **{prompt: value})
    assert list(tmp_path.iterdir()) == []


def test_file_source_needs_an_existing_csv_or_parquet(tmp_path, capfd):
    missing = rejected(tmp_path, capfd, data_source="file", data_path=str(tmp_path / "nope.csv"))
    assert "data_path" in missing and "existing file" in missing
    text_file = tmp_path / "notes.txt"
    text_file.write_text("a,b\n")
    out = tmp_path / "out"
    out.mkdir()
    wrong_kind = rejected(out, capfd, data_source="file", data_path=str(text_file))
    assert ".csv" in wrong_kind and ".parquet" in wrong_kind
    empty = tmp_path / "out2"
    empty.mkdir()
    assert "is required" in rejected(empty, capfd, data_source="file", data_path="")


@pytest.mark.parametrize(
    "field", ["project_name", "description", "author_name"], ids=["name", "description", "author"]
)
@pytest.mark.parametrize(
    "payload",
    [
        "$(touch {marker})",
        "`touch {marker}`",
        '"""; import os; os.system("touch {marker}"); """',
        "'''; __import__('os').system('touch {marker}'); '''",
        '"; touch {marker}; echo "',
    ],
    ids=["command-substitution", "backticks", "python-triple-double", "python-triple-single", "shell-quotes"],
)
def test_hostile_free_text_is_never_executed(tmp_path, monkeypatch, field, payload):
    monkeypatch.chdir(tmp_path)
    value = payload.format(marker="pwned")
    context = {field: value, "git_init": "yes"}
    project = bake_into(tmp_path, **context)
    assert not list(tmp_path.rglob("pwned")), f"the {field} value was executed"
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    if field == "description":
        assert pyproject["project"]["description"] == value
    if field == "author_name":
        assert pyproject["project"]["authors"][0]["name"] == value
    if field == "project_name":
        assert (project / "README.md").read_text().startswith(f"# {value}\n")


def test_apostrophes_and_quotes_are_kept_verbatim(tmp_path):
    project = bake_into(tmp_path, project_name="Ana's Credit Model", description='It\'s a "quoted" model')
    assert project.name == "ana-s-credit-model"
    assert (project / "README.md").read_text().startswith("# Ana's Credit Model\n")
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["description"] == 'It\'s a "quoted" model'
