"""The registry accepts only valid entries whose artifact matches its sha256, and writes atomically."""

import copy
import hashlib
import os

import pytest
import yaml

from governance import registry
from governance.registry import RegistryError


@pytest.fixture
def store(tmp_path):
    """An empty registry and one artifact file, laid out like a project."""
    (tmp_path / "governance").mkdir()
    path = tmp_path / "governance" / "registry.yaml"
    path.write_text("version: 1\nmodels: []\n")
    artifact = tmp_path / "artifacts" / "models" / "v1" / "model.onnx"
    artifact.parent.mkdir(parents=True)
    artifact.write_bytes(b"not really onnx, but bytes with a hash")
    return path, artifact


def entry(artifact, version="20240131000000-abcdef12", stage="candidate"):
    return {
        "version": version,
        "model_name": "loan_default_model",
        "model_family": "logistic_regression",
        "stage": stage,
        "artifact": {
            "path": "artifacts/models/v1/model.onnx",
            "sha256": hashlib.sha256(artifact.read_bytes()).hexdigest(),
        },
        "data": {"snapshot_id": "0123456789ab", "sha256": "a" * 64, "rows": 2000},
        "contract_sha256": "b" * 64,
        "code_commit": "c" * 40,
        "metrics": {"roc_auc": 0.8, "accuracy": 0.75},
        "bias": {"sensitive_attribute": "sex", "largest_gap": 0.02},
        "gates": {"primary_metric": {"passed": True, "value": 0.8, "threshold": 0.7, "margin": 0.1}},
        "parity": {"max_abs_diff": 1e-7, "labels_equal": True},
        "created_at": "2024-01-31T00:00:00Z",
        "updated_at": "2024-01-31T00:00:00Z",
    }


def test_a_valid_entry_is_appended_and_read_back(store):
    path, artifact = store
    registry.append(entry(artifact), path)
    loaded = registry.load(path)
    assert [item["version"] for item in loaded["models"]] == ["20240131000000-abcdef12"]
    assert path.read_text().startswith("# The model registry")


def test_it_refuses_an_artifact_whose_sha256_does_not_match(store):
    path, artifact = store
    bad = entry(artifact)
    artifact.write_bytes(b"the file changed after training")
    with pytest.raises(RegistryError, match=r"artifact\.sha256.*must match the file's sha256"):
        registry.append(bad, path)
    assert registry.load(path)["models"] == []


def test_it_refuses_a_missing_artifact(store):
    path, artifact = store
    bad = entry(artifact)
    bad["artifact"]["path"] = "artifacts/models/nope/model.onnx"
    with pytest.raises(RegistryError, match="must name an existing file"):
        registry.append(bad, path)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("stage", "live", "must be one of candidate"),
        ("version", "bad version!", "field 'version'"),
        ("code_commit", "main", "code_commit"),
        ("contract_sha256", "xyz", "contract_sha256"),
        ("metrics", {"roc_auc": "high"}, r"metrics\.roc_auc"),
        ("created_at", "yesterday", "created_at"),
        ("colour", "blue", "'colour' is not a registry field"),
        ("image", {"digest": "latest"}, r"image\.digest"),
    ],
)
def test_it_refuses_an_invalid_field_naming_it(store, field, value, message):
    path, artifact = store
    bad = entry(artifact)
    bad[field] = value
    with pytest.raises(RegistryError, match=message):
        registry.append(bad, path)
    assert registry.load(path)["models"] == []


def test_it_refuses_a_missing_field(store):
    path, artifact = store
    bad = entry(artifact)
    del bad["data"]
    with pytest.raises(RegistryError, match="field 'data' is required"):
        registry.append(bad, path)


def test_it_refuses_a_model_that_failed_a_gate(store):
    path, artifact = store
    bad = entry(artifact)
    bad["gates"]["primary_metric"]["passed"] = False
    with pytest.raises(RegistryError, match="failed a gate is never registered"):
        registry.append(bad, path)


def test_it_refuses_a_duplicate_version(store):
    path, artifact = store
    registry.append(entry(artifact), path)
    with pytest.raises(RegistryError, match="already registered"):
        registry.append(entry(artifact), path)
    assert len(registry.load(path)["models"]) == 1


def test_it_refuses_a_file_with_two_champions(store):
    path, artifact = store
    models = [entry(artifact, "v1", "production"), entry(artifact, "v2", "production")]
    path.write_text(yaml.safe_dump({"version": 1, "models": models}))
    with pytest.raises(RegistryError, match="at most one entry may be in stage 'production'"):
        registry.load(path)


def test_promotion_archives_the_previous_champion(store):
    path, artifact = store
    assert registry.champion(path) is None
    registry.append(entry(artifact, "v1"), path)
    registry.append(entry(artifact, "v2"), path)
    registry.set_stage("v1", "production", path)
    assert registry.champion(path)["version"] == "v1"
    registry.set_stage("v2", "production", path)
    assert registry.champion(path)["version"] == "v2"
    assert registry.get("v1", path)["stage"] == "archived"
    with pytest.raises(RegistryError, match="must be one of"):
        registry.set_stage("v2", "live", path)
    with pytest.raises(RegistryError, match="no model version 'v9'"):
        registry.set_stage("v9", "staging", path)


def test_update_records_an_image_digest_but_never_the_artifact(store):
    path, artifact = store
    registry.append(entry(artifact), path)
    version = entry(artifact)["version"]
    updated = registry.update(version, {"image": {"digest": "sha256:" + "d" * 64}}, path)
    assert registry.get(version, path)["image"] == updated["image"]
    with pytest.raises(RegistryError, match="cannot be changed"):
        registry.update(version, {"artifact": {"path": "x", "sha256": "e" * 64}}, path)


def test_a_failed_write_leaves_the_old_registry_and_no_temporary_file(store, monkeypatch):
    path, artifact = store
    registry.append(entry(artifact, "v1"), path)
    before = path.read_bytes()

    def crash(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        registry.append(entry(artifact, "v2"), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["registry.yaml"]


def test_an_invalid_registry_is_never_written(store):
    path, artifact = store
    before = path.read_bytes()
    broken = {"version": 1, "models": [copy.deepcopy(entry(artifact)) | {"stage": "unknown"}]}
    with pytest.raises(RegistryError):
        registry.save(broken, path)
    assert path.read_bytes() == before


def test_writes_keep_the_file_readable_by_others(store):
    path, artifact = store
    path.chmod(0o644)
    registry.append(entry(artifact), path)
    assert path.stat().st_mode & 0o777 == 0o644


def test_the_project_registry_is_valid():
    registry.load()
