"""A baked default project records its experiments: `make train` and `make tune` leave MLflow runs.

The issue's promise, end to end through the project's own make targets: `make data train
register` leaves one MLflow run (parameters, metrics, artifacts, read back with MLflow's client
in the project's environment) whose id the registry entry and the model card carry; `make tune`
with a handful of trials leaves one nested run per trial, the Pareto picture and a params diff.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import bake_defaults, project_env, run_make

pytestmark = pytest.mark.slow

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


def test_make_train_and_tune_leave_mlflow_runs_the_registry_names(tmp_path):
    project = bake_defaults(tmp_path)
    made = run_make(project, "data", "train", "register")
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]

    [run] = recorded_runs(project)
    assert {"model_family", "contract_sha256", "snapshot_sha256", "seed"} <= set(run["params"])
    assert "gate.primary_metric.passed" in run["metrics"]
    assert any(name.startswith("bias_gap.") for name in run["metrics"])
    assert {"model.onnx", "metrics.json", "gates.json", "model_card"} <= set(run["artifacts"])
    registry = yaml.safe_load((project / "governance" / "registry.yaml").read_text())
    assert registry["models"][-1]["run"]["run_id"] == run["id"]
    [card] = (project / "governance" / "model_cards").glob("*.md")
    assert run["id"] in card.read_text()

    params_before = (project / "ml" / "params.yaml").read_text()
    tuned = subprocess.run(
        ["make", "tune"],
        cwd=project,
        env=project_env(TRIALS="3"),
        capture_output=True,
        text=True,
        timeout=2400,
    )
    assert tuned.returncode == 0, tuned.stdout[-3000:] + tuned.stderr[-3000:]
    runs = recorded_runs(project)
    parents = [r for r in runs if r["tags"].get("kind") == "tuning"]
    children = [r for r in runs if r["tags"].get("mlflow.parentRunId") == parents[0]["id"]]
    assert len(parents) == 1 and len(children) == 3
    assert (project / "reports" / "tuning" / "pareto.png").is_file()
    changed = (project / "ml" / "params.yaml").read_text() != params_before
    assert changed == ("--- a/ml/params.yaml" in tuned.stdout)
