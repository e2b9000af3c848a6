"""The PR results comment and the GitOps pull requests, against a stand-in of GitHub's API.

What matters for bots is what they send and that a re-run changes nothing but the content:
one comment per pull request, one PR per GitOps branch. Without a token they send nothing
and write a dry-run file instead.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from github import GithubException
from werkzeug.wrappers import Request, Response

from governance import github_client, gitops, pr_comment, registry
from tests.fake_github import FakeGitHub

ROOT = Path(__file__).resolve().parents[1]
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


def entry(version: str, stage: str, auc: float, digest: str | None = None) -> dict:
    """A registry entry as `make register` writes it (the schema of governance/registry.py)."""
    record = {
        "version": version,
        "model_name": "loan_default_model",
        "model_family": "logistic_regression",
        "stage": stage,
        "artifact": {"path": f"artifacts/models/{version}/model.onnx", "sha256": "0" * 64},
        "data": {"snapshot_id": "eec4fc0e5cf9", "sha256": "1" * 64},
        "contract_sha256": "2" * 64,
        "code_commit": "unknown",
        "metrics": {"roc_auc": auc, "accuracy": 0.8},
        "bias": {},
        "gates": {"primary_metric": {"passed": True}},
        "parity": {"max_abs_diff": 1e-7, "labels_equal": True},
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
    }
    if digest:
        record["image"] = {"digest": digest}
    return record


@pytest.fixture
def fake_api(monkeypatch):
    """A stand-in API served on loopback, with the environment a workflow job would have."""
    fake = FakeGitHub(repository="acme/loan-default-model")
    url, stop = fake.serve()
    monkeypatch.setenv("GITHUB_API_URL", url)
    monkeypatch.setenv("GITHUB_REPOSITORY", fake.repository)
    monkeypatch.setenv("GITHUB_TOKEN", "test-token")
    opened = github_client.open_repository
    monkeypatch.setattr(github_client, "open_repository", lambda target: opened(target, fast=True))
    yield fake
    stop()


# --- the settings -------------------------------------------------------------------------------


def test_no_token_means_dry_run():
    assert github_client.target_from_env({"GITHUB_REPOSITORY": "acme/x"}) is None


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"GITHUB_TOKEN": "t", "GITHUB_REPOSITORY": "no-slash"}, "GITHUB_REPOSITORY"),
        ({"GITHUB_TOKEN": "t", "GITHUB_REPOSITORY": "a/b", "GITHUB_API_URL": "ftp://x"}, "GITHUB_API_URL"),
    ],
)
def test_a_malformed_setting_is_named(variables, named):
    with pytest.raises(github_client.GitHubConfigError, match=named):
        github_client.target_from_env(variables)


def test_the_api_address_defaults_to_github():
    target = github_client.target_from_env({"GITHUB_TOKEN": "t", "GITHUB_REPOSITORY": "a/b"})
    assert target.api_url == github_client.DEFAULT_API_URL


# --- the one client: retries and clear refusals, for every bot -----------------------------------


def answer_first(fake: FakeGitHub, *statuses: int) -> None:
    """Make the stand-in answer the next requests with these statuses, then serve normally."""
    pending, handle = list(statuses), fake.handle

    def failing(request: Request) -> Response:
        if pending:
            status = pending.pop(0)
            fake.requests.append((request.method, request.path))
            message = {401: "Bad credentials", 404: "Not Found"}.get(status, "Server Error")
            return Response(json.dumps({"message": message}), status=status, content_type="application/json")
        return handle(request)

    fake.handle = failing


TARGET = github_client.GitHubTarget("https://ghe.example/api/v3", "acme/loans", "t")


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (401, r"401 \(Bad credentials\): GITHUB_TOKEN is missing, expired or revoked"),
        (403, r"403 .*may not write to acme/loans.*pull-requests: write"),
        (404, r"404 .*'acme/loans' does not exist at https://ghe.example/api/v3"),
        (500, r"GitHub answered 500"),
    ],
)
def test_each_refusal_is_explained_with_what_to_fix(status, expected):
    error = github_client.explain(GithubException(status, {"message": "Bad credentials"}), TARGET)
    assert isinstance(error, github_client.GitHubError) and error.status == status
    assert re.search(expected, str(error)), str(error)


def test_the_comment_bot_retries_a_502_and_explains_a_401(tmp_path, fake_api, capsys):
    root = pipeline_outputs(tmp_path)
    environ = {
        "GITHUB_TOKEN": "t",
        "GITHUB_REPOSITORY": fake_api.repository,
        "GITHUB_API_URL": github_client.target_from_env().api_url,
        "PR_NUMBER": "7",
    }
    answer_first(fake_api, 502, 502)
    assert pr_comment.main(root, environ) == 0
    assert len(fake_api.comments[7]) == 1
    assert fake_api.requests[:3] == [("GET", "/repos/acme/loan-default-model")] * 3  # two 502s, then served
    answer_first(fake_api, 401)
    assert pr_comment.main(root, environ) == 1
    assert "GITHUB_TOKEN is missing, expired or revoked" in capsys.readouterr().err


# --- the PR comment -----------------------------------------------------------------------------


def pipeline_outputs(root: Path, champion_auc: float | None = 0.80, rescored: dict | None = None) -> Path:
    """The files a PR run leaves behind: a candidate model's evidence and the registry.

    rescored: the champion's metrics on the candidate's test split, as `make train` records
    them in gates.json when it could re-score the champion's ONNX file.
    """
    model = root / "artifacts" / "models" / "20260102000000-abcdef12"
    model.mkdir(parents=True)
    (root / "artifacts" / "models" / "latest").write_text(model.name + "\n")
    metrics = {"metrics": {"roc_auc": 0.83, "accuracy": 0.81}, "bias": {}}
    gates = {
        "passed": True,
        "policy": "governance/policy.yaml",
        "champion": None
        if rescored is None
        else {
            "version": "20251201000000-00000000",
            "value": rescored["roc_auc"],
            "comparable": True,
            "basis": "re-scored on this candidate's test split",
            "metrics": rescored,
        },
        "gates": [{"name": "primary_metric", "passed": True, "message": "roc_auc 0.83 | fine"}],
    }
    parity = {"max_abs_diff": 2e-7, "labels_equal": True, "tolerance": 0.001, "rows": 10, "passed": True}
    for name, document in (("metrics", metrics), ("gates", gates), ("parity", parity)):
        (model / f"{name}.json").write_text(json.dumps(document))
    (root / "reports" / "validation").mkdir(parents=True)
    validation = {"name": "eec4fc0e5cf9", "success": False, "rows": 10, "failures": [{"column": "age"}]}
    (root / "reports" / "validation" / "eec4fc0e5cf9.json").write_text(json.dumps(validation))
    models = [] if champion_auc is None else [entry("20251201000000-00000000", "production", champion_auc)]
    (root / "governance").mkdir()
    (root / "governance" / "registry.yaml").write_text(yaml.safe_dump({"version": 1, "models": models}))
    return root


def test_the_report_compares_the_candidate_with_the_champion(tmp_path):
    body = pr_comment.build_report(pipeline_outputs(tmp_path), {"train": {"result": "success"}})
    assert body.startswith(pr_comment.MARKER)
    assert "| roc_auc | 0.83 | 0.8 | +0.0300 |" in body
    assert "champion `20251201000000-00000000` (registered, its own test split)" in body
    assert "| primary_metric | ✅ | roc_auc 0.83 \\| fine |" in body
    assert "max |p_onnx - p_sklearn| 2e-07 (tolerance 0.001)" in body
    assert "❌ `eec4fc0e5cf9`: 10 rows, 1 failed expectation(s)" in body and "column age" in body
    assert "| train + gates + ONNX + parity | ✅ success |" in body


def test_the_metrics_table_uses_the_champion_re_scored_on_the_candidates_test_split(tmp_path):
    """The table must agree with the regression gate, which compares on the same rows."""
    outputs = pipeline_outputs(tmp_path, champion_auc=0.80, rescored={"roc_auc": 0.76, "accuracy": 0.79})
    body = pr_comment.build_report(outputs, {})
    assert "champion `20251201000000-00000000` (on this test split)" in body
    assert "| roc_auc | 0.83 | 0.76 | +0.0700 |" in body and "| accuracy | 0.81 | 0.79 | +0.0200 |" in body


def test_the_report_says_when_there_is_no_champion_or_no_model(tmp_path):
    body = pr_comment.build_report(pipeline_outputs(tmp_path, champion_auc=None), {})
    assert "No champion in production yet" in body
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "No trained model in this run" in pr_comment.build_report(empty, {"data": {"result": "failure"}})


def retraining_request(root: Path, snapshot: str) -> None:
    folder = root / "governance" / "retraining"
    folder.mkdir(parents=True)
    (folder / "request.json").write_text(json.dumps({"snapshot": {"snapshot_id": snapshot}}))
    (folder / "drift-summary.md").write_text("## Drift check: retrain\n\n- income drifted")


def test_a_retraining_pr_shows_the_drift_that_asked_for_it(tmp_path):
    root = pipeline_outputs(tmp_path)
    retraining_request(root, "d33b6101c1b0")
    body = pr_comment.build_report(root, {}, head_ref="retrain/auto")
    assert "### Drift evidence" in body and "income drifted" in body


def test_other_prs_do_not_repeat_an_old_retraining_request(tmp_path):
    root = pipeline_outputs(tmp_path)
    retraining_request(root, "d33b6101c1b0")
    assert "Drift evidence" not in pr_comment.build_report(root, {}, head_ref="feature/new-threshold")


def test_without_a_token_the_comment_goes_to_a_file(tmp_path):
    root = pipeline_outputs(tmp_path)
    assert pr_comment.main(root, {"JOB_RESULTS": "{}"}) == 0
    assert (root / "reports" / "pr-comment.md").read_text().startswith(pr_comment.MARKER)


def test_the_comment_is_created_once_and_then_edited_in_place(tmp_path, fake_api):
    root = pipeline_outputs(tmp_path)
    environ = {
        "GITHUB_TOKEN": "t",
        "GITHUB_REPOSITORY": fake_api.repository,
        "GITHUB_API_URL": github_client.target_from_env().api_url,
        "PR_NUMBER": "7",
        "JOB_RESULTS": json.dumps({"train": {"result": "failure", "outputs": {}}}),
    }
    assert pr_comment.main(root, environ) == 0
    environ["JOB_RESULTS"] = json.dumps({"train": {"result": "success", "outputs": {}}})
    assert pr_comment.main(root, environ) == 0
    (comment,) = fake_api.comments[7]
    assert "✅ success" in comment["body"] and "failure" not in comment["body"]


@pytest.mark.parametrize(("variable", "value"), [("PR_NUMBER", "7; rm -rf /"), ("JOB_RESULTS", "[1, 2]")])
def test_bad_inputs_are_refused_by_name(tmp_path, fake_api, variable, value):
    environ = {"GITHUB_TOKEN": "t", "GITHUB_REPOSITORY": fake_api.repository, "PR_NUMBER": "7"}
    environ["GITHUB_API_URL"] = github_client.target_from_env().api_url
    environ[variable] = value
    assert pr_comment.main(tmp_path, environ) == 2
    assert fake_api.comments == {}


# --- GitOps: pinning digests and moving stages --------------------------------------------------


@pytest.fixture
def repo(tmp_path) -> Path:
    """A git checkout holding the project's real overlays and a registry with three versions."""
    root = tmp_path / "repo"
    shutil.copytree(ROOT / "deploy" / "overlays", root / "deploy" / "overlays")
    for overlay in (root / "deploy" / "overlays").glob(
        "*/kustomization.yaml"
    ):  # as baked, whatever this project has deployed since
        overlay.write_text(re.sub(r"sha256:[0-9a-f]{64}", "sha256:" + "0" * 64, overlay.read_text()))
    (root / "governance").mkdir(parents=True)
    models = {
        "version": 1,
        "models": [
            entry("v1", "production", 0.80, DIGEST_A),
            entry("v2", "staging", 0.81, DIGEST_A),
            entry("v3", "candidate", 0.82),
        ],
    }
    registry.save(models, root / "governance" / "registry.yaml")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "--quiet", "--initial-branch=main"], cwd=root, check=True)
    subprocess.run(["git", "add", "--all"], cwd=root, check=True)
    subprocess.run([*git, "commit", "--quiet", "--message", "init"], cwd=root, check=True)
    return root


