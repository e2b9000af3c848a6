"""The generated workflows (and the template's own) are valid, hardened and runnable with act.

Checked on a baked default project: GitHub's workflow schema (check-jsonschema), zizmor with
no findings, every remote action pinned to a full commit SHA with a version comment, the
hardening rules of the design, and the act runner's mapping of pinned actions to local
stand-ins (derived from the files, so a Dependabot SHA bump cannot break `make ci`).
"""

from __future__ import annotations

import ast
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
PROJECT_WORKFLOWS = ("pr.yml", "cd.yml", "promote.yml", "drift.yml", "post-deploy.yml")


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


def test_the_project_has_the_five_workflows(project):
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
    (job,) = [job for job in workflow["jobs"].values() if "environment" in job]
    assert job["environment"] == "production"
    assert [step["run"] for step in job["steps"] if "run" in step] == ["make promote"]


# --- privileged jobs: main's code only, data only, exactly the GitOps files ----------------------

MAIN_ONLY = "github.ref == 'refs/heads/main'"


def condition(job: dict) -> str:
    """A job's `if:` without the optional ${{ }} around it."""
    text = str(job.get("if", "")).strip()
    if text.startswith("${{") and text.endswith("}}"):
        text = text[3:-2].strip()
    return text


def test_every_job_with_an_environment_runs_only_from_main(project):
    privileged = {}
    for name in PROJECT_WORKFLOWS:
        for job_id, job in load_workflow(project / ".github" / "workflows" / name)["jobs"].items():
            if "environment" not in job:
                continue
            privileged[f"{name}:{job_id}"] = job["environment"]
            terms = [term.strip() for term in condition(job).split("&&")]
            assert "||" not in condition(job) and MAIN_ONLY in terms, (
                f"{name}: job {job_id} uses environment {job['environment']!r} but its `if:` "
                f"({job.get('if')!r}) does not restrict it to {MAIN_ONLY}"
            )
    assert privileged == {
        "cd.yml:gitops": "gitops",
        "drift.yml:retrain-pr": "gitops",
        "post-deploy.yml:rollback-pr": "gitops",
        "promote.yml:promote": "production",
    }


def test_a_promotion_started_from_another_ref_fails_loudly(project):
    jobs = load_workflow(project / ".github" / "workflows" / "promote.yml")["jobs"]
    (guard,) = [job for job in jobs.values() if condition(job) == "github.ref != 'refs/heads/main'"]
    assert "environment" not in guard and guard["permissions"] == {}
    (step,) = guard["steps"]
    assert "::error::" in step["run"] and step["run"].rstrip().endswith("exit 1")


def test_the_readme_says_how_to_protect_the_environments(project):
    readme = (project / "README.md").read_text()
    section = readme.split("## GitHub settings", 1)[1].split("\n## ", 1)[0]
    for words in (
        "| `gitops` | selected branches: `main` only |",
        "| `production` | selected branches: `main` only | required reviewers",
        "`GITOPS_TOKEN` is an environment secret",
        "GitHub App",
        "`contents: write` and `pull-requests: write`",
    ):
        assert words in section, words


def github_path_filter(pattern: str) -> re.Pattern[str]:
    """A `paths` filter pattern as GitHub reads it: `**` crosses folders, `*` stays within one."""
    assert not set(pattern) & set("?+[]!"), f"{pattern}: only * and ** are understood here"
    parts = (
        ".*" if part == "**" else "[^/]*" if part == "*" else re.escape(part)
        for part in re.split(r"(\*\*|\*)", pattern)
    )
    return re.compile("".join(parts) + r"\Z")


def gitops_change_scope(project: Path) -> tuple[str, ...]:
    """CHANGE_SCOPE of the baked project's governance/gitops.py: the paths a GitOps PR changes."""
    tree = ast.parse((project / "governance" / "gitops.py").read_text())
    (value,) = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["CHANGE_SCOPE"]
    ]
    return ast.literal_eval(value)


def test_cd_ignores_exactly_the_files_a_gitops_pull_request_changes(project):
    ignored = load_workflow(project / ".github" / "workflows" / "cd.yml")["on"]["push"]["paths-ignore"]
    filters = [github_path_filter(pattern) for pattern in ignored]
    scope = gitops_change_scope(project)
    # what each scope entry stands for: a file, or everything below a folder
    expected = {entry if (project / entry).is_file() else f"{entry}/**" for entry in scope}
    assert set(ignored) == expected, "cd.yml's paths-ignore and gitops.CHANGE_SCOPE disagree"
    written = [
        "governance/registry.yaml",
        "governance/model_cards/v20250101-000000-abc123.md",
        "deploy/overlays/staging/kustomization.yaml",
        "deploy/overlays/production/kustomization.yaml",
        "deploy/batch/kustomization.yaml",  # the batch image pinned at promotion
    ]
    for path in written:
        assert any(f.match(path) for f in filters), f"merging a GitOps PR that writes {path} runs cd again"
    still_built = [
        "governance/policy.yaml",
        "governance/gitops.py",
        "governance/core/records.py",
        "governance/monitoring_history.jsonl",  # written by the retraining PR, which must build
        "governance/retraining/request.json",
        "governance/model_cards.py",
        "deploy/base/deployment.yaml",
        "deploy/Dockerfile",
        "deploy/batch/Dockerfile",
        "deploy/batch/cronjob.yaml",
        "app/main.py",
    ]
    for path in still_built:
        assert not any(f.match(path) for f in filters), f"a push of {path} must still build"


