"""Read the project's YAML configuration the one way every domain expects.

Policy, training parameters, monitoring settings and the registry are all YAML mappings
edited by people; each reader must turn a missing file, broken YAML or a non-mapping into
one sentence naming the file, in the caller's own error type, instead of a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml


def read_yaml_mapping(path: Path | str, error: type[Exception], what: str) -> dict[str, Any]:
    """The mapping in `path`; `what` names the file in messages ("policy file", ...)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist") from None
    except yaml.YAMLError as problem:
        raise error(f"{what} {path} is not valid YAML: {problem}") from None
    if not isinstance(raw, dict):
        raise error(f"{what} {path} must be a mapping (got {type(raw).__name__})")
    return raw


def format_number(value: Any) -> str:
    """Numbers for people (model cards, PR comments, reports): four significant digits."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def numeric_items(mapping: Mapping[str, Any] | None) -> dict[str, float]:
    """The entries that are numbers (None, text and booleans left out): metrics to compare."""
    return {
        key: value
        for key, value in (mapping or {}).items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
