"""The serving image's build inputs agree with each other and with the deployment manifests.

Building and running the image is `make image image-test` (it needs a container engine);
these checks need none (a stand-in `docker` plays the engine), so they run everywhere and
catch the mistakes that would otherwise surface only in a cluster: a uid or model path the
manifests do not expect, a build that would install more than the serving lock, a build
context carrying more than serving reads, a missing model reported as a cryptic build error.
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from data_pipelines.example import EXAMPLE_CONTRACT
from governance import cli
from governance.core.paths import PATHS, Paths

ROOT = PATHS.root
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
VERSION = "20260101000000-abcdef12"


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
    assert "governance/" in sources  # the staged context holds only governance/core and the policy
    assert "data_pipelines/contract.yaml" in sources
    assert not any(source.endswith(".py") for source in sources if not source.startswith("app/")), sources


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


@pytest.fixture
def project(tmp_path: Path) -> Paths:
    """A copy of this project's serving inputs (and more) with a stand-in model behind `latest`."""
    root = tmp_path / "project"
    for folder in ("app", "governance", "ml", "deploy", "monitoring"):
        shutil.copytree(ROOT / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    kept_files = ("data_pipelines/contract.yaml", "data_pipelines/source.yaml", "requirements/serve.txt")
    for kept in (*kept_files, "requirements/batch.txt"):
        (root / kept).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / kept, root / kept)
    models = root / "artifacts" / "models"
    (models / VERSION).mkdir(parents=True)
    (models / VERSION / "model.onnx").write_bytes(b"onnx")
    (models / "latest").write_text(VERSION + "\n")
    return Paths(root)


def build(project: Paths, docker: Path, *options: str) -> int:
    arguments = ["--root", str(project.root), "image", "--image", "localhost/ldm", "--tag", "t1"]
    return cli.main([*arguments, "--docker", str(docker), *options])


def staged(context: Path) -> set[str]:
    return {path.relative_to(context).as_posix() for path in context.rglob("*") if path.is_file()}


