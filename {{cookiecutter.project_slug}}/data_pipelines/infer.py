"""Infer a draft data contract from a user's own table, for a person to review.

Bringing your own CSV/Parquet should not start with typing a schema by hand, but neither
should a guess silently become the law the model is held to. So the draft says what it
saw (observed ranges, categories, how many values were missing) in comments next to every
decision, widens numeric ranges a little so the next batch does not fail on its first new
maximum, and leaves out columns that do not look like features (identifiers, free text,
timestamps) with a note saying why. The person reviews it and commits it.

The target keeps the file's own labels (words, booleans, integers: nothing asks for a recode)
and gets a task: the one the current contract declares (a project is baked with one), unless
the data contradicts it, else the one its values suggest. Each choice is said once, with its
reason, on the terminal and as a comment in the draft.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from data_pipelines.snapshot import EVENT_TIME, read_table
from governance.core import progress
from governance.core.contract import class_key, parse_contract
from governance.core.errors import InputError
from governance.core.paths import Paths
from governance.core.tasks import BINARY, MULTICLASS, REGRESSION, TASKS

MAX_CLASSES = 20  # more distinct whole numbers than this look like a quantity, not classes
# Labels that name the outcome a binary model is usually asked to detect (compared in lower case).
POSITIVE_WORDS = frozenset(
    ["1", "y", "yes", "true", "t", "positive", "pos", "default", "defaulted", "churn", "churned", "fraud",
     "fraudulent", "spam", "malignant", "bad", "failure", "failed", "sick", "disease", "abnormal", "anomaly"]
)  # fmt: skip
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # the contract's rule for column names
MAX_CATEGORIES = 50  # more distinct texts than this looks like an identifier or free text
# Numeric bounds are widened by this share of the observed span: the bounds say what is plausible,
# not what one sample held (5 % of the span refused real unseen rows of scikit-learn's wine and
# breast cancer data split 80/20, tests/test_tasks.py); the drift tests watch the distribution.
WIDEN = 0.5


class InferenceError(InputError):
    """The table cannot yield a contract (no such target, a target that contradicts its task, ...)."""


@dataclass(frozen=True)
class TargetDraft:
    """What the target column is: its task, type and classes, and why, in sentences."""

    task: str
    dtype: str
    classes: tuple[Any, ...]
    positive_class: Any
    reasons: tuple[str, ...]

    def lines(self, name: str) -> list[str]:
        lines = [*(f"# {reason}" for reason in self.reasons), "target:", f"  name: {name}"]
        lines += [f"  task: {self.task}", f"  dtype: {self.dtype}"]
        if self.classes:
            lines.append(f"  classes: {_values(self.classes)}")
        if self.task == BINARY:
            lines.append(f"  positive_class: {json.dumps(self.positive_class)}")
        return lines


def infer_target(
    values: pd.Series, name: str, declared: str | None = None, order: Sequence[Any] = ()
) -> TargetDraft:
    """The target's task, type, classes and positive class, each with the reason it was chosen.

    ``declared`` (the task the current contract names) wins unless the data contradicts it.
    Otherwise: two distinct values make a binary task; non-whole numbers, or more than
    MAX_CLASSES distinct whole numbers, a regression; anything else (text, booleans, a few
    whole numbers) a multiclass task. Classes are the file's own values, sorted, or in the
    ``order`` the current contract lists them when it lists exactly these (a reviewed order,
    e.g. low, medium, high, survives drafting again).
    """
    present = values.dropna()
    if len(present) < len(values):
        raise InferenceError(
            f"target column '{name}' has {len(values) - len(present)} missing values (rule: every row needs "
            "its label): drop those rows or fill them in the file"
        )
    kind, labels = _label_kind(present, name)
    distinct = sorted(set(labels))
    shown = _values(distinct[:5]) + (f" and {len(distinct) - 5} more" if len(distinct) > 5 else "")
    holds = f"{len(distinct)} distinct {kind} {shown}"
    if len(distinct) < 2:
        raise InferenceError(f"target column '{name}' holds one value only {shown}: nothing to predict")
    if declared is not None:
        if declared not in TASKS:
            raise InferenceError(f"field target.task must be one of {list(TASKS)} (got {declared!r})")
        contradiction = _contradiction(declared, kind, len(distinct))
        if contradiction:
            raise InferenceError(
                f"target column '{name}': the contract declares task {declared}, but the data holds {holds}, "
                f"and {contradiction}: set target.task in data_pipelines/contract.yaml to the task you mean "
                "(or delete the line to let `make contract` infer it)"
            )
        task, why = declared, f"declared in the contract; the column holds {holds}"
    elif len(distinct) == 2:
        task, why = BINARY, f"the column holds two distinct {kind} {shown}"
    elif kind == "non-whole numbers":
        task, why = REGRESSION, f"the column holds {holds}"
    elif kind == "whole numbers" and len(distinct) > MAX_CLASSES:
        task, why = REGRESSION, f"the column holds {holds} (more than {MAX_CLASSES}: a quantity, not classes)"
    elif kind == "texts" and len(distinct) > MAX_CATEGORIES:
        raise InferenceError(
            f"target column '{name}' holds {holds}: more than {MAX_CATEGORIES} classes look like an "
            "identifier or free text; pick another target column"
        )
    else:
        task, why = MULTICLASS, f"the column holds {holds}"
    reasons = [f"Target '{name}': task {task}, because {why}."]
    if task == REGRESSION:
        reasons.append("Its values are read as float64 numbers.")
        return TargetDraft(task, "float64", (), None, tuple(reasons))
    kept = len(order) == len(distinct) and _typed(order) == _typed(distinct)
    classes = tuple(order) if kept else tuple(distinct)
    dtype = {"booleans": "bool", "texts": "string"}.get(kind, "int64")
    positive = None
    if task == BINARY:
        positive, because = _positive(labels, classes)
        other = classes[1 - classes.index(positive)]
        reasons.append(
            f"Positive class {json.dumps(positive)}: {because}; to make it {json.dumps(other)}, "
            f"set positive_class: {json.dumps(other)}."
        )
    else:
        how = "in the order the contract lists them" if kept else "sorted"
        reasons.append(
            f"Classes {_values(classes)}: the file's own values, {how}; reorder them freely (their order "
            "is the order of every served probabilities object)."
        )
    return TargetDraft(task, dtype, classes, positive, tuple(reasons))


def _typed(values: Sequence[Any]) -> set[tuple[str, Any]]:
    """Values with their type, so the class True is not the class 1 (other YAML is no class at all)."""
    return {(type(value).__name__, value) for value in values if isinstance(value, str | int | float)}


def _label_kind(present: pd.Series, name: str) -> tuple[str, list[Any]]:
    """What the labels are (booleans, whole numbers, non-whole numbers, texts) and each as that type.

    A CSV reader may hand whole numbers over as floats (1.0): they are the integer classes they equal.
    """
    if pd.api.types.is_bool_dtype(present.dtype) or all(isinstance(v, bool | np.bool_) for v in present):
        return "booleans", [bool(value) for value in present]
    if pd.api.types.is_numeric_dtype(present.dtype):
        numbers = present.astype(float)
        if not np.isfinite(numbers).all():
            bad = numbers[~np.isfinite(numbers)]
            raise InferenceError(
                f"target column '{name}' holds {len(bad)} infinite values (e.g. {bad.iloc[0]} in row "
                f"{bad.index[0]}): a label must be a finite number; fix the file, then draft again"
            )
        if bool((numbers == numbers.round()).all()):
            return "whole numbers", [int(value) for value in numbers]
        return "non-whole numbers", [float(value) for value in numbers]
    kinds = {type(value).__name__ for value in present}
    if kinds != {"str"}:
        raise InferenceError(
            f"target column '{name}' mixes value types {sorted(kinds)}: a label column holds one type"
        )
    return "texts", list(present)


def _contradiction(task: str, kind: str, distinct: int) -> str:
    """Why labels of ``kind`` cannot be a ``task`` target ('' when they can)."""
    if task == BINARY and distinct != 2:
        return "a binary target has exactly two"
    if task == MULTICLASS and kind == "non-whole numbers":
        return "classes are not fractions (a regression target?)"
    if task == MULTICLASS and distinct < 3:
        return "a multiclass target has at least three classes (two: binary_classification)"
    if task == REGRESSION and kind in ("texts", "booleans"):
        return "a regression target is a number"
    return ""


def _positive(labels: list[Any], classes: tuple[Any, ...]) -> tuple[Any, str]:
    """The binary class to detect: 1 of 0/1, true of booleans, a word naming it, else the rarer one."""
    if set(classes) == {0, 1} and not isinstance(classes[0], bool):
        return 1, "1 of 0/1"
    if isinstance(classes[0], bool):
        return True, "true of true/false"
    named = [value for value in classes if class_key(value).strip().lower() in POSITIVE_WORDS]
    if len(named) == 1:
        return named[0], f"the word {json.dumps(named[0])} names the outcome to detect"
    counts = [labels.count(value) for value in classes]
    rarer = classes[0] if counts[0] < counts[1] else classes[1]
    share = min(counts) / sum(counts)
    return rarer, f"the minority class ({share:.0%} of rows)"


def infer(
    frame: pd.DataFrame,
    target: str,
    sensitive: str | None = None,
    dataset: str = "dataset",
    source: str = "",
    task: str | None = None,
    classes: Sequence[Any] = (),
) -> str:
    """Return the YAML text of a draft contract for ``frame``, with review comments.

    ``task`` and ``classes`` are what the current contract declares, if anything (see
    :func:`infer_target`).
    """
    if frame.empty:
        raise InferenceError(f"cannot infer a contract from {source or 'the data'}: it has no rows")
    columns = [str(column) for column in frame.columns]
    if target not in columns:
        raise InferenceError(f"target column '{target}' is not in the data (columns: {columns})")
    if sensitive and sensitive not in columns:
        raise InferenceError(f"sensitive attribute '{sensitive}' is not in the data (columns: {columns})")
    if sensitive == target:
        raise InferenceError(f"sensitive attribute '{sensitive}' must differ from the target column")
    drafted = infer_target(frame[target], target, task, classes)

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
        *drafted.lines(target),
    ]
    if sensitive:
        values = frame[sensitive]
        categories = sorted({_text(value) for value in values.dropna()})
        lines += [
            "# Not a model input: used for bias metrics in training and monitoring.",
            "sensitive_attribute:",
            f"  name: {sensitive}",
            f"  categories: {_values(categories)}",
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
        # Whole numbers only when the file wrote them so: a float column counts as integral only when
        # missing values alone made it float (a column written as 42.0 may hold 42.5 tomorrow).
        whole = bool((numbers == numbers.round()).all())
        integral = pd.api.types.is_integer_dtype(dtype) or (whole and len(present) < len(values))
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
        f"    categories: {_values(categories)}",
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


def _values(values: Any) -> str:
    """A YAML flow list. JSON is valid YAML: words stay quoted text (so "yes", "on" or "1" never turn
    into booleans or numbers), numbers and booleans stay bare."""
    return "[" + ", ".join(json.dumps(value, ensure_ascii=False) for value in values) + "]"


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


def declared_target(declared: dict[str, Any], target: str) -> tuple[str | None, list[Any]]:
    """The task and classes the current contract names for this target column (none for another)."""
    block = declared.get("target")
    if not isinstance(block, dict) or block.get("name") not in (None, target):
        return None, []
    task, classes = block.get("task"), block.get("classes")
    return (None if task is None else str(task)), (classes if isinstance(classes, list) else [])


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

        frame = example.generate(config.rows, seed=config.seed, task=example.project_task(paths.contract))
        shown = "the example data"
    target = target or config.target_column
    sensitive = config.sensitive_attribute if sensitive is None else sensitive
    if not target:
        raise InferenceError(
            "no target column: pass --target or set target_column in data_pipelines/source.yaml"
        )
    declared = _declared(paths.contract)
    dataset = str(declared.get("dataset") or "dataset")
    task, classes = declared_target(declared, target)
    with progress.step(f"inferring a draft contract from {shown} ({len(frame)} rows)"):
        text = infer(
            frame, target, sensitive or None, dataset=dataset, source=shown, task=task, classes=classes
        )
    if target in frame.columns:
        for reason in infer_target(frame[target], target, task, classes).reasons:
            progress.note(reason)
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
