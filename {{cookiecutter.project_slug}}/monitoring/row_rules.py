"""The data contract's rules, checked per row on whole Arrow batches: which rows to reject, and why.

Batch scoring must never drop a row silently, and must never feed the model a value serving
would refuse. The rules are the contract's own (nullable, min, max, integer dtype,
categories), compiled to pyarrow compute expressions, so a million rows are checked in
milliseconds; Great Expectations validates whole datasets in the data pipeline, but running a
suite per record batch would cost more than scoring it. A row that breaks several rules is
reported with the first one, in contract order, as `field`, `rule` and a `reason` that shows
the value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from governance.core.contract import Contract, Feature
from governance.core.errors import InputError


class MissingColumns(InputError):
    """The input lacks contract features: nothing in it can be scored, so the whole run stops."""


@dataclass(frozen=True)
class Verdict:
    """Per row: `bad` is True where a rule is broken, `field`/`rule`/`reason` name the first one."""

    bad: pa.Array
    field: pa.Array
    rule: pa.Array
    reason: pa.Array


def arrow_type(feature: Feature) -> pa.DataType:
    return pa.float64() if feature.is_numeric else pa.string()


def require_columns(names: list[str], contract: Contract, source: str) -> None:
    missing = [name for name in contract.feature_names if name not in names]
    if missing:
        raise MissingColumns(
            f"{source}: column(s) {missing} required by the data contract are missing (present: {names[:20]})"
        )


def conform(batch: pa.RecordBatch | pa.Table, contract: Contract, source: str) -> pa.Table:
    """The contract's feature columns, typed as the model reads them: numbers float64, text a
    dictionary of strings (as Parquet's text columns are read)."""
    require_columns(batch.schema.names, contract, source)
    columns = {}
    for feature in contract.features:
        column = batch.column(feature.name)
        wanted = arrow_type(feature)
        if column.type != wanted and not _is_text_dictionary(column.type, feature):
            try:
                column = pc.cast(column, wanted)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
                kind = "numbers" if feature.is_numeric else "text"
                raise InputError(
                    f"{source}: column {feature.name!r} must hold {kind} (type {column.type}: {error})"
                ) from None
        if not feature.is_numeric and column.type == pa.string():
            # As Parquet's text arrives (CSV's does not): the rules and the feed then look at a
            # few distinct words instead of every row.
            column = pc.dictionary_encode(column)
        columns[feature.name] = column
    return pa.table(columns)


def _is_text_dictionary(kind: pa.DataType, feature: Feature) -> bool:
    """A categorical column read as an Arrow dictionary of text: checked and scored as it is."""
    return not feature.is_numeric and pa.types.is_dictionary(kind) and kind.value_type == pa.string()


def plain(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A dictionary column decoded to its values (what the rejects file stores), others as they are."""
    return pc.cast(column, column.type.value_type) if pa.types.is_dictionary(column.type) else column


def _checks(feature: Feature, column: pa.Array) -> list[tuple[str, pa.Array, str]]:
    """(rule, broken-mask, message prefix) for one column, in the order they are reported."""
    name = feature.name
    missing = pc.is_null(column, nan_is_null=True)
    checks = []
    if not feature.nullable:
        checks.append(("nullable", missing, f"{name}: must not be missing (nullable: false)"))
    if feature.is_numeric:
        present = pc.invert(missing)
        finite = pc.is_finite(column)
        checks.append(("finite", pc.and_(present, pc.invert(finite)), f"{name}: must be a finite number"))
        if feature.min is not None:
            checks.append(("min", pc.less(column, feature.min), f"{name}: must be >= {feature.min}"))
        if feature.max is not None:
            checks.append(("max", pc.greater(column, feature.max), f"{name}: must be <= {feature.max}"))
        if feature.dtype == "int64":
            fractional = pc.and_(finite, pc.not_equal(pc.floor(column), column))
            checks.append(("dtype", fractional, f"{name}: must be a whole number (dtype int64)"))
    else:
        categories = pa.array(feature.categories, pa.string())
        if pa.types.is_dictionary(column.type):  # each distinct word looked up once, not each row
            known = pc.take(pc.is_in(column.dictionary, value_set=categories), column.indices)
        else:
            known = pc.is_in(column, value_set=categories)
        unknown = pc.and_(pc.invert(missing), pc.invert(known))
        shown = ", ".join(feature.categories[:10]) + (", ..." if len(feature.categories) > 10 else "")
        checks.append(("categories", unknown, f"{name}: must be one of [{shown}]"))
    return checks


def check(table: pa.Table, contract: Contract) -> Verdict:
    """Each row's first broken rule, found column by column with vectorised comparisons.

    A column whose summary (null count, sum, minimum and maximum, distinct words) shows that no
    row can break any of its rules is not compared row by row: on clean data that is every
    column, and the check costs a few passes over each column instead of a dozen masks.
    """
    rows = len(table)
    field = rule = reason = None
    for feature in contract.features:
        column = table.column(feature.name).combine_chunks()
        if _unbreakable(feature, column):
            continue
        for name, broken, message in _checks(feature, column):
            broken = pc.fill_null(broken, False)
            if not pc.any(broken).as_py():
                continue
            if rule is None:
                field = rule = reason = pa.nulls(rows, pa.string())
            first = pc.and_(broken, pc.is_null(rule))
            # The reason's text only for the rows it is about: formatting every value costs more
            # than all the rules together.
            value = pc.fill_null(pc.cast(column.filter(first), pa.string()), "null")
            detail = pc.binary_join_element_wise(pa.scalar(message), value, " (got ")
            detail = pc.binary_join_element_wise(detail, pa.scalar(")"), "")
            field = pc.if_else(first, pa.scalar(feature.name), field)
            rule = pc.if_else(first, pa.scalar(name), rule)
            reason = pc.replace_with_mask(reason, first, detail)
    if rule is None:  # every row keeps every rule
        nothing = pa.nulls(rows, pa.string())
        return Verdict(bad=pa.array(np.zeros(rows, np.bool_)), field=nothing, rule=nothing, reason=nothing)
    return Verdict(bad=pc.is_valid(rule), field=field, rule=rule, reason=reason)


def _unbreakable(feature: Feature, column: pa.Array) -> bool:
    """True when the column's aggregates prove that no row breaks any of the feature's rules.

    Only a proof counts: whenever an aggregate cannot decide (a NaN, an infinity, a word outside
    the categories, a fractional number), the rules are compared row by row, so the rejects and
    their reasons are exactly those of the row-by-row check.
    """
    if column.null_count and not feature.nullable:
        return False
    if not feature.is_numeric:
        return _words_known(feature, column)
    if column.null_count == len(column):
        return True  # only missing values, which the feature allows
    total = pc.sum(column).as_py()
    if not math.isfinite(total):  # a NaN (missing) or an infinity somewhere: decide row by row
        return False
    # Two comparisons: Arrow's min_max kernel is slower than both (measured, 65,536 doubles).
    if feature.min is not None and pc.any(pc.less(column, feature.min)).as_py():
        return False
    if feature.max is not None and pc.any(pc.greater(column, feature.max)).as_py():
        return False
    if feature.dtype == "int64":
        return bool(pc.all(pc.equal(pc.floor(column), column)).as_py())
    return True


def _words_known(feature: Feature, column: pa.Array) -> bool:
    """Every present value is one of the categories (a dictionary column: every word of it)."""
    categories = pa.array(feature.categories, pa.string())
    if pa.types.is_dictionary(column.type):
        words = column.dictionary
        return not words.null_count and bool(pc.all(pc.is_in(words, value_set=categories)).as_py())
    present = len(column) - column.null_count
    return (pc.sum(pc.is_in(column, value_set=categories)).as_py() or 0) == present
