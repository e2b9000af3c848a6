"""A baked project's `make serve` answers Triton's own gRPC client, unchanged, as REST answers.

OIP servers are reached over gRPC by clients built for Triton and KServe; this test bakes the
defaults, runs `make data train` and `make serve` (REST on PORT, gRPC on GRPC_PORT), and drives
the gRPC port with `tritonclient.grpc.InferenceServerClient` at its defaults: health, metadata,
and inference with numpy arrays (`set_data_from_numpy`, which sends raw_input_contents). The
answers must be the ones REST /predict gives for the same rows.
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

import numpy as np
import pytest
import yaml
from conftest import BIN, ROOT
from cookiecutter.main import cookiecutter

pytestmark = pytest.mark.slow
grpcclient = pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] is in the template's tools")


def project_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("GITHUB_", "MAKE"))}
    env.update(GX_ANALYTICS_ENABLED="false", PATH=f"{BIN}{os.pathsep}{env['PATH']}")
    if (BIN / "uv").exists():
        env["UV"] = str(BIN / "uv")
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rows(project: Path, count: int) -> list[dict]:
    """Valid records from the project's contract: spread over each range, categories in turn."""
    contract = yaml.safe_load((project / "data_pipelines" / "contract.yaml").read_text())
    records = []
    for index in range(count):
        share = (index + 0.5) / count
        record = {}
        for feature in contract["features"]:
            if feature["kind"] == "numeric":
                low, high = feature.get("min", 0), feature.get("max", 100)
                value = low + share * (high - low)
                record[feature["name"]] = round(value) if feature.get("dtype") == "int64" else round(value, 2)
            else:
                categories = feature["categories"]
                record[feature["name"]] = categories[index % len(categories)]
        records.append(record)
    return records


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    """(project, REST port, gRPC port) of a running `make serve` in a freshly baked, trained project."""
    project = Path(
        cookiecutter(
            str(ROOT),
            no_input=True,
            output_dir=str(tmp_path_factory.mktemp("grpc")),
            extra_context={"git_init": "no"},
        )
    )
    for target in ("install", "data", "train"):
        outcome = subprocess.run(
            ["make", target], cwd=project, env=project_env(), capture_output=True, text=True, timeout=1200
        )
        assert outcome.returncode == 0, f"make {target}:\n{outcome.stdout[-3000:]}{outcome.stderr[-3000:]}"
    port, grpc_port = free_port(), free_port()
    log = project / "serve.log"
    env = {**project_env(), "APP_ENV": "development", "PORT": str(port), "GRPC_PORT": str(grpc_port)}
    with log.open("w") as output:
        server = subprocess.Popen(
            ["make", "serve"],
            cwd=project,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2) as ready:
                    if ready.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, f"make serve exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"make serve never turned ready:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        yield project, port, grpc_port
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


def predict(port: int, records: list[dict]) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/predict",
        data=json.dumps({"records": records}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def numpy_inputs(metadata: dict, records: list[dict]) -> list:
    """One InferInput per model input, [N, 1], from numpy arrays as a Triton client builds them."""
    inputs = []
    for tensor in metadata["inputs"]:
        values = [record[tensor["name"]] for record in records]
        kind = np.object_ if tensor["datatype"] == "BYTES" else np.float32
        item = grpcclient.InferInput(tensor["name"], [len(records), 1], tensor["datatype"])
        item.set_data_from_numpy(np.array(values, dtype=kind).reshape(len(records), 1))
        inputs.append(item)
    return inputs


def test_tritons_grpc_client_gets_the_answers_rest_gives(served):
    project, port, grpc_port = served
    model_name = predict(port, rows(project, 1))["model_name"]
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(model_name)
    server = client.get_server_metadata(as_json=True)
    assert server["name"] and server["version"]
    metadata = client.get_model_metadata(model_name, as_json=True)
    assert metadata["name"] == model_name and metadata["platform"] == "onnxruntime_onnx"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/{model_name}", timeout=5) as answer:
        rest_metadata = json.loads(answer.read())
    assert [item["name"] for item in metadata["inputs"]] == [item["name"] for item in rest_metadata["inputs"]]

    for count in (1, 100):
        records = rows(project, count)
        answer = client.infer(model_name, numpy_inputs(metadata, records))
        want = predict(port, records)["predictions"]
        labels, probabilities = answer.as_numpy("label"), answer.as_numpy("probabilities")
        assert labels.shape == (count,) and probabilities.shape[0] == count
        assert labels.tolist() == [item["label"] for item in want]
        expected = np.array([list(item["probabilities"].values()) for item in want])
        assert np.allclose(probabilities, expected, rtol=0, atol=1e-6)
        tokens = answer.get_response().parameters["feedback_tokens"].string_param.split(",")
        assert len(tokens) == count

    # A client mistake is INVALID_ARGUMENT naming the field; an unknown model is NOT_FOUND.
    records = rows(project, 1)
    first = next(t["name"] for t in metadata["inputs"] if t["datatype"] != "BYTES")
    records[0][first] = 1e30
    with pytest.raises(grpcclient.InferenceServerException) as caught:
        client.infer(model_name, numpy_inputs(metadata, records))
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT", caught.value.message()
    assert f"inputs[{first}].data[0]" in caught.value.message()
    with pytest.raises(grpcclient.InferenceServerException) as caught:
        client.is_model_ready("not-this-model")
    assert caught.value.status() == "StatusCode.NOT_FOUND"
