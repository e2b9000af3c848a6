"""Fixtures shared by more than one test package (each package's own live in its conftest.py).

Training is the slow part of the suite, so the trained workspace is built once per session
and handed out read-only (`trained_workspace`) or as a private copy (`workspace_copy`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from governance import github_client
from governance.core.contract import Contract
from governance.core.paths import Paths
from tests.support import training
from tests.support.github_standin import FakeGitHub

# Environment variables the command line reads as option defaults (typer `envvar=`): a test must
# not change behaviour because the shell that runs it (CI, make, the template's demo) sets them.
CLI_ENVIRONMENT = (
    "CAPTURE_URI", "DASK_SCHEDULER_ADDRESS", "DETECTOR", "DOCKER", "ENGINE", "IMAGE_SIZE_BUDGET_MB", "MODEL",
    "MODEL_NAME", "PORT", "PROJECT_ROOT",
    "RETRAIN_MAX_DATA_MB", "VERSION", "TRIALS", "TIMEOUT", "JOBS",
)  # fmt: skip
# Tests never send runs to a team's MLflow server, and only the tracking tests (which turn it on
# with monkeypatch) pay for MLflow: every other `train` in the suite runs with tracking off.
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ["MLFLOW_TRACKING"] = "off"


@pytest.fixture(autouse=True)
def hermetic_cli_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CLI_ENVIRONMENT:
        if name in os.environ:
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def example_contract() -> Contract:
    """The example generator's contract: tests hold whatever contract the project adopts."""
    return training.contract()


@pytest.fixture(scope="session")
def trained_workspace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(root, version): a project-shaped folder where `train` ran once (do not modify it)."""
    return training.trained_workspace(tmp_path_factory.getbasetemp())


@pytest.fixture
def workspace_copy(trained_workspace: tuple[Path, str], tmp_path: Path) -> tuple[Paths, str]:
    """(paths, version): a private copy of the trained workspace, free to register into or edit."""
    root, version = trained_workspace
    return Paths(training.copy_workspace(root, tmp_path / "project")), version


@pytest.fixture
def fake_api(monkeypatch: pytest.MonkeyPatch):
    """The GitHub stand-in served on loopback, with the variables a workflow job would have."""
    fake = FakeGitHub(repository="acme/loan-default-model")
    url, stop = fake.serve()
    monkeypatch.setenv("GITHUB_API_URL", url)
    monkeypatch.setenv("GITHUB_REPOSITORY", fake.repository)
    monkeypatch.setenv("GITHUB_TOKEN", "test-token")
    for variable in ("PR_NUMBER", "JOB_RESULTS", "PR_HEAD_REF", "GITHUB_STEP_SUMMARY", "GITOPS_TOKEN_SET"):
        monkeypatch.delenv(variable, raising=False)  # a CI run's own values must not leak in
    opened = github_client.open_repository
    monkeypatch.setattr(
        github_client, "open_repository", lambda target, **options: opened(target, **options, fast=True)
    )
    yield fake
    stop()
