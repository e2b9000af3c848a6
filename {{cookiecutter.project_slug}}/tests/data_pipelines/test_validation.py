"""Great Expectations validation: a clean batch passes with Data Docs, each corruption fails by name.

Every test writes a real file and validates it the way `make validate DATA=<file>` does.
The example contract is used explicitly, so these tests hold whatever contract the
project itself has adopted. One process imports GX once; batches are small to stay fast.
"""

import copy
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from data_pipelines import validation
from data_pipelines.example import EXAMPLE_CONTRACT, example_contract, generate
from data_pipelines.snapshot import TABLE_RULE
from governance import cli
from governance.core.contract import parse_contract

CONTRACT = example_contract()


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("reports")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project folder holding the example contract and no snapshot: `mlops --root` points at it."""
    root = tmp_path_factory.mktemp("project")
    (root / "data_pipelines").mkdir()
    (root / "data_pipelines" / "contract.yaml").write_text(yaml.safe_dump(EXAMPLE_CONTRACT, sort_keys=False))
    return root


@pytest.fixture(scope="module")
def batch() -> pd.DataFrame:
    return generate(300, seed=21)


def check(
    frame: pd.DataFrame | bytes, name: str, folder: Path, reports: Path, docs=False
) -> validation.Outcome:
    """Validate ``frame`` as a CSV file; Data Docs only where a test looks at them (rendering is slow)."""
    path = folder / f"{name}.csv"
    if isinstance(frame, bytes):
        path.write_bytes(frame)
    else:
        frame.to_csv(path, index=False)
    return validation.validate_file(path, CONTRACT, reports, data_docs=docs)


@pytest.fixture(scope="module")
def clean(batch, reports, tmp_path_factory) -> validation.Outcome:
    return check(batch, "clean", tmp_path_factory.mktemp("batches"), reports, docs=True)


def failure_for(outcome: validation.Outcome, column: str | None, expectation: str) -> validation.Failure:
    assert not outcome.success
    matches = [f for f in outcome.failures if f.column == column and f.expectation == expectation]
    assert matches, f"no {expectation} failure on {column!r} in:\n{outcome.summary()}"
    return matches[0]


def test_a_clean_batch_passes_and_leaves_data_docs_and_a_json_result(clean, reports):
    assert clean.success, clean.summary()
    assert clean.failures == []
    assert clean.data_docs == (reports / "data_docs" / "index.html").resolve()
    assert clean.data_docs.is_file()
    assert list((reports / "data_docs" / "validations").rglob("*.html"))
    result = json.loads(clean.result_path.read_text())
    assert result["success"] is True
    assert result["great_expectations"]["success"] is True
    assert result["contract_sha256"] == CONTRACT.digest


def test_the_suite_is_derived_from_every_contract_column(batch):
    planned = {
        (kind, arguments.get("column"))
        for kind, arguments, _ in validation.expectation_specs(CONTRACT, batch)
    }
    for feature in CONTRACT.features:
        assert ("ExpectColumnValuesToBeInTypeList", feature.name) in planned
        assert (("ExpectColumnValuesToNotBeNull", feature.name) in planned) is not feature.nullable
        check_kind = "ExpectColumnValuesToBeBetween" if feature.is_numeric else "ExpectColumnValuesToBeInSet"
        assert (check_kind, feature.name) in planned


def test_nulls_in_a_non_nullable_column_fail(batch, reports, tmp_path):
    broken = batch.copy()
    broken.loc[[3, 9], "age"] = None
    failure = failure_for(
        check(broken, "nulls", tmp_path, reports), "age", "expect_column_values_to_not_be_null"
    )
    assert failure.rule == "nullable: false"
    assert "2 of 300 rows are missing (rows [3, 9])" in failure.line()


def test_out_of_range_values_fail(batch, reports, tmp_path):
    broken = batch.copy()
    broken.loc[5, "debt_to_income"] = 7.5
    outcome = check(broken, "range", tmp_path, reports)
    failure = failure_for(outcome, "debt_to_income", "expect_column_values_to_be_between")
    assert failure.rule == "range [0, 5]"
    assert failure.examples == [7.5]
    assert "column 'debt_to_income'" in outcome.summary()


def test_an_infinity_breaks_the_range_once_and_the_mean_is_not_reported_too(batch, reports, tmp_path):
    broken = batch.copy()
    broken.loc[5, "loan_amount"] = float("-inf")
    outcome = check(broken, "minus_inf", tmp_path, reports)
    failure = failure_for(outcome, "loan_amount", "expect_column_values_to_be_between")
    assert failure.examples == [float("-inf")]
    assert len(outcome.failures) == 1, outcome.summary()
    saved = json.loads(outcome.result_path.read_text())  # JSON has no infinity: written as a string
    assert saved["failures"][0]["examples"] == ["-Infinity"]


@pytest.mark.parametrize(
    ("bounds", "rule"),
    [
        ({}, "a finite number"),
        ({"min": 0}, "a finite number >= 0"),
        ({"max": 1e6}, "a finite number <= 1e+06"),
    ],
    ids=["unbounded", "min-only", "max-only"],
)
def test_a_numeric_feature_without_both_bounds_still_refuses_infinity(batch, reports, tmp_path, bounds, rule):
    raw = copy.deepcopy(EXAMPLE_CONTRACT)
    income = next(feature for feature in raw["features"] if feature["name"] == "income")
    income.pop("min"), income.pop("max")
    income.update(bounds)
    contract = parse_contract(raw)
    broken = batch.copy()
    broken.loc[[2, 8], "income"] = [float("inf"), float("-inf")]
    path = tmp_path / "open.csv"
    broken.to_csv(path, index=False)
    outcome = validation.validate_file(path, contract, reports, data_docs=False)
    failure = failure_for(outcome, "income", "expect_column_values_to_be_between")
    assert failure.rule == rule
    assert set(failure.examples) <= {float("inf"), float("-inf")} and failure.examples
    assert len(outcome.failures) == 1, outcome.summary()
    batch.to_csv(path, index=False)
    assert validation.validate_file(path, contract, reports, data_docs=False).success  # finite passes


def test_an_unseen_category_fails(batch, reports, tmp_path):
    broken = batch.copy()
    broken.loc[[1, 2], "region"] = "atlantis"
    failure = failure_for(
        check(broken, "category", tmp_path, reports), "region", "expect_column_values_to_be_in_set"
    )
    assert "one of ['north', 'south', 'east', 'west']" in failure.rule
    assert failure.examples == ["atlantis"]


def test_a_missing_column_fails(batch, reports, tmp_path):
    outcome = check(batch.drop(columns=["open_accounts"]), "missing", tmp_path, reports)
    failure_for(outcome, "open_accounts", "expect_column_to_exist")
    table = failure_for(outcome, None, "expect_table_columns_to_match_set")
    assert table.detail == "missing ['open_accounts']"


def test_a_renamed_column_fails(batch, reports, tmp_path):
    outcome = check(batch.rename(columns={"income": "annual_income"}), "renamed", tmp_path, reports)
    failure_for(outcome, "income", "expect_column_to_exist")
    table = failure_for(outcome, None, "expect_table_columns_to_match_set")
    assert table.detail == "missing ['income']; unexpected ['annual_income']"


def test_an_empty_file_fails(reports, tmp_path):
    outcome = check(b"", "empty", tmp_path, reports)
    failure = failure_for(outcome, None, "read_table")
    assert "is empty (0 bytes)" in failure.detail
    assert "at least 1 row" in failure.rule


def test_a_header_without_rows_fails_on_the_row_count(batch, reports, tmp_path):
    outcome = check(batch.head(0), "header_only", tmp_path, reports)
    failure_for(outcome, None, "expect_table_row_count_to_be_between")
    assert len(outcome.failures) == 1, outcome.summary()


def test_a_non_tabular_file_fails(reports, tmp_path):
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    failure = failure_for(check(png, "picture", tmp_path, reports), None, "read_table")
    assert "not a CSV table: its content is a PNG image" in failure.detail
    assert failure.rule == TABLE_RULE


def test_a_word_in_a_numeric_column_is_quoted(batch, reports, tmp_path):
    broken = batch.astype({"age": object})
    broken.loc[4, "age"] = "forty"
    failure = failure_for(
        check(broken, "word", tmp_path, reports), "age", "expect_column_values_to_be_in_type_list"
    )
    assert failure.examples == ["forty"]


def test_the_command_exits_1_and_names_column_rule_and_value(batch, project, tmp_path, capsys):
    broken = batch.copy()
    broken.loc[0, "loan_purpose"] = "yacht"
    broken.to_csv(tmp_path / "bad.csv", index=False)
    arguments = ["--data", str(tmp_path / "bad.csv"), "--reports", str(tmp_path / "reports")]
    assert cli.main(["--root", str(project), "validate", *arguments]) == 1
    printed = capsys.readouterr()
    assert "error: validation of 'bad' FAILED" in printed.err
    assert "column 'loan_purpose'" in printed.err
    assert "expect_column_values_to_be_in_set" in printed.err
    assert "'yacht'" in printed.err
    assert "Data Docs:" in printed.err
    assert (tmp_path / "reports" / "validation" / "bad.json").is_file()


def test_the_command_passes_a_clean_file_and_says_so_on_stdout(batch, project, tmp_path, capsys):
    batch.to_csv(tmp_path / "good.csv", index=False)
    arguments = ["--data", str(tmp_path / "good.csv"), "--reports", str(tmp_path / "reports")]
    assert cli.main(["--root", str(project), "validate", *arguments]) == 0
    assert "validation of 'good' passed" in capsys.readouterr().out


def test_the_command_exits_2_for_a_file_that_does_not_exist(project, tmp_path, capsys):
    assert cli.main(["--root", str(project), "validate", "--data", str(tmp_path / "nowhere.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_the_command_exits_2_without_a_snapshot(project, capsys):
    assert cli.main(["--root", str(project), "validate"]) == 2
    assert "run `make data` first" in capsys.readouterr().err
