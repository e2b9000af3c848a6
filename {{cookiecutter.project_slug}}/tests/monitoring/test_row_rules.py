"""The contract's per-row rules on Arrow batches: a batch whose column summaries show it clean
skips the row-by-row masks, and that shortcut never changes which rows are rejected or why."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

from governance.core.contract import parse_contract
from monitoring import row_rules

CONTRACT = parse_contract(
    {
        "version": 1,
        "dataset": "rules",
        "target": {"name": "label", "task": "binary_classification", "dtype": "int64", "classes": [0, 1]},
        "features": [
            {"name": "age", "kind": "numeric", "dtype": "int64", "min": 18, "max": 100},
            {"name": "income", "kind": "numeric", "dtype": "float64", "min": 0, "nullable": True},
            {"name": "colour", "kind": "categorical", "categories": ["red", "blue"]},
            {"name": "size", "kind": "categorical", "categories": ["s", "m"], "nullable": True},
        ],
    }
)
CLEAN = {
    "age": [30.0, 40.0, 50.0],
    "income": [1.0, None, 3.5],
    "colour": ["red", "blue", "red"],
    "size": ["s", None, "m"],
}


def batch(text_as_dictionary: bool = True, **columns: list) -> pa.Table:
    """CLEAN with some columns replaced; text read as Parquet reads it (a dictionary) or as CSV does."""
    values = {**CLEAN, **columns}
    arrays = {}
    for feature in CONTRACT.features:
        if feature.is_numeric:
            arrays[feature.name] = pa.array(values[feature.name], pa.float64())
        else:
            text = pa.array(values[feature.name], pa.string())
            arrays[feature.name] = text.dictionary_encode() if text_as_dictionary else text
    return row_rules.conform(pa.table(arrays), CONTRACT, "test")


def verdict_rows(verdict: row_rules.Verdict) -> list[tuple]:
    columns = (verdict.bad, verdict.field, verdict.rule, verdict.reason)
    return list(zip(*(column.to_pylist() for column in columns), strict=True))


def row_by_row(table: pa.Table, monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """The verdict with the shortcut switched off: every rule compared on every row."""
    with monkeypatch.context() as patch:
        patch.setattr(row_rules, "_unbreakable", lambda feature, column: False)
        return verdict_rows(row_rules.check(table, CONTRACT))


CASES = {
    "clean": {},
    "a fraction in an int64 column": {"age": [30.0, 30.5, 50.0]},
    "below min": {"age": [17.0, 40.0, 50.0]},
    "above max": {"age": [30.0, 40.0, 101.0]},
    "missing where not nullable": {"age": [None, 40.0, 50.0]},
    "NaN where not nullable": {"age": [30.0, math.nan, 50.0]},
    "NaN where nullable": {"income": [math.nan, 2.0, 3.0]},
    "infinity without a max": {"income": [math.inf, 2.0, 3.0]},
    "minus infinity below min": {"income": [1.0, -math.inf, 3.0]},
    "unknown word": {"colour": ["red", "green", "blue"]},
    "missing word where not nullable": {"colour": ["red", None, "blue"]},
    "empty word": {"size": ["", "s", "m"]},
    "several rules on one row": {"age": [17.0, 40.0, 50.0], "colour": ["green", "red", "red"]},
}


@pytest.mark.parametrize("text_as_dictionary", [True, False], ids=["parquet-text", "csv-text"])
@pytest.mark.parametrize("case", CASES)
def test_the_shortcut_never_changes_a_verdict(case, text_as_dictionary, monkeypatch):
    table = batch(text_as_dictionary, **CASES[case])
    assert verdict_rows(row_rules.check(table, CONTRACT)) == row_by_row(table, monkeypatch)


@pytest.mark.parametrize(
    ("case", "row", "field", "rule"),
    [
        ("a fraction in an int64 column", 1, "age", "dtype"),
        ("below min", 0, "age", "min"),
        ("above max", 2, "age", "max"),
        ("missing where not nullable", 0, "age", "nullable"),
        ("NaN where not nullable", 1, "age", "nullable"),
        ("infinity without a max", 0, "income", "finite"),
        ("minus infinity below min", 1, "income", "finite"),
        ("unknown word", 1, "colour", "categories"),
        ("missing word where not nullable", 1, "colour", "nullable"),
        ("empty word", 0, "size", "categories"),
        ("several rules on one row", 0, "age", "min"),  # the first rule in contract order
    ],
)
def test_each_broken_rule_rejects_exactly_its_row(case, row, field, rule):
    verdict = verdict_rows(row_rules.check(batch(**CASES[case]), CONTRACT))
    assert [index for index, (bad, *_) in enumerate(verdict) if bad] == [row]
    assert verdict[row][1:3] == (field, rule)
    assert verdict[row][3].startswith(f"{field}: must")


def test_a_clean_batch_rejects_nothing_even_with_missing_values_where_allowed():
    assert not any(bad for bad, *_ in verdict_rows(row_rules.check(batch(), CONTRACT)))


def test_an_unknown_word_no_row_uses_rejects_nothing():
    """A Parquet dictionary may hold words of other batches: only the rows' words count."""
    words = pa.DictionaryArray.from_arrays(
        pa.array([0, 1, 0], pa.int32()), pa.array(["red", "blue", "green"])
    )
    table = batch().set_column(2, "colour", words)
    assert not any(bad for bad, *_ in verdict_rows(row_rules.check(table, CONTRACT)))
