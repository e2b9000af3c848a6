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
from governance.core.records import Dependence, Diagnostics, Explanations, RegistryEntry, Residuals
from governance.core.tasks import METRICS
from governance.core.text import fmt
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
        explanations=entry.explanations,
        explanation_pictures=explanation_pictures(entry),
        importance_rows=entry.explanations.comparison() if entry.explanations else [],
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
    for name, drawing in explanation_svgs(entry).items():
        (cards_dir / name).write_text(drawing)
    return path


# --- Explanations: permutation importance and partial dependence (ml/explain.py) -----------------

CANDIDATE_COLOUR, CHAMPION_COLOUR = "#1f77b4", "#ff7f0e"
OUTPUT_COLOURS = ("#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#17becf")
BAR, BAR_GAP, ROW_GAP, BAR_PLOT = 10, 2, 10, 360  # importance chart: bar height, gaps, plot width (px)
MAX_BARS = 15  # the importance chart shows the candidate's most important columns, at most this many
PANEL_WIDTH, PANEL_HEIGHT, PANEL_GAP = 240, 170, 70  # one partial dependence panel and the room around it


def explanation_pictures(entry: RegistryEntry) -> dict[str, str]:
    """{"importance": file name, "dependence": file name} of the pictures beside the card (those drawn)."""
    found = entry.explanations
    if found is None:
        return {}
    names = {"importance": f"{entry.version}-importance.svg"} if found.candidate.features else {}
    if found.dependence:
        names["dependence"] = f"{entry.version}-dependence.svg"
    return names


def _at(value: float) -> float:
    return round(value, 2)


def importance_svg(found: Explanations) -> str:
    """Horizontal bars per contract column: candidate above, champion below, on one zero-based axis."""
    shown = found.candidate.features[:MAX_BARS]
    champion = {item.feature: item.mean for item in found.champion.features} if found.champion else {}
    values = [item.mean for item in shown] + [
        champion[item.feature] for item in shown if item.feature in champion
    ]
    low, high = min(0.0, *values), max(0.0, *values)
    span = (high - low) or 1.0
    label = max(len(item.feature) for item in shown) * 7 + 16
    left = label + 8
    bars_per_row = 2 if found.champion else 1
    row_height = bars_per_row * BAR + (bars_per_row - 1) * BAR_GAP

    def x(value: float) -> float:
        return _at(left + (value - low) / span * BAR_PLOT)

    def bar(value: float, y: float, colour: str) -> dict[str, Any]:
        start, end = sorted((x(0.0), x(value)))
        return {  # the value is written right of the bar, or right of the axis for a negative one
            "x": start,
            "y": _at(y),
            "width": _at(end - start),
            "height": BAR,
            "colour": colour,
            "value": fmt(value),
            "text_x": _at(end + 3),
        }

    top = 40
    rows = []
    for index, item in enumerate(shown):
        y = top + index * (row_height + ROW_GAP)
        bars = [bar(item.mean, y, CANDIDATE_COLOUR)]
        if found.champion:
            other = champion.get(item.feature)
            if other is not None:
                bars.append(bar(other, y + BAR + BAR_GAP, CHAMPION_COLOUR))
        rows.append({"feature": item.feature, "y": y, "height": row_height, "bars": bars})
    bottom = top + len(shown) * (row_height + ROW_GAP) - ROW_GAP + 4
    keys = [{"colour": CANDIDATE_COLOUR, "label": f"candidate {found.candidate.version}"}]
    if found.champion:
        keys.append({"colour": CHAMPION_COLOUR, "label": f"champion {found.champion.version}"})
    legend = _legend(keys, 12, 12)
    return render_template(
        "importance.svg.j2",
        legend=legend,
        rows=rows,
        label=left,
        names_x=label - 8,
        zero=x(0.0),
        top=top,
        bottom=bottom,
        metric=found.metric,
        repeats=found.repeats,
        scored=found.rows,
        shown=f"the {len(shown)} most important of {len(found.candidate.features)} columns; "
        if len(shown) < len(found.candidate.features)
        else "",
        width=round(max(left + BAR_PLOT + 70, legend[-1]["x"] + 16 + len(legend[-1]["label"]) * 7 + 12, 600)),
        height=bottom + 44,
    )


def _legend(keys: list[dict[str, Any]], start: float, key_width: float) -> list[dict[str, Any]]:
    """Legend keys on one line, each placed after the previous one's label (about 7 px a character)."""
    placed, x = [], start
    for key in keys:
        placed.append({**key, "x": _at(x)})
        x += key_width + 4 + len(key["label"]) * 7 + 20
    return placed


