"""The drift run written three ways: HTML for people, Markdown for the pull request, JSON for machines.

The HTML report is one self-contained file (plots embedded as base64 PNG) so a CI artifact
or an e-mail attachment shows everything without a server. Plots are drawn only for drifted
features (and the scores when they drifted): a report with nine unremarkable histograms hides
the one that matters.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the retraining bot imports `markdown` only: keep it free of the numeric stack
    import numpy as np
    import pandas as pd

    from data_pipelines.contract import Contract, Feature

JSON_NAME, MARKDOWN_NAME, HTML_NAME = "drift.json", "summary.md", "report.html"


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-3 and value != 0 else f"{value:.4f}"
    return str(value)


def markdown(summary: dict[str, Any]) -> str:
    """The summary a reviewer reads in the retraining pull request's body."""
    decision = summary["decision"]
    window = summary["window"]
    lines = [
        f"## Drift check: {decision['status'].replace('_', ' ')}",
        "",
        f"- Window: {window['rows']} captured rows ({window['labelled_rows']} labelled), "
        f"{_fmt(window.get('start'))} to {_fmt(window.get('end'))}, from `{window['uri']}`",
        f"- Reference: snapshot `{_fmt(summary['reference'].get('snapshot_id'))}` "
        f"({summary['reference'].get('rows')} rows), "
        f"champion `{_fmt(summary['reference'].get('model_version'))}`",
        f"- Detector: `{summary.get('detector')}`, policy level {summary['policy']['p_value']} "
        f"with {summary['policy']['correction']} correction",
        "",
    ]
    if decision["reasons"]:
        lines += ["### Why", "", *[f"- {reason}" for reason in decision["reasons"]], ""]
    if decision["notes"]:
        lines += ["### Notes", "", *[f"- {note}" for note in decision["notes"]], ""]
    if decision["checks"]:
        lines += ["### Policy checks", "", "| check | value | limit | triggered |", "|---|---|---|---|"]
        lines += [
            f"| {check['name']} | {_fmt(check['value'])} | {_fmt(check['limit'])} | "
            f"{'**yes**' if check['triggered'] else 'no'} |"
            for check in decision["checks"]
        ]
        lines.append("")
    drift = summary.get("drift")
    if drift:
        lines += [
            "### Features",
            "",
            "| feature | test | statistic | p-value | drifted |",
            "|---|---|---|---|---|",
        ]
        rows = [*drift["features"], *([summary["score_drift"]] if summary.get("score_drift") else [])]
        lines += [
            f"| {row['name']} | {row['test']} | {_fmt(row['statistic'])} | {_fmt(row['p_value'])} | "
            f"{'**yes**' if row['drifted'] else 'no'} |"
            for row in rows
        ]
        lines.append("")
    dataset = summary.get("dataset")
    if dataset:
        if dataset.get("valid"):
            manifest = dataset["manifest"]
            lines += [
                f"### New data: snapshot `{manifest['snapshot_id']}` "
                f"({manifest['rows']} labelled rows), valid",
                "",
            ]
        else:
            lines += [
                "### New data: NOT valid, not trained on",
                "",
                *[f"- {e}" for e in dataset.get("errors", [])],
                "",
            ]
    return "\n".join(lines)


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _numeric_plot(axes: Any, reference: np.ndarray, current: np.ndarray, name: str) -> None:
    import numpy as np

    ref, cur = reference[~np.isnan(reference)], current[~np.isnan(current)]
    both = np.concatenate([ref, cur])
    low, high = np.quantile(both, [0.005, 0.995]) if len(both) else (0.0, 1.0)
    bins = np.linspace(low, high if high > low else low + 1, 41)
    for values, label in ((ref, "reference"), (cur, "current")):
        axes.hist(np.clip(values, low, high), bins=bins, density=True, alpha=0.5, label=label)
    missing = f"missing: reference {np.isnan(reference).mean():.1%}, current {np.isnan(current).mean():.1%}"
    axes.set_title(f"{name} ({missing})", fontsize=9)
    axes.legend()


def _categorical_plot(axes: Any, reference: pd.Series, current: pd.Series, feature: Feature) -> None:
    import numpy as np

    from monitoring.detectors import category_codes

    labels = [*feature.categories, "(unseen)", "(missing)"]
    size = len(labels)
    shares = [
        np.bincount(category_codes(values, feature.categories), minlength=size)[:size] / max(len(values), 1)
        for values in (reference, current)
    ]
    positions = np.arange(size)
    axes.bar(positions - 0.2, shares[0], width=0.4, label="reference")
    axes.bar(positions + 0.2, shares[1], width=0.4, label="current")
    axes.set_xticks(positions, labels, rotation=30, ha="right", fontsize=8)
    axes.set_ylabel("share of rows")
    axes.set_title(feature.name, fontsize=9)
    axes.legend()


