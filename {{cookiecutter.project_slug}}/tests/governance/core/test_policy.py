"""governance/policy.yaml has exactly one parser, and every reader uses it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from governance.core import policy
from governance.core.paths import PATHS
from governance.core.tasks import GROUP_METRICS, metrics_of
from ml.evaluate import bias_metrics, task_metrics


def edited(tmp_path: Path, section: str, key: str, value: object) -> Path:
    raw = yaml.safe_load(PATHS.policy.read_text())
    raw[section][key] = value
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_the_projects_policy_parses_whole():
    # The task as the contract file declares it (a project baked from a file has only a draft
    # contract until `make contract`, but its task is there from the start).
    task = yaml.safe_load(PATHS.contract.read_text())["target"].get("task", "binary_classification")
    loaded = policy.load(task=task)
    assert loaded.model.primary_metric in metrics_of(task)
    assert loaded.serving.max_batch_rows >= 1
    assert loaded.model_card.limitations
    assert loaded.feedback.relabel == "first_wins", "a later label must not overwrite unless chosen"


def test_a_policy_without_a_feedback_section_keeps_the_first_label(tmp_path):
    raw = yaml.safe_load(PATHS.policy.read_text())
    del raw["feedback"]
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert policy.load(path).feedback.relabel == "first_wins"


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("model", "min_primary_metric", 1.5, "field 'model.min_primary_metric'"),
        ("model", "primary_metric", "auc", "field 'model.primary_metric'"),
        ("bias", "max_gapp", 0.1, "field 'bias.max_gapp' is not a known field"),
        ("onnx", "opset", "17", "field 'onnx.opset'"),
        ("drift", "correction", "holm", "field 'drift.correction'"),
        ("serving", "unknown_category", "maybe", "field 'serving.unknown_category'"),
        ("feedback", "relabel", "newest", "field 'feedback.relabel'"),
        ("canary", "max_error_rate", 1.5, "field 'canary.max_error_rate'"),
        ("canary", "max_p99_latency_seconds", 0, "field 'canary.max_p99_latency_seconds'"),
    ],
)
def test_a_broken_policy_is_refused_naming_the_key(tmp_path, section, key, value, expected):
    with pytest.raises(policy.PolicyError) as refusal:
        policy.load(edited(tmp_path, section, key, value))
    assert expected in str(refusal.value) and f"(got {value!r})" in str(refusal.value)


ANSWERS = {
    "binary_classification": ([0, 1, 1, 0], [0, 1, 0, 0], [[0.8, 0.2], [0.1, 0.9], [0.6, 0.4], [0.9, 0.1]]),
    "multiclass_classification": (
        [0, 1, 2, 2],
        [0, 1, 1, 2],
        [[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7]],
    ),
    "regression": ([1.0, 2.0, 3.0, 4.0], [1.5, 2.0, 2.5, 4.5], None),
}


@pytest.mark.parametrize("task", sorted(ANSWERS))
def test_the_metric_names_the_policy_allows_are_the_ones_training_computes(task):
    import numpy as np

    truth, predicted, proba = ANSWERS[task]
    computed = task_metrics(
        np.array(truth), np.array(predicted), None if proba is None else np.array(proba), task
    )
    assert set(computed) - {"rows"} == set(metrics_of(task))
    assert all(computed[name] is not None for name in metrics_of(task))


@pytest.mark.parametrize("task", sorted(ANSWERS))
def test_the_group_metrics_the_policy_allows_are_the_ones_bias_computes(task):
    import numpy as np
    import pandas as pd

    truth, predicted, _ = ANSWERS[task]
    groups = pd.Series(["a", "b", "a", "b"], name="group")
    bias = bias_metrics(
        np.array(truth), np.array(predicted), groups, GROUP_METRICS[task][0], task, ("x", "y", "z")
    )
    assert set(bias.gaps) == set(GROUP_METRICS[task])


def test_no_module_outside_the_ground_parses_the_policy_file():
    """The policy's readers (gates, serving settings, drift decision, model card) go through
    governance.core.policy; a module reading policy.yaml with its own YAML call would be a second
    parser."""
    offenders = []
    for path in PATHS.root.glob("*/**/*.py"):
        relative = path.relative_to(PATHS.root).as_posix()
        if relative.startswith(("governance/core/", "tests/", ".venv/", "build/")) or "/." in relative:
            continue
        text = path.read_text()
        if "policy" in text and re.search(r"yaml\.safe_load|read_yaml\(", text):
            reads = re.findall(r"(?:yaml\.safe_load|read_yaml)\([^)]*\)", text)
            if any("policy" in call for call in reads):
                offenders.append(relative)
    assert offenders == []
