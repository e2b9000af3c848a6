"""A team's own code at the seams goes through the whole lifecycle unchanged.

The generated README's "Make it yours" section promises that the estimator is one function
(`ml/estimator.py: build_estimator`) and that everything after it (ONNX export, parity,
gates, the registry, the service) follows on its own. This test holds the promise: it bakes
the defaults, replaces the estimator at the seam with another scikit-learn model that
skl2onnx converts (a decision tree, which none of the offered families is), and runs
data -> train -> register -> serve, then scores a row through the running service.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import BIN, ROOT
from cookiecutter.main import cookiecutter

pytestmark = pytest.mark.slow

SEAM = '''

def build_estimator(family: str, settings: dict[str, Any], seed: int, task: str) -> BaseEstimator:
    """Our own model: a shallow decision tree (the team's edit at the seam; the default bake is binary)."""
    from sklearn.tree import DecisionTreeClassifier

    return DecisionTreeClassifier(max_depth=5, min_samples_leaf=20, random_state=seed)
'''


def project_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("GITHUB_", "MAKE"))}
    env.update(GX_ANALYTICS_ENABLED="false", PATH=f"{BIN}{os.pathsep}{env['PATH']}")
    if (BIN / "uv").exists():
        env["UV"] = str(BIN / "uv")
    return env


def make(project: Path, *targets: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", *targets], cwd=project, env=project_env(), capture_output=True, text=True, timeout=1200
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def post(url: str, document: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(document).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.status, json.loads(answer.read())


def sample_row(project: Path) -> dict:
    """A valid record from the project's own contract: the middle of each range, the first category."""
    contract = yaml.safe_load((project / "data_pipelines" / "contract.yaml").read_text())
    row = {}
    for feature in contract["features"]:
        if feature["kind"] == "numeric":
            middle = (feature.get("min", 0) + feature.get("max", 1)) / 2
            row[feature["name"]] = round(middle) if feature.get("dtype") == "int64" else middle
        else:
            row[feature["name"]] = feature["categories"][0]
    return row


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    baked = Path(
        cookiecutter(
            str(ROOT),
            no_input=True,
            output_dir=str(tmp_path_factory.mktemp("seam")),
            extra_context={"git_init": "no"},
        )
    )
    estimator = baked / "ml" / "estimator.py"
    text = estimator.read_text()
    assert "def build_estimator(" in text, "the estimator seam moved: update the README and this test"
    estimator.write_text(text + SEAM)  # the later definition wins, as a team's edit would
    return baked


def test_a_replaced_estimator_trains_registers_and_serves(project: Path):
    for targets in (("install",), ("data",), ("train",), ("register",)):
        outcome = make(project, *targets)
        assert outcome.returncode == 0, (
            f"make {' '.join(targets)}:\n{outcome.stdout[-3000:]}{outcome.stderr[-3000:]}"
        )
    training = json.loads(next((project / "artifacts" / "models").glob("*/training.json")).read_text())
    assert training["estimator"] == {
        "C": 1.0,
        "max_iter": 1000,
    }  # settings went to the seam, unused by our model
    model = next((project / "artifacts" / "models").glob("*/model.onnx")).read_bytes()
    assert b"TreeEnsembleClassifier" in model, "the exported graph is not the seam's decision tree"
    gates = json.loads(next((project / "artifacts" / "models").glob("*/gates.json")).read_text())
    assert gates["passed"] and {gate["name"] for gate in gates["gates"]} >= {"onnx_parity", "primary_metric"}
    assert "stage: candidate" in (project / "governance" / "registry.yaml").read_text()

    port = free_port()
    server = subprocess.Popen(
        ["make", "serve", f"PORT={port}"],
        cwd=project,
        env={**project_env(), "APP_ENV": "development", "GRPC_PORT": ""},  # REST alone: no fixed gRPC port
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2) as ready:
                    if ready.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "the service did not become ready"
            time.sleep(0.5)
        status, answer = post(f"http://127.0.0.1:{port}/predict", {"records": [sample_row(project)]})
        assert status == 200, answer
        (prediction,) = answer["predictions"]
        assert prediction["label"] in (0, 1)
        assert abs(sum(prediction["probabilities"].values()) - 1.0) < 1e-5
        assert answer["model_version"] == training["version"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
