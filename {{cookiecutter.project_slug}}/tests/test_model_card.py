"""`register` writes a model card from the registry entry: intended use, data, metrics, bias,
limitations and lineage, with the same numbers as the registry."""

import json

import pytest

from data_pipelines.contract import load as load_contract
from governance import model_card, registry
from ml import cli
from tests.ml_support import contract, copy_workspace


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    root, version = copy_workspace(tmp_path_factory, "registered")
    assert cli.main(["register", "--root", str(root)]) == 0
    return root, version


def test_register_adds_a_candidate_whose_sha256_matches_the_artifact(registered):
    root, version = registered
    entry = registry.get(version, root / "governance" / "registry.yaml")
    assert entry["stage"] == "candidate"
    registry.verify_artifact(entry, root)
    assert entry["contract_sha256"] == load_contract(root / "data_pipelines" / "contract.yaml").digest
    manifest = json.loads(
        (root / "artifacts" / "snapshots" / entry["data"]["snapshot_id"] / "manifest.json").read_text()
    )
    assert entry["data"]["sha256"] == manifest["sha256"]
    assert entry["code_commit"] == "unknown" or len(entry["code_commit"]) in (40, 64)


def test_register_twice_is_a_no_op(registered, capsys):
    root, _ = registered
    before = (root / "governance" / "registry.yaml").read_bytes()
    assert cli.main(["register", "--root", str(root)]) == 0
    assert "already registered" in capsys.readouterr().out
    assert (root / "governance" / "registry.yaml").read_bytes() == before


def test_the_card_has_every_section_and_the_registered_numbers(registered):
    root, version = registered
    entry = registry.get(version, root / "governance" / "registry.yaml")
    text = (root / "governance" / "model_cards" / f"{version}.md").read_text()
    for section in ("## Intended use", "## Data", "## Metrics", "## Bias", "## Limitations", "## Lineage"):
        assert section in text
    assert f"| roc_auc | {entry['metrics']['roc_auc']:.4g} |" in text
    assert entry["artifact"]["sha256"] in text
    assert entry["data"]["sha256"] in text
    for group in contract().sensitive.categories:
        assert f"| {group} |" in text
    for feature in contract().feature_names:
        assert f"| {feature} |" in text


def test_the_card_uses_the_policy_statements(registered, tmp_path):
    root, version = registered
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "model_card:\n"
        "  intended_use: Rank applications for manual review.\n"
        "  limitations: [Synthetic data only.]\n"
    )
    text = model_card.render(registry.get(version, root / "governance" / "registry.yaml"), policy)
    assert "Rank applications for manual review." in text
    assert "- Synthetic data only." in text


def test_card_command_rewrites_a_card_and_rejects_unknown_versions(registered, capsys):
    root, version = registered
    card = root / "governance" / "model_cards" / f"{version}.md"
    card.unlink()
    assert cli.main(["card", version, "--root", str(root)]) == 0
    assert card.is_file()
    assert cli.main(["card", "no-such-version", "--root", str(root)]) == 2
    assert "no-such-version" in capsys.readouterr().err
