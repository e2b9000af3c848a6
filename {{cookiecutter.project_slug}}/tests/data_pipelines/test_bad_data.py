"""`mlops data` refuses bad data before it writes: one clear error, no snapshot, no `latest`.

Each test hands `mlops --root <workspace> data --input <file>` one kind of bad file and checks
the exit code (1: the rows broke the contract's validation, as `mlops validate` says it;
2: there was no readable table to validate), that the one `error:` names the column, the rule
and the value (or the line), and that artifacts/snapshots/ holds no snapshot and no `latest`.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from data_pipelines import snapshot
from data_pipelines.example import EXAMPLE_CONTRACT, example_contract, generate
from governance import cli
from governance.core.contract import load as load_contract
from governance.core.paths import Paths
from governance.core.tasks import BINARY, MULTICLASS, REGRESSION
from tests.support import training
from tests.support.drift import lay_out_request, project_checkout

ROWS = 60
TARGET = EXAMPLE_CONTRACT["target"]["name"]
# A label the example contract of this project's task refuses, and the rule it breaks
# (tests/data_pipelines/test_tasks.py refuses bad labels of every task on other data).
BAD_LABEL, BAD_RULE = {
    BINARY: (7, "rule: one of [0, 1]"),
    MULTICLASS: ("extreme", "rule: one of ['low', 'medium', 'high']"),
    REGRESSION: (float("inf"), "rule: a finite number"),
}[example_contract().task]
# A snapshot's content hash has no infinity (it is JSON), so a retraining request's window
# breaks a regression contract with a missing label instead.
REQUEST_LABEL, REQUEST_RULE, REQUEST_SHOWN = (
    (None, "rule: the target must not be missing", "rows [5]")
    if example_contract().task == REGRESSION
    else (BAD_LABEL, BAD_RULE, f"e.g. [{BAD_LABEL!r}]")
)


@pytest.fixture
def workspace(tmp_path: Path) -> Paths:
    """A project-shaped folder (example contract, policy, params, source.yaml) with no snapshot yet."""
    return Paths(training.make_workspace(tmp_path / "project", with_snapshot=False))


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return generate(ROWS, seed=4)


def ingest(paths: Paths, path: Path, capsys) -> tuple[int, str]:
    """Run `mlops data --input path`; return the exit code and stderr."""
    code = cli.main(["--root", str(paths.root), "data", "--input", str(path)])
    return code, capsys.readouterr().err


def assert_refused(paths: Paths, code: int, err: str, expected_code: int, *named: str) -> None:
    """Exactly one error naming everything in `named`; nothing written under artifacts/snapshots/."""
    assert code == expected_code, err
    assert err.count("error:") == 1 and "Traceback" not in err, err
    error = err[err.index("error:") :]
    for part in named:
        assert part in error, f"{part!r} not in:\n{error}"
    written = sorted(path.name for path in paths.snapshots.glob("*")) if paths.snapshots.exists() else []
    assert written == [], f"refused data left {written} in {paths.snapshots}"


def with_value(rows: pd.DataFrame, column: str, value: object, row: int = 7) -> pd.DataFrame:
    broken = rows.astype({column: object})
    broken.loc[row, column] = value
    return broken


def failure_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("  - ")]


@pytest.mark.parametrize(
    ("column", "value", "rule"),
    [
        ("income", float("inf"), "rule: range [0, 1e+06]"),
        ("income", float("-inf"), "rule: range [0, 1e+06]"),
        ("age", float("inf"), "rule: type int64"),
    ],
    ids=["inf", "minus-inf", "inf-in-an-integer-column"],
)
def test_an_infinity_in_a_numeric_column_is_refused(workspace, rows, tmp_path, capsys, column, value, rule):
    path = tmp_path / "infinite.csv"
    with_value(rows, column, value).to_csv(path, index=False)
    code, err = ingest(workspace, path, capsys)
    assert_refused(workspace, code, err, 1, "1 failed expectation", f"column '{column}'", rule, f"[{value}]")
    assert "no snapshot was written" in err


@pytest.mark.parametrize("line", [2, 9], ids=["first-row-shifts-every-column", "later-row"])
def test_a_row_with_more_fields_than_the_header_is_refused_by_line(workspace, rows, tmp_path, capsys, line):
    lines = rows.to_csv(index=False).splitlines()
    lines[line - 1] += ",surplus"
    path = tmp_path / "ragged.csv"
    path.write_text("\n".join(lines) + "\n")
    fields = len(rows.columns)
    code, err = ingest(workspace, path, capsys)
    assert_refused(
        workspace,
        code,
        err,
        2,
        f"line {line} has {fields + 1} fields, the header has {fields}",
        f"rule: {snapshot.ROW_RULE}",
    )


def test_an_empty_file_is_refused(workspace, tmp_path, capsys):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    code, err = ingest(workspace, path, capsys)
    assert_refused(workspace, code, err, 2, "is empty (0 bytes)", f"rule: {snapshot.EMPTY_RULE}")


def test_a_header_only_file_is_refused(workspace, rows, tmp_path, capsys):
    path = tmp_path / "header_only.csv"
    rows.head(0).to_csv(path, index=False)
    code, err = ingest(workspace, path, capsys)
    assert_refused(
        workspace,
        code,
        err,
        1,
        "1 failed expectation",
        "expect_table_row_count_to_be_between",
        "rule: a batch needs at least 1 row",
        "observed 0",
    )


def test_a_target_value_outside_the_contracts_classes_is_refused(workspace, rows, tmp_path, capsys):
    path = tmp_path / "seven.csv"
    with_value(rows, TARGET, BAD_LABEL).to_csv(path, index=False)
    code, err = ingest(workspace, path, capsys)
    assert_refused(
        workspace,
        code,
        err,
        1,
        "1 failed expectation",
        f"column '{TARGET}'",
        BAD_RULE,
        f"1 of 60 values break it, e.g. [{BAD_LABEL!r}]",
    )


def test_a_file_over_the_size_limit_is_refused_unread(workspace, rows, tmp_path, capsys):
    config = yaml.safe_load(workspace.source.read_text())
    workspace.source.write_text(yaml.safe_dump({**config, "max_file_mb": 1}))
    path = tmp_path / "large.csv"
    rows.assign(notes="x" * (1 << 15)).to_csv(path, index=False)  # valid rows, 60 x 32 KiB of notes
    size = path.stat().st_size
    assert size > 1 << 20
    code, err = ingest(workspace, path, capsys)
    assert_refused(
        workspace, code, err, 2, f"({size:,} bytes), over the limit of 1 MiB", "max_file_mb", "source.yaml"
    )
    workspace.source.write_text(yaml.safe_dump({**config, "max_file_mb": 2}))
    assert ingest(workspace, path, capsys)[0] == 0  # the same file within the limit: a snapshot


@pytest.mark.parametrize(
    ("column", "value", "shown"),
    [("age", "forty", "['forty']"), ("age", 30.5, "[30.5]"), ("loan_amount", "n/a-yet", "['n/a-yet']")],
    ids=["word-in-integer", "fraction-in-integer", "word-in-float"],
)
def test_a_value_of_the_wrong_type_in_a_numeric_column_is_refused(
    workspace, rows, tmp_path, capsys, column, value, shown
):
    path = tmp_path / "typed.csv"
    with_value(rows, column, value).to_csv(path, index=False)
    code, err = ingest(workspace, path, capsys)
    dtype = next(feature["dtype"] for feature in EXAMPLE_CONTRACT["features"] if feature["name"] == column)
    assert_refused(
        workspace, code, err, 1, "1 failed expectation", f"column '{column}'", f"rule: type {dtype}", shown
    )


def test_refused_data_leaves_the_previous_snapshot_latest(workspace, rows, tmp_path, capsys):
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    rows.to_csv(good, index=False)
    with_value(rows, TARGET, BAD_LABEL).to_csv(bad, index=False)
    assert ingest(workspace, good, capsys)[0] == 0
    before = sorted(workspace.snapshots.iterdir())
    latest = (workspace.snapshots / snapshot.LATEST).read_text()
    assert ingest(workspace, bad, capsys)[0] == 1
    assert sorted(workspace.snapshots.iterdir()) == before
    assert (workspace.snapshots / snapshot.LATEST).read_text() == latest


def test_data_refuses_with_the_same_rules_and_lines_as_validate(workspace, rows, tmp_path, capsys):
    broken = with_value(with_value(rows, "income", float("inf")), "region", "atlantis", row=3)
    broken = with_value(broken, "open_accounts", "many", row=11)
    path = tmp_path / "broken.csv"
    broken.to_csv(path, index=False)
    code, refused = ingest(workspace, path, capsys)
    assert code == 1
    reports = ["--reports", str(tmp_path / "reports")]
    assert cli.main(["--root", str(workspace.root), "validate", "--data", str(path), *reports]) == 1
    validated = capsys.readouterr().err
    assert len(failure_lines(refused)) == 3
    assert failure_lines(refused) == failure_lines(validated)
    assert "validation of 'broken' FAILED: 3 failed expectations" in refused


def test_a_retraining_request_whose_rows_break_the_contract_is_refused(tmp_path, capsys):
    """The request's file is intact (its hash matches) but its rows fail validation: no snapshot."""
    checkout = project_checkout(tmp_path / "checkout")
    window = with_value(generate(80, seed=11), TARGET, REQUEST_LABEL, row=5)
    window[TARGET] = window[TARGET].infer_objects()  # a column of one type, as the drift run writes it
    drift_root = tmp_path / "drift-machine"
    contract = load_contract(checkout.contract)
    folder = snapshot.create(window, {"kind": "capture"}, contract=contract, root=drift_root)
    lay_out_request(checkout, json.loads((folder / "manifest.json").read_text()), drift_root)
    code = cli.main(["--root", str(checkout.root), "data"])
    err = capsys.readouterr().err
    assert_refused(checkout, code, err, 1, f"column '{TARGET}'", REQUEST_RULE, REQUEST_SHOWN)


