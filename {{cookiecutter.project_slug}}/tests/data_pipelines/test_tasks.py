"""Every supervised task through the data stage: drafting the contract, reading, refusing, the example.

Each test builds its own contract and rows (scikit-learn's datasets, tests/support/datasets.py),
so a project baked for any task checks all three here.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import f1_score, r2_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from data_pipelines import example, infer, snapshot, validation
from governance import cli
from governance.core.contract import Contract, parse_contract
from governance.core.paths import PATHS, Paths
from governance.core.tasks import BINARY, MULTICLASS, REGRESSION, TASKS
from tests.support.datasets import TASK_DATASETS, TaskData, breast_cancer, diabetes, wine


def as_csv(data: TaskData, folder: Path, frame: pd.DataFrame | None = None) -> Path:
    path = folder / f"{data.name}.csv"
    (data.frame if frame is None else frame).to_csv(path, index=False)
    return path


def draft(
    frame: pd.DataFrame, target: str, task: str | None = None, classes: list | None = None
) -> tuple[str, Contract]:
    text = infer.infer(frame, target, task=task, classes=classes or ())
    return text, parse_contract(yaml.safe_load(text))


# --- drafting the contract ------------------------------------------------------------------------


def test_wine_with_named_cultivars_is_drafted_as_multiclass_with_its_own_words(tmp_path):
    data = wine(tmp_path)
    text, drafted = draft(snapshot.read_table(as_csv(data, tmp_path)), "cultivar")
    assert drafted.task == MULTICLASS
    assert drafted.target.dtype == "string"
    assert drafted.target.classes == ("barbera", "barolo", "grignolino")  # sorted, as the file spells them
    because = "because the column holds 3 distinct texts"
    assert f"# Target 'cultivar': task multiclass_classification, {because}" in text


def test_diabetes_progression_is_drafted_as_a_float_regression_target(tmp_path):
    data = diabetes(tmp_path)
    text, drafted = draft(snapshot.read_table(as_csv(data, tmp_path)), "progression")
    assert (drafted.task, drafted.target.dtype, drafted.target.classes) == (REGRESSION, "float64", ())
    assert "task regression, because the column holds 214 distinct whole numbers" in text
    assert "more than 20: a quantity, not classes" in text


def test_breast_cancer_in_words_is_binary_with_the_word_malignant_positive(tmp_path):
    data = breast_cancer(tmp_path)
    text, drafted = draft(snapshot.read_table(as_csv(data, tmp_path)), "diagnosis")
    assert drafted.task == BINARY
    assert drafted.target.classes == ("benign", "malignant")
    assert drafted.target.positive_class == "malignant"
    assert 'to make it "benign", set positive_class: "benign"' in text  # how to change it


def test_classes_keep_the_order_the_contract_lists_when_drafted_again(tmp_path):
    data = wine(tmp_path)
    listed = ["barolo", "grignolino", "barbera"]
    text, drafted = draft(data.frame, "cultivar", task=MULTICLASS, classes=listed)
    assert drafted.target.classes == tuple(listed)
    assert "in the order the contract lists them" in text
    other = draft(data.frame, "cultivar", task=MULTICLASS, classes=["barolo", "grignolino", "nebbiolo"])[1]
    assert other.target.classes == ("barbera", "barolo", "grignolino")  # the data's classes, sorted


def test_words_that_name_no_outcome_make_the_minority_class_positive():
    frame = pd.DataFrame({"x": range(10), "colour": ["red"] * 7 + ["blue"] * 3})
    text, drafted = draft(frame, "colour")
    assert drafted.target.positive_class == "blue"
    assert "the minority class (30% of rows)" in text


@pytest.mark.parametrize(
    ("labels", "dtype", "classes", "positive"),
    [
        ([True, False, False, True, False], "bool", (False, True), True),
        ([0, 1, 1, 0, 0], "int64", (0, 1), 1),
        ([2, 1, 1, 2, 2], "int64", (1, 2), 1),  # 1 of 1/2 is rarer
        (["yes", "no", "no", "no", "yes"], "string", ("no", "yes"), "yes"),
    ],
    ids=["booleans", "zero-one", "one-two", "yes-no"],
)
def test_two_valued_targets_of_any_type_are_binary_and_keep_their_type(
    tmp_path, labels, dtype, classes, positive
):
    path = tmp_path / "two.csv"
    pd.DataFrame({"x": np.arange(len(labels)) * 1.5, "y": labels}).to_csv(path, index=False)
    drafted = draft(snapshot.read_table(path), "y")[1]
    assert (drafted.task, drafted.target.dtype) == (BINARY, dtype)
    assert drafted.target.classes == classes
    assert drafted.target.positive_class == positive


def test_a_few_whole_numbers_are_classes_and_fractions_are_a_quantity():
    few = pd.DataFrame({"x": range(12), "y": [1, 2, 3] * 4})
    assert draft(few, "y")[1].target.classes == (1, 2, 3)
    fractions = pd.DataFrame({"x": range(12), "y": [0.5, 1.25, 3.0] * 4})
    assert draft(fractions, "y")[1].task == REGRESSION


def test_a_declared_task_wins_when_the_data_agrees():
    frame = pd.DataFrame({"x": range(12), "y": [1, 2, 3] * 4})  # would be inferred multiclass
    text, drafted = draft(frame, "y", task=REGRESSION)
    assert drafted.task == REGRESSION and drafted.target.dtype == "float64"
    assert "task regression, because declared in the contract" in text


@pytest.mark.parametrize(
    ("dataset", "declared", "holds"),
    [
        (breast_cancer, MULTICLASS, 'holds 2 distinct texts ["benign", "malignant"]'),
        (wine, REGRESSION, 'holds 3 distinct texts ["barbera", "barolo", "grignolino"]'),
        (diabetes, BINARY, "holds 214 distinct whole numbers"),
    ],
)
def test_a_declared_task_the_data_contradicts_is_one_clear_error(tmp_path, dataset, declared, holds):
    data = dataset(tmp_path)
    with pytest.raises(infer.InferenceError) as raised:
        infer.infer(data.frame, data.contract.target.name, task=declared)
    message = str(raised.value)
    assert f"target column '{data.contract.target.name}'" in message
    assert f"the contract declares task {declared}" in message
    assert holds in message
    assert "target.task" in message  # what to change


def test_the_command_takes_the_task_from_the_contract_draft_and_says_why(tmp_path, capsys):
    data = breast_cancer(tmp_path)
    (tmp_path / "data_pipelines").mkdir()
    (tmp_path / "data_pipelines" / "source.yaml").write_bytes(PATHS.source.read_bytes())
    contract = tmp_path / "data_pipelines" / "contract.yaml"
    declared = "version: 1\ntarget:\n  name: diagnosis\n  task: {}\nfeatures: []\n"
    contract.write_text(declared.format(MULTICLASS))
    arguments = ["--root", str(tmp_path), "contract", "--data", str(as_csv(data, tmp_path))]
    arguments += ["--target", "diagnosis", "--sensitive", ""]
    assert cli.main(arguments) == 2
    assert "the contract declares task multiclass_classification" in capsys.readouterr().err
    contract.write_text(declared.format(BINARY))
    assert cli.main([*arguments, "--write", "--force"]) == 0
    err = capsys.readouterr().err
    assert "Target 'diagnosis': task binary_classification, because declared in the contract" in err
    assert 'Positive class "malignant"' in err
    assert yaml.safe_load(contract.read_text())["target"]["positive_class"] == "malignant"


# --- reading and refusing, per task ---------------------------------------------------------------


def project(root: Path, data: TaskData) -> Paths:
    """A project folder whose contract is ``data``'s (no source.yaml: `data --input` needs none)."""
    (root / "data_pipelines").mkdir(parents=True)
    shutil.copy(data.contract_path, root / "data_pipelines" / "contract.yaml")
    return Paths(root)


