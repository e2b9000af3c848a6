"""Validate a batch of data against the contract with Great Expectations.

The expectation suite is generated from ``contract.yaml`` on every run, never written by
hand, so the data checks cannot drift away from the features the model and the service
use. A run goes through a GX Checkpoint, which renders HTML Data Docs under
``reports/data_docs/`` for people and a JSON result under ``reports/validation/`` for CI.

What a failure looks like matters as much as catching it: every failed expectation is
reported as one line naming the rule, the column and a few offending values, and a file
that cannot even be read as a table (empty, binary, a broken CSV, over the size limit)
fails with a sentence instead of a traceback.

`make data` runs this same suite (:func:`check_frame`, no reports) on the rows it is about
to snapshot and writes nothing when they fail, so a snapshot always holds rows that passed.

Great Expectations is imported only inside :func:`run_checkpoint` because the import alone
takes seconds; reading and summarising stay cheap.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data_pipelines.snapshot import EVENT_TIME, MAX_FILE_MB, UnreadableBatch, conform, read_table
from governance.core import progress
from governance.core.contract import Contract, Feature, Target
from governance.core.paths import PATHS, Paths
from governance.core.records import ValidationFailure, ValidationReport, write_json

REPORTS = PATHS.reports
MIN_ROWS = 1
EXAMPLES = 5  # offending values shown per failed expectation
LARGEST = sys.float_info.max  # the bound of a range check on a side the contract leaves open

# Accepted pandas dtypes per contract dtype; "int"/"float"/"str" match single values in a mixed column.
INT_TYPES = ["int", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
INT_TYPES += ["Int8Dtype", "Int16Dtype", "Int32Dtype", "Int64Dtype"]
FLOAT_TYPES = [*INT_TYPES, "float", "float32", "float64", "Float32Dtype", "Float64Dtype"]
STRING_TYPES = ["str", "StringDtype"]
BOOL_TYPES = ["bool", "bool_", "boolean", "BooleanDtype"]
TYPE_LISTS = {"int64": INT_TYPES, "float64": FLOAT_TYPES, "string": STRING_TYPES, "bool": BOOL_TYPES}


Failure = ValidationFailure  # one failed expectation (the record the PR comment reads too)


def failed(
    expectation: str, column: str | None, rule: str, detail: str, examples: list[Any] | None = None
) -> Failure:
    return Failure(expectation=expectation, column=column, rule=rule, detail=detail, examples=examples or [])


@dataclass
class Outcome:
    """The verdict on one batch plus where its reports were written."""

    name: str
    success: bool
    failures: list[Failure]
    rows: int | None = None
    evaluated: int = 0
    data_docs: Path | None = None
    result_path: Path | None = None

    def summary(self) -> str:
        if self.success:
            return f"validation of '{self.name}' passed: {self.evaluated} expectations on {self.rows} rows"
        count = len(self.failures)
        lines = [f"validation of '{self.name}' FAILED: {count} failed expectation{'s' * (count != 1)}"]
        lines += [failure.line() for failure in self.failures]
        return "\n".join(lines)


# --- the suite, generated from the contract ------------------------------------------------------


def expectation_specs(contract: Contract, frame: pd.DataFrame) -> list[tuple[str, dict[str, Any], str]]:
    """(GX expectation class, its arguments, the rule in words) for every check of this batch.

    Column-level checks are only planned for columns the batch has, and range checks only
    for columns that are numbers: a missing column or a word in a numeric column is
    reported once, by name, instead of once per check that could not run. Every numeric
    feature's values must be finite (inf and -inf break its range, bounded or not), and the
    mean is only checked when they are, so an infinity is reported once too.
    """
    present = set(frame.columns)
    allowed = [*contract.columns, *([EVENT_TIME] if EVENT_TIME in present else [])]
    specs: list[tuple[str, dict[str, Any], str]] = [
        (
            "ExpectTableColumnsToMatchSet",
            {"column_set": allowed, "exact_match": True},
            "columns must be exactly the contract's (plus an optional event_time)",
        ),
        ("ExpectTableRowCountToBeBetween", {"min_value": MIN_ROWS}, f"a batch needs at least {MIN_ROWS} row"),
    ]
    for name in contract.columns:
        specs.append(("ExpectColumnToExist", {"column": name}, "the contract requires this column"))
    for feature in contract.features:
        if feature.name in present:
            specs += _feature_specs(feature, frame[feature.name])
    if contract.target.name in present:
        specs += _target_specs(contract.target, frame[contract.target.name])
    sensitive = contract.sensitive
    if sensitive and sensitive.name in present:
        specs.append(
            (
                "ExpectColumnValuesToBeInTypeList",
                {"column": sensitive.name, "type_list": STRING_TYPES},
                "text",
            )
        )
        if not sensitive.nullable:
            specs.append(("ExpectColumnValuesToNotBeNull", {"column": sensitive.name}, "nullable: false"))
        if sensitive.categories:
            values = list(sensitive.categories)
            specs.append(
                (
                    "ExpectColumnValuesToBeInSet",
                    {"column": sensitive.name, "value_set": values},
                    f"one of {values}",
                )
            )
    if EVENT_TIME in present:
        specs.append(("ExpectColumnValuesToNotBeNull", {"column": EVENT_TIME}, "must be a timestamp"))
    return specs


def _feature_specs(feature: Feature, batch: pd.Series) -> list[tuple[str, dict[str, Any], str]]:
    column = feature.name
    numbers = pd.api.types.is_numeric_dtype(batch.dtype) and not pd.api.types.is_bool_dtype(batch.dtype)
    specs: list[tuple[str, dict[str, Any], str]] = [
        (
            "ExpectColumnValuesToBeInTypeList",
            {"column": column, "type_list": TYPE_LISTS[feature.dtype]},
            f"type {feature.dtype}",
        )
    ]
    if not feature.nullable:
        specs.append(("ExpectColumnValuesToNotBeNull", {"column": column}, "nullable: false"))
    if feature.is_numeric:
        if numbers:
            low = -LARGEST if feature.min is None else feature.min
            high = LARGEST if feature.max is None else feature.max
            bounds = {"min_value": low, "max_value": high}
            specs.append(
                ("ExpectColumnValuesToBeBetween", {"column": column, **bounds}, _range_rule(feature))
            )
            bounded = feature.min is not None or feature.max is not None
            if bounded and bool(np.isfinite(batch.dropna().to_numpy(dtype=float)).all()):
                span = f"[{_fmt(feature.min, '-inf')}, {_fmt(feature.max, 'inf')}]"
                specs.append(
                    ("ExpectColumnMeanToBeBetween", {"column": column, **bounds}, f"mean within {span}")
                )
    else:
        values = list(feature.categories)
        specs.append(
            ("ExpectColumnValuesToBeInSet", {"column": column, "value_set": values}, f"one of {values}")
        )
    return specs


def _target_specs(target: Target, batch: pd.Series) -> list[tuple[str, dict[str, Any], str]]:
    """The label: never missing; one of the classes, each of which occurs; or a finite number.

    Classes are compared as the contract's values and type (the class "1" is not the number 1,
    True is not 1). A regression target's range is only checked when the column holds numbers,
    so a word in it is reported once, by the type check.
    """
    column, dtype = target.name, target.dtype or "int64"
    specs: list[tuple[str, dict[str, Any], str]] = [
        (
            "ExpectColumnValuesToBeInTypeList",
            {"column": column, "type_list": TYPE_LISTS[dtype]},
            f"type {dtype}",
        ),
        ("ExpectColumnValuesToNotBeNull", {"column": column}, "the target must not be missing"),
    ]
    if not target.is_classification:
        if pd.api.types.is_numeric_dtype(batch.dtype) and not pd.api.types.is_bool_dtype(batch.dtype):
            bounds = {"min_value": -LARGEST, "max_value": LARGEST}
            specs.append(("ExpectColumnValuesToBeBetween", {"column": column, **bounds}, "a finite number"))
        return specs
    classes = list(target.classes)
    return [
        *specs,
        ("ExpectColumnValuesToBeInSet", {"column": column, "value_set": classes}, f"one of {classes}"),
        (
            "ExpectColumnDistinctValuesToContainSet",
            {"column": column, "value_set": classes},
            f"every class of {classes} must occur",
        ),
    ]


def _fmt(bound: float | None, open_end: str = "-inf") -> str:
    return open_end if bound is None else f"{bound:g}"


def _range_rule(feature: Feature) -> str:
    if feature.min is not None and feature.max is not None:
        return f"range [{_fmt(feature.min)}, {_fmt(feature.max)}]"
    if feature.min is not None:
        return f"a finite number >= {_fmt(feature.min)}"
    if feature.max is not None:
        return f"a finite number <= {_fmt(feature.max)}"
    return "a finite number"


# --- running it ------------------------------------------------------------------------------------


def import_gx() -> Any:
    """Great Expectations, with its usage analytics off; slow (seconds), so only when validating."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    return gx


