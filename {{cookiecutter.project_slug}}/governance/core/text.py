"""How numbers and values read in every document (model cards, PR comments, reports, the CLI)."""

from __future__ import annotations

from typing import Any


def fmt(value: Any) -> str:
    """Four significant digits for floats, yes/no for booleans, n/a for a missing value."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
