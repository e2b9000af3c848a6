"""The generated workflows (and the template's own) are valid, hardened and runnable with act.

Checked on a baked default project: GitHub's workflow schema (check-jsonschema), zizmor with
no findings, every remote action pinned to a full commit SHA with a version comment, the
hardening rules of the design, and the act runner's mapping of pinned actions to local
stand-ins (derived from the files, so a Dependabot SHA bump cannot break `make ci`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import BIN, ROOT, tool
from cookiecutter.main import cookiecutter

TEMPLATE_WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
USES = re.compile(r"""^\s*(?:-\s+)?uses:\s*["']?(?P<ref>[^\s"'#]+)["']?(?P<rest>.*)$""")
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"^\s*#\s*v\d+\.\d+\.\d+\b")
PROJECT_WORKFLOWS = ("pr.yml", "cd.yml", "promote.yml", "drift.yml")


def run(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def bake(output: Path, **context: str) -> Path:
    context = {"git_init": "no", **context}
    return Path(cookiecutter(str(ROOT), no_input=True, output_dir=str(output), extra_context=context))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default project, committed: the act runner reads git like act does."""
    return bake(tmp_path_factory.mktemp("workflows"), git_init="yes")


def project_workflows(project: Path) -> list[Path]:
    return sorted((project / ".github" / "workflows").glob("*.yml"))


def all_workflows(project: Path) -> list[Path]:
    return [*project_workflows(project), *TEMPLATE_WORKFLOWS]


def load_workflow(path: Path) -> dict:
    """YAML 1.1 reads the key `on` as True; give it its name back."""
    document = yaml.safe_load(path.read_text())
    if True in document:
        document["on"] = document.pop(True)
    return document


def remote_uses(path: Path) -> list[tuple[int, str, str]]:
    """(line number, reference, rest of line) for every `uses:` that is not local."""
    found = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        match = USES.match(line)
        if match and not match["ref"].startswith(("./", "docker://")):
            found.append((number, match["ref"], match["rest"]))
    return found


def action_files(project: Path) -> list[Path]:
    return sorted(project.glob(".github/**/action.yml"))


def test_the_project_has_the_four_workflows(project):
    assert {path.name for path in project_workflows(project)} == set(PROJECT_WORKFLOWS)
    assert TEMPLATE_WORKFLOWS, "the template's own .github/workflows/ci.yml is missing"


