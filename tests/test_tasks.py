"""Every supervised task, on real data a team brings as its own file, through the whole loop.

For each task a project is baked with `data_source=file` on one of scikit-learn's bundled
datasets (wine: three cultivars as words; diabetes: a number; breast cancer: malignant/benign
as words), then runs what its README tells a new user to run: `make install contract data
validate train register`, `make serve` answering /predict for rows the model never saw, labels
sent back through /feedback, and `make drift` on the captured rows. The served answers are
scored against the truth and must be about as good as the held-out metrics training recorded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import TaskFile, call_json, run_make, serving
from sklearn.metrics import f1_score, r2_score, roc_auc_score

pytestmark = pytest.mark.slow

TASKS = ("binary_classification", "multiclass_classification", "regression")
# How far the served metric on the kept-back rows may fall below the held-out one (small sets).
TOLERANCE = {"binary_classification": 0.05, "multiclass_classification": 0.12, "regression": 0.2}
EXPECTED_CLASSES = {
    "binary_classification": ["benign", "malignant"],
    "multiclass_classification": ["barbera", "barolo", "grignolino"],
    "regression": [],
}


def served_metric(task: str, truth: list, answers: list[dict], classes: list) -> tuple[str, float]:
    """The policy's default primary metric of the task, on what the service answered."""
    if task == "regression":
        return "r2", float(r2_score(truth, [answer["value"] for answer in answers]))
    if task == "multiclass_classification":
        return "f1_macro", float(f1_score(truth, [answer["label"] for answer in answers], average="macro"))
    positive = "malignant"
    scores = [answer["probabilities"][positive] for answer in answers]
    return "roc_auc", float(roc_auc_score(np.array(truth) == positive, scores))


def check_contract(project: Path, data: TaskFile) -> dict:
    contract = yaml.safe_load((project / "data_pipelines" / "contract.yaml").read_text())
    target = contract["target"]
    assert target["task"] == data.task
    assert sorted(target.get("classes", [])) == EXPECTED_CLASSES[data.task]
    if data.task == "binary_classification":
        assert target["positive_class"] == "malignant", "the inferred positive class should be the word"
    return contract


def serve_and_label(project: Path, data: TaskFile, contract: dict, tmp_path: Path) -> tuple[list, list]:
    """`make serve`, every kept-back row to /predict, its true label to /feedback; then SIGTERM."""
    features = [feature["name"] for feature in contract["features"]]
    sensitive = (contract.get("sensitive_attribute") or {}).get("name")
    with serving(project, tmp_path / "serve.log") as base:
        rows = []
        for record in data.unseen:
            row = {name: (None if record[name] == "" else record[name]) for name in features}
            if sensitive:
                row[sensitive] = record[sensitive] or None
            rows.append(row)
        status, answer = call_json(f"{base}/predict", {"records": rows})
        assert status == 200, answer
        predictions = answer["predictions"]
        truth = [record[data.target] for record in data.unseen]
        feedback = [
            {"feedback_token": prediction["feedback_token"], "label": label}
            for prediction, label in zip(predictions, truth, strict=True)
        ]
        status, accepted = call_json(f"{base}/feedback", feedback)
        assert status == 202, accepted
    return truth, predictions


@pytest.mark.parametrize("task", TASKS)
def test_a_teams_own_file_goes_through_the_loop_for_every_task(cookies, task, task_files, tmp_path):
    data = task_files[task]
    result = cookies.bake(
        extra_context={
            "data_source": "file",
            "data_path": str(data.path),
            "task": task,
            "target_column": data.target,
            "sensitive_attribute": data.sensitive,
            "git_init": "no",
        }
    )
    assert result.exit_code == 0, result.exception
    project = Path(result.project_path)
    outcome = run_make(project, "install", "contract", "data", "validate", "train", "register")
    assert outcome.returncode == 0, outcome.stdout[-6000:] + outcome.stderr[-3000:]
    assert f"task {task}" in outcome.stdout + outcome.stderr, "make contract must say which task it inferred"
    contract = check_contract(project, data)

    version = (project / "artifacts" / "models" / "latest").read_text().strip()
    held_out = json.loads((project / "artifacts" / "models" / version / "metrics.json").read_text())[
        "metrics"
    ]
    truth, answers = serve_and_label(project, data, contract, tmp_path)
    if task == "regression":
        truth = [float(value) for value in truth]
        assert all(set(answer) == {"value", "feedback_token"} for answer in answers)
    else:
        classes = contract["target"]["classes"]
        assert all(answer["label"] in classes for answer in answers), "labels are the file's own words"
        assert all(list(answer["probabilities"]) == classes for answer in answers)
    metric, value = served_metric(task, truth, answers, contract["target"].get("classes", []))
    print(f"{task}: served {metric} {value:.3f} on {len(truth)} unseen rows, held-out {held_out[metric]:.3f}")
    assert value >= held_out[metric] - TOLERANCE[task], (
        f"served {metric} {value:.3f} on {len(truth)} unseen rows vs held-out {held_out[metric]:.3f}"
    )

    # A team with little traffic lowers the window minimums in its policy; the drift run then decides.
    policy_path = project / "governance" / "policy.yaml"
    policy = yaml.safe_load(policy_path.read_text())
    policy["drift"].update(min_window_rows=20, min_labelled_rows=20)
    policy_path.write_text(yaml.safe_dump(policy, sort_keys=False))
    drift = run_make(project, "drift")
    assert drift.returncode in (0, 1), drift.stdout[-6000:] + drift.stderr[-3000:]
    summary = json.loads((project / "reports" / "drift" / "drift.json").read_text())
    assert summary["performance"]["metric"] == metric
    assert summary["performance"]["labelled_rows"] == len(truth)
    assert summary["performance"]["value"] == pytest.approx(value, abs=1e-3), (
        "monitoring scores as serving did"
    )
    assert list((project / "reports" / "drift").glob("*.html")), "the drift report is HTML"
