"""Experiment tracking: `make train` leaves one MLflow run, read back here with MLflow's own client.

Tracking is off for the rest of the suite (tests/conftest.py); these tests turn it on for their
own workspaces, train once per module, and read what the run holds. Training returns while its
run is still being recorded in the background: readers wait for it (`recording.wait`).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from governance.cli import main
from governance.core import policy as policy_file
from governance.core import recording
from governance.core.errors import InputError
from governance.core.paths import Paths
from governance.core.records import TrackedRun, read_json
from ml import tracking
from ml.pipeline import train
from ml.train import load_params
from tests.support.training import PROJECT, make_workspace


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def mlflow_client(paths: Paths):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking.local_uri(paths))


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Paths, str, TrackedRun]:
    """(paths, version, run): a workspace trained once with tracking on, into its embedded store."""
    paths = Paths(make_workspace(tmp_path_factory.mktemp("tracked")))
    with pytest.MonkeyPatch.context() as env:
        env.setenv(tracking.SWITCH, "on")
        report = train(paths)
    assert recording.wait(paths.models / report.version), "the background recording wrote no run.json"
    return paths, report.version, read_json(TrackedRun, paths.models / report.version / "run.json")


@pytest.mark.slow
def test_train_records_parameters_hashes_and_tags(tracked):
    paths, version, run = tracked
    recorded = mlflow_client(paths).get_run(run.run_id).data
    snapshot = read_json_manifest(paths)
    params = load_params(paths.params)
    assert recorded.params["model_family"] == params.model_family
    assert recorded.params["seed"] == str(params.seed)
    assert any(name.startswith("estimator.") for name in recorded.params), "the estimator's settings"
    assert recorded.params["snapshot_sha256"] == snapshot["sha256"]
    assert len(recorded.params["contract_sha256"]) == 64
    assert recorded.tags["model_version"] == version
    assert "mlflow.source.git.commit" in recorded.tags and "git.branch" in recorded.tags
    assert run.tracking_uri == tracking.LOCAL_STORE and run.fallback_from is None


def read_json_manifest(paths: Paths) -> dict:
    import json

    latest = (paths.snapshots / "latest").read_text().strip()
    return json.loads((paths.snapshots / latest / "manifest.json").read_text())


@pytest.mark.slow
def test_train_records_every_metric_gate_and_bias_figure(tracked):
    paths, version, run = tracked
    metrics = mlflow_client(paths).get_run(run.run_id).data.metrics
    quality = (paths.models / version / "metrics.json").read_text()
    primary = policy_file.load(paths.policy).model.primary_metric
    assert primary in metrics and f"{metrics[primary]:.6f}"[:5] in quality
    assert any(name.startswith("bias_gap.") for name in metrics)
    for gate in ("primary_metric", "bias_gap", "onnx_parity", "onnx_latency", "regression_vs_champion"):
        assert metrics[f"gate.{gate}.passed"] == 1.0
    assert metrics["parity.max_abs_diff"] < 1e-3


@pytest.mark.slow
def test_train_stores_the_onnx_model_and_records_as_artifacts(tracked):
    paths, version, run = tracked
    stored = {item.path for item in mlflow_client(paths).list_artifacts(run.run_id)}
    assert {"model.onnx", "metrics.json", "gates.json", "parity.json", "training.json"} <= stored
    onnx_file = mlflow_client(paths).download_artifacts(run.run_id, "model.onnx", str(paths.root / "dl"))
    onnx_file = Path(onnx_file)
    assert onnx_file.read_bytes() == (paths.models / version / "model.onnx").read_bytes()


@pytest.mark.slow
def test_the_registry_entry_and_model_card_name_the_run(tracked, monkeypatch, capsys):
    paths, version, run = tracked
    monkeypatch.setenv(tracking.SWITCH, "on")
    assert main(["--root", str(paths.root), "--quiet", "register"]) == 0
    assert f"model card added to MLflow run {run.run_id}" in capsys.readouterr().out
    registry = (paths.registry).read_text()
    assert f"run_id: {run.run_id}" in registry
    card = (paths.cards / f"{version}.md").read_text()
    assert f"| MLflow run | {run.run_id} ({tracking.LOCAL_STORE}) |" in card
    stored = {item.path for item in mlflow_client(paths).list_artifacts(run.run_id, "model_card")}
    assert stored == {f"model_card/{version}.md"}


@pytest.mark.slow
def test_register_right_after_train_waits_for_the_run_and_names_it(tmp_path, monkeypatch, capsys):
    paths = Paths(make_workspace(tmp_path / "project"))
    monkeypatch.setenv(tracking.SWITCH, "on")
    report = train(paths)
    folder = paths.models / report.version
    assert (folder / recording.MARKER).is_file(), "train returned only after the run was recorded"
    assert main(["--root", str(paths.root), "register"]) == 0
    out, err = capsys.readouterr()
    assert f"waiting for the MLflow run of model {report.version}" in err
    run = read_json(TrackedRun, folder / "run.json")
    assert f"run_id: {run.run_id}" in paths.registry.read_text()
    assert f"model card added to MLflow run {run.run_id}" in out
    assert mlflow_client(paths).get_run(run.run_id).info.status == "FINISHED"
    assert not (folder / recording.MARKER).exists()
    assert "mlflow" in (folder / recording.LOG).read_text().lower(), "the logger's output is kept"


@pytest.mark.slow
def test_an_unreachable_server_costs_one_warning_and_the_run_is_kept_locally(tmp_path, monkeypatch, capsys):
    paths = Paths(make_workspace(tmp_path / "project"))
    server = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv(tracking.SWITCH, "on")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    started = time.monotonic()
    report = train(paths)
    assert report.passed
    trained = capsys.readouterr().err
    assert main(["--root", str(paths.root), "--quiet", "register"]) == 0  # waits for the recording
    assert time.monotonic() - started < 300
    registered = capsys.readouterr().err
    assert not [line for line in trained.splitlines() if line.startswith("warning:")]
    warnings = [line for line in registered.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1
    assert server in warnings[0] and "local store" in warnings[0]
    run = read_json(TrackedRun, paths.models / report.version / "run.json")
    assert run.fallback_from == server and run.tracking_uri == tracking.LOCAL_STORE
    assert mlflow_client(paths).get_run(run.run_id).info.status == "FINISHED"
    assert f"run_id: {run.run_id}" in paths.registry.read_text()


@pytest.mark.slow
def test_a_run_kept_locally_is_synced_to_the_server_later(tmp_path, monkeypatch, capsys):
    paths = Paths(make_workspace(tmp_path / "project"))
    monkeypatch.chdir(tmp_path)  # the stand-in server's default artifact root lands in tmp_path
    blocker = tmp_path / "server"
    blocker.write_text("a file where the server's folder should be: the server is down")
    server = f"sqlite:///{blocker / 'mlflow.db'}"
    monkeypatch.setenv(tracking.SWITCH, "on")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    report = train(paths)
    assert main(["--root", str(paths.root), "--quiet", "register"]) == 0  # waits for the recording
    kept = read_json(TrackedRun, paths.models / report.version / "run.json")
    assert kept.fallback_from == server

    blocker.unlink()
    blocker.mkdir()  # the server is back
    assert main(["--root", str(paths.root), "track-sync"]) == 0
    assert "1 run(s) synced" in capsys.readouterr().out
    moved = read_json(TrackedRun, paths.models / report.version / "run.json")
    assert moved.tracking_uri == server and moved.fallback_from is None and moved.run_id != kept.run_id
    from mlflow.tracking import MlflowClient

    copy = MlflowClient(tracking_uri=server).get_run(moved.run_id)
    assert copy.data.tags["synced_from_local_run"] == kept.run_id
    assert copy.data.params["model_family"] == "linear"
    stored = {item.path for item in MlflowClient(tracking_uri=server).list_artifacts(moved.run_id)}
    assert {"model.onnx", "model_card"} <= stored
    assert f"run_id: {moved.run_id}" in paths.registry.read_text()
    assert main(["--root", str(paths.root), "track-sync"]) == 0  # nothing left to sync
    assert "no run is waiting" in capsys.readouterr().out


@pytest.mark.slow
def test_tracking_off_writes_no_run(tmp_path, monkeypatch):
    paths = Paths(make_workspace(tmp_path / "project"))
    monkeypatch.setenv(tracking.SWITCH, "off")
    report = train(paths)
    assert not (paths.models / report.version / "run.json").exists()
    assert not (paths.models / report.version / recording.MARKER).exists()
    assert not paths.tracking.exists()


def test_a_bad_tracking_switch_is_refused_naming_the_variable(monkeypatch):
    monkeypatch.setenv(tracking.SWITCH, "maybe")
    with pytest.raises(InputError, match=r"MLFLOW_TRACKING must be 'on' or 'off' \(got 'maybe'\)"):
        tracking.enabled()


def test_the_serving_image_lock_carries_neither_mlflow_nor_optuna():
    lock = (PROJECT / "requirements" / "serve.txt").read_text().lower()
    assert "onnxruntime==" in lock
    assert not re.search(r"^(mlflow|mlflow-skinny|optuna)==", lock, re.M)


def test_recorded_server_addresses_carry_no_credentials():
    assert tracking.public("https://ann:s3cret@mlflow.example:8443/x") == "https://mlflow.example:8443/x"
    assert tracking.public("http://mlflow.internal:5000") == "http://mlflow.internal:5000"
    here = "sqlite:////abs/artifacts/mlflow/mlflow.db"
    assert tracking.public(here, here) == tracking.LOCAL_STORE


@pytest.mark.slow
def test_make_ui_serves_the_mlflow_ui_on_the_local_store(tracked):
    paths, _, _ = tracked
    port = free_port()
    env = {**os.environ, "PORT": str(port)}
    ui = subprocess.Popen(
        [sys.executable, "-m", "governance.cli", "--root", str(paths.root), "ui"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        page = ""
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and ui.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as answer:
                    page = answer.read().decode()
                    break
            except OSError:
                time.sleep(1)
        assert ui.poll() is None, ui.stdout.read().decode() if ui.stdout else ""
        assert "MLflow" in page
    finally:
        os.killpg(ui.pid, 15)
        ui.wait(timeout=30)


def test_the_pr_comment_links_the_run_on_the_teams_server():
    from governance.pr_comment import run_link

    run = TrackedRun(
        run_id="a" * 32, experiment="loan", experiment_id="7", tracking_uri="https://mlflow.example"
    )
    assert run_link(run) == f"[{'a' * 32}](https://mlflow.example/#/experiments/7/runs/{'a' * 32})"


def test_the_pr_comment_names_the_uploaded_store_when_the_run_is_local(workspace_copy):
    from governance.pr_comment import build_report

    paths, version = workspace_copy
    run = TrackedRun(
        run_id="b" * 32,
        experiment="loan",
        experiment_id="1",
        tracking_uri=tracking.LOCAL_STORE,
        fallback_from="https://mlflow.example",
    )
    (paths.models / version / "run.json").write_text(run.model_dump_json())
    report = build_report(paths.root, {})
    assert f"MLflow run: artifact `mlflow-run`, run `{'b' * 32}`" in report
    assert "server https://mlflow.example was unreachable" in report
