"""The demo's closing summary: a table on the terminal and one HTML page tying the reports together.

Why one page: the lifecycle leaves its evidence in many places (Data Docs, the model card,
the drift report, the PR comment on the GitHub stand-in, the GitOps pull request, CI
artifacts, logs). `build/demo/index.html` links each with a relative path, so the page
works straight from disk, and inlines the short Markdown ones so nothing needs a renderer.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path


class DemoError(RuntimeError):
    """A step failed; the message says what was expected, what happened and where the log is."""


@dataclass
class Step:
    name: str
    what: str
    seconds: float = 0.0
    status: str = "not run"  # ok | FAILED | not run
    note: str = ""
    log: Path | None = None


@dataclass
class Evidence:
    """Reports the steps produced: title -> path, and Markdown texts shown inline."""

    links: dict[str, Path] = field(default_factory=dict)
    inline: dict[str, str] = field(default_factory=dict)
    facts: dict[str, str] = field(default_factory=dict)


def table(steps: list[Step], total: float) -> str:
    """Plain Markdown: readable on a terminal and pasteable into a README."""
    lines = ["| # | step | result | seconds | note |", "|---:|---|---|---:|---|"]
    for number, step in enumerate(steps, start=1):
        note = step.note.splitlines()[0] if step.note else ""
        lines.append(f"| {number} | {step.name} | {step.status} | {step.seconds:.1f} | {note} |")
    lines.append(f"| | total | | {total:.1f} | |")
    return "\n".join(lines)


def _relative(path: Path, start: Path) -> str:
    try:
        return path.resolve().relative_to(start.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_uri()


def index_page(out: Path, steps: list[Step], evidence: Evidence, total: float) -> Path:
    """Write out/index.html and return its path."""
    folder = out.parent
    ok = all(step.status == "ok" for step in steps)
    rows = []
    for number, step in enumerate(steps, start=1):
        log = f'<a href="{html.escape(_relative(step.log, folder))}">log</a>' if step.log else ""
        colour = {"ok": "#1a7f37", "FAILED": "#cf222e"}.get(step.status, "#6e7781")
        rows.append(
            f"<tr><td>{number}</td><td><b>{html.escape(step.name)}</b><br><small>{html.escape(step.what)}"
            f'</small></td><td style="color:{colour}"><b>{html.escape(step.status)}</b></td>'
            f"<td>{step.seconds:.1f}</td><td>{html.escape(step.note)}</td><td>{log}</td></tr>"
        )
    links = "".join(
        f'<li><a href="{html.escape(_relative(path, folder))}">{html.escape(title)}</a>'
        f"{'' if path.exists() else ' <small>(missing)</small>'}</li>"
        for title, path in evidence.links.items()
    )
    facts = "".join(
        f"<tr><th>{html.escape(key)}</th><td><code>{html.escape(value)}</code></td></tr>"
        for key, value in evidence.facts.items()
    )
    inline = "".join(
        f"<details><summary>{html.escape(title)}</summary><pre>{html.escape(text)}</pre></details>"
        for title, text in evidence.inline.items()
    )
    verdict = "every step green" if ok else "stopped at a failing step"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>make demo: the model's lifecycle</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; }}
table {{ border-collapse: collapse; width: 100%; }} td, th {{ border: 1px solid #d0d7de; padding: .4em;
vertical-align: top; text-align: left; }} pre {{ background: #f6f8fa; padding: 1em; overflow-x: auto;
white-space: pre-wrap; }} details {{ margin: .5em 0; }} summary {{ cursor: pointer; font-weight: bold; }}
</style></head><body>
<h1>make demo: data to retraining pull request to GitOps, on this machine</h1>
<p>{html.escape(verdict)} &middot; {total:.0f} s in all &middot; written
{datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}. GitHub and the container registry are
<b>local stand-ins</b> (see the facts below); everything else is the generated project's own
make targets and workflows.</p>
<h2>Steps</h2>
<table><tr><th>#</th><th>step</th><th>result</th><th>s</th><th>what happened</th><th></th></tr>
{"".join(rows)}</table>
<h2>Reports</h2><ul>{links}</ul>
<h2>Facts</h2><table>{facts}</table>
<h2>Texts</h2>{inline}
</body></html>
"""
    out.write_text(page)
    return out