def ingest(paths: Paths, path: Path, capsys) -> tuple[int, str]:
    code = cli.main(["--root", str(paths.root), "data", "--input", str(path)])
    return code, capsys.readouterr().err


def test_classes_that_look_like_numbers_stay_text_from_file_to_snapshot(tmp_path, capsys):
    data = wine(tmp_path)
    codes = {"barolo": "01", "grignolino": "2", "barbera": "10"}
    raw = yaml.safe_load(data.contract_path.read_text())
    raw["target"]["classes"] = ["01", "2", "10"]
    data.contract_path.write_text(yaml.safe_dump(raw))
    paths = project(tmp_path / "project", data)
    path = as_csv(data, tmp_path, data.frame.assign(cultivar=data.frame["cultivar"].map(codes)))
    code, err = ingest(paths, path, capsys)
    assert code == 0, err
    frame, _ = snapshot.load(root=paths.snapshots)
    assert sorted(set(frame["cultivar"])) == ["01", "10", "2"]


def test_a_boolean_target_is_read_as_booleans(tmp_path):
    path = tmp_path / "flags.csv"
    flags = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "fraud": ["true", "False", "TRUE", "false"]})
    flags.to_csv(path, index=False)
    contract = draft(snapshot.read_table(path), "fraud")[1]
    frame = snapshot.conform(snapshot.read_table(path, contract=contract), contract)
    assert frame["fraud"].tolist() == [True, False, True, False]
    assert validation.check_frame(frame, contract, "flags").success


BAD_TARGETS = {
    BINARY: [
        ("unknown", "rule: one of ['benign', 'malignant']", "e.g. ['unknown']"),
        (None, "rule: the target must not be missing", "rows [7]"),
    ],
    MULTICLASS: [("merlot", "rule: one of ['barolo', 'grignolino', 'barbera']", "e.g. ['merlot']")],
    REGRESSION: [
        (float("inf"), "rule: a finite number", "e.g. [inf]"),
        ("a lot", "rule: type float64", "e.g. ['a lot']"),
        (None, "rule: the target must not be missing", "rows [7]"),
    ],
}


