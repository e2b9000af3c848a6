"""The distribution charts of the drift and comparison reports, drawn as SVG from a template.

Why not matplotlib (which ml/tune.py still uses): these charts are two kinds of bars, and on a
1,000,000-row window importing matplotlib and drawing ten figures with it took about 5 s of a
15 s drift check; the same charts from a template take milliseconds. As with the model card's
charts (governance/model_card.py), the geometry is computed here and the markup lives in
governance/templates/distribution.svg.j2. A chart is embedded as a base64 `data:` image, so
the reports stay one self-contained file and captured text never becomes markup in the page.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from governance.documents import render

WIDTH, HEIGHT = 540, 290  # one panel
LEFT, RIGHT, TOP = 58, 14, 46
BOTTOM = {"numeric": 34, "categorical": 72}  # room for the x labels (categories are slanted)
COLOURS = ("#1f77b4", "#ff7f0e")  # first sample, second sample
BINS = 40
LABEL, CHARACTER = 32, 6.5  # a legend label's most characters; about their width in px at 11 px
SUBSAMPLE = 1_000_000  # at most this many values of a sample set the axis range (quantiles)


@dataclass(frozen=True)
class Sample:
    """One side of a comparison (e.g. "reference" or "current") and its values."""

    label: str
    values: np.ndarray


def numeric_panel(title: str, samples: Sequence[Sample]) -> dict[str, Any]:
    """Densities over 40 equal bins spanning the 0.5%-99.5% quantiles of the samples (values outside
    are counted in the first or last bin); missing values (NaN) are left out."""
    present = [sample.values[~np.isnan(sample.values)] for sample in samples]
    both = np.concatenate([values[:: max(1, len(values) // SUBSAMPLE)] for values in present])
    low, high = (float(v) for v in np.quantile(both, [0.005, 0.995])) if len(both) else (0.0, 1.0)
    high = high if high > low else low + 1
    edges = np.linspace(low, high, BINS + 1)
    heights = []
    for values in present:  # equal bins: numpy's fast path
        counts, _ = np.histogram(np.clip(values, low, high), bins=BINS, range=(low, high))
        heights.append(counts / max(int(counts.sum()), 1) / np.diff(edges))
    top = float(max((h.max(initial=0.0) for h in heights), default=0.0)) or 1.0
    bottom = HEIGHT - BOTTOM["numeric"]

    def x(value: float) -> float:
        return round(LEFT + (value - low) / (high - low) * (WIDTH - LEFT - RIGHT), 2)

    bars = [
        bar(x(edges[i]), x(edges[i + 1]) - x(edges[i]), height, top, bottom, COLOURS[side], 0.5)
        for side, series in enumerate(heights)
        for i, height in enumerate(series)
        if height > 0
    ]
    ticks = [{"x": x(v), "label": f"{v:.3g}", "slanted": False} for v in np.linspace(low, high, 5)]
    return panel(title, "density", samples, bars, ticks, top, bottom)


def categorical_panel(title: str, labels: Sequence[str], samples: Sequence[Sample]) -> dict[str, Any]:
    """Side by side bars per category: each sample's values are its shares of rows, in `labels` order."""
    top = float(max((s.values.max(initial=0.0) for s in samples), default=0.0)) or 1.0
    bottom = HEIGHT - BOTTOM["categorical"]
    step = (WIDTH - LEFT - RIGHT) / max(len(labels), 1)
    width = step * 0.8 / max(len(samples), 1)
    bars = [
        bar(LEFT + i * step + step * 0.1 + side * width, width, float(share), top, bottom, COLOURS[side], 1.0)
        for side, sample in enumerate(samples)
        for i, share in enumerate(sample.values)
    ]
    ticks = [
        {"x": round(LEFT + (i + 0.5) * step, 2), "label": text, "slanted": True}
        for i, text in enumerate(labels)
    ]
    return panel(title, "share of rows", samples, bars, ticks, top, bottom)


def bar(
    x: float, width: float, height: float, top: float, bottom: float, colour: str, opacity: float
) -> dict:
    size = height / top * (bottom - TOP)
    at = {"x": x, "y": bottom - size, "width": width, "height": size}
    return {**{name: round(value, 2) for name, value in at.items()}, "colour": colour, "opacity": opacity}


def panel(
    title: str,
    axis: str,
    samples: Sequence[Sample],
    bars: list[dict],
    ticks: list[dict],
    top: float,
    bottom: float,
) -> dict[str, Any]:
    legend, x = [], float(WIDTH - RIGHT)
    for sample, colour in reversed(list(zip(samples, COLOURS, strict=False))):  # right-aligned, one row
        label = sample.label if len(sample.label) <= LABEL else sample.label[: LABEL - 1] + "…"
        x -= 14 + CHARACTER * len(label) + 12
        legend.insert(0, {"label": label, "colour": colour, "x": round(x, 1)})
    return {
        "title": title, "axis": axis, "top": f"{top:.3g}", "bottom": bottom,
        "bars": bars, "ticks": ticks, "legend": legend,
    }  # fmt: skip


def image(panels: Sequence[dict[str, Any]], note: str) -> str:
    """The panels, two to a row, with `note` (the test and its p-value) on top, as base64 SVG."""
    columns = min(len(panels), 2)
    rows = -(-len(panels) // 2)
    placed = [{**p, "dx": (i % 2) * WIDTH, "dy": (i // 2) * HEIGHT} for i, p in enumerate(panels)]
    svg = render(
        "distribution.svg.j2",
        panels=placed,
        note=note,
        width=WIDTH * columns,
        height=HEIGHT * rows,
        left=LEFT,
        right=WIDTH - RIGHT,
        top=TOP,
    )
    return base64.b64encode(svg.encode()).decode("ascii")