def uploads(job: dict, name: str) -> list[str]:
    (step,) = [
        step
        for step in job["steps"]
        if str(step.get("uses", "")).startswith("actions/upload-artifact@") and step["with"]["name"] == name
    ]
    return [line.strip() for line in step["with"]["path"].splitlines() if line.strip()]


def test_the_drift_artifact_carries_data_only_and_lands_apart_from_the_code(project):
    jobs = load_workflow(project / ".github" / "workflows" / "drift.yml")["jobs"]
    handed = uploads(jobs["drift"], "drift-results")
    # everything git holds: Python, the Makefile, pyproject.toml, workflows, manifests
    code = run("git", "ls-files", cwd=project).stdout.splitlines()
    for entry in handed:
        assert not entry.startswith(("/", ".", "~")) and ".." not in entry, entry
        covered = [
            path for path in code if path == entry.rstrip("/") or path.startswith(entry.rstrip("/") + "/")
        ]
        assert not covered, (
            f"drift-results uploads {entry}, which holds the project's own files {covered[:5]}"
        )
    assert "governance/monitoring_history.jsonl" in handed and "artifacts/snapshots/" in handed

    steps = jobs["retrain-pr"]["steps"]
    (index,) = [
        i
        for i, step in enumerate(steps)
        if str(step.get("uses", "")).startswith("actions/download-artifact@")
    ]
    folder = steps[index]["with"]["path"].strip().rstrip("/")
    assert folder not in ("", ".", "./") and "/" not in folder and not (project / folder).exists()
    assert f"{folder}/" in (project / ".gitignore").read_text()
    copy = steps[index + 1]["run"]
    assert steps[index + 2]["run"] == "make retrain-pr", "the data is in place before the bot runs"
    for line in copy.splitlines():
        if line.strip().startswith("cp "):
            source, target = line.split()[-2:]
            assert source.startswith(f"{folder}/"), line
            assert not any(
                path.startswith(target.rstrip("/.") + "/") for path in code if path.endswith(".py")
            ), line
    for data in ("reports/drift/", "artifacts/snapshots/", "governance/monitoring_history.jsonl"):
        assert f"{folder}/{data}" in copy, f"the retraining job does not take {data} from the artifact"


def test_the_post_deploy_bot_runs_after_a_breach_and_reads_only_the_checks_record(project):
    workflow = load_workflow(project / ".github" / "workflows" / "post-deploy.yml")
    assert {"schedule", "workflow_dispatch"} <= set(workflow["on"])
    jobs = workflow["jobs"]
    assert [step["run"] for step in jobs["check"]["steps"] if "run" in step] == ["make post-deploy-check"]
    bot = jobs["rollback-pr"]
    assert bot["needs"] == "check" and "!cancelled()" in condition(bot), "a breach fails the check job"
    runs = [step["run"] for step in bot["steps"] if "run" in step]
    assert runs == ['make rollback ROLLBACK_ARGS="--check post-deploy-results/check.json"']
    (download,) = [step for step in bot["steps"] if str(step.get("uses", "")).startswith("actions/download")]
    assert download["with"]["path"] == "post-deploy-results", "the artifact lands apart from the code"
    (make_rollback,) = [step for step in bot["steps"] if step.get("run", "").startswith("make rollback")]
    assert make_rollback["env"]["GITHUB_TOKEN"] == "${{ secrets.GITOPS_TOKEN || secrets.GITHUB_TOKEN }}"


def test_the_pr_comment_skips_cancelled_runs(project):
    jobs = load_workflow(project / ".github" / "workflows" / "pr.yml")["jobs"]
    assert condition(jobs["report"]) == "!cancelled()"


def codeowner(rules: list[tuple[str, str]], path: str) -> str | None:
    """The owner of a path under GitHub's rules for anchored patterns: the last match wins."""
    owner = None
    for pattern, who in rules:
        anchored = pattern.lstrip("/")
        if path == anchored or (anchored.endswith("/") and path.startswith(anchored)):
            owner = who
    return owner


def test_codeowners_cover_what_builds_ships_or_governs(project):
    rules = [
        (line.split()[0], line.split()[1])
        for line in (project / ".github" / "CODEOWNERS").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert all(pattern.startswith("/") for pattern, _ in rules), "patterns are anchored at the root"
    for path in (
        "requirements/dev.txt",
        "Makefile",
        "pyproject.toml",
        "app/main.py",
        "governance/policy.yaml",
        "data_pipelines/contract.yaml",
        "deploy/overlays/production/kustomization.yaml",
        ".github/workflows/cd.yml",
    ):
        assert (project / path).is_file(), path
        owner = codeowner(rules, path)
        assert owner and owner.startswith("@example-org/"), f"{path} has no code owner"


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


def test_the_templates_own_ci_also_runs_weekly():
    """Tool and image updates that break a fresh bake are caught by a scheduled run, not by a user."""
    triggers = load_workflow(TEMPLATE_WORKFLOWS[0])["on"]
    assert {"push", "pull_request", "schedule"} <= set(triggers)
    (entry,) = triggers["schedule"]
    _minute, _hour, day, month, weekday = entry["cron"].split()
    assert day == "*" and month == "*" and weekday not in ("*", ""), "once a week"
