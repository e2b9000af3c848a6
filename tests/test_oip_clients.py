"""A served default bake answers NVIDIA's tritonclient, used with its defaults, as it answers /predict.

The Open Inference Protocol promises that KServe-, Seldon- and Triton-style clients work
unchanged. tritonclient is the most common of them, and its defaults are the demanding case:
it sends JSON without a Content-Type, and tensors as binary data (a JSON header of
`Inference-Header-Content-Length` bytes, then raw little-endian bytes), asking for its outputs
the same way. This bakes the defaults, runs `make data train`, serves the model with `make serve` and then
from its container image (`make image`, run read-only as production runs it), and drives each
with `tritonclient.http.InferenceServerClient` as its documentation shows, no header or option
set by hand, and its gRPC port with `tritonclient.grpc.InferenceServerClient`, whose numpy
inputs travel as `raw_input_contents`; the answers must equal `/predict`'s for the same rows,
and capture must hold them whichever transport scored them.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient  # both from requirements/template.txt
import tritonclient.http as httpclient
import yaml
from conftest import bake_defaults, call_json, free_port, project_env, run_make, serving

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Served:
    """A trained default bake's model answering: REST at `base`, gRPC on `grpc_port`; `capture` reads
    the capture files' lines wherever that server writes them."""

    project: Path
    base: str
    grpc_port: int
    model: str
    contract: dict
    capture: Callable[[], list[str]]

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default bake with its model trained (`make install data train`)."""
    project = bake_defaults(tmp_path_factory.mktemp("oip"))
    outcome = run_make(project, "install", "data", "train")
    assert outcome.returncode == 0, outcome.stdout[-3000:] + outcome.stderr[-3000:]
    return project


def served_model(base: str, contract: dict) -> str:
    """The served model's name, from one /predict (which also proves the server answers)."""
    status, answer = call_json(f"{base}/predict", {"records": rows(contract, 1)})
    assert status == 200, answer
    return answer["model_name"]


@contextmanager
def make_serve(project: Path) -> Iterator[Served]:
    grpc_port = free_port()
    with serving(project, project / "serve.log", GRPC_PORT=str(grpc_port)) as base:
        contract = yaml.safe_load((project / "data_pipelines" / "contract.yaml").read_text())

        def capture() -> list[str]:
            files = sorted((project / "artifacts" / "capture").glob("date=*/*.jsonl"))
            return [line for file in files for line in file.read_text().splitlines()]

        yield Served(project, base, grpc_port, served_model(base, contract), contract, capture)


@contextmanager
def image_container(project: Path, engine: dict[str, str], tmp_path: Path) -> Iterator[Served]:
    """`make image` of the trained project, run as production runs it (read-only root, no
    capabilities, the feedback key mounted as the Secret is, both ports published)."""
    env = {key: engine[key] for key in ("DOCKER_HOST", "CONTAINERS_CONF", "BASE_IMAGE") if key in engine}
    tag = f"oip-{uuid.uuid4().hex[:8]}"
    image = f"localhost/oip-clients:{tag}"
    built = run_make(project, "image", "IMAGE=localhost/oip-clients", f"TAG={tag}", timeout=1800, **env)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    keys = tmp_path / "secrets"
    keys.mkdir()
    (keys / "key").write_text(secrets.token_urlsafe(32) + "\n")
    keys.chmod(0o755)
    (keys / "key").chmod(0o644)
    port, grpc_port, name = free_port(), free_port(), f"oip-clients-{tag}"

    def docker(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", *args], env=project_env(**env), capture_output=True, text=True, timeout=300
        )

    started = docker(
        *("run", "--detach", "--name", name, "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL"),
        *("--security-opt", "no-new-privileges", "--env", "CAPTURE_FLUSH_SECONDS=0.2"),
        *("--publish", f"127.0.0.1:{port}:8080", "--publish", f"127.0.0.1:{grpc_port}:8081"),
        *(
            "--volume",
            f"{keys}:/var/run/secrets/feedback:ro",
            "--env",
            "FEEDBACK_KEY_FILE=/var/run/secrets/feedback/key",
        ),
        image,
    )
    try:
        assert started.returncode == 0, started.stderr
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if call_json(f"{base}/v2/health/ready")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, docker("logs", "--tail", "40", name).stderr
            time.sleep(0.5)
        contract = yaml.safe_load((project / "data_pipelines" / "contract.yaml").read_text())

        def capture() -> list[str]:
            found = docker("exec", name, "sh", "-c", "cat /tmp/capture/date=*/*.jsonl 2>/dev/null || true")
            return found.stdout.splitlines()

        yield Served(project, base, grpc_port, served_model(base, contract), contract, capture)
    finally:
        docker("rm", "--force", name)
        docker("image", "rm", image)