def test_the_build_context_holds_only_what_the_image_copies_readable_by_any_uid(project, fake_docker):
    (project.root / "app" / "__init__.py").chmod(0o600)  # as under a strict umask
    wheelhouse = project.root / "wheels"
    wheelhouse.mkdir()
    (wheelhouse / "onnxruntime-1-cp311-none-any.whl").write_bytes(b"wheel")
    fake_docker.answer("build")
    assert build(project, fake_docker.path, "--wheelhouse", str(wheelhouse)) == 0
    context = project.root / "build" / "image" / "context"
    files = staged(context)
    core = {f"governance/core/{path.name}" for path in (ROOT / "governance" / "core").glob("*.py")}
    app = {
        f"app/{path.relative_to(ROOT / 'app').as_posix()}"
        for path in (ROOT / "app").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert files == {
        *app,
        *core,
        "governance/__init__.py",
        "governance/policy.yaml",
        "data_pipelines/contract.yaml",
        "requirements/serve.txt",
        f"artifacts/models/{VERSION}/model.onnx",
        "build/wheelhouse/onnxruntime-1-cp311-none-any.whl",
    }
    assert all(os.stat(context / name).st_mode & 0o444 == 0o444 for name in files)
    assert all(os.stat(folder).st_mode & 0o555 == 0o555 for folder in context.rglob("*") if folder.is_dir())


def test_the_build_resolves_latest_and_passes_the_build_arguments(project, fake_docker, capsys):
    fake_docker.answer("build")
    assert build(project, fake_docker.path, "--base-image", "localhost/python-base:3.11") == 0
    ((_, *arguments),) = fake_docker.called("build")
    assert arguments[arguments.index("--file") + 1] == str(project.root / "deploy" / "Dockerfile")
    assert arguments[arguments.index("--tag") + 1] == "localhost/ldm:t1"
    build_args = [arguments[index + 1] for index, word in enumerate(arguments) if word == "--build-arg"]
    assert "BASE_IMAGE=localhost/python-base:3.11" in build_args
    assert f"MODEL_VERSION={VERSION}" in build_args
    assert arguments[-1] == str(project.root / "build" / "image" / "context")
    assert not (project.root / "build" / "image" / "context" / "build").exists()  # no wheelhouse given
    assert f"model {VERSION}" in capsys.readouterr().out


def test_the_batch_image_gets_the_command_line_the_monitoring_code_its_lock_and_the_model(
    project, fake_docker
):
    fake_docker.answer("build")
    assert build(project, fake_docker.path, "--kind", "batch", "--image", "localhost/ldm-batch") == 0
    ((_, *arguments),) = fake_docker.called("build")
    assert arguments[arguments.index("--file") + 1] == str(project.root / "deploy" / "batch" / "Dockerfile")
    assert f"MODEL_VERSION={VERSION}" in arguments  # named in every output row (BATCH_MODEL_VERSION)
    context = project.root / "build" / "image-batch" / "context"
    assert arguments[-1] == str(context)
    files = staged(context)
    assert {
        "governance/cli.py",
        "governance/templates/batch_score.html.j2",
        "monitoring/batch_score.py",
    } <= files
    assert {"data_pipelines/contract.yaml", "requirements/batch.txt", "model/model.onnx"} <= files
    assert not any(name.startswith(("app/", "ml/", "artifacts/")) or name.endswith(".pyc") for name in files)
    assert not (project.root / "build" / "image").exists(), "the serving image's context is left alone"


def test_an_unknown_image_kind_is_named_and_nothing_is_built(project, fake_docker, capsys):
    assert build(project, fake_docker.path, "--kind", "gpu") == 2
    assert (
        "--kind: 'gpu' is not an image this project builds (one of serve, batch)" in capsys.readouterr().err
    )
    assert fake_docker.calls == []


def test_a_missing_model_is_named_and_nothing_is_built(project, fake_docker, capsys):
    assert build(project, fake_docker.path, "--version", "no-such-version") == 2
    assert "error: no model at artifacts/models/no-such-version/model.onnx" in capsys.readouterr().err
    assert fake_docker.calls == []


def test_a_failed_build_or_a_missing_engine_exits_2(project, fake_docker, tmp_path, capsys):
    fake_docker.answer("build", code=1, stderr="no space left on device")
    assert build(project, fake_docker.path) == 2
    assert "build` failed with exit code 1" in capsys.readouterr().err
    assert build(project, tmp_path / "no-such-docker") == 2
    assert "no-such-docker` is not on PATH" in capsys.readouterr().err


def test_make_image_without_a_model_says_what_to_run(fake_docker):
    result = subprocess.run(
        ["make", "image", "MODEL_VERSION=no-such-version", "WHEELHOUSE=", f"DOCKER={fake_docker.path}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    # Whether this checkout has trained other versions or none, the answer names the missing model.
    assert re.search(r"no (trained )?model .*run `?make data train", result.stderr), result.stderr
    assert fake_docker.calls == []  # refused before any wheel download or build


# --- the image test, against an engine that has no such image or cannot run it -------------------


@pytest.fixture
def contract_root(tmp_path: Path) -> Path:
    """A project folder holding the example contract: the image test builds its requests from one
    (a project generated from a file has only a draft until `make contract`)."""
    (tmp_path / "data_pipelines").mkdir()
    (tmp_path / "data_pipelines" / "contract.yaml").write_text(yaml.safe_dump(EXAMPLE_CONTRACT))
    return tmp_path


def image_test(docker: Path, root: Path, *options: str) -> int:
    arguments = ["--root", str(root), "image-test", "--image", "localhost/ldm:t1"]
    arguments += ["--model-name", "loan_default"]
    return cli.main([*arguments, "--docker", str(docker), "--timeout", "1", *options])


def test_the_image_test_names_an_image_that_was_never_built(fake_docker, contract_root, capsys):
    fake_docker.answer("image inspect", "[]", code=1, stderr="no such image")
    assert image_test(fake_docker.path, contract_root) == 2
    assert "image localhost/ldm:t1 not found: run `make image` first" in capsys.readouterr().err
    assert fake_docker.called("run") == []


def test_the_image_test_reports_every_failed_check_and_removes_its_containers(
    fake_docker, contract_root, capsys
):
    oversized_root_image = {"Size": 900e6, "Config": {"User": ""}}
    fake_docker.answer("image inspect", json.dumps([oversized_root_image]))
    fake_docker.answer("run", code=125, stderr="port is already allocated")
    fake_docker.answer("rm")
    assert image_test(fake_docker.path, contract_root, "--budget-mb", "300") == 1
    printed = capsys.readouterr()
    assert "FAIL image size within budget: 900 MB exceeds the budget of 300.0 MB" in printed.out
    assert "FAIL the image declares a non-root USER" in printed.out
    assert "port is already allocated" in printed.out
    assert "error: image test of localhost/ldm:t1: a check failed" in printed.err
    ((*_, started),) = [call[: call.index("--name") + 2] for call in fake_docker.called("run")]
    assert fake_docker.called("rm") == [["rm", "--force", started]]
