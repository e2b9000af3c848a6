"""Training is reproducible, configured by ml/params.yaml, and `train` leaves a complete model folder."""

import hashlib
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml

from governance.cli import main
from governance.core.contract import load as load_contract
from governance.core.paths import Paths
from governance.core.records import GateReport, Parity, Quality, TrainingRecord, read_json
from governance.core.tasks import BINARY, MULTICLASS, metrics_of
from ml.features import DataError
from ml.train import ParamsError, build_pipeline, labels, load_params, split
from tests.support.training import PROJECT, example_frame, make_workspace, small_params, task_data


def write_params(tmp_path, **changes):
    raw = yaml.safe_load((PROJECT / "ml" / "params.yaml").read_text())
    raw.update(changes)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_project_params_are_valid():
    params = load_params(PROJECT / "ml" / "params.yaml")
    assert params.model_family in {"linear", "random_forest", "gradient_boosting"}


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"model_family": "svm"}, "model_family"),
        ({"seed": -1}, "seed"),
        ({"test_size": 0.9}, "test_size"),
        ({"model_name": "has space"}, "model_name"),
        (
            {
                "estimators": {"linear": {"random_state": 1}},
                "model_family": "linear",
            },
            "random_state",
        ),
    ],
)
def test_it_rejects_bad_params_naming_the_key(tmp_path, changes, named):
    with pytest.raises(ParamsError, match=named):
        load_params(write_params(tmp_path, **changes))


def test_an_unknown_estimator_setting_is_reported(example_contract):
    params = small_params("random_forest").model_copy(
        update={"estimators": {"random_forest": {"n_trees": 3}}}
    )
    with pytest.raises(ParamsError, match=r"estimators\.random_forest"):
        build_pipeline(example_contract, params)


def test_split_is_deterministic(example_contract):
    df = example_frame()
    params = small_params("linear")
    first, second = split(df, example_contract, params), split(df, example_contract, params)
    assert first.test.index.equals(second.test.index)
    assert len(first.test) == round(len(df) * params.test_size)


@pytest.mark.parametrize("task", [BINARY, MULTICLASS])
def test_a_classification_split_is_stratified_on_every_class(task):
    data = task_data(task)
    y = labels(data.frame, data.contract)
    test = labels(split(data.frame, data.contract, small_params("linear", task)).test, data.contract)
    shares = np.bincount(y) / len(y)
    assert np.abs(np.bincount(test, minlength=len(shares)) / len(test) - shares).max() < 0.02


def test_it_refuses_a_target_outside_the_contract_classes():
    data = task_data(MULTICLASS)
    df = data.frame.copy()
    df.loc[df.index[0], data.contract.target.name] = "merlot"
    with pytest.raises(DataError, match="outside the classes") as refusal:
        labels(df, data.contract)
    assert "'merlot'" in str(refusal.value) and "cultivar" in str(refusal.value)


def test_train_writes_the_model_folder(trained_workspace, example_contract):
    root, version = trained_workspace
    paths = Paths(root)
    out = paths.models / version
    assert {p.name for p in out.iterdir()} >= {
        "model.onnx",
        "metrics.json",
        "parity.json",
        "gates.json",
        "training.json",
    }
    quality = read_json(Quality, out / "metrics.json")
    assert set(quality.metrics) == {*metrics_of(example_contract.task), "rows"}
    assert all(value is not None for value in quality.metrics.values())
    assert quality.bias.sensitive_attribute == example_contract.sensitive.name
    assert set(quality.bias.by_group) == set(example_contract.sensitive.categories)
    gates = read_json(GateReport, out / "gates.json")
    assert gates.passed and gates.version == version
    assert {gate.name for gate in gates.gates} == {
        "primary_metric",
        "bias_gap",
        "onnx_parity",
        "onnx_latency",
        "regression_vs_champion",
    }
    parity = read_json(Parity, out / "parity.json")
    assert parity.labels_equal and parity.max_abs_diff <= parity.tolerance
    training = read_json(TrainingRecord, out / "training.json")
    assert training.artifact.path == paths.relative(out / "model.onnx")
    assert training.artifact.sha256 == hashlib.sha256((out / "model.onnx").read_bytes()).hexdigest()
    assert training.contract_sha256 == load_contract(paths.contract).digest
    assert (paths.models / "latest").read_text().strip() == version


def test_training_twice_gives_the_same_artifact_hash(trained_workspace, tmp_path):
    """A fresh process with another hash seed: set and dict ordering must not leak into the bytes."""
    root, version = trained_workspace
    first = hashlib.sha256((root / "artifacts" / "models" / version / "model.onnx").read_bytes()).hexdigest()
    # Train in a second workspace sharing the snapshot, so the shared one keeps its `latest` model.
    other = tmp_path / "again"
    (other / "artifacts").mkdir(parents=True)
    (other / "artifacts" / "snapshots").symlink_to(root / "artifacts" / "snapshots")
    for folder in ("governance", "ml", "data_pipelines"):
        shutil.copytree(root / folder, other / folder)
    result = subprocess.run(
        [sys.executable, "-m", "governance.cli", "--quiet", "--root", str(other), "train"],
        cwd=PROJECT,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    again = (other / "artifacts" / "models" / "latest").read_text().strip()
    assert again == version
    second = hashlib.sha256((other / "artifacts" / "models" / again / "model.onnx").read_bytes()).hexdigest()
    assert second == first


def test_train_without_a_snapshot_says_to_run_make_data(tmp_path, capsys):
    root = make_workspace(tmp_path, with_snapshot=False)
    assert main(["--root", str(root), "train"]) == 2
    assert "make data" in capsys.readouterr().err


def test_train_with_an_unknown_snapshot_is_a_usage_error(trained_workspace, capsys):
    root, _ = trained_workspace
    assert main(["--root", str(root), "train", "--snapshot", "doesnotexist"]) == 2
    assert "doesnotexist" in capsys.readouterr().err
