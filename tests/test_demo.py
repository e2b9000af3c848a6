"""`make demo` runs the whole lifecycle green, and a second run meets no stale state.

The first run is the full demo (scripts/demo.py): bake, install, lint, tests, data, Data
Docs, training with gates and ONNX parity, registry and model card, the image and its test,
the container serving production-like and drifted traffic with labels fed back, a graceful
stop with the capture complete, the drift check and its retrain decision, the retraining
pull request against the GitHub stand-in (re-run: updated, not duplicated), `make ci` on the
retraining branch, the merge, and cd.yml pinning the new digest for staging; then the staged
model in shadow beside the champion, `make compare` (promote), the promotion pull request
carrying the comparison, a shuffled-label candidate rejected in shadow, and once forced into
production, the post-deploy check and one rollback pull request. The experiment record is read
back with MLflow's client in the demo project: the first model's training run (parameters,
metrics, artifacts) named by its registry entry and model card, and the tuning study's nested
runs.

The second run is the documented quick subset (`--until retrain-pr`, about a third of the
time): it must start over cleanly in the same folder (the first run's project, origin,
capture and stand-ins are gone) and again end with exactly one retraining pull request.

Slow (about 10 minutes on 2 cores, warm caches); it needs a Docker-API engine as in CI
(.ci/run sets up podman's socket and the base image where Docker is missing).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, project_env

pytestmark = pytest.mark.slow
UNIT_TESTS = ("--unit-tests", "tests/test_project_shape.py")


def run_demo(out: Path, *extra: str) -> tuple[int, str, dict]:
    env = project_env()
    result = subprocess.run(
        # The project's whole suite runs in test_act.py (pr.yml's lint-test job) and for every other
        # combination in test_baked_projects.py: here the unit-test steps run one module, to show they run.
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--out", str(out), *UNIT_TESTS, *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    return result.returncode, result.stdout + result.stderr, summary


def pulls_from(out: Path, branch: str) -> list[dict]:
    state = json.loads((out / "github-stand-in" / "state.json").read_text())
    return [pull for pull in state["pulls"] if pull["head"] == branch]


READ_BACK = """
import json
from mlflow.tracking import MlflowClient
from governance.core.paths import PATHS
from ml import tracking
client = MlflowClient(tracking_uri=tracking.local_uri(PATHS))
runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
print(json.dumps([
    {
        "id": run.info.run_id,
        "params": run.data.params,
        "metrics": run.data.metrics,
        "tags": run.data.tags,
        "artifacts": sorted(item.path for item in client.list_artifacts(run.info.run_id)),
    }
    for run in runs
]))
"""


def recorded_runs(project: Path) -> list[dict]:
    """Every MLflow run in the project's embedded store, read with MLflow's client."""
    done = subprocess.run(
        [str(project / ".venv" / "bin" / "python"), "-c", READ_BACK],
        cwd=project,
        env=project_env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("demo") / "demo"


def test_the_demo_runs_every_step_green(demo_folder):
    code, output, summary = run_demo(demo_folder)
    assert code == 0 and summary.get("ok"), output[-6000:]
    statuses = {step["name"]: step["status"] for step in summary["steps"]}
    assert set(statuses.values()) == {"ok"}, statuses
    for name in ("package", "ci", "cd"):
        assert "SKIPPED" not in next(s["note"] for s in summary["steps"] if s["name"] == name)
    index = (demo_folder / "index.html").read_text()
    for report in (
        "Data Docs",
        "Model card",
        "MLflow store",
        "Tuning report",
        "Drift report",
        "PR comment",
        "Staging overlay",
        "Champion vs challenger",
        "Promotion PR",
        "Post-deploy check",
        "Rollback PR",
    ):
        assert report in index, f"the index page does not show the {report}"
    assert all(Path(path).exists() for path in summary["links"].values()), summary["links"]
    comment = (demo_folder / "pr-comment.md").read_text()
    assert "<!-- mlops-pr-report -->" in comment and "❌" not in comment, comment
    assert len(pulls_from(demo_folder, "retrain/auto")) == 1
    assert len(pulls_from(demo_folder, "rollback/production")) == 1


def test_the_demo_project_records_its_training_and_tuning_runs_in_mlflow(demo_folder):
    project = demo_folder / "loan-default-model"
    registry = yaml.safe_load((project / "governance" / "registry.yaml").read_text())
    first = registry["models"][0]
    runs = {run["id"]: run for run in recorded_runs(project)}
    run = runs[first["run"]["run_id"]]
    assert {"model_family", "contract_sha256", "snapshot_sha256", "seed"} <= set(run["params"])
    assert "gate.primary_metric.passed" in run["metrics"]
    assert any(name.startswith("bias_gap.") for name in run["metrics"])
    assert {"model.onnx", "metrics.json", "gates.json", "model_card"} <= set(run["artifacts"])
    assert run["tags"]["mlflow.source.git.commit"], "the run names the commit it trained"
    assert run["id"] in (project / "governance" / "model_cards" / f"{first['version']}.md").read_text()
    [study] = [r for r in runs.values() if r["tags"].get("kind") == "tuning"]
    trials = [r for r in runs.values() if r["tags"].get("mlflow.parentRunId") == study["id"]]
    assert len(trials) == 4, "one nested run per trial (the demo's TUNING_TRIALS)"
    assert (project / "reports" / "tuning" / "pareto.png").is_file()


def test_a_second_run_starts_clean_and_opens_no_second_pull_request(demo_folder):
    code, output, summary = run_demo(demo_folder, "--until", "retrain-pr")
    assert code == 0 and summary.get("ok"), output[-6000:]
    ran = [step for step in summary["steps"] if step["status"] != "not run"]
    assert ran[-1]["name"] == "retrain-pr" and all(step["status"] == "ok" for step in ran), ran
    assert not (demo_folder / "pr-comment.md").exists(), "a file of the first run survived the second"
    pulls = pulls_from(demo_folder, "retrain/auto")
    assert len(pulls) == 1 and pulls[0]["state"] == "open", pulls