def run_checkpoint(
    frame: pd.DataFrame, contract: Contract, name: str, reports: Path = REPORTS, *, data_docs: bool = True
) -> tuple[Any, Path | None]:
    """Validate ``frame`` through an ephemeral GX context and a Checkpoint that updates Data Docs.

    Returns GX's CheckpointResult and the Data Docs index page. The context lives in memory
    (nothing under a ``gx/`` folder to commit or go stale): the suite is rebuilt from the
    contract on every run, and only the reports are kept. ``data_docs=False`` skips the
    HTML rendering, which costs about as much as the validation itself.
    """
    gx = import_gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    docs = (reports / "data_docs").resolve()
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    actions = []
    if data_docs:
        context.add_data_docs_site(
            site_name="local",
            site_config={
                "class_name": "SiteBuilder",
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs)},
            },
        )
        actions.append(gx.checkpoint.UpdateDataDocsAction(name="update_data_docs", site_names=["local"]))
    batch = context.data_sources.add_pandas("batches").add_dataframe_asset(name)
    definition = batch.add_batch_definition_whole_dataframe("whole_batch")
    expectations = [
        getattr(gx.expectations, kind)(**arguments, meta={"rule": rule})
        for kind, arguments, rule in expectation_specs(contract, frame)
    ]
    suite = context.suites.add(
        gx.ExpectationSuite(name=f"{contract.dataset}_contract", expectations=expectations)
    )
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{name}_against_contract", data=definition, suite=suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=f"{contract.dataset}_checkpoint",
            validation_definitions=[validation],
            actions=actions,
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": 20},
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": frame})
    return result, (docs / "index.html" if data_docs else None)


