"""Documents people read (model cards, PR comments, drift reports) rendered from template files.

The wording and layout live in governance/templates/ (Jinja2), the numbers come from records,
and every number is shown by the one formatter (`governance.core.text.fmt`), so a model card,
a PR comment and a report never disagree on how 0.81234 reads. Markdown tables escape `|` in
cells (`cell`); HTML is autoescaped; the reports' CSS is one file, inlined so each report stays
a single self-contained page.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from governance.core.paths import PATHS
from governance.core.text import fmt


def cell(value: Any) -> str:
    """A value inside a Markdown table cell: formatted, with pipes escaped so the row holds."""
    return fmt(value).replace("|", "\\|").replace("\n", " ")


@cache
def environment(folder: Path = PATHS.templates) -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(folder)),
        # Template files end in .j2: "html.j2" is what makes autoescaping apply to the HTML reports.
        autoescape=select_autoescape(["html", "html.j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(fmt=fmt, cell=cell)
    env.globals["css"] = lambda: (folder / "report.css").read_text()
    return env


def render(name: str, **context: Any) -> str:
    return environment().get_template(name).render(**context)
