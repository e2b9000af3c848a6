"""Baking: every option combination renders the exact file set, with no template leftovers."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import (
    TEMPLATE,
    baked_files,
    choice_options,
    complete,
    jinja_leftovers,
    rotated_matrix,
)

TOP_LEVEL = {".github", "ml", "app", "data_pipelines", "governance", "deploy", "monitoring", "tests"}


def expected_files(context: dict[str, str]) -> set[str]:
    """The template's files as the answers should shape them (mirrors what the hooks promise)."""
    expected = set()
    for path in TEMPLATE.rglob("*"):
        relative = path.relative_to(TEMPLATE)
        if not path.is_file() or "__pycache__" in relative.parts:
            continue
        parts = relative.parts
        if parts[0] == "requirements" and parts[1].startswith("py3."):
            if parts[1] != f"py{context['python_version']}-{context['drift_detector']}":
                continue
            relative = Path("requirements", *parts[2:])
        if str(relative) == "LICENSE" and context["license"] == "Proprietary":
            continue
        expected.add(str(relative))
    if context["data_source"] == "file":
        expected.add(f"data/raw/{Path(context['data_path']).name}")
    return expected


def bake(cookies, context: dict[str, str]) -> Path:
    result = cookies.bake(extra_context=context)
    assert result.exit_code == 0, result.exception
    assert result.exception is None
    return Path(result.project_path)


def test_defaults_bake_a_complete_project(cookies):
    project = bake(cookies, {})
    assert project.name == "loan-default-model"
    assert {path.name for path in project.iterdir()} >= TOP_LEVEL
    assert {"pyproject.toml", "Makefile", "README.md", ".gitignore", "LICENSE"} <= {
        path.name for path in project.iterdir()
    }


def test_every_choice_value_is_covered_by_the_matrix():
    matrix = rotated_matrix()
    for option, values in choice_options().items():
        assert {combination[option] for combination in matrix} == set(values), option


@pytest.mark.parametrize("combination", rotated_matrix(), ids=lambda c: "-".join(c.values()))
def test_combination_renders_exact_files_without_leftovers(cookies, combination, task_files):
    context = complete(combination, task_files)
    project = bake(cookies, context)
    full_context = {**{k: v[0] for k, v in choice_options().items()}, **context}
    assert baked_files(project) == expected_files(full_context)
    assert jinja_leftovers(project) == []


@pytest.mark.parametrize("combination", rotated_matrix(), ids=lambda c: "-".join(c.values()))
def test_structured_files_parse_after_rendering(cookies, combination, task_files):
    project = bake(cookies, complete(combination, task_files))
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == "loan_default_model"
    for path in [*project.rglob("*.yaml"), *project.rglob("*.yml")]:
        list(yaml.safe_load_all(path.read_text()))  # Kubernetes files may hold several documents
    params = yaml.safe_load((project / "ml" / "params.yaml").read_text())
    assert params["model_family"] == combination["model_family"]


def test_git_init_makes_one_clean_commit(cookies):
    project = bake(cookies, {"git_init": "yes"})
    log = subprocess.run(
        ["git", "log", "--format=%s"], cwd=project, capture_output=True, text=True, check=True
    )
    assert log.stdout.splitlines() == ["Initial commit from the MLOps template"]
    status = subprocess.run(["git", "status", "--porcelain"], cwd=project, capture_output=True, text=True)
    assert status.stdout == ""


def test_git_init_no_leaves_no_repository(cookies):
    project = bake(cookies, {"git_init": "no"})
    assert not (project / ".git").exists()


def test_tiers_derive_slug_and_package_from_the_name(cookies):
    project = bake(cookies, {"project_name": "Fraud Scoring v2"})
    assert project.name == "fraud-scoring-v2"
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == "fraud_scoring_v2"


def test_proprietary_licence_drops_the_licence_file(cookies):
    project = bake(cookies, {"license": "Proprietary"})
    assert not (project / "LICENSE").exists()
    assert "license" not in tomllib.loads((project / "pyproject.toml").read_text())["project"]


def test_file_source_copies_the_users_data(cookies, task_files):
    chosen = task_files["multiclass_classification"]
    project = bake(cookies, complete({"data_source": "file", "task": chosen.task}, task_files))
    assert (project / "data" / "raw" / chosen.path.name).read_bytes() == chosen.path.read_bytes()
    contract = yaml.safe_load((project / "data_pipelines" / "contract.yaml").read_text())
    assert contract["target"] == {"name": "cultivar", "task": "multiclass_classification"}