@pytest.mark.parametrize(
    ("task", "value", "rule", "shown"),
    [(task, *case) for task, cases in BAD_TARGETS.items() for case in cases],
    ids=lambda item: str(item)[:20],
)
def test_a_bad_target_value_is_one_error_and_no_snapshot(tmp_path, capsys, task, value, rule, shown):
    data = TASK_DATASETS[task](tmp_path)
    paths = project(tmp_path / "project", data)
    name = data.contract.target.name
    broken = data.frame.astype({name: object})
    broken.loc[7, name] = value
    code, err = ingest(paths, as_csv(data, tmp_path, broken), capsys)
    assert code == 1, err
    assert err.count("error:") == 1 and "Traceback" not in err, err
    assert "1 failed expectation" in err and f"column '{name}'" in err
    assert rule in err and shown in err
    assert not paths.snapshots.exists() or not any(paths.snapshots.iterdir())


@pytest.mark.parametrize("task", TASKS)
def test_a_good_file_of_every_task_becomes_a_snapshot_of_the_contracts_type(tmp_path, capsys, task):
    data = TASK_DATASETS[task](tmp_path)
    paths = project(tmp_path / "project", data)
    code, err = ingest(paths, as_csv(data, tmp_path), capsys)
    assert code == 0, err
    frame, _ = snapshot.load(root=paths.snapshots)
    labels = frame[data.contract.target.name]
    if data.contract.target.is_classification:
        assert set(labels) == set(data.contract.target.classes)
    else:
        assert labels.dtype == "float64"


# --- the example data of every task ---------------------------------------------------------------


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize(
    "drift", [{}, {"covariate_drift": 1.0, "concept_drift": 1.0}], ids=["plain", "drifted"]
)
def test_the_example_of_every_task_passes_its_contracts_validation(task, drift):
    contract = example.example_contract(task)
    frame = example.generate(400, seed=3, task=task, **drift)
    assert list(frame.columns) == [*contract.columns, "event_time"]
    outcome = validation.check_frame(frame, contract, f"example-{task}")
    assert outcome.success, outcome.summary()


def fit_and_score(task: str, train: pd.DataFrame, test: pd.DataFrame) -> float:
    """A plain linear model's primary metric (roc_auc, f1_macro or r2) on ``test``."""
    contract = example.example_contract(task)
    numeric = [feature.name for feature in contract.numeric]
    categorical = [feature.name for feature in contract.categorical]

    def ready(frame: pd.DataFrame) -> pd.DataFrame:
        numbers = frame.astype({name: float for name in numeric})
        return numbers.fillna({name: "missing" for name in categorical})

    model = make_pipeline(
        ColumnTransformer(
            [
                ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
                ("categorical", OneHotEncoder(handle_unknown="ignore"), categorical),
            ]
        ),
        Ridge() if task == REGRESSION else LogisticRegression(max_iter=1000),
    )
    target = contract.target.name
    model.fit(ready(train)[contract.feature_names], train[target])
    inputs = ready(test)[contract.feature_names]
    if task == BINARY:
        return roc_auc_score(test[target], model.predict_proba(inputs)[:, 1])
    if task == MULTICLASS:
        return f1_score(test[target], model.predict(inputs), average="macro")
    return r2_score(test[target], model.predict(inputs))


@pytest.mark.parametrize("task", [MULTICLASS, REGRESSION])
def test_the_new_examples_are_learnable_and_concept_drift_hurts_the_old_model(task):
    train = example.generate(4000, seed=11, task=task)
    fresh = fit_and_score(task, train, example.generate(3000, seed=12, task=task))
    moved = fit_and_score(task, train, example.generate(3000, seed=12, task=task, concept_drift=1.0))
    assert fresh > {MULTICLASS: 0.65, REGRESSION: 0.5}[task]  # clears the baked policy's minimum
    assert moved < fresh - 0.15


def test_the_labels_look_like_what_they_name():
    grades = example.generate(4000, seed=5, task=MULTICLASS)["risk_grade"].value_counts(normalize=True)
    assert set(grades.index) == {"low", "medium", "high"} and grades.min() > 0.1
    rates = example.generate(4000, seed=5, task=REGRESSION)["interest_rate"]
    assert 4.0 < rates.median() < 12.0 and rates.between(*example.RATE_RANGE).all()
    # The same applicants: riskier grades pay more.
    both = example.generate(4000, seed=5, task=MULTICLASS).assign(rate=rates)
    by_grade = both.groupby("risk_grade")["rate"].mean()
    assert by_grade["low"] < by_grade["medium"] < by_grade["high"]


def test_the_inputs_are_the_same_whatever_the_task():
    frames = [example.generate(300, seed=9, task=task) for task in TASKS]
    inputs = [
        frame.drop(columns=[example.TARGETS[task]["name"]]) for frame, task in zip(frames, TASKS, strict=True)
    ]
    for other in inputs[1:]:
        pd.testing.assert_frame_equal(other, inputs[0])


def test_an_unknown_task_is_named():
    with pytest.raises(ValueError, match="task must be one of"):
        example.generate(10, task="ranking")
