"""Fixtures of the governance tests: registry entries as governance/registry.yaml holds them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from governance.core.records import Dependence, Explanations, FeatureImportance, Importance

EntryFactory = Callable[..., dict[str, Any]]


def registry_entry(
    version: str = "20240131000000-abcdef12",
    stage: str = "candidate",
    *,
    sha256: str = "0" * 64,
    artifact: str | None = None,
    metrics: dict[str, float] | None = None,
    image_digest: str | None = None,
) -> dict[str, Any]:
    """One entry as `mlops register` writes it (the RegistryEntry schema), as raw YAML data."""
    record: dict[str, Any] = {
        "version": version,
        "model_name": "loan_default_model",
        "model_family": "linear",
        "stage": stage,
        "artifact": {"path": artifact or f"artifacts/models/{version}/model.onnx", "sha256": sha256},
        "data": {"snapshot_id": "0123456789ab", "sha256": "a" * 64, "rows": 2000},
        "contract_sha256": "b" * 64,
        "code_commit": "c" * 40,
        "metrics": metrics or {"roc_auc": 0.8, "accuracy": 0.75},
        "bias": {"sensitive_attribute": "sex", "metric": "selection_rate", "largest_gap": 0.02},
        "gates": {"primary_metric": {"passed": True, "value": 0.8, "threshold": 0.7, "margin": 0.1}},
        "parity": {"max_abs_diff": 1e-7, "labels_equal": True},
        "created_at": "2024-01-31T00:00:00Z",
        "updated_at": "2024-01-31T00:00:00Z",
    }
    if image_digest:
        record["image"] = {"digest": image_digest}
    return record


@pytest.fixture
def make_entry() -> EntryFactory:
    """Build a registry entry's raw data: `make_entry(version, stage, sha256=..., image_digest=...)`."""
    return registry_entry


@pytest.fixture
def write_registry() -> Callable[[Path, list[dict[str, Any]]], Path]:
    """Write governance/registry.yaml under a root, holding exactly these raw entries."""

    def write(root: Path, models: list[dict[str, Any]]) -> Path:
        path = root / "governance" / "registry.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump({"version": 1, "models": models}, sort_keys=False))
        return path

    return write


@pytest.fixture
def champion_explanations() -> Explanations:
    """A binary model's explanations where the champion ranks `income` first and `age` second."""

    def ranking(version: str, values: dict[str, float]) -> Importance:
        features = tuple(
            FeatureImportance(feature=name, mean=mean, std=0.001) for name, mean in values.items()
        )
        return Importance(version=version, score=0.8, features=features)

    curve = Dependence(
        feature="age",
        kind="numeric",
        grid=(20.0, 40.0, 60.0),
        outputs=("P(1)",),
        candidate=((0.2, 0.3, 0.4),),
        champion=((0.25, 0.3, 0.35),),
    )
    colour = Dependence(
        feature="region",
        kind="categorical",
        grid=("north", "south"),
        outputs=("P(1)",),
        candidate=((0.3, 0.1),),
        champion=((0.2, 0.2),),
    )
    return Explanations(
        version="20240131000000-abcdef12",
        metric="roc_auc",
        rows=500,
        dependence_rows=500,
        repeats=3,
        seed=42,
        candidate=ranking("20240131000000-abcdef12", {"age": 0.05, "income": 0.03, "region": -0.001}),
        champion=ranking("20231201000000-00000000", {"income": 0.06, "age": 0.02, "region": 0.0}),
        dependence=(curve, colour),
    )
