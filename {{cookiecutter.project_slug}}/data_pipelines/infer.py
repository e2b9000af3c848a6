"""Infer a draft data contract from a user's own table, for a person to review.

Bringing your own CSV/Parquet should not start with typing a schema by hand, but neither
should a guess silently become the law the model is held to. So the draft says what it
saw (observed ranges, categories, how many values were missing) in comments next to every
decision, widens numeric ranges a little so the next batch does not fail on its first new
maximum, and leaves out columns that do not look like features (identifiers, free text,
timestamps) with a note saying why. The person reviews it and commits it.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from data_pipelines.snapshot import EVENT_TIME, read_table
from governance.core import progress
from governance.core.contract import parse_contract
from governance.core.errors import InputError
from governance.core.paths import Paths

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # the contract's rule for column names
MAX_CATEGORIES = 50  # more distinct texts than this looks like an identifier or free text
WIDEN = 0.05  # numeric bounds are widened by this share of the observed span


class InferenceError(InputError):
    """The table cannot yield a contract (no such target, a target that is not binary, ...)."""


def infer(
    frame: pd.DataFrame,
    target: str,
    sensitive: str | None = None,
    dataset: str = "dataset",
    source: str = "",
) -> str:
    """Return the YAML text of a draft contract for ``frame``, with review comments."""
    if frame.empty:
        raise InferenceError(f"cannot infer a contract from {source or 'the data'}: it has no rows")
    columns = [str(column) for column in frame.columns]
    if target not in columns:
        raise InferenceError(f"target column '{target}' is not in the data (columns: {columns})")
    if sensitive and sensitive not in columns:
        raise InferenceError(f"sensitive attribute '{sensitive}' is not in the data (columns: {columns})")
    if sensitive == target:
        raise InferenceError(f"sensitive attribute '{sensitive}' must differ from the target column")
    _check_target(frame[target], target)

    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    lines = [
        f"# DRAFT data contract inferred by `make contract` on {stamp}",
        f"# from {source or 'a table'} ({len(frame)} rows).",
        "# REVIEW EVERY LINE before you commit it: validation rejects whatever falls outside it, and",
        "# training, the ONNX signature, the serving schema and the drift checks all follow it.",
        "# - numeric ranges are the observed ones widened a little: set the true limits of each feature;",
        "# - categories are the values seen in this file: add the ones that can legitimately occur;",
        "# - nullable says whether values were missing here; columns left out are listed at the end.",
        "version: 1",
        f"dataset: {_dataset_name(dataset)}",
        "target:",
        f"  name: {target}",
        "  dtype: int64",
        "  classes: [0, 1]",
        "  positive_class: 1",
    ]
    if sensitive:
        values = frame[sensitive]
        categories = sorted({_text(value) for value in values.dropna()})
        lines += [
            "# Not a model input: used for bias metrics in training and monitoring.",
            "sensitive_attribute:",
            f"  name: {sensitive}",
            f"  categories: {_list(categories)}",
            f"  nullable: {_bool(values.isna().any())}",
        ]
    lines.append("features:")
    skipped: list[str] = []
    for name in columns:
        if name in (target, sensitive, EVENT_TIME):
            continue
        block, reason = _feature(name, frame[name])
        if block:
            lines += block
        else:
            skipped.append(f"#   {name}: {reason}")
    if len(lines) == lines.index("features:") + 1:
        raise InferenceError(
            f"no column of {source or 'the data'} looks like a feature:\n" + "\n".join(skipped)
        )
    if skipped:
        lines += ["# Left out (not features as they are; `make data` drops them from snapshots):", *skipped]
    return "\n".join(lines) + "\n"


def _check_target(values: pd.Series, target: str) -> None:
    present = values.dropna()
    if len(present) < len(values):
        raise InferenceError(f"target column '{target}' has {len(values) - len(present)} missing values")
    seen = set(present.unique().tolist())
    if not seen <= {0, 1} or not seen:
        shown = sorted(map(str, seen))[:10]
        raise InferenceError(
            f"target column '{target}' must be binary and coded 0/1 (positive = 1); found values {shown}: "
            "recode it in the file"
        )


def _feature(name: str, values: pd.Series) -> tuple[list[str], str]:
    """The YAML lines for one feature, or no lines and the reason it was left out."""
    if not NAME.match(name):
        return [], "not usable as a name (letters, digits and _ only): rename the column in the file"
    present = values.dropna()
    if present.empty:
        return [], "every value is missing"
    missing = 1.0 - len(present) / len(values)
    nullable = f"  nullable: {_bool(missing > 0)}" + (f"  # {missing:.1%} missing" if missing else "")
    dtype = values.dtype
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return [], f"dates or timestamps (only '{EVENT_TIME}' is used, to date snapshots)"
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
        numbers = present.astype(float)
        infinite = numbers[~numbers.map(math.isfinite)]
        if not infinite.empty:
            raise InferenceError(
                f"column '{name}' holds {len(infinite)} infinite values (e.g. {infinite.iloc[0]} in row "
                f"{infinite.index[0]}): a numeric range needs finite numbers; fix the file, then draft again"
            )
        integral = pd.api.types.is_integer_dtype(dtype) or bool((numbers == numbers.round()).all())
        low, high = float(numbers.min()), float(numbers.max())
        wide_low, wide_high = _widen(low, high, integral)
        distinct = present.nunique()
        note = f"  # observed {_number(low, integral)} .. {_number(high, integral)}"
        if distinct <= 2:
            note += f"; only {distinct} distinct values: numeric or categorical?"
        return [
            f"  - name: {name}",
            "    kind: numeric",
            f"    dtype: {'int64' if integral else 'float64'}",
            f"    min: {_number(wide_low, integral)}",
            f"    max: {_number(wide_high, integral)}" + note,
            "  " + nullable,
        ], ""
    if _looks_like_dates(present):
        return [], f"dates or timestamps (only '{EVENT_TIME}' is used, to date snapshots)"
    categories = sorted({_text(value) for value in present})
    if len(categories) > MAX_CATEGORIES:
        return [], f"{len(categories)} distinct values (an identifier or free text?)"
    return [
        f"  - name: {name}",
        "    kind: categorical",
        "    dtype: string",
        f"    categories: {_list(categories)}",
        "  " + nullable,
    ], ""


def _looks_like_dates(present: pd.Series) -> bool:
    """Text that is entirely ISO dates/timestamps is a time column, not a category."""
    if not all(isinstance(value, str) for value in present):
        return False
    parsed = pd.to_datetime(present, errors="coerce", format="ISO8601", utc=True)
    return bool(parsed.notna().all())


def _widen(low: float, high: float, integral: bool) -> tuple[float, float]:
    """Widen [low, high] by WIDEN of the span, rounded outwards, never crossing zero."""
    pad = (high - low) * WIDEN or abs(high) * WIDEN or 1.0
    step = 10.0 ** math.floor(math.log10(pad))
    if integral:
        step = max(step, 1.0)
    wide_low = math.floor((low - pad) / step) * step
    wide_high = math.ceil((high + pad) / step) * step
    if low >= 0 > wide_low:
        wide_low = 0.0
    if high <= 0 < wide_high:
        wide_high = 0.0
    return wide_low, wide_high


def _number(value: float, integral: bool) -> str:
    """A YAML number PyYAML reads back as a number (it wants a dot in any float)."""
    if integral or float(value).is_integer():
        return str(round(value))
    text = repr(float(value))
    if "e" in text or "E" in text:
        text = f"{value:.15f}".rstrip("0")
    return text


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _list(items: list[str]) -> str:
    # JSON strings are valid YAML and keep words like "yes", "no" or "on" from turning into booleans.
    return "[" + ", ".join(json.dumps(item, ensure_ascii=False) for item in items) + "]"


def _bool(value: Any) -> str:
    return "true" if bool(value) else "false"


def _dataset_name(name: str) -> str:
    return json.dumps(name) if not NAME.match(name) else name


def _declared(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return raw if isinstance(raw, dict) else {}


def draft_contract(
    paths: Paths, data: Path | None = None, target: str | None = None, sensitive: str | None = None
) -> str:
    """`make contract`: a draft contract from the given file, else the configured source."""
    from data_pipelines import source

    config = source.read_config(paths)
    if data is not None:
        frame, shown = read_table(data, config.max_file_mb), str(data)
    elif config.kind == "file":
        frame, shown = read_table(paths.root / str(config.path), config.max_file_mb), str(config.path)
    else:
        from data_pipelines import example

        frame, shown = example.generate(config.rows, seed=config.seed), "the example data"
    target = target or config.target_column
    sensitive = config.sensitive_attribute if sensitive is None else sensitive
    if not target:
        raise InferenceError(
            "no target column: pass --target or set target_column in data_pipelines/source.yaml"
        )
    with progress.step(f"inferring a draft contract from {shown} ({len(frame)} rows)"):
        dataset = str(_declared(paths.contract).get("dataset") or "dataset")
        text = infer(frame, target, sensitive or None, dataset=dataset, source=shown)
    parse_contract(yaml.safe_load(text))  # never hand out a draft the loader would reject
    return text


def write_contract(text: str, output: Path, force: bool = False) -> Path:
    """Write a draft, refusing to overwrite a contract that already declares features."""
    if output.exists() and not force and _declared(output).get("features"):
        raise InferenceError(
            f"{output} already declares features; not overwriting a reviewed contract. Print the draft "
            "with `mlops contract`, or pass --force (make contract FORCE=1)."
        )
    output.write_text(text)
    progress.note(f"wrote the draft contract to {output}: review it, then commit it")
    return output
