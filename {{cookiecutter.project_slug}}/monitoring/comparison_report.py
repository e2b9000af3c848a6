"""A comparison written three ways: HTML for people, Markdown for the pull request, JSON for machines.

Used by `make compare` (champion vs challenger) and `make post-deploy-check` (shadow phase vs
live). The HTML page is self-contained (the plot embedded as base64 SVG, monitoring/charts.py, the shared CSS
inlined); its one plot overlays the two score (or value) distributions the KS statistic
compares. The wording is in governance/templates/comparison_report.html.j2 and
comparison_summary.md.j2; the GitOps pull requests render the same Markdown from the record.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from governance.core.records import Comparison, write_json
from governance.documents import render

if TYPE_CHECKING:
    import pandas as pd

    from governance.core.contract import Target

JSON_NAMES = {"compare": "compare.json", "post_deploy": "check.json"}
MARKDOWN_NAME, HTML_NAME = "summary.md", "report.html"


def markdown(comparison: Comparison) -> str:
    return render("comparison_summary.md.j2", comparison=comparison).strip() + "\n"


def distribution_plot(
    comparison: Comparison, baseline: pd.DataFrame, subject: pd.DataFrame, target: Target
) -> str | None:
    """Both answer sets' score (value) distributions, one panel per signal column."""
    if not len(baseline) or not len(subject):
        return None
    from monitoring.charts import Sample, image, numeric_panel
    from monitoring.predictions import describe, from_window, signal_columns

    names = signal_columns(target)
    ours, theirs = from_window(baseline, target), from_window(subject, target)
    panels = [
        numeric_panel(
            name,
            [
                Sample(comparison.baseline_name, ours[:, index]),
                Sample(comparison.subject_name, theirs[:, index]),
            ],
        )
        for index, name in enumerate(names)
    ]
    return image(panels, f"{describe(target)}: KS statistic {comparison.score_distance or 0:.3g}")


def write(
    comparison: Comparison,
    out_dir: Path,
    baseline: pd.DataFrame | None = None,
    subject: pd.DataFrame | None = None,
    target: Target | None = None,
) -> dict[str, Path]:
    """Write the JSON record, summary.md and report.html under out_dir; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    image = None
    if baseline is not None and subject is not None and target is not None:
        image = distribution_plot(comparison, baseline, subject, target)
    paths = {
        "json": out_dir / JSON_NAMES[comparison.kind],
        "markdown": out_dir / MARKDOWN_NAME,
        "html": out_dir / HTML_NAME,
    }
    write_json(comparison, paths["json"])
    paths["markdown"].write_text(markdown(comparison))
    paths["html"].write_text(render("comparison_report.html.j2", comparison=comparison, image=image))
    return paths