@pytest.fixture(scope="module", params=["make serve", "image"])
def served(
    request: pytest.FixtureRequest, trained: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """The trained model served by `make serve`, then by its container image (the engine fixture
    is only asked for then); each stopped before the next starts."""
    if request.param == "make serve":
        with make_serve(trained) as served:
            yield served
    else:
        engine = request.getfixturevalue("engine")
        with image_container(trained, engine, tmp_path_factory.mktemp("image")) as served:
            yield served


def rows(contract: dict, count: int, seed: int = 0) -> list[dict]:
    """Valid records of the contract whose numbers an FP32 tensor holds exactly (quarters)."""
    rng = np.random.default_rng(seed)
    records = []
    for _ in range(count):
        record = {}
        for feature in contract["features"]:
            if feature["kind"] == "numeric":
                low, high = feature.get("min", 0), feature.get("max", 100)
                value = float(rng.uniform(low, high))
                record[feature["name"]] = (
                    min(max(round(value), int(np.ceil(low))), int(high))
                    if feature.get("dtype") == "int64"
                    else min(max(round(value * 4) / 4, low), high)
                )
            else:
                record[feature["name"]] = str(rng.choice(feature["categories"]))
        records.append(record)
    return records


def infer_inputs(contract: dict, records: list[dict], client=httpclient, **options) -> list:
    """One InferInput per feature, [N, 1], typed as the model metadata declares it, filled from numpy
    (`options` empty: the client's defaults, binary tensor data over HTTP, raw contents over gRPC)."""
    inputs = []
    for feature in contract["features"]:
        values = [record[feature["name"]] for record in records]
        numeric = feature["kind"] == "numeric"
        tensor = client.InferInput(feature["name"], [len(records), 1], "FP32" if numeric else "BYTES")
        tensor.set_data_from_numpy(
            np.array(values, dtype=np.float32 if numeric else object).reshape(-1, 1), **options
        )
        inputs.append(tensor)
    return inputs


def assert_matches_predict(served: Served, records: list[dict], result) -> None:
    """tritonclient's decoded outputs equal /predict's answers for the same rows."""
    status, answer = call_json(f"{served.base}/predict", {"records": records})
    assert status == 200, answer
    predictions = answer["predictions"]
    labels = result.as_numpy("label")
    probabilities = result.as_numpy("probabilities")
    assert labels.shape == (len(records),)
    assert probabilities.shape == (len(records), len(served.contract["target"]["classes"]))
    decoded = [label.decode() if isinstance(label, bytes) else label.item() for label in labels]
    assert decoded == [prediction["label"] for prediction in predictions]
    expected = [list(prediction["probabilities"].values()) for prediction in predictions]
    np.testing.assert_allclose(probabilities, np.array(expected), atol=1e-6)


def captured(served: Served, request_id: str) -> list[dict]:
    """The captured features of one request, in row order (waits for the writer's next flush)."""
    deadline = time.monotonic() + 10
    while True:
        lines = [json.loads(line) for line in served.capture() if line]
        found = sorted(
            (line for line in lines if line.get("request_id") == request_id and line["kind"] == "prediction"),
            key=lambda line: line["row"],
        )
        if found or time.monotonic() > deadline:
            return [line["features"] for line in found]
        time.sleep(0.3)


def test_health_and_metadata_through_tritonclient(served: Served):
    client = httpclient.InferenceServerClient(f"127.0.0.1:{served.port}")
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(served.model)
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    metadata = client.get_model_metadata(served.model)
    assert [tensor["name"] for tensor in metadata["inputs"]] == [
        f["name"] for f in served.contract["features"]
    ]
    assert {tensor["name"] for tensor in metadata["outputs"]} == {"label", "probabilities"}


@pytest.mark.parametrize("count", [1, 20])
def test_infer_with_the_clients_defaults_answers_as_predict_and_is_captured(served: Served, count: int):
    client = httpclient.InferenceServerClient(f"127.0.0.1:{served.port}")
    records = rows(served.contract, count, seed=count)
    result = client.infer(served.model, infer_inputs(served.contract, records))  # binary in, binary out
    assert_matches_predict(served, records, result)
    outputs = [httpclient.InferRequestedOutput("label"), httpclient.InferRequestedOutput("probabilities")]
    result = client.infer(served.model, infer_inputs(served.contract, records), outputs=outputs)
    assert_matches_predict(served, records, result)
    assert captured(served, result.get_response()["parameters"]["request_id"]) == records


def test_infer_in_json_answers_as_predict_and_is_captured(served: Served):
    client = httpclient.InferenceServerClient(f"127.0.0.1:{served.port}")
    records = rows(served.contract, 5, seed=7)
    outputs = [
        httpclient.InferRequestedOutput("label", binary_data=False),
        httpclient.InferRequestedOutput("probabilities", binary_data=False),
    ]
    inputs = infer_inputs(served.contract, records, binary_data=False)
    result = client.infer(served.model, inputs, outputs=outputs)
    response = result.get_response()
    assert all("data" in tensor for tensor in response["outputs"]), "asked for JSON outputs"
    assert_matches_predict(served, records, result)
    assert captured(served, response["parameters"]["request_id"]) == records


def test_tritons_grpc_client_with_its_defaults_answers_as_predict_and_is_captured(served: Served):
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{served.grpc_port}")
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(served.model)
    server = client.get_server_metadata(as_json=True)
    assert server["name"] and server["version"]
    metadata = client.get_model_metadata(served.model, as_json=True)
    assert metadata["platform"] == "onnxruntime_onnx"
    assert [tensor["name"] for tensor in metadata["inputs"]] == [
        f["name"] for f in served.contract["features"]
    ]
    for count in (1, 100):
        records = rows(served.contract, count, seed=100 + count)
        result = client.infer(served.model, infer_inputs(served.contract, records, grpcclient))
        assert_matches_predict(served, records, result)
        request_id = result.get_response().parameters["request_id"].string_param
        assert captured(served, request_id) == records


def test_tritons_grpc_client_hears_which_field_is_wrong(served: Served):
    """A client mistake is INVALID_ARGUMENT naming the field; an unknown model is NOT_FOUND."""
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{served.grpc_port}")
    records = rows(served.contract, 1)
    first = next(f["name"] for f in served.contract["features"] if f["kind"] == "numeric")
    records[0][first] = 1e30
    with pytest.raises(grpcclient.InferenceServerException) as caught:
        client.infer(served.model, infer_inputs(served.contract, records, grpcclient))
    assert caught.value.status() == "StatusCode.INVALID_ARGUMENT", caught.value.message()
    assert f"inputs[{first}].data[0]" in caught.value.message()
    with pytest.raises(grpcclient.InferenceServerException) as caught:
        client.is_model_ready("not-this-model")
    assert caught.value.status() == "StatusCode.NOT_FOUND"