def overlay_digest(root: Path, environment: str) -> str:
    document = yaml.safe_load((root / "deploy" / "overlays" / environment / "kustomization.yaml").read_text())
    (image,) = document["images"]
    return image["digest"]


def stages(root: Path) -> dict[str, str]:
    return {
        model["version"]: model["stage"]
        for model in registry.load(root / "governance" / "registry.yaml")["models"]
    }


def test_pinning_changes_only_the_digest_and_keeps_the_comments(repo):
    path = repo / "deploy" / "overlays" / "staging" / "kustomization.yaml"
    before = path.read_text()
    assert gitops.pin_digest(path.parent, DIGEST_B) is True
    after = path.read_text()
    assert overlay_digest(repo, "staging") == DIGEST_B
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b]
    assert len(changed) == 1 and "digest:" in changed[0][1]
    assert gitops.pin_digest(path.parent, DIGEST_B) is False  # already pinned: nothing to do


@pytest.mark.parametrize("digest", ["sha256:abc", "latest", "sha256:" + "A" * 64, ""])
def test_a_malformed_digest_is_refused(repo, digest):
    with pytest.raises(gitops.GitOpsError, match="sha256:<64 hex>"):
        gitops.pin_digest(repo / "deploy" / "overlays" / "staging", digest)


def test_an_overlay_without_exactly_one_digest_is_refused(repo):
    overlay = repo / "deploy" / "overlays" / "staging"
    path = overlay / "kustomization.yaml"
    path.write_text(path.read_text() + "  - name: other\n    digest: " + DIGEST_A + "\n")
    with pytest.raises(gitops.GitOpsError, match="exactly one"):
        gitops.pin_digest(overlay, DIGEST_B)


