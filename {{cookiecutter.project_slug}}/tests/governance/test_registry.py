"""The registry accepts only valid entries whose artifact matches its sha256, and writes atomically."""

import hashlib
import os

import pytest

from governance import registry
from governance.core.paths import Paths
from governance.core.records import Registry, RegistryEntry
from governance.registry import RegistryError
from tests.support.training import PROJECT

ARTIFACT = "artifacts/models/v1/model.onnx"


@pytest.fixture
def store(tmp_path, write_registry):
    """An empty registry and one artifact file, laid out like a project: (registry path, root, artifact)."""
    path = write_registry(tmp_path, [])
    artifact = tmp_path / ARTIFACT
    artifact.parent.mkdir(parents=True)
    artifact.write_bytes(b"not really onnx, but bytes with a hash")
    return path, tmp_path, artifact


@pytest.fixture
def entry(make_entry, store):
    """Entries whose artifact is the store's file, with its right sha256 (raw, or as a record)."""
    _, _, artifact = store
    sha256 = hashlib.sha256(artifact.read_bytes()).hexdigest()

    def build(version="20240131000000-abcdef12", stage="candidate", raw=False):
        data = make_entry(version, stage, sha256=sha256, artifact=ARTIFACT)
        return data if raw else RegistryEntry.model_validate(data)

    return build


def versions(path):
    return [item.version for item in registry.load(path).models]


def test_a_valid_entry_is_appended_and_read_back(store, entry):
    path, root, _ = store
    registry.append(entry(), path, root)
    assert versions(path) == ["20240131000000-abcdef12"]
    assert registry.get("20240131000000-abcdef12", path) == entry()
    assert path.read_text().startswith("# The model registry")


def test_it_refuses_an_artifact_whose_sha256_does_not_match(store, entry):
    path, root, artifact = store
    bad = entry()
    artifact.write_bytes(b"the file changed after training")
    with pytest.raises(RegistryError, match=r"artifact\.sha256.*must match the file's sha256"):
        registry.append(bad, path, root)
    assert versions(path) == []


def test_it_refuses_a_missing_artifact(store, entry):
    path, root, _ = store
    bad = entry().model_copy(
        update={"artifact": entry().artifact.model_copy(update={"path": "artifacts/models/nope/model.onnx"})}
    )
    with pytest.raises(RegistryError, match="must name an existing file"):
        registry.append(bad, path, root)
    assert versions(path) == []


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("stage", "live", r"field 'models\[0\]\.stage' input should be 'candidate'"),
        ("version", "bad version!", r"field 'models\[0\]\.version'"),
        ("code_commit", "main", r"field 'models\[0\]\.code_commit'"),
        ("contract_sha256", "xyz", r"field 'models\[0\]\.contract_sha256'"),
        ("metrics", {"roc_auc": "high"}, r"field 'models\[0\]\.metrics\.roc_auc.* \(got 'high'\)"),
        ("created_at", "yesterday", r"field 'models\[0\]\.created_at' must be an ISO 8601 timestamp"),
        ("colour", "blue", r"field 'models\[0\]\.colour' is not a known field"),
        ("image", {"digest": "latest"}, r"field 'models\[0\]\.image\.digest'"),
    ],
)
def test_a_registry_file_with_an_invalid_field_is_refused_naming_it(
    store, entry, write_registry, field, value, message
):
    path, root, _ = store
    bad = entry(raw=True)
    bad[field] = value
    write_registry(root, [bad])
    with pytest.raises(RegistryError, match=message) as refused:
        registry.load(path)
    assert str(path) in str(refused.value)


def test_it_refuses_a_missing_field(store, entry, write_registry):
    path, root, _ = store
    bad = entry(raw=True)
    del bad["data"]
    write_registry(root, [bad])
    with pytest.raises(RegistryError, match=r"field 'models\[0\]\.data' field required"):
        registry.load(path)


