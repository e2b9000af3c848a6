"""The PR results comment and the GitOps pull requests, against a stand-in of GitHub's API.

What matters for bots is what they send and that a re-run changes nothing but the content:
one comment per pull request, one PR per GitOps branch. Without a token they send nothing
and write a dry-run file instead.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from github import GithubException
from werkzeug.wrappers import Request, Response

from governance import documents, github_client, gitops, pr_comment, registry
from governance.cli import main
from governance.core.errors import InputError
from governance.core.paths import Paths
from governance.core.records import (
    Baseline,
    Bias,
    GateReport,
    GateResult,
    Parity,
    Quality,
    Registry,
    TrainingRecord,
    ValidationFailure,
    ValidationReport,
    read_json,
    write_json,
)
from governance.core.text import fmt
from tests.support.checkout import commit_checkout
from tests.support.github_standin import FakeGitHub, Fault
from tests.support.training import PROJECT

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64
CANDIDATE = "20260102000000-abcdef12"
CHAMPION = "20251201000000-00000000"
OPEN, CLOSE = "{" * 2, "}" * 2  # Jinja2 delimiters, spelled so that cookiecutter leaves this file alone


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


def test_the_target_never_prints_its_token():
    secret = "ghs_not-a-real-token"  # noqa: S105 -- what must not show
    target = github_client.target_from_env({"GITHUB_TOKEN": secret, "GITHUB_REPOSITORY": "acme/loans"})
    assert secret not in repr(target) and secret not in str(target)
    assert "acme/loans" in repr(target) and target.token == secret


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
    ("method", "status", "again"),
    [
        ("GET", 502, True),
        ("PUT", 503, True),
        ("DELETE", 500, True),
        ("POST", 502, False),  # the comment may be posted already: a second POST could post it twice
        ("PATCH", 500, False),
        ("POST", 429, True),  # a rate limit refuses before doing anything: safe for every method
        ("PATCH", 403, True),  # looked at by GithubRetry: retried only when the 403 is a rate limit
        ("GET", 404, False),
    ],
)
def test_only_requests_that_are_safe_to_repeat_are_retried(method, status, again):
    retry = github_client.client(TARGET).requester.kwargs["retry"]  # what every bot's client uses
    assert isinstance(retry, github_client.IdempotentRetry)
    assert retry.is_retry(method, status) is again
    assert retry.new(total=1).is_retry(method, status) is again  # urllib3 copies it for each attempt


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


def test_the_comment_bot_retries_a_502_and_explains_a_401(tmp_path, outputs, fake_api, monkeypatch, capsys):
    root = outputs(tmp_path)
    number = fake_api.add_pull_request()
    monkeypatch.setenv("PR_NUMBER", str(number))
    answer_first(fake_api, 502, 502)
    assert main(["--root", str(root), "pr-comment"]) == 0
    assert len(fake_api.comments[number]) == 1
    assert fake_api.requests[:3] == [("GET", "/repos/acme/loan-default-model")] * 3  # two 502s, then served
    answer_first(fake_api, 401)
    assert main(["--root", str(root), "pr-comment"]) == 2
    assert "GITHUB_TOKEN is missing, expired or revoked" in capsys.readouterr().err


# --- the PR comment -----------------------------------------------------------------------------


@pytest.fixture
def outputs(make_entry, champion_explanations):
    """Build the files a PR run leaves behind under a root: a candidate's records and the registry.

    champion_auc: the production entry's registered roc_auc (None: no champion yet).
    rescored: the champion's metrics on the candidate's test split, as `make train` records
    them in gates.json when it could re-score the champion's ONNX file.
    """

    def build(root: Path, champion_auc: float | None = 0.80, rescored: dict | None = None) -> Path:
        paths = Paths(root)
        model = paths.models / CANDIDATE
        model.mkdir(parents=True)
        (paths.models / "latest").write_text(CANDIDATE + "\n")
        quality = Quality(
            version=CANDIDATE,
            model_family="linear",
            metrics={"roc_auc": 0.83, "accuracy": 0.81, "f1": 0.7654321},
            bias=Bias(
                sensitive_attribute="sex",
                metric="selection_rate",
                largest_gap=0.0412345,
                gaps={"selection_rate": 0.0412345, "accuracy": None},
            ),
        )
        champion = None
        if rescored is not None:
            champion = Baseline(
                version=CHAMPION,
                value=rescored["roc_auc"],
                basis="re-scored on this candidate's test split",
                metrics=rescored,
            )
        gate = GateResult(
            name="primary_metric",
            passed=True,
            value=0.83,
            threshold=0.7,
            margin=0.13,
            requirement="model.min_primary_metric",
            message="roc_auc 0.83 | fine",
        )
        parity = Parity(
            version=CANDIDATE,
            rows=10,
            max_abs_diff=2e-7,
            mean_abs_diff=1e-7,
            labels_equal=True,
            mismatched_labels=0,
            tolerance=0.001,
            passed=True,
        )
        write_json(quality, model / "metrics.json")
        write_json(
            GateReport(
                version=CANDIDATE,
                passed=True,
                policy="governance/policy.yaml",
                champion=champion,
                gates=(gate,),
            ),
            model / "gates.json",
        )
        write_json(parity, model / "parity.json")
        write_json(champion_explanations, model / "explanations.json")
        failure = ValidationFailure(
            expectation="values within the contract's range",
            column="age",
            rule="expect_column_values_to_be_between",
            detail="1 value(s) outside [18, 100]",
        )
        validation = ValidationReport(
            name="eec4fc0e5cf9", source="snapshot", success=False, rows=10, failures=(failure,)
        )
        write_json(validation, paths.reports / "validation" / "eec4fc0e5cf9.json")
        models = (
            []
            if champion_auc is None
            else [make_entry(CHAMPION, "production", metrics={"roc_auc": champion_auc, "accuracy": 0.8})]
        )
        paths.registry.parent.mkdir(parents=True)
        registry.save(Registry.model_validate({"version": 1, "models": models}), paths.registry)
        return root

    return build


def test_the_report_compares_the_candidate_with_the_champion(tmp_path, outputs):
    body = pr_comment.build_report(outputs(tmp_path), {"train": {"result": "success"}})
    assert body.startswith(pr_comment.MARKER)
    assert "| roc_auc | higher | 0.83 | 0.8 | +0.0300 better |" in body
    assert (
        f"| f1 | higher | {fmt(0.7654321)} | — | — |" in body
    )  # the one number format; the champion has no f1
    assert f"champion `{CHAMPION}` (registered, its own test split)" in body
    assert "largest selection_rate gap 0.04123; gaps selection_rate 0.04123" in body
    assert "| primary_metric | ✅ | roc_auc 0.83 \\| fine |" in body
    assert (
        f"max |p_onnx - p_sklearn| {fmt(2e-7)} (tolerance 0.001) on 10 rows; labels equal: {fmt(True)}."
        in body
    )
    assert "❌ `eec4fc0e5cf9`: 10 rows, 1 failed expectation(s)" in body and "column age" in body
    assert "| train + gates + ONNX + parity | ✅ success |" in body


def test_the_metrics_table_uses_the_champion_re_scored_on_the_candidates_test_split(tmp_path, outputs):
    """The table must agree with the regression gate, which compares on the same rows."""
    root = outputs(tmp_path, champion_auc=0.80, rescored={"roc_auc": 0.76, "accuracy": 0.79})
    body = pr_comment.build_report(root, {})
    assert f"champion `{CHAMPION}` (on this test split)" in body
    assert "| roc_auc | higher | 0.83 | 0.76 | +0.0700 better |" in body
    assert "| accuracy | higher | 0.81 | 0.79 | +0.0200 better |" in body


def test_the_metrics_table_judges_each_change_by_the_metrics_direction(tmp_path, outputs):
    """A higher log_loss is worse, a lower one better: the table says which, not only the sign."""
    root = outputs(tmp_path, rescored={"roc_auc": 0.85, "log_loss": 0.30, "accuracy": 0.81})
    metrics_file = Paths(root).models / CANDIDATE / "metrics.json"
    quality = read_json(Quality, metrics_file)
    write_json(quality.model_copy(update={"metrics": {**quality.metrics, "log_loss": 0.25}}), metrics_file)
    body = pr_comment.build_report(root, {})
    assert "| roc_auc | higher | 0.83 | 0.85 | -0.0200 worse |" in body
    assert "| log_loss | lower | 0.25 | 0.3 | -0.0500 better |" in body
    assert "| accuracy | higher | 0.81 | 0.81 | +0.0000 |" in body


def test_the_report_says_when_there_is_no_champion_or_no_model(tmp_path, outputs):
    body = pr_comment.build_report(outputs(tmp_path / "run", champion_auc=None), {})
    assert "No champion in production yet" in body
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "No trained model in this run" in pr_comment.build_report(empty, {"data": {"result": "failure"}})


def retraining_request(root: Path, snapshot: str) -> None:
    folder = Paths(root).retraining
    folder.mkdir(parents=True)
    (folder / "request.json").write_text(json.dumps({"snapshot": {"snapshot_id": snapshot}}))
    (folder / "drift-summary.md").write_text("## Drift check: retrain\n\n- income drifted")


def test_a_retraining_pr_shows_the_drift_that_asked_for_it(tmp_path, outputs):
    root = outputs(tmp_path)
    retraining_request(root, "d33b6101c1b0")
    body = pr_comment.build_report(root, {}, head_ref="retrain/auto")
    assert "### Drift evidence" in body and "income drifted" in body


def test_other_prs_do_not_repeat_an_old_retraining_request(tmp_path, outputs):
    root = outputs(tmp_path)
    retraining_request(root, "d33b6101c1b0")
    assert "Drift evidence" not in pr_comment.build_report(root, {}, head_ref="feature/new-threshold")


def test_a_candidate_trained_on_the_requested_snapshot_shows_the_drift_on_any_branch(
    tmp_path, outputs, make_entry
):
    root = outputs(tmp_path)
    retraining_request(root, "d33b6101c1b0")
    registered = make_entry(CANDIDATE)
    training = TrainingRecord(
        version=CANDIDATE,
        model_name=registered["model_name"],
        model_family=registered["model_family"],
        seed=42,
        test_size=0.25,
        opset=17,
        contract_sha256=registered["contract_sha256"],
        artifact=registered["artifact"],
        data={"snapshot_id": "d33b6101c1b0", "sha256": "a" * 64},
    )
    write_json(training, Paths(root).models / CANDIDATE / "training.json")
    assert "income drifted" in pr_comment.build_report(root, {}, head_ref="feature/renamed-branch")


def test_the_comment_tables_each_columns_importance_beside_the_champions_and_its_rank_change(
    tmp_path, outputs
):
    body = pr_comment.build_report(outputs(tmp_path), {})
    section = body[body.index("### Explanations") : body.index("### Policy gates")]
    assert "| feature | candidate | champion `20231201000000-00000000` | rank change |" in section
    assert "| age | 0.05 | 0.02 | up 1 |" in section
    assert "| income | 0.03 | 0.06 | down 1 |" in section
    assert "| region | -0.001 | 0 | same |" in section
    assert "Worsening of `roc_auc` when the column is shuffled (500 rows, 3 shuffles)" in section


def test_a_run_without_explanations_leaves_the_section_out(tmp_path, outputs):
    root = outputs(tmp_path)
    (Paths(root).models / CANDIDATE / "explanations.json").unlink()
    assert "### Explanations" not in pr_comment.build_report(root, {})


def test_the_comment_has_every_section_of_its_template(tmp_path, outputs):
    root = outputs(tmp_path)
    retraining_request(root, "d33b6101c1b0")
    body = pr_comment.build_report(root, {"train": {"result": "success"}}, head_ref="retrain/auto")
    template = (PROJECT / "governance" / "templates" / "pr_comment.md.j2").read_text()
    headings = [heading.split(OPEN)[0] for heading in re.findall(r"^###? .+$", template, flags=re.MULTILINE)]
    assert len(headings) >= 6
    assert [heading for heading in headings if heading not in body] == []


def test_the_comment_is_laid_out_by_its_template_file(tmp_path, outputs, monkeypatch):
    templates = tmp_path / "templates"
    shutil.copytree(PROJECT / "governance" / "templates", templates)
    with (templates / "pr_comment.md.j2").open("a") as template:
        template.write(
            f"\nReviewed against policy {OPEN} gates.policy {CLOSE}; parity {OPEN} parity.rows {CLOSE}.\n"
        )
    monkeypatch.setattr(documents, "environment", functools.partial(documents.environment, templates))
    body = pr_comment.build_report(outputs(tmp_path / "run"), {})
    assert "Reviewed against policy governance/policy.yaml; parity 10." in body


def test_without_a_token_the_comment_goes_to_a_file(tmp_path, outputs):
    root = outputs(tmp_path)
    message = pr_comment.publish(root, {"JOB_RESULTS": "{}"})
    assert "no GITHUB_TOKEN" in message
    assert (root / "reports" / "pr-comment.md").read_text().startswith(pr_comment.MARKER)


def test_a_comment_whose_answer_is_lost_is_not_posted_twice(tmp_path, outputs, fake_api, monkeypatch):
    """GitHub posted the comment, then the gateway answered 502: a blind retry would post it again."""
    root = outputs(tmp_path)
    number = fake_api.add_pull_request()
    monkeypatch.setenv("PR_NUMBER", str(number))
    fake_api.faults.append(Fault("POST", rf"/issues/{number}/comments", 502, done=True))
    assert main(["--root", str(root), "pr-comment"]) == 0
    (comment,) = fake_api.comments[number]
    assert comment["body"].startswith(pr_comment.MARKER)
    posts = [entry for entry in fake_api.requests if entry[0] == "POST"]
    assert posts == [("POST", f"/repos/acme/loan-default-model/issues/{number}/comments")]


def test_the_comment_is_created_once_and_then_edited_in_place(tmp_path, outputs, fake_api):
    root = outputs(tmp_path)
    environ = {
        "GITHUB_TOKEN": "t",
        "GITHUB_REPOSITORY": fake_api.repository,
        "GITHUB_API_URL": github_client.target_from_env().api_url,
        "PR_NUMBER": str(fake_api.add_pull_request()),
        "JOB_RESULTS": json.dumps({"train": {"result": "failure", "outputs": {}}}),
    }
    first = pr_comment.publish(root, environ)
    environ["JOB_RESULTS"] = json.dumps({"train": {"result": "success", "outputs": {}}})
    assert pr_comment.publish(root, environ) == first  # the same comment's URL
    (comment,) = fake_api.comments[int(environ["PR_NUMBER"])]
    assert "✅ success" in comment["body"] and "failure" not in comment["body"]


@pytest.mark.parametrize(
    ("variable", "value"),
    [("PR_NUMBER", "7; rm -rf /"), ("JOB_RESULTS", "[1, 2]"), ("GITHUB_REPOSITORY", "no-slash")],
)
def test_bad_inputs_are_refused_by_name(tmp_path, fake_api, monkeypatch, capsys, variable, value):
    monkeypatch.setenv("PR_NUMBER", "7")
    monkeypatch.setenv(variable, value)
    assert main(["--root", str(tmp_path), "pr-comment"]) == 2
    assert variable in capsys.readouterr().err
    with pytest.raises(InputError, match=variable):
        pr_comment.publish(tmp_path, dict(os.environ))
    assert fake_api.comments == {}


# --- GitOps: pinning digests and moving stages --------------------------------------------------


@pytest.fixture
def repo(tmp_path, make_entry) -> Path:
    """A git checkout holding the project's real overlays and a registry with three versions."""
    root = tmp_path / "repo"
    shutil.copytree(PROJECT / "deploy" / "overlays", root / "deploy" / "overlays")
    for overlay in (root / "deploy" / "overlays").glob("*/kustomization.yaml"):
        # as baked, whatever this project has deployed since
        overlay.write_text(re.sub(r"sha256:[0-9a-f]{64}", "sha256:" + "0" * 64, overlay.read_text()))
    models = [
        make_entry("v1", "production", metrics={"roc_auc": 0.80, "accuracy": 0.8}, image_digest=DIGEST_A),
        make_entry("v2", "staging", metrics={"roc_auc": 0.81, "accuracy": 0.8}, image_digest=DIGEST_A),
        make_entry("v3", "candidate", metrics={"roc_auc": 0.8234567, "accuracy": 0.8}),
    ]
    return commit_checkout(root, models)