def test_a_pushed_candidate_becomes_staging_and_the_old_staging_is_archived(repo):
    change = gitops.stage_for_staging(repo, {"digest": DIGEST_B, "model_version": "v3", "reference": "r@x"})
    assert change.branch == "gitops/staging"
    assert stages(repo) == {"v1": "production", "v2": "archived", "v3": "staging"}
    assert overlay_digest(repo, "staging") == DIGEST_B
    assert overlay_digest(repo, "production").endswith("0" * 64)  # production untouched


def test_promotion_moves_staging_to_production_and_archives_the_champion(repo):
    change = gitops.stage_for_production(repo, "v2")
    assert change.title == "Promote v2 to production"
    assert stages(repo) == {"v1": "archived", "v2": "production", "v3": "candidate"}
    assert overlay_digest(repo, "production") == DIGEST_A


@pytest.mark.parametrize(
    ("version", "rule"), [("v3", "only the version in staging"), ("v9", "no model version")]
)
def test_promotion_refuses_what_is_not_in_staging(repo, version, rule):
    with pytest.raises((gitops.GitOpsError, registry.RegistryError), match=rule):
        gitops.stage_for_production(repo, version)
    assert stages(repo)["v1"] == "production"


def test_the_gitops_pr_is_opened_once_and_updated_on_rerun(repo, fake_api):
    for digest in (DIGEST_B, DIGEST_A):
        subprocess.run(["git", "checkout", "--quiet", "--", "."], cwd=repo, check=True)
        change = gitops.stage_for_staging(repo, {"digest": digest, "model_version": "v3"})
        files = gitops.changed_files(repo)
        assert set(files) == {"governance/registry.yaml", "deploy/overlays/staging/kustomization.yaml"}
        gitops.publish(repo, change, files)
    (pull,) = fake_api.open_pulls()
    assert pull["head"] == "gitops/staging" and pull["title"] == "Deploy v3 to staging"
    pinned = yaml.safe_load(fake_api.file("gitops/staging", "deploy/overlays/staging/kustomization.yaml"))
    assert pinned["images"][0]["digest"] == DIGEST_A


def test_the_gitops_bot_names_a_missing_repository(repo, fake_api, capsys, monkeypatch):
    monkeypatch.setattr(gitops, "ROOT", repo)
    answer_first(fake_api, 404)
    assert gitops.main(["promote", "--version", "v2"]) == 1
    error = capsys.readouterr().err
    assert "GitHub answered 404" in error and "'acme/loan-default-model' does not exist" in error
    assert fake_api.open_pulls() == []


def test_without_a_token_the_gitops_pr_is_a_dry_run_file(repo, monkeypatch):
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    change = gitops.stage_for_production(repo, "v2")
    message = gitops.publish(repo, change, gitops.changed_files(repo))
    assert "dry run" in message
    text = (repo / "reports" / "gitops" / "production.md").read_text()
    assert "Promote v2 to production" in text and "deploy/overlays/production/kustomization.yaml" in text
