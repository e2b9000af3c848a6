"""Staying current: a project made with cruft takes a template change and keeps its own edits.

A team bakes the template once and then owns the project: it tunes `ml/params.yaml` and adds
its own notes to `governance/policy.yaml`, the seams meant for that. When the template later
improves, `cruft update` must bring the improvement in as a three-way merge, not overwrite the
team's edits, and record the template commit it now matches so `cruft check` can tell.

Everything runs offline in pytest's temporary folders: the template is a throwaway git copy of
this working tree (tracked files plus untracked, not-ignored ones, so uncommitted work is
tested too), changed there and never here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import BIN, ROOT, tool

SLUG = "loan-default-model"
PARAMS = Path("ml", "params.yaml")
POLICY = Path("governance", "policy.yaml")
# A file the template adds later; rendered, so the update must use the project's own answers.
UPGRADING = Path("docs", "UPGRADING.md")
TEAM_NOTE = "# our team: reviewed by the risk committee"


def environment() -> dict[str, str]:
    """The template's tools first on PATH; a fixed git identity and no user or system git config."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("GIT_", "COOKIECUTTER"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    env.update(
        GIT_AUTHOR_NAME="Template Test",
        GIT_AUTHOR_EMAIL="template-test@example.com",
        GIT_COMMITTER_NAME="Template Test",
        GIT_COMMITTER_EMAIL="template-test@example.com",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_CONFIG_NOSYSTEM="1",
    )
    return env


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=environment(), check=False, capture_output=True, text=True)


def git(cwd: Path, *args: str) -> str:
    result = run(["git", *args], cwd)
    assert result.returncode == 0, f"git {' '.join(args)}: {result.stdout}{result.stderr}"
    return result.stdout


def commit_all(repository: Path, message: str) -> str:
    git(repository, "add", "--all")
    git(repository, "commit", "--quiet", "--no-verify", "--message", message)
    return git(repository, "rev-parse", "HEAD").strip()


def cruft(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run([tool("cruft"), *args], cwd)


def template_files() -> list[str]:
    """What this working tree holds of the template: tracked files and untracked, not-ignored ones."""
    listed = []
    for extra in ([], ["--others", "--exclude-standard"]):
        listed += git(ROOT, "ls-files", "-z", *extra).split("\0")
    # A tracked file deleted in the working tree is gone from the template being tested.
    return sorted({name for name in listed if name and (ROOT / name).is_file()})


@pytest.fixture
def template(tmp_path: Path) -> Path:
    """A git repository holding a copy of this template: cruft's upstream for the test."""
    copy = tmp_path / "template"
    for name in template_files():
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, copy / name, follow_symlinks=False)
    git(copy, "init", "--quiet", "--initial-branch=main")
    commit_all(copy, "Template as in the working tree")
    return copy


@pytest.fixture
def project(template: Path, tmp_path: Path) -> Path:
    """A project made from the template with `cruft create`, then committed by its team."""
    out = tmp_path / "out"
    created = cruft(
        tmp_path,
        "create",
        str(template),
        "--no-input",
        "--default-config",
        "--output-dir",
        str(out),
        "--extra-context",
        json.dumps({"git_init": "no"}),
    )
    assert created.returncode == 0, created.stdout + created.stderr
    baked = out / SLUG
    assert (baked / ".cruft.json").is_file(), sorted(path.name for path in out.iterdir())
    git(baked, "init", "--quiet", "--initial-branch=main")
    commit_all(baked, "Project created with cruft")
    return baked


def recorded_commit(project: Path) -> str:
    return json.loads((project / ".cruft.json").read_text())["commit"]


def improve_template(template: Path, marker: str) -> str:
    """The template gains a new generated file; returns the template's new HEAD."""
    page = template / "{{cookiecutter.project_slug}}" / UPGRADING
    assert not page.exists(), "the test's new template file already exists: pick another path"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(f"# Upgrading {{{{ cookiecutter.project_name }}}}\n\n{marker}\n")
    return commit_all(template, "Template: explain upgrades")


def update(project: Path) -> subprocess.CompletedProcess[str]:
    """Apply the template's diff without the y/n/s/v prompt (`--skip-apply-ask` is cruft's `-y`).

    `--allow-untracked-files` lets a team's untracked scratch files stay; `changed_paths` below
    still sees any file the update leaves behind, tracked or not.
    """
    return cruft(project, "update", "--skip-apply-ask", "--allow-untracked-files")


def changed_paths(project: Path) -> set[str]:
    """Paths git sees as changed, added or untracked in the project (the update is not committed)."""
    return {line[3:] for line in git(project, "status", "--porcelain", "--untracked-files=all").splitlines()}


def test_update_brings_the_template_change_and_keeps_the_teams_edits(template, project):
    params = (project / PARAMS).read_text()
    assert "seed: 42\n" in params, f"the seam moved: {PARAMS} no longer sets `seed: 42`"
    (project / PARAMS).write_text(params.replace("seed: 42\n", "seed: 7\n", 1))
    policy = (project / POLICY).read_text()
    (project / POLICY).write_text(f"{policy.rstrip(chr(10))}\n{TEAM_NOTE}\n")
    commit_all(project, "Team: own seed, policy reviewed")
    created_from = recorded_commit(project)
    marker = f"template update {uuid.uuid4().hex}"
    head = improve_template(template, marker)
    assert not (project / UPGRADING).exists()

    updated = update(project)

    output = updated.stdout + updated.stderr
    assert updated.returncode == 0, output
    # cruft exits 0 even when the merge conflicts, so look for conflicts and rejected hunks.
    assert git(project, "diff", "--name-only", "--diff-filter=U") == "", output
    assert sorted(str(path.relative_to(project)) for path in project.rglob("*.rej")) == [], output
    assert changed_paths(project) == {".cruft.json", str(UPGRADING)}, output
    page = (project / UPGRADING).read_text()
    assert marker in page.splitlines()
    assert page.startswith("# Upgrading Loan Default Model\n"), page
    params_after = (project / PARAMS).read_text().splitlines()
    assert "seed: 7" in params_after and "seed: 42" not in params_after
    assert (project / POLICY).read_text().splitlines()[-1] == TEAM_NOTE
    assert recorded_commit(project) == head != created_from


def test_check_reports_out_of_date_until_the_update_lands(template, project):
    fresh = cruft(project, "check")
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr

    improve_template(template, f"template update {uuid.uuid4().hex}")
    stale = cruft(project, "check")
    assert stale.returncode == 1, stale.stdout + stale.stderr
    assert "out of date" in stale.stdout

    updated = update(project)
    assert updated.returncode == 0, updated.stdout + updated.stderr
    current = cruft(project, "check")
    assert current.returncode == 0, current.stdout + current.stderr
    assert "up to date" in current.stdout