def nullable_sensitive(paths: Paths, nullable: bool) -> None:
    contract = copy.deepcopy(EXAMPLE_CONTRACT)
    contract["sensitive_attribute"]["nullable"] = nullable
    paths.contract.write_text(yaml.safe_dump(contract, sort_keys=False))


def rows_missing_sex(path: Path) -> int:
    frame = training.example_frame().copy()  # the cached frame is shared by the whole session
    frame.loc[frame.index % 7 == 0, "sex"] = None
    frame.to_csv(path, index=False)
    return int(frame["sex"].isna().sum())


def test_a_nullable_sensitive_attribute_with_missing_values_goes_through_data_validate_train(
    workspace, tmp_path, capsys
):
    nullable_sensitive(workspace, True)
    path = tmp_path / "gaps.csv"
    missing = rows_missing_sex(path)
    root = ["--root", str(workspace.root)]
    assert cli.main([*root, "data", "--input", str(path)]) == 0
    frame, _ = snapshot.load(root=workspace.snapshots)
    assert int(frame["sex"].isna().sum()) == missing
    assert cli.main([*root, "validate"]) == 0
    assert cli.main([*root, "train"]) in (0, 1), capsys.readouterr().err  # 1 would be a gate's verdict
    (metrics,) = workspace.models.glob("*/metrics.json")
    bias = json.loads(metrics.read_text())["bias"]
    assert set(bias["by_group"]) == {"female", "male", "missing"}
    assert bias["by_group"]["missing"]["count"] > 0
    assert bias["largest_gap"] is not None


def test_missing_values_in_a_sensitive_attribute_that_is_not_nullable_are_refused(
    workspace, tmp_path, capsys
):
    nullable_sensitive(workspace, False)
    path = tmp_path / "gaps.csv"
    missing = rows_missing_sex(path)
    code, err = ingest(workspace, path, capsys)
    assert_refused(
        workspace,
        code,
        err,
        1,
        "column 'sex'",
        "rule: nullable: false",
        f"{missing} of {training.ROWS} rows are missing",
    )