def failures_from(result: Any) -> list[Failure]:
    """Turn GX's CheckpointResult into one Failure per failed expectation, with example bad values."""
    failures = []
    for validation in result.run_results.values():
        for item in validation.results:
            if not item.success:
                config = item.expectation_config
                failures.append(_failure(config.type, config.kwargs, config.meta or {}, item))
    return failures


def _failure(kind: str, kwargs: dict[str, Any], meta: dict[str, Any], item: Any) -> Failure:
    rule = meta.get("rule") or kind
    result = item.result or {}
    column = kwargs.get("column")
    exception = item.exception_info or {}
    if exception.get("raised_exception"):
        message = str(exception.get("exception_message", "")).strip().splitlines()
        return failed(kind, column, rule, f"could not be checked: {message[0] if message else 'error'}")
    if kind == "expect_table_columns_to_match_set":
        mismatched = (result.get("details") or {}).get("mismatched", {})
        parts = [f"{key} {mismatched[key]}" for key in ("missing", "unexpected") if mismatched.get(key)]
        return failed(kind, None, rule, "; ".join(parts) or "columns differ")
    if kind == "expect_column_to_exist":
        return failed(kind, column, rule, "the column is missing (renamed or dropped?)")
    if kind == "expect_column_distinct_values_to_contain_set":
        observed = [_jsonable(value) for value in result.get("observed_value") or []]
        return failed(kind, column, rule, f"observed only {observed}")
    if "unexpected_count" not in result:
        return failed(kind, column, rule, f"observed {_jsonable(result.get('observed_value'))!r}")
    count, total = result.get("unexpected_count", 0), result.get("element_count", 0)
    if kind == "expect_column_values_to_not_be_null":
        rows = result.get("partial_unexpected_index_list") or []
        shown = f" (rows {rows[:EXAMPLES]})" if rows else ""
        return failed(kind, column, rule, f"{count} of {total} rows are missing{shown}")
    examples = _distinct(result.get("partial_unexpected_list") or [])
    if kind == "expect_column_values_to_be_in_type_list":
        types = sorted({type(value).__name__ for value in examples})
        return failed(kind, column, rule, f"{count} of {total} values are {', '.join(types)}", examples)
    return failed(kind, column, rule, f"{count} of {total} values break it", examples)


def _distinct(values: list[Any]) -> list[Any]:
    seen: list[Any] = []
    for value in values:
        value = _jsonable(value)
        if value not in seen:
            seen.append(value)
        if len(seen) == EXAMPLES:
            break
    return seen


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        try:
            return value.item()
        except (ValueError, AttributeError):
            return str(value)
    if value is pd.NA or value is pd.NaT:
        return None
    return value if isinstance(value, str | int | float | bool | type(None)) else str(value)