def _range(curves: tuple[Dependence, ...]) -> tuple[float, float]:
    """One vertical scale for every panel, so a flat curve looks flat beside a steep one."""
    values = [
        value
        for curve in curves
        for rows in (curve.candidate, curve.champion or ())
        for row in rows
        for value in row
    ]
    low, high = min(values), max(values)
    if high - low < 1e-9:  # every answer the same: a small band around it instead of dividing by zero
        pad = 0.05 * (abs(high) or 1.0)
        low, high = low - pad, high + pad
    return low, high


def _panel(curve: Dependence, left: float, top: float, low: float, high: float) -> dict[str, Any]:
    """One feature's panel: a line per output (numeric grid) or points per category, champion dashed."""
    series = [(row, False) for row in curve.candidate] + [(row, True) for row in (curve.champion or ())]
    categorical = curve.kind == "categorical"
    if categorical:
        step = PANEL_WIDTH / len(curve.grid)
        xs = [left + step * (index + 0.5) for index in range(len(curve.grid))]
    else:
        numbers = [float(value) for value in curve.grid]
        first, width = numbers[0], (numbers[-1] - numbers[0]) or 1.0
        xs = [left + (value - first) / width * PANEL_WIDTH for value in numbers]

    def y(value: float) -> float:
        return _at(top + (high - value) / (high - low) * PANEL_HEIGHT)

    several = len(curve.outputs) > 1
    lines = []
    for index, (row, dashed) in enumerate(series):
        if several:
            colour = OUTPUT_COLOURS[index % len(curve.outputs) % len(OUTPUT_COLOURS)]
        else:
            colour = CHAMPION_COLOUR if dashed else CANDIDATE_COLOUR
        points = [(_at(xs[at]), y(value)) for at, value in enumerate(row)]
        lines.append({"colour": colour, "dashed": dashed, "points": points})
    if categorical:
        fits = max(3, int(PANEL_WIDTH / len(curve.grid) / 6.5))  # characters a category's label has room for
        ticks = [
            {
                "x": _at(position),
                "text": text if len(text) <= fits else text[: fits - 2] + "..",
                "anchor": "middle",
            }
            for position, text in zip(xs, map(str, curve.grid), strict=True)
        ]
    else:
        ticks = [
            {"x": _at(left), "text": fmt(float(curve.grid[0])), "anchor": "start"},
            {"x": _at(left + PANEL_WIDTH), "text": fmt(float(curve.grid[-1])), "anchor": "end"},
        ]
    return {
        "feature": curve.feature,
        "left": _at(left),
        "top": _at(top),
        "width": PANEL_WIDTH,
        "height": PANEL_HEIGHT,
        "low": fmt(low),
        "high": fmt(high),
        "categorical": categorical,
        "ticks": ticks,
        "lines": lines,
    }


def dependence_svg(found: Explanations) -> str:
    """One panel per top feature, side by side on one vertical scale; each output its colour, the
    champion dashed (hollow points for a categorical feature)."""
    curves = found.dependence
    champion = found.champion is not None and any(curve.champion for curve in curves)
    top, left = 44, 60
    low, high = _range(curves)
    panels = [
        _panel(curve, left + index * (PANEL_WIDTH + PANEL_GAP), top, low, high)
        for index, curve in enumerate(curves)
    ]
    outputs = curves[0].outputs
    if len(outputs) > 1:
        keys = [
            {"colour": OUTPUT_COLOURS[index % len(OUTPUT_COLOURS)], "dashed": False, "label": name}
            for index, name in enumerate(outputs)
        ]
        keys += [{"colour": "#444444", "dashed": True, "label": "champion"}] if champion else []
    else:
        keys = [{"colour": CANDIDATE_COLOUR, "dashed": False, "label": f"candidate {found.version}"}]
        if champion and found.champion:
            keys.append(
                {"colour": CHAMPION_COLOUR, "dashed": True, "label": f"champion {found.champion.version}"}
            )
    legend = _legend(keys, 12, 22)
    legend_end = legend[-1]["x"] + 26 + len(legend[-1]["label"]) * 7
    return render_template(
        "dependence.svg.j2",
        legend=legend,
        panels=panels,
        rows=found.dependence_rows,
        outputs=outputs,
        width=round(max(left + len(curves) * (PANEL_WIDTH + PANEL_GAP), legend_end + 12, 560)),
        height=top + PANEL_HEIGHT + 60,
    )


def explanation_svgs(entry: RegistryEntry) -> dict[str, str]:
    """{file name: SVG text} of the explanation pictures beside the card."""
    found = entry.explanations
    if found is None:
        return {}
    draw = {"importance": importance_svg, "dependence": dependence_svg}
    return {name: draw[kind](found) for kind, name in explanation_pictures(entry).items()}
