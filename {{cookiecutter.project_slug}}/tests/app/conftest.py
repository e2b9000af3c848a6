"""Fixtures of the serving tests: the contract, a small ONNX model, settings and a started service.

The builders behind them are in tests/support/serving.py (the serving benchmark reuses them).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from governance.core.contract import Contract, ContractError, load
from governance.core.paths import PATHS
from tests.support import serving


@pytest.fixture(scope="package", autouse=True)
def feedback_key_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The mounted secret a deployment gives the service (FEEDBACK_KEY_FILE), for every serving test.

    Production settings refuse to start without one; the tests that check that remove it.
    """
    path = tmp_path_factory.mktemp("secrets") / "feedback.key"
    path.write_text(secrets.token_urlsafe(32) + "\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FEEDBACK_KEY_FILE", str(path))
        yield path


@pytest.fixture(scope="package", autouse=True)
def rest_only_unless_asked() -> Iterator[None]:
    """GRPC_PORT empty: a service a test starts serves REST alone unless the test names a gRPC port.

    Why: the default port (8081) is one per machine, and suites running side by side (or a
    service already on it) would make `python -m app` fail to start for a reason no test is about.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRPC_PORT", "")
        yield


@pytest.fixture(scope="session")
def contract_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's data contract, or the example generator's while the project has none yet.

    A project generated from a user's file starts with a draft contract without features
    until `make contract` writes one (and the service refuses to start on it); the serving
    machinery is then tested against the example schema instead, with the same tests.
    """
    try:
        load(PATHS.contract)
    except ContractError:
        from data_pipelines.example import EXAMPLE_CONTRACT

        path = tmp_path_factory.mktemp("contract") / "contract.yaml"
        path.write_text(yaml.safe_dump(EXAMPLE_CONTRACT, sort_keys=False))
        return path
    return PATHS.contract


@pytest.fixture(scope="session")
def contract(contract_path: Path) -> Contract:
    return load(contract_path)


@pytest.fixture(scope="session")
def model_file(request: pytest.FixtureRequest, contract: Contract) -> Path:
    """`<models>/<version>/model.onnx` plus the `latest` pointer.

    Importing scikit-learn and skl2onnx and training take seconds, so the model is kept in
    pytest's cache, keyed by the contract and the builders' source: a change to either rebuilds it.
    """
    source = Path(serving.__file__).read_bytes()
    key = hashlib.sha256(contract.digest.encode() + source).hexdigest()[:16]
    cache = getattr(request.config, "cache", None)  # absent under `-p no:cacheprovider`
    if cache is None:
        folder = request.getfixturevalue("tmp_path_factory").mktemp("models")
        return serving.build_model(folder, contract)[0]
    folder = cache.mkdir(f"serving-model-{key}")
    pointer = folder / "latest"
    if pointer.is_file() and (folder / pointer.read_text().strip() / "model.onnx").is_file():
        return folder / pointer.read_text().strip() / "model.onnx"
    path, _ = serving.build_model(folder, contract)
    return path


@pytest.fixture(scope="session")
def labels(contract: Contract) -> list[Any]:
    """Three valid /feedback labels of the contract's task: class values in turn, or numbers."""
    return serving.true_labels(contract, 3)


@pytest.fixture
def settings_for(tmp_path: Path, model_file: Path, contract_path: Path) -> Any:
    """Settings for an app serving the fixture model and capturing into tmp_path/capture."""
    from app.settings import Settings

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "app_env": "production",
            "contract_path": contract_path,
            "model_path": model_file.parent.parent / "latest",
            "capture_uri": str(tmp_path / "capture"),
            "ort_intra_op_threads": 1,
            "capture_flush_seconds": 0.2,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def client(settings_for: Any) -> Iterator[Any]:
    """A TestClient of the fixture-model service, started and stopped through its lifespan."""
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(settings_for())) as test_client:
        yield test_client