def validate_frame(
    frame: pd.DataFrame,
    contract: Contract,
    name: str,
    reports: Path = REPORTS,
    source: str = "",
    *,
    data_docs: bool = True,
) -> Outcome:
    """Validate an in-memory batch and write Data Docs plus ``reports/validation/<name>.json``."""
    outcome, described = _validate(frame, contract, name, reports, data_docs)
    outcome.result_path = _write_result(outcome, contract, reports, source, described)
    return outcome


def check_frame(frame: pd.DataFrame, contract: Contract, name: str) -> Outcome:
    """The same suite as :func:`validate_frame`, for the verdict alone: no Data Docs, no JSON result.

    `make data` runs it on the rows it is about to snapshot (data_pipelines/ingest.py).
    """
    return _validate(frame, contract, name, REPORTS, data_docs=False)[0]


def _validate(
    frame: pd.DataFrame, contract: Contract, name: str, reports: Path, data_docs: bool
) -> tuple[Outcome, dict[str, Any]]:
    name = safe_name(name)
    conformed = conform(frame, contract)
    result, docs = run_checkpoint(conformed, contract, name, reports, data_docs=data_docs)
    failures = failures_from(result)
    if frame.empty:
        # Statistics of nothing fail too; the row count and the columns are what to fix.
        failures = [
            failure for failure in failures if failure.column is None or "exist" in failure.expectation
        ]
    described = result.describe_dict()
    statistics = (described.get("validation_results") or [{}])[0].get("statistics", {})
    outcome = Outcome(
        name=name,
        success=bool(result.success) and not failures,
        failures=failures,
        rows=len(frame),
        evaluated=int(statistics.get("evaluated_expectations", 0)),
        data_docs=docs,
    )
    return outcome, described


def safe_name(name: str) -> str:
    """A batch name usable as a file name and a GX asset name."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "batch"
    return cleaned[:100]


def validate_file(
    path: Path | str,
    contract: Contract,
    reports: Path = REPORTS,
    name: str | None = None,
    *,
    data_docs: bool = True,
    max_mb: int = MAX_FILE_MB,
) -> Outcome:
    """Validate a CSV/Parquet file; an unreadable file (or one over ``max_mb`` MiB) is a failed batch.

    Raises InputError only for a wrong request (missing file, unsupported suffix).
    """
    path = Path(path)
    name = safe_name(name or path.stem)
    try:
        frame = read_table(path, max_mb, contract)
    except UnreadableBatch as error:
        failure = failed("read_table", None, error.rule, error.message)
        outcome = Outcome(name=name, success=False, failures=[failure])
        outcome.result_path = _write_result(outcome, contract, reports, str(path), None)
        return outcome
    return validate_frame(frame, contract, name, reports, source=str(path), data_docs=data_docs)


def _write_result(
    outcome: Outcome, contract: Contract, reports: Path, source: str, result: dict[str, Any] | None
) -> Path:
    report = ValidationReport(
        name=outcome.name,
        source=source,
        success=outcome.success,
        rows=outcome.rows,
        contract_sha256=contract.digest,
        failures=tuple(outcome.failures),
        data_docs=str(outcome.data_docs) if outcome.data_docs else None,
        great_expectations=json.loads(json.dumps(result, default=str)) if result is not None else None,
    )
    return write_json(report, reports / "validation" / f"{outcome.name}.json")


SNAPSHOT_FILES = ("data.parquet", "manifest.json")


def validate(paths: Paths, data: Path | None = None, reports: Path | None = None) -> Outcome:
    """`make validate [DATA=...]`: a CSV/Parquet file, a snapshot folder, or the latest snapshot."""
    from data_pipelines.ingest import contract_of
    from data_pipelines.snapshot import LATEST, load
    from data_pipelines.source import max_file_mb

    contract = contract_of(paths)
    reports = reports or paths.reports
    if data is not None and not data.is_dir() and data.name not in SNAPSHOT_FILES:
        with progress.step(f"validating {data} against the contract with Great Expectations"):
            return validate_file(data, contract, reports, max_mb=max_file_mb(paths))
    frame, manifest = load(data or LATEST, root=paths.snapshots)
    name = manifest["snapshot_id"]
    with progress.step(f"validating snapshot {name} ({manifest['rows']} rows) with Great Expectations"):
        return validate_frame(frame, contract, name, reports, source=f"snapshot {name}")