def overlay_digest(root: Path, environment: str) -> str:
    document = yaml.safe_load((root / "deploy" / "overlays" / environment / "kustomization.yaml").read_text())
    (image,) = document["images"]
    return image["digest"]


def stages(root: Path) -> dict[str, str]:
    return {model.version: model.stage for model in registry.load(Paths(root).registry).models}


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
    assert f"| metrics | roc_auc {fmt(0.8234567)}, accuracy {fmt(0.8)} |" in change.body
    assert "| replaces | `v2` (archived) |" in change.body
    assert "| image | `r@x` |" in change.body


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


def publish_staging(repo: Path, digest: str) -> str:
    """`make pin-staging` for v3 with this image digest, from a clean checkout of main."""
    subprocess.run(["git", "checkout", "--quiet", "--", "."], cwd=repo, check=True)
    change = gitops.stage_for_staging(repo, {"digest": digest, "model_version": "v3"})
    files = gitops.changed_files(repo)
    assert set(files) == {"governance/registry.yaml", "deploy/overlays/staging/kustomization.yaml"}
    return gitops.publish(repo, change, files)


def staged_digest(fake: FakeGitHub) -> tuple[str, str]:
    """The digest the branch pins in the overlay, and the one it registers for v3."""
    pinned = yaml.safe_load(fake.file("gitops/staging", "deploy/overlays/staging/kustomization.yaml"))
    entries = yaml.safe_load(fake.file("gitops/staging", "governance/registry.yaml"))["models"]
    registered = next(entry for entry in entries if entry["version"] == "v3")["image"]["digest"]
    return pinned["images"][0]["digest"], registered


