"""Drafting a contract from a user's own file: a loadable contract, honest about what it saw."""

from pathlib import Path

import pandas as pd
import pytest
import yaml

from data_pipelines import infer, snapshot, validation
from data_pipelines.example import example_contract, generate
from governance import cli
from governance.core.contract import load as load_contract
from governance.core.contract import parse_contract
from governance.core.paths import PATHS

EXAMPLE = example_contract()
TARGET = EXAMPLE.target.name  # the example label of this project's task


@pytest.fixture(scope="module")
def user_file(tmp_path_factory) -> Path:
    """The example rows as a user would bring them: a CSV with an identifier and an odd column name."""
    frame = generate(800, seed=31)
    frame["applied_on"] = frame.pop("event_time").dt.strftime("%Y-%m-%d")
    frame.insert(0, "customer_id", [f"C{index:05d}" for index in range(len(frame))])
    frame["Branch Code"] = "B1"
    path = tmp_path_factory.mktemp("raw") / "loans.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def project(tmp_path) -> Path:
    """A project folder with this project's source.yaml, so `mlops contract` writes nothing here."""
    (tmp_path / "data_pipelines").mkdir()
    (tmp_path / "data_pipelines" / "source.yaml").write_bytes(PATHS.source.read_bytes())
    return tmp_path


@pytest.fixture(scope="module")
def draft(user_file) -> str:
    frame = snapshot.read_table(user_file)
    return infer.infer(frame, TARGET, "sex", dataset="loans", source=str(user_file))


def test_the_draft_round_trips_through_the_contract_parser(draft):
    parsed = parse_contract(yaml.safe_load(draft))
    assert parsed.feature_names == EXAMPLE.feature_names
    assert parsed.target.name == TARGET
    assert parsed.task == EXAMPLE.task  # inferred from the labels alone
    assert set(parsed.target.classes) == set(EXAMPLE.target.classes)
    assert parsed.sensitive.name == "sex"
    assert parsed.sensitive.categories == ("female", "male")


def test_kinds_categories_and_nullability_match_the_data(draft):
    parsed = parse_contract(yaml.safe_load(draft))
    for feature, truth in zip(parsed.features, EXAMPLE.features, strict=True):
        assert feature.kind == truth.kind, feature.name
        assert feature.nullable == truth.nullable, feature.name
        if not truth.is_numeric:
            assert set(feature.categories) == set(truth.categories), feature.name
    assert parsed.feature("age").dtype == "int64"
    assert parsed.feature("credit_history_months").dtype == "int64"  # integers, despite the gaps
    assert parsed.feature("debt_to_income").dtype == "float64"


def test_ranges_are_widened_beyond_what_was_observed(draft, user_file):
    parsed = parse_contract(yaml.safe_load(draft))
    frame = pd.read_csv(user_file)
    for feature in parsed.numeric:
        low, high = frame[feature.name].min(), frame[feature.name].max()
        assert feature.min <= low and feature.max > high, feature.name
        assert feature.min >= 0, feature.name  # a non-negative column stays non-negative


def test_columns_that_are_not_features_are_left_out_with_a_reason(draft):
    assert "customer_id: 800 distinct values (an identifier or free text?)" in draft
    assert "Branch Code: not usable as a name" in draft
    assert "applied_on: dates or timestamps" in draft
    assert "# REVIEW" in draft


def test_the_draft_validates_the_data_it_came_from(draft, user_file, tmp_path):
    drafted = parse_contract(yaml.safe_load(draft))
    frame = snapshot.read_table(user_file)
    frame, dropped = snapshot.select_contract_columns(snapshot.conform(frame, drafted), drafted)
    assert dropped == ["customer_id", "applied_on", "Branch Code"]
    outcome = validation.validate_frame(frame, drafted, "drafted", tmp_path, data_docs=False)
    assert outcome.success, outcome.summary()


@pytest.mark.parametrize(
    ("target", "sensitive", "message"),
    [
        ("label", None, "target column 'label' is not in the data"),
        ("age", "age", "sensitive attribute 'age' must differ from the target column"),
        (TARGET, "gender", "sensitive attribute 'gender' is not in the data"),
    ],
)
def test_it_refuses_a_target_or_sensitive_attribute_it_cannot_use(user_file, target, sensitive, message):
    with pytest.raises(infer.InferenceError, match=message):
        infer.infer(snapshot.read_table(user_file), target, sensitive)


def test_it_refuses_to_draft_a_range_from_a_column_holding_infinity():
    frame = pd.DataFrame({"amount": [1.5, float("-inf"), 3.0], "y": [0, 1, 0]})
    with pytest.raises(
        infer.InferenceError, match=r"column 'amount' holds 1 infinite values \(e.g. -inf in row 1\)"
    ):
        infer.infer(frame, "y")


def test_categories_that_look_like_yaml_keywords_stay_text():
    frame = pd.DataFrame({"answer": ["yes", "no", "on", None], "y": [0, 1, 0, 1]})
    parsed = parse_contract(yaml.safe_load(infer.infer(frame, "y")))
    assert parsed.feature("answer").categories == ("no", "on", "yes")
    assert parsed.feature("answer").nullable


def test_the_command_writes_a_draft_but_never_over_a_reviewed_contract(user_file, project, capsys):
    output = project / "data_pipelines" / "contract.yaml"
    # As a project generated from a file starts: the target and its task, no features.
    output.write_text(f"version: 1\ntarget:\n  name: {TARGET}\n  task: {EXAMPLE.task}\nfeatures: []\n")
    arguments = ["--root", str(project), "contract", "--data", str(user_file), "--target", TARGET]
    arguments += ["--sensitive", "sex", "--write"]
    assert cli.main(arguments) == 0
    assert load_contract(output).feature_names == EXAMPLE.feature_names
    reviewed = output.read_text()
    assert cli.main(arguments) == 2
    error = capsys.readouterr().err
    assert "error: " in error and "already declares features" in error and "--force" in error
    assert output.read_text() == reviewed
    assert cli.main([*arguments, "--force"]) == 0


def test_the_command_prints_only_yaml_on_stdout(user_file, project, capsys):
    arguments = ["--root", str(project), "contract", "--data", str(user_file), "--target", TARGET]
    assert cli.main([*arguments, "--sensitive", ""]) == 0
    printed = capsys.readouterr()
    assert parse_contract(yaml.safe_load(printed.out)).sensitive is None
    assert "==> inferring" in printed.err
    assert f"Target '{TARGET}': task {EXAMPLE.task}, because" in printed.err
    assert not (project / "data_pipelines" / "contract.yaml").exists()


def test_the_command_names_a_missing_target_column(user_file, project, capsys):
    arguments = ["--root", str(project), "contract", "--data", str(user_file), "--target", "label"]
    assert cli.main(arguments) == 2
    assert "error: target column 'label' is not in the data" in capsys.readouterr().err
