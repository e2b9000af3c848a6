"""Run the serving image the way production runs it and check it from the outside.

Why a separate test: unit tests exercise the app in-process; only a real container shows
that the image starts as a non-root user on a read-only root filesystem, that the model and
the contract made it into the image, and that probes and clients reach it through a port.
`make image-test` runs this after `make image`; CI runs the same target.

It talks to the engine with the `docker` CLI only (a Docker daemon, or podman's Docker API
through DOCKER_HOST), builds its requests from the data contract, runs every check even when
an earlier one fails, prints one line per check, and always removes its containers.
"""

# The engine is driven through the docker CLI with argument lists (never a shell), the URLs
# are built from a loopback port chosen here, and /tmp paths are inside the container (its
# tmpfs), so subprocess, urlopen and those paths are intended.
# ruff: noqa: S108, S310, S603

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from governance.core.contract import Contract, Feature, load
from governance.core.errors import InputError

CONTAINER_PORT = 8080
GRPC_CONTAINER_PORT = 8081  # the image's GRPC_PORT: the Open Inference Protocol over gRPC
GRPC_SERVICE = "inference.GRPCInferenceService"
SECRETS_MOUNT = "/var/run/secrets/feedback"  # where deploy/base/deployment.yaml mounts the Secret
EXPECTED_UID = 10001
ARBITRARY_UID = "4242:4242"  # OpenShift-style clusters run images under a uid they pick


class CheckFailed(AssertionError):
    """One check's finding; the runner prints it and goes on with the next check."""


