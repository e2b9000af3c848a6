"""The drift run written three ways: HTML for people, Markdown for the pull request, JSON for machines.

The HTML report is one self-contained file (plots embedded as base64 SVG from
monitoring/charts.py, the shared CSS inlined) so a CI artifact or an e-mail attachment shows
everything without a server. Feature plots are drawn only for drifted features: a report with
nine unremarkable histograms hides the one that matters. The model's answers get one plot
whenever the champion could be re-scored (the task's prediction signal, monitoring/predictions.py:
the positive-class probability, one panel per class probability, or the predicted values), since
they are what the service hands its clients. The wording is in
governance/templates/drift_report.html.j2 and drift_summary.md.j2.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from governance.core.records import DriftSummary, write_json
from governance.core.tasks import METRICS
from governance.documents import render

if TYPE_CHECKING:  # the retraining bot imports `markdown` only: keep it free of the numeric stack
    import numpy as np
    import pandas as pd

    from governance.core.contract import Contract, Feature

JSON_NAME, MARKDOWN_NAME, HTML_NAME = "drift.json", "summary.md", "report.html"


def feature_rows(summary: DriftSummary) -> list[Any]:
    """Every test of the run: the features, then the model's answers (and, multiclass, each class)."""
    rows = list(summary.drift.features) if summary.drift else []
    answers = [summary.score_drift] if summary.score_drift else []
    return [*rows, *answers, *summary.prediction_drift]


def directions() -> dict[str, str]:
    """Each metric's direction (governance/core/tasks.py), for the report's metric table."""
    return {name: metric.direction for name, metric in METRICS.items()}


def markdown(summary: DriftSummary) -> str:
    """The summary a reviewer reads in the retraining pull request's body."""
    return render("drift_summary.md.j2", summary=summary, rows=feature_rows(summary)).strip() + "\n"


def _numeric_panel(name: str, reference: np.ndarray, current: np.ndarray) -> dict[str, Any]:
    import numpy as np

    from monitoring.charts import Sample, numeric_panel

    missing = f"missing: reference {np.isnan(reference).mean():.1%}, current {np.isnan(current).mean():.1%}"
    return numeric_panel(f"{name} ({missing})", [Sample("reference", reference), Sample("current", current)])


def _categorical_panel(reference: pd.Series, current: pd.Series, feature: Feature) -> dict[str, Any]:
    import numpy as np

    from monitoring.charts import Sample, categorical_panel
    from monitoring.detectors import category_codes

    labels = [*feature.categories, "(unseen)", "(missing)"]
    size = len(labels)

    def shares(values: pd.Series) -> np.ndarray:
        return np.bincount(category_codes(values, feature.categories), minlength=size)[:size] / max(
            len(values), 1
        )

    samples = [Sample("reference", shares(reference)), Sample("current", shares(current))]
    return categorical_panel(feature.name, labels, samples)


def plots(
    summary: DriftSummary,
    reference: pd.DataFrame | None,
    current: pd.DataFrame | None,
    contract: Contract,
    reference_scores: np.ndarray | None = None,
) -> dict[str, str]:
    """One base64 SVG per drifted feature, and one of the model's answers when they were compared."""
    if reference is None or current is None:
        return {}
    import numpy as np
    import pandas as pd

    from monitoring.charts import image

    images: dict[str, str] = {}
    tests = {row.name: row for row in summary.drift.features} if summary.drift else {}
    for name in summary.drift.drifted_features if summary.drift else ():
        feature = contract.feature(name)
        if feature.is_numeric:
            drawn = _numeric_panel(
                name,
                pd.to_numeric(reference[name]).to_numpy(dtype=np.float64, na_value=np.nan),
                pd.to_numeric(current[name]).to_numpy(dtype=np.float64, na_value=np.nan),
            )
        else:
            drawn = _categorical_panel(reference[name], current[name], feature)
        images[name] = image([drawn], f"{tests[name].test} p = {tests[name].p_value:.3g}")
    if summary.score_drift is not None and reference_scores is not None:
        images[summary.score_drift.name] = _signal_plot(summary, reference_scores, current, contract)
    return images


def _signal_plot(
    summary: DriftSummary, reference_scores: np.ndarray, current: pd.DataFrame, contract: Contract
) -> str:
    """The model's answers, reference vs current: one panel per signal column (per class for multiclass)."""
    import numpy as np

    from monitoring.charts import image
    from monitoring.predictions import describe, from_window, signal_columns

    names = signal_columns(contract.target)
    reference = np.asarray(reference_scores, dtype=np.float64).reshape(len(reference_scores), -1)
    window = from_window(current, contract.target)
    score = summary.score_drift
    assert score is not None
    panels = [_numeric_panel(name, reference[:, index], window[:, index]) for index, name in enumerate(names)]
    return image(panels, f"{describe(contract.target)}: {score.test} p = {score.p_value:.3g}")


def render_html(summary: DriftSummary, images: dict[str, str]) -> str:
    """A self-contained page: summary, policy checks, features, one plot per drifted feature."""
    return render(
        "drift_report.html.j2",
        summary=summary,
        rows=feature_rows(summary),
        images=images,
        directions=directions(),
    )


def write(
    summary: DriftSummary,
    out_dir: Path,
    reference: pd.DataFrame | None = None,
    current: pd.DataFrame | None = None,
    contract: Contract | None = None,
    reference_scores: np.ndarray | None = None,
    images: dict[str, str] | None = None,
) -> dict[str, Path]:
    """Write drift.json, summary.md and report.html under out_dir; returns their paths.

    The plots are drawn here from the frames, unless `images` brings them drawn already."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if images is None and contract is not None:
        images = plots(summary, reference, current, contract, reference_scores)
    paths = {"json": out_dir / JSON_NAME, "markdown": out_dir / MARKDOWN_NAME, "html": out_dir / HTML_NAME}
    write_json(summary, paths["json"])
    paths["markdown"].write_text(markdown(summary))
    paths["html"].write_text(render_html(summary, images or {}))
    return paths
