"""Markdown model cards, generated from registry entries so they never disagree with them.

A card is regenerated, never hand-edited: the registry entry carries the numbers, the
policy carries the statements reviewers sign off (intended use, limitations), and the
data contract lists the inputs. The layout is governance/templates/model_card.md.j2.

A classifier's card draws its confusion matrix, a regressor's its residuals, as SVG files
beside the card (`<version>-confusion.svg`, `<version>-residuals.svg`) drawn from a template
with the geometry computed here: no plotting library in the training environment, and the
same entry always gives the same bytes, so a committed card only changes when its model does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from governance.core.contract import Contract, ContractError
from governance.core.contract import load as load_contract
from governance.core.policy import load as load_policy
from governance.core.records import Diagnostics, RegistryEntry, Residuals
from governance.core.tasks import METRICS
from governance.documents import render as render_template

CELL, TOP = 56, 48  # confusion matrix: smallest cell size, space above the cells (px)
PLOT_WIDTH, PLOT_HEIGHT, MARGIN = 560, 300, 60  # residual plot area and margin (px)


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


def picture_name(entry: RegistryEntry) -> str | None:
    """The file name of the card's picture (beside the card), or None when there is nothing to draw."""
    details = entry.diagnostics
    if details is None:
        return None
    if details.residuals is not None and details.residuals.bins:
        return f"{entry.version}-residuals.svg"
    return f"{entry.version}-confusion.svg" if details.confusion else None


def directions(metrics: dict[str, Any]) -> dict[str, str]:
    """Each metric's direction ("higher is better"); blank for counts like `rows`."""
    return {name: METRICS[name].direction if name in METRICS else "" for name in metrics}


def render(entry: RegistryEntry, policy_path: Path, contract_path: Path) -> str:
    """The card's Markdown for one registry entry."""
    by_group = entry.bias.by_group
    contract = _contract(entry, contract_path)
    details = entry.diagnostics
    task = details.task if details else (contract.task if contract else None)
    return render_template(
        "model_card.md.j2",
        entry=entry,
        card=load_policy(policy_path).model_card,  # a broken policy is an error, never default statements
        contract=contract,
        task=task,
        details=details,
        picture=picture_name(entry),
        directions=directions(entry.metrics),
        source=_source(entry.data.source),
        window=_window(entry.data.time_window),
        group_metrics=sorted({name for row in by_group.values() for name in row}),
    )


def confusion_svg(details: Diagnostics) -> str:
    """The confusion matrix: counts per (true, predicted) class, shaded by the share of the true class."""
    size = len(details.classes)
    longest = max(len(key) for key in details.classes) * 7  # about 7 px per character at 12 px
    label = longest + 16
    cell = max(CELL, longest + 10)
    cells = []
    for row, counts in enumerate(details.confusion):
        total = sum(counts) or 1
        for column, count in enumerate(counts):
            share = count / total
            cells.append(
                {
                    "x": label + column * cell,
                    "y": TOP + row * cell,
                    "count": count,
                    "light": round(96 - 56 * share),  # HSL lightness: darker is a larger share
                    "dark_text": share < 0.6,
                }
            )
    return render_template(
        "confusion.svg.j2",
        classes=details.classes,
        cells=cells,
        cell=cell,
        label=label,
        top=TOP,
        width=max(label + size * cell + 10, 300),
        height=TOP + size * cell + 30,
    )


def residuals_svg(residuals: Residuals) -> str:
    """Residuals (truth - prediction) per bin of predicted value: quartile boxes, 5-95% whiskers."""
    bins = residuals.bins
    low = min(0.0, *(box.p5 for box in bins))
    high = max(0.0, *(box.p95 for box in bins))
    span = (high - low) or 1.0

    def y(value: float) -> float:
        return round(MARGIN / 2 + (high - value) / span * PLOT_HEIGHT, 2)

    step = PLOT_WIDTH / len(bins)
    boxes = [
        {
            "x": round(MARGIN + index * step + step * 0.2, 2),
            "middle": round(MARGIN + index * step + step / 2, 2),
            "width": round(step * 0.6, 2),
            "whisker_top": y(box.p95),
            "whisker_bottom": y(box.p5),
            "box_top": y(box.p75),
            "box_bottom": y(box.p25),
            "median": y(box.p50),
            "predicted": f"{box.predicted:.3g}",
        }
        for index, box in enumerate(bins)
    ]
    return render_template(
        "residuals.svg.j2",
        boxes=boxes,
        zero=y(0.0),
        top=f"{high:.3g}",
        bottom=f"{low:.3g}",
        top_y=y(high),
        bottom_y=y(low),
        left=MARGIN,
        right=MARGIN + PLOT_WIDTH,
        width=MARGIN + PLOT_WIDTH + 20,
        height=PLOT_HEIGHT + MARGIN + 30,
    )


def picture(entry: RegistryEntry) -> str | None:
    """The SVG text of the card's picture, or None."""
    details = entry.diagnostics
    if details is None or picture_name(entry) is None:
        return None
    if details.residuals is not None and details.residuals.bins:
        return residuals_svg(details.residuals)
    return confusion_svg(details)


def write(entry: RegistryEntry, cards_dir: Path, policy_path: Path, contract_path: Path) -> Path:
    """Write `<cards_dir>/<version>.md` (and its picture beside it) and return the card's path."""
    cards_dir.mkdir(parents=True, exist_ok=True)
    path = cards_dir / f"{entry.version}.md"
    path.write_text(render(entry, policy_path, contract_path))
    drawing, name = picture(entry), picture_name(entry)
    if drawing is not None and name is not None:
        (cards_dir / name).write_text(drawing)
    return path