def plots(
    summary: dict[str, Any],
    reference: pd.DataFrame | None,
    current: pd.DataFrame | None,
    contract: Contract,
    reference_scores: np.ndarray | None = None,
) -> dict[str, str]:
    """One base64 PNG per drifted feature (and for the scores when they drifted)."""
    if reference is None or current is None or not summary.get("drift"):
        return {}
    import matplotlib
    import numpy as np
    import pandas as pd

    matplotlib.use("Agg")
    from matplotlib import pyplot

    images: dict[str, str] = {}
    tests = {row["name"]: row for row in summary["drift"]["features"]}
    for name in summary["drift"]["drifted_features"]:
        feature = contract.feature(name)
        figure, axes = pyplot.subplots(figsize=(6, 3.2))
        figure.suptitle(
            f"{tests[name]['test']} p = {tests[name]['p_value']:.3g}", fontsize=8, x=0.99, ha="right"
        )
        if feature.is_numeric:
            _numeric_plot(
                axes,
                pd.to_numeric(reference[name]).to_numpy(dtype=np.float64, na_value=np.nan),
                pd.to_numeric(current[name]).to_numpy(dtype=np.float64, na_value=np.nan),
                name,
            )
        else:
            _categorical_plot(axes, reference[name], current[name], feature)
        images[name] = _png(figure)
        pyplot.close(figure)
    score = summary.get("score_drift")
    if score and score["drifted"] and reference_scores is not None:
        figure, axes = pyplot.subplots(figsize=(6, 3.2))
        _numeric_plot(
            axes, np.asarray(reference_scores, dtype=np.float64), current["score"].to_numpy(), "score"
        )
        images["score"] = _png(figure)
        pyplot.close(figure)
    return images


def render_html(summary: dict[str, Any], images: dict[str, str]) -> str:
    """A self-contained page: summary table, policy checks, one plot per drifted feature."""
    esc = html.escape
    decision = summary["decision"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Drift report</title>",
        "<style>body{font-family:sans-serif;max-width:960px;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}"
        ".yes{color:#b00;font-weight:bold}</style></head><body>",
        f"<h1>Drift report: {esc(decision['status'].replace('_', ' '))}</h1>",
        f"<p>Generated {esc(str(summary.get('run_at')))}. Window: {summary['window']['rows']} rows "
        f"({summary['window']['labelled_rows']} labelled) "
        f"from <code>{esc(str(summary['window']['uri']))}</code>. "
        f"Reference snapshot <code>{esc(str(summary['reference'].get('snapshot_id')))}</code>. "
        f"Detector <code>{esc(str(summary.get('detector')))}</code>.</p>",
    ]
    for title, items in (("Why", decision["reasons"]), ("Notes", decision["notes"])):
        if items:
            parts.append(
                f"<h2>{title}</h2><ul>" + "".join(f"<li>{esc(item)}</li>" for item in items) + "</ul>"
            )
    if decision["checks"]:
        parts.append(
            "<h2>Policy checks</h2><table>"
            "<tr><th>check</th><th>value</th><th>limit</th><th>triggered</th></tr>"
        )
        for check in decision["checks"]:
            flag = "<span class='yes'>yes</span>" if check["triggered"] else "no"
            parts.append(
                f"<tr><td>{esc(check['name'])}</td><td>{esc(_fmt(check['value']))}</td>"
                f"<td>{esc(_fmt(check['limit']))}</td><td>{flag}</td></tr>"
            )
        parts.append("</table>")
    drift = summary.get("drift")
    if drift:
        parts.append(
            "<h2>Features</h2><table><tr><th>feature</th><th>kind</th><th>test</th><th>statistic</th>"
            "<th>p-value</th><th>drifted</th></tr>"
        )
        rows = [*drift["features"], *([summary["score_drift"]] if summary.get("score_drift") else [])]
        for row in rows:
            flag = "<span class='yes'>yes</span>" if row["drifted"] else "no"
            parts.append(
                f"<tr><td>{esc(row['name'])}</td><td>{esc(row['kind'])}</td><td>{esc(row['test'])}</td>"
                f"<td>{esc(_fmt(row['statistic']))}</td><td>{esc(_fmt(row['p_value']))}</td><td>{flag}</td></tr>"
            )
        parts.append(f"</table><p>Corrected threshold: p &lt; {esc(_fmt(drift['threshold']))}.</p>")
    for name, image in images.items():
        parts.append(
            f"<h3>{esc(name)}: reference vs current</h3>"
            f"<img alt='{esc(name)}' src='data:image/png;base64,{image}'>"
        )
    performance = summary.get("performance")
    if performance:
        parts.append("<h2>Performance and bias</h2><pre>" + esc(json.dumps(performance, indent=2)) + "</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write(
    summary: dict[str, Any],
    out_dir: Path,
    reference: pd.DataFrame | None = None,
    current: pd.DataFrame | None = None,
    contract: Contract | None = None,
    reference_scores: np.ndarray | None = None,
) -> dict[str, Path]:
    """Write drift.json, summary.md and report.html under out_dir; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    images = plots(summary, reference, current, contract, reference_scores) if contract is not None else {}
    paths = {"json": out_dir / JSON_NAME, "markdown": out_dir / MARKDOWN_NAME, "html": out_dir / HTML_NAME}
    write_json(summary, paths["json"])
    paths["markdown"].write_text(markdown(summary) + "\n")
    paths["html"].write_text(render_html(summary, images))
    return paths


def write_json(summary: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
    return path