def docker(*args: str, docker_cli: str = "docker", timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([docker_cli, *args], capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http(method: str, url: str, body: Any = None, timeout: float = 10) -> tuple[int, Any]:
    """(status, parsed JSON or text); HTTP errors are answers too, not exceptions."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def sample_value(feature: Feature, row: int) -> Any:
    """A valid value for one feature: inside the contract's range, or one of its categories."""
    if feature.kind == "categorical":
        return feature.categories[row % len(feature.categories)]
    low = feature.min if feature.min is not None else 0
    high = feature.max if feature.max is not None else low + 100
    value = low + (high - low) * (0.25, 0.5, 0.75)[row % 3]
    return round(value) if feature.dtype.startswith("int") else float(value)


def sample_records(contract: Contract, rows: int) -> list[dict[str, Any]]:
    records = [{f.name: sample_value(f, row) for f in contract.features} for row in range(rows)]
    if contract.sensitive and contract.sensitive.categories:
        for row, record in enumerate(records):
            categories = contract.sensitive.categories
            record[contract.sensitive.name] = categories[row % len(categories)]
    return records


def infer_request(contract: Contract, records: list[dict[str, Any]], request_id: str) -> dict[str, Any]:
    inputs = [
        {
            "name": f.name,
            "shape": [len(records), 1],
            "datatype": "BYTES" if f.kind == "categorical" else "FP32",
            "data": [record[f.name] for record in records],
        }
        for f in contract.features
    ]
    return {"id": request_id, "inputs": inputs}


class ImageTest:
    """The checks, in the order an operator would reason about them."""

    def __init__(self, args: argparse.Namespace, contract: Contract) -> None:
        self.args = args
        self.contract = contract
        self.port = args.port or free_port()
        self.grpc_port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.name = f"image-test-{uuid.uuid4().hex[:8]}"
        self.containers: list[str] = []
        self.failures: list[str] = []
        self.model_name = args.model_name
        self.secrets: Path | None = None

    def feedback_key(self) -> Path:
        """A folder holding a fresh feedback token key, mounted read-only as the Secret is in Kubernetes.

        The image runs with APP_ENV=production, which refuses to start without FEEDBACK_KEY_FILE.
        """
        if self.secrets is None:
            self.secrets = Path(tempfile.mkdtemp(prefix="image-test-secrets-"))
            (self.secrets / "key").write_text(secrets.token_urlsafe(32) + "\n")
            # Readable by the image's user and an arbitrary uid through the bind mount.
            self.secrets.chmod(0o755)
            (self.secrets / "key").chmod(0o644)
        return self.secrets

    def docker(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return docker(*args, docker_cli=self.args.docker, timeout=timeout)

    def check(self, title: str, step: Callable[[], str | None]) -> None:
        started = time.perf_counter()
        try:
            detail = step()
        except (CheckFailed, OSError, subprocess.SubprocessError, KeyError, TypeError, ValueError) as error:
            self.failures.append(title)
            print(f"  FAIL {title}: {error}", flush=True)
            return
        took = time.perf_counter() - started
        print(f"  ok   {title}{f': {detail}' if detail else ''} ({took:.1f} s)", flush=True)

    # -- the image itself --------------------------------------------------------------------
    def inspect_image(self) -> dict[str, Any]:
        try:
            found = self.docker("image", "inspect", self.args.image)
        except OSError:
            raise InputError(
                f"image-test: no container engine: `{self.args.docker}` is not on PATH "
                "(DOCKER=<client> names another one)"
            ) from None
        if found.returncode != 0:
            raise InputError(f"image-test: image {self.args.image} not found: run `make image` first")
        return json.loads(found.stdout)[0]

    def size_within_budget(self, image: dict[str, Any]) -> str:
        size_mb = image["Size"] / 1e6
        print(f"  image size: {size_mb:.0f} MB (budget {self.args.budget_mb} MB)", flush=True)
        if size_mb > self.args.budget_mb:
            raise CheckFailed(f"{size_mb:.0f} MB exceeds the budget of {self.args.budget_mb} MB")
        return f"{size_mb:.0f} MB <= {self.args.budget_mb} MB"

    def declares_non_root_user(self, image: dict[str, Any]) -> str:
        user = (image.get("Config") or {}).get("User") or ""
        if user.split(":")[0] in ("", "0", "root"):
            raise CheckFailed(f"the image's USER is {user or 'unset (root)'}")
        return f"USER {user}"

    # -- a running container -----------------------------------------------------------------
    def start(self, name: str, port: int, user: str | None = None, grpc_port: int | None = None) -> None:
        args = [
            "run",
            "--detach",
            "--name",
            name,
            "--read-only",
            "--tmpfs",
            "/tmp",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--publish",
            f"127.0.0.1:{port}:{CONTAINER_PORT}",
            "--env",
            f"CAPTURE_FLUSH_SECONDS={self.args.flush_seconds}",
            "--volume",
            f"{self.feedback_key()}:{SECRETS_MOUNT}:ro",
            "--env",
            f"FEEDBACK_KEY_FILE={SECRETS_MOUNT}/key",
        ]
        if grpc_port:
            args += ["--publish", f"127.0.0.1:{grpc_port}:{GRPC_CONTAINER_PORT}"]
        if self.model_name:
            args += ["--env", f"MODEL_NAME={self.model_name}"]
        if user:
            args += ["--user", user]
        self.containers.append(name)  # before the run: a container created but not started is removed too
        started = self.docker(*args, self.args.image)
        if started.returncode != 0:
            raise CheckFailed(f"`{self.args.docker} run` failed: {started.stderr.strip()}")

    def start_and_wait(
        self, name: str, port: int, user: str | None = None, grpc_port: int | None = None
    ) -> str:
        self.start(name, port, user, grpc_port)
        return self.wait_ready(name, f"http://127.0.0.1:{port}")

    def wait_ready(self, name: str, base: str) -> str:
        deadline = time.monotonic() + self.args.timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if not self.running(name):
                raise CheckFailed(f"the container exited before it was ready; its log:\n{self.logs(name)}")
            try:
                status, _ = http("GET", f"{base}/v2/health/ready", timeout=2)
                if status == 200:
                    return f"ready after {self.args.timeout - (deadline - time.monotonic()):.1f} s"
                last = f"HTTP {status}"
            except OSError as error:
                last = str(error)
            time.sleep(0.25)
        raise CheckFailed(f"not ready within {self.args.timeout} s ({last}); its log:\n{self.logs(name)}")

    def running(self, name: str) -> bool:
        state = self.docker("container", "inspect", name)
        return state.returncode == 0 and bool(json.loads(state.stdout)[0]["State"].get("Running"))

    def logs(self, name: str) -> str:
        out = self.docker("logs", "--tail", "40", name)
        return (out.stdout + out.stderr).strip()

    def health_endpoints(self) -> str:
        for path in ("/v2/health/live", "/v2/health/ready", "/v2"):
            status, body = http("GET", self.base + path)
            if status != 200:
                raise CheckFailed(f"GET {path} answered {status}: {body}")
        status, body = http("GET", self.base + "/metrics")
        if status != 200:
            raise CheckFailed(f"GET /metrics answered {status}")
        return "/v2/health/live, /v2/health/ready, /v2 and /metrics answer 200"

    def model_metadata(self) -> str:
        if not self.model_name:
            raise CheckFailed("no model name: pass --model-name or set MODEL_NAME")
        status, body = http("GET", f"{self.base}/v2/models/{self.model_name}")
        if status != 200:
            raise CheckFailed(f"GET /v2/models/{self.model_name} answered {status}: {body}")
        inputs = [tensor["name"] for tensor in body["inputs"]]
        if inputs != self.contract.feature_names:
            raise CheckFailed(f"model inputs {inputs} differ from the contract {self.contract.feature_names}")
        outputs = [tensor["name"] for tensor in body["outputs"]]
        expected = ["label", "probabilities"] if self.contract.target.is_classification else ["value"]
        if outputs != expected:
            raise CheckFailed(
                f"a {self.contract.task} model answers {expected}; the metadata declares {outputs}"
            )
        version = body["versions"]
        return f"{self.model_name} {version}: {len(inputs)} inputs in contract order, outputs {outputs}"

    def oip_infer(self) -> str:
        records = sample_records(self.contract, 2)
        request_id = f"image-test-{uuid.uuid4().hex[:6]}"
        url = f"{self.base}/v2/models/{self.model_name}/infer"
        status, body = http("POST", url, infer_request(self.contract, records, request_id))
        if status != 200:
            raise CheckFailed(f"POST {url} answered {status}: {body}")
        if body.get("id") != request_id:
            raise CheckFailed(f"request id not echoed: sent {request_id}, got {body.get('id')}")
        outputs = {tensor["name"]: tensor for tensor in body["outputs"]}
        shapes = [(t["name"], t["datatype"], t["shape"]) for t in body["outputs"]]
        target = self.contract.target
        if not target.is_classification:
            value = outputs.get("value")
            if value is None or value["shape"] != [2] or len(value["data"]) != 2:
                raise CheckFailed(f"a regressor answers value [2] for 2 rows; got {shapes}")
            return f"2 rows -> values {value['data']}"
        classes = len(target.classes)
        probabilities, label = outputs.get("probabilities"), outputs.get("label")
        if probabilities is None or label is None:
            raise CheckFailed(f"a classifier answers label and probabilities; got {shapes}")
        if probabilities["shape"] != [2, classes] or label["shape"] != [2]:
            raise CheckFailed(f"expected label [2] and probabilities [2, {classes}]; got {shapes}")
        if any(value not in target.classes for value in label["data"]):
            raise CheckFailed(
                f"labels {label['data']} are not classes of the contract {list(target.classes)}"
            )
        data = probabilities["data"]
        if any(abs(sum(data[row * classes : (row + 1) * classes]) - 1) > 1e-4 for row in range(2)):
            raise CheckFailed(f"class probabilities do not sum to 1: {data}")
        return f"2 rows -> labels {label['data']}"

    def grpc_serving(self) -> str:
        """The gRPC port answers: grpc.health.v1 (the pod's liveness probe) and the OIP service."""
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        target = f"127.0.0.1:{self.grpc_port}"
        try:
            with grpc.insecure_channel(target) as channel:
                health = health_pb2_grpc.HealthStub(channel)
                for service in ("", GRPC_SERVICE):
                    answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
                    if answer.status != health_pb2.HealthCheckResponse.SERVING:
                        raise CheckFailed(f"grpc.health.v1 Check({service!r}) answered {answer.status}")
                # ServerReadyRequest is empty; ServerReadyResponse{ready: true} is field 1 = 1.
                ready = channel.unary_unary(f"/{GRPC_SERVICE}/ServerReady")(b"", timeout=10)
        except grpc.RpcError as error:
            raise CheckFailed(f"gRPC on {target}: {error.code()} {error.details()}") from None
        if ready != b"\x08\x01":
            raise CheckFailed(f"ServerReady answered {ready!r}, not ready=true")
        return f"grpc.health.v1 SERVING and ServerReady on {target}"

    def predict(self) -> str:
        status, body = http("POST", self.base + "/predict", {"records": sample_records(self.contract, 3)})
        if status != 200:
            raise CheckFailed(f"POST /predict answered {status}: {body}")
        text = json.dumps(body)
        for word in ("model_version", "request_id"):
            if word not in text:
                raise CheckFailed(f"the answer names no {word}: {text[:300]}")
        target = self.contract.target
        expected = (
            {"label", "probabilities", "feedback_token"}
            if target.is_classification
            else {"value", "feedback_token"}
        )
        for prediction in body.get("predictions", []):
            if set(prediction) != expected:
                raise CheckFailed(f"a {self.contract.task} prediction holds {sorted(expected)}: {text[:300]}")
            if target.is_classification and list(prediction["probabilities"]) != list(target.class_keys):
                raise CheckFailed(
                    f"probabilities must name every class {list(target.class_keys)}: {text[:300]}"
                )
        return f"3 records scored: {text[:120]}..."

    def true_label(self) -> Any:
        """A valid label of the contract's task: its first class, or a number."""
        target = self.contract.target
        return target.classes[0] if target.is_classification else 1.0

    def feedback_needs_the_token(self) -> str:
        status, body = http("POST", self.base + "/predict", {"records": sample_records(self.contract, 1)})
        if status != 200:
            raise CheckFailed(f"POST /predict answered {status}: {body}")
        token = body["predictions"][0].get("feedback_token")
        if not token:
            raise CheckFailed(f"the prediction carries no feedback_token: {json.dumps(body)[:300]}")
        label = self.true_label()
        status, answer = http("POST", self.base + "/feedback", {"feedback_token": token, "label": label})
        if status != 202:
            raise CheckFailed(f"POST /feedback with the prediction's token answered {status}: {answer}")
        named, _, tag = token.rpartition(".")
        forged = f"{named}.{'A' * len(tag)}"
        status, answer = http("POST", self.base + "/feedback", {"feedback_token": forged, "label": label})
        if status != 403:
            raise CheckFailed(f"a forged feedback_token answered {status}, not 403: {answer}")
        return "the prediction's token is accepted (202), a forged one refused (403)"

    def bad_input_is_4xx(self) -> str:
        status, body = http("POST", self.base + "/predict", {"records": []})
        if not 400 <= status < 500:
            raise CheckFailed(f"an empty batch answered {status}: {body}")
        return f"an empty batch answers {status}"

    def runs_as_non_root(self) -> str:
        status = self.docker("exec", self.name, "cat", "/proc/1/status")
        if status.returncode != 0:
            raise CheckFailed(f"cannot read the main process's status: {status.stderr.strip()}")
        uids = next(line.split()[1:] for line in status.stdout.splitlines() if line.startswith("Uid:"))
        if "0" in uids:
            raise CheckFailed(f"the service runs with uid {uids}")
        if int(uids[0]) != EXPECTED_UID:
            raise CheckFailed(f"the service runs as uid {uids[0]}, the manifests expect {EXPECTED_UID}")
        return f"main process uid {uids[0]}"

    def root_filesystem_is_read_only(self) -> str:
        inspected = json.loads(self.docker("inspect", self.name).stdout)[0]
        if not inspected["HostConfig"].get("ReadonlyRootfs"):
            raise CheckFailed("the container was not started with a read-only root")
        # As root, so a refusal can only come from the read-only mount, not from file permissions.
        for path in ("/probe", "/app/probe", "/opt/venv/probe"):
            wrote = self.docker("exec", "--user", "0", self.name, "touch", path)
            if wrote.returncode == 0:
                raise CheckFailed(f"root could write {path}")
            if "read-only" not in (wrote.stdout + wrote.stderr).lower():
                raise CheckFailed(f"writing {path} failed, but not as read-only: {wrote.stderr.strip()}")
        scratch = self.docker("exec", self.name, "touch", "/tmp/probe")
        if scratch.returncode != 0:
            raise CheckFailed(f"the tmpfs /tmp is not writable: {scratch.stderr.strip()}")
        return "writes to /, /app and /opt/venv fail with EROFS; /tmp is writable"

    def healthcheck_passes(self) -> str:
        # Read from the container: podman's Docker API omits it from `image inspect`.
        inspected = json.loads(self.docker("container", "inspect", self.name).stdout)[0]
        test = (inspected["Config"].get("Healthcheck") or {}).get("Test") or []
        if not any("/v2/health/live" in part for part in test):
            raise CheckFailed(f"no HEALTHCHECK on /v2/health/live (found {test})")
        command = test[1:] if test[0] == "CMD" else ["sh", "-c", test[1]]
        ran = self.docker("exec", self.name, *command)
        if ran.returncode != 0:
            raise CheckFailed(f"the HEALTHCHECK command failed: {ran.stderr.strip()[-300:]}")
        return "HEALTHCHECK on /v2/health/live exits 0"

    def capture_written(self) -> str:
        deadline = time.monotonic() + self.args.flush_seconds + 5
        while time.monotonic() < deadline:
            found = self.docker("exec", self.name, "find", "/tmp/capture", "-name", "*.jsonl", "-size", "+0")
            if found.returncode == 0 and found.stdout.strip():
                return f"captured rows in {found.stdout.split()[0]}"
            time.sleep(0.5)
        raise CheckFailed("no capture file under /tmp/capture (CAPTURE_URI) after scoring")

    def arbitrary_uid(self) -> str:
        name, port = f"{self.name}-uid", free_port()
        return f"--user {ARBITRARY_UID}: {self.start_and_wait(name, port, user=ARBITRARY_UID)}"

    def cleanup(self) -> None:
        for name in self.containers:
            self.docker("rm", "--force", name, timeout=60)
        if self.secrets is not None:
            shutil.rmtree(self.secrets, ignore_errors=True)

    def run(self) -> int:
        print(f"image-test: {self.args.image}", flush=True)
        image = self.inspect_image()
        self.check("image size within budget", lambda: self.size_within_budget(image))
        self.check("the image declares a non-root USER", lambda: self.declares_non_root_user(image))
        try:
            title = f"starts read-only on 127.0.0.1:{self.port}"
            self.check(title, lambda: self.start_and_wait(self.name, self.port, grpc_port=self.grpc_port))
            if title in self.failures:
                return self.report()
            self.check("health, readiness and metrics", self.health_endpoints)
            self.check("model metadata matches the contract", self.model_metadata)
            self.check("OIP infer call", self.oip_infer)
            self.check("OIP over gRPC: health and readiness", self.grpc_serving)
            self.check("/predict call", self.predict)
            self.check("/feedback takes the prediction's token only", self.feedback_needs_the_token)
            self.check("bad input gets a 4xx", self.bad_input_is_4xx)
            self.check("runs as non-root", self.runs_as_non_root)
            self.check("read-only root filesystem", self.root_filesystem_is_read_only)
            self.check("HEALTHCHECK declared and passing", self.healthcheck_passes)
            self.check("capture lands on the writable tmpfs", self.capture_written)
            if not self.args.skip_arbitrary_uid:
                self.check("starts under an arbitrary uid", self.arbitrary_uid)
        finally:
            self.cleanup()
        return self.report()

    def report(self) -> int:
        if self.failures:
            print(f"image-test: FAILED {len(self.failures)} check(s): {', '.join(self.failures)}", flush=True)
            return 1
        print("image-test: all checks passed", flush=True)
        return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True, help="image reference, e.g. registry/name:tag")
    parser.add_argument("--model-name", default=os.environ.get("MODEL_NAME", ""), help="served model name")
    parser.add_argument(
        "--budget-mb",
        type=float,
        default=float(os.environ.get("IMAGE_SIZE_BUDGET_MB", "350")),
        help="largest acceptable image size in MB (default 350, env IMAGE_SIZE_BUDGET_MB)",
    )
    parser.add_argument("--docker", default=os.environ.get("DOCKER", "docker"), help="the docker CLI to call")
    parser.add_argument("--port", type=int, default=0, help="host port (default: a free one)")
    parser.add_argument("--timeout", type=float, default=60, help="seconds to wait for readiness")
    parser.add_argument(
        "--flush-seconds", type=float, default=1.0, help="CAPTURE_FLUSH_SECONDS in the container"
    )
    parser.add_argument("--skip-arbitrary-uid", action="store_true", help="skip the run under a random uid")
    return parser.parse_args(argv)


def run(contract: Path | str | None = None, **options: Any) -> int:
    """`make image-test`: the checks with the given options (the names of parse_args' flags).

    `contract` is the data contract the image was built with (default: this project's); the
    requests are made from it. Returns 0 when every check passed, 1 when one failed.
    """
    defaults = vars(parse_args(["--image", str(options.get("image", ""))]))
    return ImageTest(argparse.Namespace(**{**defaults, **options}), load(contract)).run()
