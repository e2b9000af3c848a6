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

from dataclasses import dataclass

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
    """The contract's feature columns, typed as the model reads them (numbers float64, text string,
    or a dictionary of strings as Parquet's text columns are read)."""
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
        known = pc.is_in(column, value_set=pa.array(feature.categories, pa.string()))
        unknown = pc.and_(pc.invert(missing), pc.invert(known))
        shown = ", ".join(feature.categories[:10]) + (", ..." if len(feature.categories) > 10 else "")
        checks.append(("categories", unknown, f"{name}: must be one of [{shown}]"))
    return checks


def check(table: pa.Table, contract: Contract) -> Verdict:
    """Each row's first broken rule, found column by column with vectorised comparisons."""
    rows = len(table)
    field = pa.nulls(rows, pa.string())
    rule = pa.nulls(rows, pa.string())
    reason = pa.nulls(rows, pa.string())
    for feature in contract.features:
        column = table.column(feature.name).combine_chunks()
        for name, broken, message in _checks(feature, column):
            broken = pc.fill_null(broken, False)
            if not pc.any(broken).as_py():
                continue
            first = pc.and_(broken, pc.is_null(rule))
            value = pc.fill_null(pc.cast(column, pa.string()), "null")
            detail = pc.binary_join_element_wise(pa.scalar(message), value, " (got ")
            detail = pc.binary_join_element_wise(detail, pa.scalar(")"), "")
            field = pc.if_else(first, pa.scalar(feature.name), field)
            rule = pc.if_else(first, pa.scalar(name), rule)
            reason = pc.if_else(first, detail, reason)
    return Verdict(bad=pc.is_valid(rule), field=field, rule=rule, reason=reason)
