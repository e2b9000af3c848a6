"""The reports' distribution charts: bars that follow the data, and text that never becomes markup."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET

import numpy as np

from monitoring.charts import COLOURS, Sample, categorical_panel, image, numeric_panel

SVG = "{http://www.w3.org/2000/svg}"


def drawn(panels, note="") -> ET.Element:
    return ET.fromstring(base64.b64decode(image(panels, note)))  # noqa: S314 - our own output; parsing proves it is well-formed


def bars(svg: ET.Element, colour: str) -> list[float]:
    return [float(rect.get("height")) for rect in drawn_bars(svg, colour)]


def drawn_bars(svg: ET.Element, colour: str) -> list[ET.Element]:
    return [
        rect for rect in svg.iter(f"{SVG}rect") if rect.get("class") == "bar" and rect.get("fill") == colour
    ]


def test_category_bars_are_as_tall_as_their_shares():
    reference, current = np.array([0.5, 0.25, 0.25]), np.array([0.25, 0.5, 0.25])
    svg = drawn(
        [
            categorical_panel(
                "region",
                ["north", "south", "east"],
                [Sample("reference", reference), Sample("current", current)],
            )
        ]
    )
    first, second = bars(svg, COLOURS[0]), bars(svg, COLOURS[1])
    assert np.allclose(np.array(first) / max(first), reference / 0.5, atol=0.01)
    assert np.allclose(np.array(second) / max(second), current / 0.5, atol=0.01)
    labels = [text.text for text in svg.iter(f"{SVG}text")]
    assert {"north", "south", "east", "reference", "current"} <= set(labels)


def test_numeric_densities_cover_the_samples_and_leave_missing_values_out():
    rng = np.random.default_rng(0)
    left, right = rng.normal(0, 1, 5000), rng.normal(3, 1, 5000)
    left[:100] = np.nan
    svg = drawn([numeric_panel("income", [Sample("reference", left), Sample("current", right)])])
    first, second = bars(svg, COLOURS[0]), bars(svg, COLOURS[1])
    assert 0 < len(first) <= 40 and 0 < len(second) <= 40, "one bar per non-empty bin"

    # Where the bulk of each sample lies: the first sample's bars are left of the second's.
    def centre(colour: str) -> float:
        rects = drawn_bars(svg, colour)
        heights = np.array([float(r.get("height")) for r in rects])
        return float(np.average([float(r.get("x")) for r in rects], weights=heights))

    assert centre(COLOURS[0]) < centre(COLOURS[1])


def test_text_in_a_chart_is_escaped():
    hostile = "<script>alert(1)</script> & co"
    sample = Sample(hostile, np.array([1.0, 2.0, 3.0]))
    svg = drawn([numeric_panel(hostile, [sample, Sample("other", np.array([2.0, 3.0]))])], note=hostile)
    texts = [text.text for text in svg.iter(f"{SVG}text")]
    assert texts.count(hostile) == 3, "title, note and legend keep the text as text"
    assert not list(svg.iter(f"{SVG}script")) and not list(svg.iter("script"))
