"""Prompt validation: bad values fail fast with one clear line; hostile values never run."""

from __future__ import annotations

import importlib.util
import json
import shutil
import tomllib
from pathlib import Path

import pytest
import yaml
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
    ("drift_schedule", "61 * * * *", "it must have a valid minute field ('61'): numbers 0-59"),
    ("drift_schedule", "0 6 * * 8", "it must have a valid day of week field ('8'): numbers 0-6"),
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


def test_a_cron_message_reads_as_a_sentence(tmp_path, capfd):
    message = rejected(tmp_path, capfd, drift_schedule="0 25 * * *")
    assert message == (
        "ERROR: prompt 'drift_schedule' has value \"0 25 * * *\": it must have a valid hour field ('25'): "
        "numbers 0-23, '*', ranges, lists or steps."
    )


# --- any Unicode in free text; every structured file of a bake parses ----------------------------

UNICODE_DESCRIPTION = 'Scores loans fast 🚀: naïve “quotes”, 日本語, a \\ backslash and a "quote"'
UNICODE_AUTHOR = "Zoë 🤖 Ørsted-Team"


def test_emoji_and_other_unicode_bake_into_a_valid_pyproject(tmp_path):
    project = bake_into(tmp_path, description=UNICODE_DESCRIPTION, author_name=UNICODE_AUTHOR)
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["description"] == UNICODE_DESCRIPTION
    assert pyproject["project"]["authors"] == [{"name": UNICODE_AUTHOR, "email": "ml-team@example.com"}]
    assert "🚀" in (project / "pyproject.toml").read_text(encoding="utf-8"), "non-ASCII is kept as is"


def test_a_data_file_named_with_emoji_is_found_by_source_yaml(tmp_path, user_csv):
    data = tmp_path / "données 🚀.csv"
    shutil.copyfile(user_csv, data)
    out = tmp_path / "out"
    out.mkdir()
    project = bake_into(
        out,
        data_source="file",
        data_path=str(data),
        target_column="churned",
        sensitive_attribute="gender",
        git_init="no",
    )
    source = yaml.safe_load((project / "data_pipelines" / "source.yaml").read_text(encoding="utf-8"))
    assert source["path"] == "data/raw/données 🚀.csv"
    assert (project / source["path"]).is_file()


def post_generation_hook():
    """The post-generation hook as a module (its answers are parsed only in main())."""
    spec = importlib.util.spec_from_file_location("post_gen_project", ROOT / "hooks" / "post_gen_project.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def sound_project(root: Path) -> None:
    write(root, "pyproject.toml", 'description = "rocket 🚀"\n')
    write(root, ".github/workflows/pr.yml", "on: push\njobs:\n  a:\n    if: ${{ !cancelled() }}\n")
    write(root, "deploy/argocd/namespaces.yaml", "kind: Namespace\n---\nkind: Namespace\n")
    write(root, ".github/act/events/schedule.json", '{"schedule": "0 6 * * 1"}\n')
    write(root, "governance/templates/card.yaml", "title: {{ entry.version }\n")  # Jinja, not YAML
    write(root, "requirements/dev.txt", "numpy==1.26.4 \\\n    --hash=sha256:00\n")


def test_the_structure_check_parses_toml_yaml_and_json_but_not_document_templates(tmp_path):
    hook = post_generation_hook()
    sound_project(tmp_path)
    assert hook.check_structured_files(tmp_path) == [
        ".github/act/events/schedule.json",
        ".github/workflows/pr.yml",
        "deploy/argocd/namespaces.yaml",
        "pyproject.toml",
    ]


@pytest.mark.parametrize(
    ("relative", "text", "complaint"),
    [
        ("pyproject.toml", 'description = "\\ud83d\\ude80"\n', "not valid TOML"),
        ("deploy/base/pdb.yaml", "spec: [unclosed\n", "not valid YAML"),
        ("data_pipelines/source.yaml", 'path: "data/raw/\\ud83d\\ude80.csv"\n', "lone surrogate"),
        (".github/act/events/schedule.json", '{"schedule": }\n', "not valid JSON"),
        ("ml/params.yaml", "a: 1\n---\nb: [\n", "not valid YAML"),
    ],
    ids=["toml-surrogate-escape", "yaml-syntax", "yaml-surrogate", "json-syntax", "yaml-second-document"],
)
def test_the_structure_check_names_the_file_that_does_not_parse(tmp_path, relative, text, complaint):
    hook = post_generation_hook()
    sound_project(tmp_path)
    write(tmp_path, relative, text)
    with pytest.raises(hook.Unparsable, match=complaint) as refusal:
        hook.check_structured_files(tmp_path)
    assert str(refusal.value).startswith(f"{relative} ")


def test_a_bake_that_renders_a_broken_file_fails_and_names_it(tmp_path, capfd):
    template = tmp_path / "template"
    shutil.copytree(
        ROOT,
        template,
        ignore=shutil.ignore_patterns(".git", ".venv", "build", "bench", "tests", "scripts", "__pycache__"),
    )
    broken = template / "{{cookiecutter.project_slug}}" / "deploy" / "base" / "pdb.yaml"
    broken.write_text(broken.read_text() + "  extra: [unclosed\n")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(FailedHookException):
        cookiecutter(str(template), no_input=True, output_dir=str(out), extra_context={"git_init": "no"})
    errors = [line for line in capfd.readouterr().err.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1 and "deploy/base/pdb.yaml is not valid YAML" in errors[0], errors
    assert list(out.iterdir()) == [], "a refused bake must leave no output folder"


def test_every_structured_file_of_a_default_bake_parses(tmp_path):
    project = bake_into(tmp_path, git_init="no")
    checked = post_generation_hook().check_structured_files(project)
    assert {"pyproject.toml", ".github/workflows/cd.yml", "deploy/argocd/project.yaml"} <= set(checked)