def test_the_gitops_pr_is_opened_once_and_updated_on_rerun(repo, fake_api):
    """On GitHub a pull request whose branch is reset to its base is closed for good: an update
    must move the branch straight to one new commit on top of main."""
    for digest in (DIGEST_B, DIGEST_A):
        publish_staging(repo, digest)
    (pull,) = fake_api.pulls  # never a second pull request, and the first one still open
    assert pull["state"] == "open" and pull["number"] == 1
    assert pull["head"] == "gitops/staging" and pull["title"] == "Deploy v3 to staging"
    assert staged_digest(fake_api) == (DIGEST_A, DIGEST_A)
    tip = fake_api.tip("gitops/staging")
    parents = fake_api._git("rev-list", "--parents", "-n", "1", tip).decode().split()[1:]
    assert parents == [fake_api.tip("main")], "one commit on top of main, not a stack of them"
    assert not [entry for entry in fake_api.requests if "/contents/" in entry[1]], (
        "one commit, not one per file"
    )


def test_a_gitops_rerun_with_the_same_change_changes_nothing(repo, fake_api, monkeypatch):
    monkeypatch.setattr(registry, "now", lambda: "2026-01-02T03:04:05Z")  # the same registry.yaml twice
    publish_staging(repo, DIGEST_B)
    tip, before = fake_api.tip("gitops/staging"), len(fake_api.requests)
    outcome = publish_staging(repo, DIGEST_B)
    assert "#1 already holds this change" in outcome
    assert fake_api.tip("gitops/staging") == tip
    writes = [entry for entry in fake_api.requests[before:] if entry[0] != "GET"]
    assert writes == [], "no commit, no ref move, no pull request edit"
    assert [pull["number"] for pull in fake_api.pulls] == [1]


