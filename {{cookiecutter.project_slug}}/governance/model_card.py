"""Markdown model cards, generated from registry entries so they never disagree with them.

A card is regenerated, never hand-edited: the registry entry carries the numbers, the
policy carries the statements reviewers sign off (intended use, limitations), and the
data contract lists the inputs. Run `python -m ml.cli card VERSION` to rewrite one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from data_pipelines.contract import Contract, ContractError
from data_pipelines.contract import load as load_contract
from governance.files import format_number as fmt

ROOT = Path(__file__).resolve().parents[1]
CARDS_DIR = ROOT / "governance" / "model_cards"
POLICY_PATH = ROOT / "governance" / "policy.yaml"

DEFAULT_INTENDED_USE = (
    "Scores one tabular record at a time for the binary target in the data contract, to support "
    "(not replace) a human decision."
)
DEFAULT_LIMITATIONS = [
    "Trained and evaluated on one dataset snapshot; performance on other populations is unknown.",
    "Bias is measured only for the sensitive attribute in the data contract, at one threshold (0.5).",
]


def _source(value: Any) -> str | None:
    """A snapshot source is a mapping (kind, path or generator settings): show it on one line."""
    if isinstance(value, dict):
        return ", ".join(f"{key} {item}" for key, item in value.items()) or None
    return None if value is None else str(value)


def _window(value: Any) -> str | None:
    if not isinstance(value, dict) or not any(value.values()):
        return None
    return f"{value.get('start') or '?'} to {value.get('end') or '?'}"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(cell) for cell in row) + " |" for row in rows]
    return lines


def _policy_statements(policy_path: Path) -> dict[str, Any]:
    try:
        policy = yaml.safe_load(policy_path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}
    card = policy.get("model_card") if isinstance(policy, dict) else None
    return card if isinstance(card, dict) else {}


def _contract(entry: dict[str, Any], contract_path: Path | None) -> Contract | None:
    """The contract, only if it is the one this model was trained under."""
    try:
        contract = load_contract(contract_path) if contract_path else load_contract()
    except ContractError:
        return None
    return contract if contract.digest == entry["contract_sha256"] else None


def render(entry: dict[str, Any], policy_path: Path = POLICY_PATH, contract_path: Path | None = None) -> str:
    """The card's Markdown for one registry entry."""
    statements = _policy_statements(policy_path)
    data = entry["data"]
    bias = entry["bias"]
    lines = [
        f"# Model card: {entry['model_name']} {entry['version']}",
        "",
        "Generated from `governance/registry.yaml`; do not edit by hand.",
        "",
        *_table(
            ["Field", "Value"],
            [
                ["Version", entry["version"]],
                ["Stage", entry["stage"]],
                ["Model family", entry["model_family"]],
                ["Registered", entry["created_at"]],
                ["Last updated", entry["updated_at"]],
            ],
        ),
        "",
        "## Intended use",
        "",
        str(statements.get("intended_use") or DEFAULT_INTENDED_USE).strip(),
        "",
    ]
    if statements.get("out_of_scope"):
        lines += [f"Out of scope: {str(statements['out_of_scope']).strip()}", ""]
    lines += ["## Data", ""]
    lines += _table(
        ["Field", "Value"],
        [
            ["Snapshot", data["snapshot_id"]],
            ["Snapshot sha256", data["sha256"]],
            ["Source", _source(data.get("source"))],
            ["Rows (train / test)", f"{fmt(data.get('train_rows'))} / {fmt(data.get('test_rows'))}"],
            ["Time window", _window(data.get("time_window"))],
            ["Data contract sha256", entry["contract_sha256"]],
        ],
    )
    contract = _contract(entry, contract_path)
    if contract is not None:
        lines += ["", "Inputs (in model order):", ""]
        lines += _table(
            ["Feature", "Kind", "Nullable", "Allowed"],
            [
                [
                    f.name,
                    f.kind,
                    f.nullable,
                    ", ".join(f.categories) if f.categories else f"{fmt(f.min)} to {fmt(f.max)}",
                ]
                for f in contract.features
            ],
        )
        lines += ["", f"Target: `{contract.target.name}` (positive class {contract.target.positive_class})."]
    lines += ["", "## Metrics (held-out test split)", ""]
    lines += _table(["Metric", "Value"], [[name, value] for name, value in entry["metrics"].items()])
    lines += ["", "## Bias", ""]
    if bias.get("sensitive_attribute") is None:
        lines.append(str(bias.get("note") or "No sensitive attribute is declared; bias was not measured."))
    else:
        lines.append(
            f"Sensitive attribute `{bias['sensitive_attribute']}` (not a model input). Gated metric: "
            f"`{bias['metric']}`, largest gap between groups {fmt(bias.get('largest_gap'))}; demographic "
            f"parity difference {fmt(bias.get('demographic_parity_difference'))}; equalized odds "
            f"difference {fmt(bias.get('equalized_odds_difference'))}."
        )
        by_group = bias.get("by_group") or {}
        names = sorted({name for row in by_group.values() for name in row})
        lines += [
            "",
            *_table(
                ["Group", *names], [[group, *(row.get(n) for n in names)] for group, row in by_group.items()]
            ),
        ]
    lines += ["", "## Policy gates", ""]
    lines += _table(
        ["Gate", "Passed", "Value", "Threshold", "Margin"],
        [
            [name, g.get("passed"), g.get("value"), g.get("threshold"), g.get("margin")]
            for name, g in entry["gates"].items()
        ],
    )
    parity = entry["parity"]
    lines += [
        "",
        f"ONNX parity on the test split: max |p_onnx - p_sklearn| = {fmt(parity['max_abs_diff'])}, "
        f"labels identical: {fmt(parity['labels_equal'])}.",
        "",
        "## Limitations",
        "",
    ]
    limitations = statements.get("limitations") or DEFAULT_LIMITATIONS
    lines += [f"- {str(item).strip()}" for item in limitations]
    lines += [
        "",
        "## Lineage",
        "",
        *_table(
            ["Item", "Reference"],
            [
                ["Artifact", f"`{entry['artifact']['path']}`"],
                ["Artifact sha256", entry["artifact"]["sha256"]],
                ["Code commit", entry["code_commit"]],
                ["Data snapshot", f"{data['snapshot_id']} (sha256 {data['sha256']})"],
                ["Data contract sha256", entry["contract_sha256"]],
                ["Container image", (entry.get("image") or {}).get("digest", "not built yet")],
            ],
        ),
        "",
    ]
    return "\n".join(lines)


def write(
    entry: dict[str, Any],
    cards_dir: Path = CARDS_DIR,
    policy_path: Path = POLICY_PATH,
    contract_path: Path | None = None,
) -> Path:
    """Write `<cards_dir>/<version>.md` and return its path."""
    cards_dir.mkdir(parents=True, exist_ok=True)
    path = cards_dir / f"{entry['version']}.md"
    path.write_text(render(entry, policy_path, contract_path))
    return path
