"""Markdown model cards, generated from registry entries so they never disagree with them.

A card is regenerated, never hand-edited: the registry entry carries the numbers, the
policy carries the statements reviewers sign off (intended use, limitations), and the
data contract lists the inputs. The layout is governance/templates/model_card.md.j2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from governance.core.contract import Contract, ContractError
from governance.core.contract import load as load_contract
from governance.core.policy import load as load_policy
from governance.core.records import RegistryEntry
from governance.documents import render as render_template


def _source(value: Any) -> str | None:
    """A snapshot source is a mapping (kind, path or generator settings): show it on one line."""
    if isinstance(value, dict):
        return ", ".join(f"{key} {item}" for key, item in value.items()) or None
    return None if value is None else str(value)


def _window(value: dict[str, Any] | None) -> str | None:
    if not value or not any(value.values()):
        return None
    return f"{value.get('start') or '?'} to {value.get('end') or '?'}"


def _contract(entry: RegistryEntry, contract_path: Path) -> Contract | None:
    """The contract, only if it is the one this model was trained under."""
    try:
        contract = load_contract(contract_path)
    except ContractError:
        return None
    return contract if contract.digest == entry.contract_sha256 else None


def render(entry: RegistryEntry, policy_path: Path, contract_path: Path) -> str:
    """The card's Markdown for one registry entry."""
    by_group = entry.bias.by_group
    return render_template(
        "model_card.md.j2",
        entry=entry,
        card=load_policy(policy_path).model_card,  # a broken policy is an error, never default statements
        contract=_contract(entry, contract_path),
        source=_source(entry.data.source),
        window=_window(entry.data.time_window),
        group_metrics=sorted({name for row in by_group.values() for name in row}),
    )


def write(entry: RegistryEntry, cards_dir: Path, policy_path: Path, contract_path: Path) -> Path:
    """Write `<cards_dir>/<version>.md` and return its path."""
    cards_dir.mkdir(parents=True, exist_ok=True)
    path = cards_dir / f"{entry.version}.md"
    path.write_text(render(entry, policy_path, contract_path))
    return path