def test_a_gitops_update_that_fails_midway_leaves_the_branch_as_it_was(repo, fake_api):
    publish_staging(repo, DIGEST_B)
    tip = fake_api.tip("gitops/staging")
    fake_api.faults += [
        Fault("PUT", r"/contents/governance/registry\.yaml", 409),  # a file-by-file update, second file
        Fault("POST", r"/git/trees", 500),  # the one-commit update, before anything moved
    ]
    with pytest.raises(InputError, match="GitHub answered"):
        publish_staging(repo, DIGEST_A)
    assert fake_api.tip("gitops/staging") == tip
    assert staged_digest(fake_api) == (DIGEST_B, DIGEST_B), "never half of a change"
    assert [pull["state"] for pull in fake_api.pulls] == ["open"]


def test_the_gitops_bot_names_a_missing_repository(repo, fake_api, capsys):
    answer_first(fake_api, 404)
    assert main(["--root", str(repo), "promote", "--version", "v2"]) == 2
    error = capsys.readouterr().err
    assert "GitHub answered 404" in error and "'acme/loan-default-model' does not exist" in error
    assert fake_api.open_pulls() == []


def test_pin_staging_without_a_pushed_image_says_to_push_first(repo, capsys):
    assert main(["--root", str(repo), "pin-staging"]) == 2
    assert "make image-push" in capsys.readouterr().err
    assert stages(repo)["v3"] == "candidate"