def test_it_refuses_a_model_that_failed_a_gate(store, entry, write_registry):
    path, root, _ = store
    bad = entry(raw=True)
    bad["gates"]["primary_metric"]["passed"] = False
    write_registry(root, [bad])
    with pytest.raises(RegistryError, match="is registered only with an override reason"):
        registry.load(path)


def test_it_refuses_a_duplicate_version(store, entry):
    path, root, _ = store
    registry.append(entry(), path, root)
    with pytest.raises(RegistryError, match="already registered"):
        registry.append(entry(), path, root)
    assert len(registry.load(path).models) == 1


def test_it_refuses_a_file_with_two_champions(store, entry, write_registry):
    path, root, _ = store
    write_registry(root, [entry("v1", "production", raw=True), entry("v2", "production", raw=True)])
    with pytest.raises(RegistryError, match="at most one entry in stage 'production'"):
        registry.load(path)


def test_promotion_archives_the_previous_champion(store, entry):
    path, root, _ = store
    assert registry.load(path).champion is None
    registry.append(entry("v1"), path, root)
    registry.append(entry("v2"), path, root)
    registry.set_stage("v1", "production", path)
    assert registry.load(path).champion.version == "v1"
    registry.set_stage("v2", "production", path)
    assert registry.load(path).champion.version == "v2"
    assert registry.get("v1", path).stage == "archived"
    with pytest.raises(RegistryError, match="must be one of"):
        registry.set_stage("v2", "live", path)
    with pytest.raises(RegistryError, match="no model version 'v9'"):
        registry.set_stage("v9", "staging", path)


def test_update_records_an_image_digest_but_never_the_artifact(store, entry):
    path, root, _ = store
    version = registry.append(entry(), path, root).version
    updated = registry.update(version, {"image": {"digest": "sha256:" + "d" * 64}}, path)
    assert registry.get(version, path).image == updated.image
    assert updated.image.digest == "sha256:" + "d" * 64
    with pytest.raises(RegistryError, match="cannot be changed"):
        registry.update(version, {"artifact": {"path": "x", "sha256": "e" * 64}}, path)


def test_rerunning_the_same_change_leaves_the_file_byte_for_byte(store, entry):
    """A bot that re-runs (a retried workflow) must not produce a new commit: no fresh updated_at."""
    path, root, _ = store
    version = registry.append(entry(), path, root).version
    digest = {"image": {"digest": "sha256:" + "d" * 64}}
    registry.update(version, digest, path)
    registry.set_stage(version, "staging", path)
    before = path.read_bytes()
    registry.update(version, digest, path)
    registry.set_stage(version, "staging", path)
    assert path.read_bytes() == before
    registry.set_stage(version, "production", path)
    assert path.read_bytes() != before, "a real change is still written"


def test_an_update_that_breaks_a_field_is_refused_naming_it(store, entry):
    path, root, _ = store
    version = registry.append(entry(), path, root).version
    before = path.read_bytes()
    with pytest.raises(RegistryError, match=r"image\.digest"):
        registry.update(version, {"image": {"digest": "latest"}}, path)
    assert path.read_bytes() == before


def test_a_failed_write_leaves_the_old_registry_and_no_temporary_file(store, entry, monkeypatch):
    path, root, _ = store
    registry.append(entry("v1"), path, root)
    before = path.read_bytes()

    def crash(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        registry.append(entry("v2"), path, root)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["registry.yaml"]


def test_an_invalid_registry_is_never_written(store, entry):
    path, _, _ = store
    before = path.read_bytes()
    # Records are validated when built; model_copy skips that, as a careless caller might.
    broken = Registry.model_construct(version=1, models=(entry().model_copy(update={"stage": "unknown"}),))
    with pytest.raises(RegistryError, match="stage"):
        registry.save(broken, path)
    assert path.read_bytes() == before


def test_writes_keep_the_file_readable_by_others(store, entry):
    path, root, _ = store
    path.chmod(0o644)
    registry.append(entry(), path, root)
    assert path.stat().st_mode & 0o777 == 0o644


def test_the_project_registry_is_valid():
    assert isinstance(registry.load(Paths(PROJECT).registry), Registry)