def test_every_workflow_matches_githubs_schema(project):
    files = [str(path) for path in all_workflows(project)]
    result = run(tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_composite_action_matches_githubs_schema(project):
    files = [str(path) for path in action_files(project)]
    assert len(files) >= 4  # the setup action and the act stand-ins
    result = run(tool("check-jsonschema"), "--builtin-schema", "vendor.github-actions", *files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_both_dependabot_files_match_the_schema(project):
    files = [str(project / ".github" / "dependabot.yml"), str(ROOT / ".github" / "dependabot.yml")]
    result = run(tool("check-jsonschema"), "--builtin-schema", "vendor.dependabot", *files)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("where", ["project", "template"])
def test_zizmor_reports_no_findings(project, where):
    target = project / ".github" if where == "project" else ROOT / ".github"
    result = run(tool("zizmor"), "--offline", "--format", "json", "--no-progress", str(target))
    findings = json.loads(result.stdout or "[]")
    summary = [
        f"{f['ident']}: {f['desc']} ({json.dumps(f['locations'][0]['symbolic']['key'])})" for f in findings
    ]
    assert result.returncode == 0 and findings == [], "\n".join(summary) or result.stderr


def test_every_remote_action_is_pinned_to_a_commit_with_its_version(project):
    problems = []
    for path in [*all_workflows(project), *action_files(project)]:
        for number, reference, rest in remote_uses(path):
            if not PINNED.match(reference):
                problems.append(f"{path.name}:{number}: {reference} is not pinned to a 40-hex commit SHA")
            elif not VERSION_COMMENT.match(rest):
                problems.append(f"{path.name}:{number}: {reference} lacks a '# vX.Y.Z' comment")
    assert not problems, "\n".join(problems)


def test_the_same_action_is_pinned_to_one_commit_everywhere(project):
    pins: dict[str, set[str]] = {}
    for path in [*all_workflows(project), *action_files(project)]:
        for _, reference, _ in remote_uses(path):
            name, sha = reference.rsplit("@", 1)
            pins.setdefault(name, set()).add(sha)
    assert {name: shas for name, shas in pins.items() if len(shas) > 1} == {}


@pytest.mark.parametrize("name", [*PROJECT_WORKFLOWS, "template ci.yml"])
def test_workflow_follows_the_hardening_rules(project, name):
    path = TEMPLATE_WORKFLOWS[0] if name == "template ci.yml" else project / ".github" / "workflows" / name
    workflow = load_workflow(path)
    assert workflow["permissions"] == {}, "top-level permissions must be {}"
    assert "concurrency" in workflow
    triggers = workflow["on"] if isinstance(workflow["on"], dict) else {workflow["on"]: None}
    assert "pull_request_target" not in triggers
    assert "workflow_run" not in triggers
    for job_id, job in workflow["jobs"].items():
        assert "permissions" in job, f"job {job_id} must state its permissions"
        assert "timeout-minutes" in job, f"job {job_id} needs a timeout"
        for step in job.get("steps", []):
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                assert step.get("with", {}).get("persist-credentials") is False, f"{job_id}: checkout"
            script = step.get("run", "")
            assert "${{" not in script, f"{job_id}: expressions reach `run:` only through env: {script!r}"
    text = path.read_text()
    assert "write-all" not in text and "read-all" not in text


def test_pull_request_workflow_has_every_check_and_one_gate(project):
    jobs = load_workflow(project / ".github" / "workflows" / "pr.yml")["jobs"]
    assert {"lint-test", "data", "train", "champion", "image", "report", "all-green"} <= set(jobs)
    gate = jobs["all-green"]
    assert gate["if"] == "always()"
    assert set(gate["needs"]) == set(jobs) - {"all-green", "report"}
    assert jobs["report"]["permissions"] == {"contents": "read", "pull-requests": "write"}
    writers = [job_id for job_id, job in jobs.items() if "write" in job["permissions"].values()]
    assert writers == ["report"], "only the comment job may write"
    make_calls = [
        step["run"]
        for job in jobs.values()
        for step in job.get("steps", [])
        if "run" in step and job is not gate
    ]
    assert all(call.startswith("make ") and "\n" not in call for call in make_calls), make_calls


def test_promotion_runs_in_the_protected_environment(project):
    workflow = load_workflow(project / ".github" / "workflows" / "promote.yml")
    assert workflow["on"]["workflow_dispatch"]["inputs"]["version"]["required"] is True
    (job,) = workflow["jobs"].values()
    assert job["environment"] == "production"


def test_drift_schedule_comes_from_the_prompt(tmp_path):
    baked = bake(tmp_path, drift_schedule="15 3 * * 2")
    workflow = load_workflow(baked / ".github" / "workflows" / "drift.yml")
    assert workflow["on"]["schedule"] == [{"cron": "15 3 * * 2"}]
    assert "workflow_dispatch" in workflow["on"]
    steps = [step.get("run") for job in workflow["jobs"].values() for step in job["steps"]]
    assert steps.index("make drift") < steps.index("make retrain-pr")


# --- act: every pinned remote action maps to a committed local stand-in -------------------------


def act_command(project: Path, workflow: str = ".github/workflows/pr.yml", event: str = "pull_request"):
    env = {**os.environ, "ACT_MODE": "self-hosted", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("GITHUB_TOKEN", None)
    return run(sys.executable, ".github/act/run_act.py", event, workflow, "--print", cwd=project, env=env)


def local_repository_flags(command_line: str) -> dict[str, str]:
    words = command_line.split()
    pairs = [words[i + 1] for i, word in enumerate(words) if word == "--local-repository"]
    return dict(pair.split("=", 1) for pair in pairs)


def test_act_runner_maps_every_pinned_action_to_a_stand_in(project):
    result = act_command(project)
    assert result.returncode == 0, result.stderr
    flags = local_repository_flags(result.stdout)
    expected = {
        reference
        for path in [*project_workflows(project), *action_files(project)]
        for _, reference, _ in remote_uses(path)
        if not reference.startswith("actions/checkout@")  # act copies the tree itself
    }
    assert set(flags) == expected
    for target in flags.values():
        assert (Path(target) / "action.yml").is_file(), target
    assert "-P ubuntu-latest=-self-hosted" in result.stdout
    assert "--eventpath" in result.stdout


def test_act_runner_follows_a_sha_bump(project, tmp_path):
    bumped = tmp_path / "bumped"
    shutil.copytree(project, bumped, symlinks=True)
    workflow = bumped / ".github" / "workflows" / "pr.yml"
    new_sha = "1" * 40
    text = re.sub(r"(actions/upload-artifact@)[0-9a-f]{40}", rf"\g<1>{new_sha}", workflow.read_text())
    workflow.write_text(text)
    flags = local_repository_flags(act_command(bumped).stdout)
    assert f"actions/upload-artifact@{new_sha}" in flags


def test_act_runner_names_an_action_without_a_stand_in(project, tmp_path):
    changed = tmp_path / "changed"
    shutil.copytree(project, changed, symlinks=True)
    workflow = changed / ".github" / "workflows" / "drift.yml"
    workflow.write_text(
        workflow.read_text().replace(
            "      - run: make drift\n",
            f"      - uses: example/unknown-action@{'a' * 40} # v1.0.0\n      - run: make drift\n",
        )
    )
    result = act_command(changed, ".github/workflows/drift.yml", "schedule")
    assert result.returncode == 2
    assert "example/unknown-action" in result.stderr and "stand-in" in result.stderr


def test_act_runner_refuses_a_folder_without_a_commit(tmp_path):
    uncommitted = bake(tmp_path)  # git_init=no
    result = act_command(uncommitted)
    assert result.returncode == 2
    assert "git repository with at least one commit" in result.stderr