def test_pin_staging_stages_the_pushed_image_in_a_dry_run_without_a_token(repo, monkeypatch, capsys):
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    record = Paths(repo).image_record
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"digest": DIGEST_B, "model_version": "v3", "reference": f"x@{DIGEST_B}"}))
    assert main(["--root", str(repo), "pin-staging"]) == 0
    assert "dry run" in capsys.readouterr().out
    assert stages(repo) == {"v1": "production", "v2": "archived", "v3": "staging"}
    assert registry.get("v3", Paths(repo).registry).image.digest == DIGEST_B
    assert overlay_digest(repo, "staging") == DIGEST_B
    text = (repo / "reports" / "gitops" / "staging.md").read_text()
    assert "Deploy v3 to staging" in text and "deploy/overlays/staging/kustomization.yaml" in text


def test_without_a_token_the_gitops_pr_is_a_dry_run_file(repo, monkeypatch):
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    change = gitops.stage_for_production(repo, "v2")
    message = gitops.publish(repo, change, gitops.changed_files(repo))
    assert "dry run" in message
    text = (repo / "reports" / "gitops" / "production.md").read_text()
    assert "Promote v2 to production" in text and "deploy/overlays/production/kustomization.yaml" in text


@pytest.mark.parametrize("app_secret_stored", [False, True])
def test_a_gitops_pr_opened_with_the_workflow_token_tells_its_reviewers_no_check_will_start(
    repo, fake_api, monkeypatch, capsys, app_secret_stored
):
    """Without GITOPS_TOKEN the workflows fall back to GITHUB_TOKEN, whose pull requests start no
    workflow on GitHub: the PR's body and the job's log say so and what to do about it."""
    if not app_secret_stored:
        fake_api.actions_token = "test-token"  # noqa: S105 -- the fixture's token, here the workflow's
    monkeypatch.setenv("GITOPS_TOKEN_SET", str(app_secret_stored).lower())
    publish_staging(repo, DIGEST_B)
    (pull,) = fake_api.pulls
    (event,) = fake_api.events
    warned = github_client.NO_CHECKS_WARNING in pull["body"]
    assert event["starts_workflows"] is not warned, (event, pull["body"])
    assert warned is not app_secret_stored
    assert ("::warning::" in capsys.readouterr().out) is warned
