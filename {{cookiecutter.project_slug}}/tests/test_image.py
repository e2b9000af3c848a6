"""The serving image's build inputs agree with each other and with the deployment manifests.

Building and running the image is `make image image-test` (it needs a container engine);
these checks need none, so they run everywhere and catch the mistakes that would otherwise
surface only in a cluster: a uid or model path the manifests do not expect, a build that
would install more than the serving lock, a missing model reported as a cryptic build error.
"""

import re
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def runtime_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(index for index, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def image_env() -> dict[str, str]:
    env = {}
    for keyword, rest in runtime_stage():
        if keyword == "ENV":
            env.update(re.findall(r"(\w+)=(\S+)", rest))
    return env


def test_base_image_defaults_to_the_official_slim_python_of_the_project():
    python_version = (ROOT / ".python-version").read_text().split()[0]
    first = instructions()[0]
    assert first == ("ARG", f"BASE_IMAGE=python:{python_version}-slim")


def test_the_builder_installs_only_the_hashed_serving_lock():
    installs = [rest for keyword, rest in instructions() if keyword == "RUN" and "pip install" in rest]
    assert len(installs) == 1
    assert "--require-hashes" in installs[0]
    assert "-r wheels/serve.txt" in installs[0]
    copied = [rest for keyword, rest in instructions() if keyword == "COPY" and "requirements/" in rest]
    assert copied == ["requirements/serve.txt build/wheelhouse* ./wheels/"]


def test_the_runtime_stage_copies_only_what_serving_reads():
    sources = []
    for keyword, rest in runtime_stage():
        if keyword == "COPY":
            args = [arg for arg in rest.split() if not arg.startswith("--")]
            sources += args[:-1]
    assert all(not source.startswith(("ml", "monitoring", "tests", ".")) for source in sources), sources
    assert "app/" in sources
    assert "data_pipelines/contract.py" in sources


def test_the_image_runs_as_the_uid_the_manifests_expect():
    users = [rest for keyword, rest in runtime_stage() if keyword == "USER"]
    assert users == ["10001:10001"]
    deployment = yaml.safe_load((ROOT / "deploy/base/deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 10001
    assert all(c["securityContext"]["readOnlyRootFilesystem"] for c in pod["containers"])


def test_the_image_listens_and_finds_its_model_where_the_manifests_say():
    env = image_env()
    assert env["HOST"] == "0.0.0.0"  # noqa: S104 - a container must accept traffic from outside itself
    assert env["MODEL_PATH"] == "/app/model/model.onnx"
    assert env["CAPTURE_URI"].startswith("/tmp/")  # noqa: S108 - the only writable path of a read-only root
    kustomization = (ROOT / "deploy/base/kustomization.yaml").read_text()
    assert f"MODEL_PATH={env['MODEL_PATH']}" in kustomization
    assert f"PORT={env['PORT']}" in kustomization


def test_the_healthcheck_probes_liveness_without_curl():
    healthchecks = [rest for keyword, rest in runtime_stage() if keyword == "HEALTHCHECK"]
    assert len(healthchecks) == 1
    assert "/v2/health/live" in healthchecks[0]
    assert '["python", "-c"' in healthchecks[0]
    assert "curl" not in healthchecks[0] and "wget" not in healthchecks[0]


def test_make_image_without_a_model_says_what_to_run():
    result = subprocess.run(
        ["make", "image", "MODEL_VERSION=no-such-version"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "no model at artifacts/models/no-such-version: run make data train first" in result.stderr
    assert "docker" not in result.stdout
