"""The bundled example data: deterministic, inside its contract, learnable, and drifting on request.

The label tests hold the binary example (tests/data_pipelines/test_tasks.py checks the others),
whatever task this project was baked with: its inputs are the same for every task.
"""

from functools import partial

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from data_pipelines import example, source
from data_pipelines.example import EXAMPLE_CONTRACT, example_contract
from governance.core.contract import Contract
from governance.core.contract import load as load_contract
from governance.core.paths import PATHS
from governance.core.tasks import BINARY, TASKS

CONTRACT = example_contract(BINARY)
generate = partial(example.generate, task=BINARY)


def contract_violations(frame: pd.DataFrame, contract: Contract = CONTRACT) -> list[str]:
    """Every way ``frame`` breaks the example ``contract``, checked directly with pandas."""
    problems = []
    expected = [*contract.columns, "event_time"]
    if list(frame.columns) != expected:
        problems.append(f"columns {list(frame.columns)} != {expected}")
    for feature in contract.features:
        values = frame[feature.name]
        if not feature.nullable and values.isna().any():
            problems.append(f"{feature.name}: nulls in a non-nullable column")
        present = values.dropna()
        if feature.is_numeric:
            if feature.dtype == "int64" and not pd.api.types.is_integer_dtype(values.dtype):
                problems.append(f"{feature.name}: dtype {values.dtype} is not an integer type")
            if present.min() < feature.min or present.max() > feature.max:
                problems.append(
                    f"{feature.name}: {present.min()}..{present.max()} outside {feature.min}..{feature.max}"
                )
        elif not set(present) <= set(feature.categories):
            problems.append(f"{feature.name}: unexpected categories {set(present) - set(feature.categories)}")
    labels = frame[contract.target.name]
    if contract.target.is_classification and not set(labels) <= set(contract.target.classes):
        problems.append("target: values outside the classes")
    numbers = labels.dtype == "float64" and bool(np.isfinite(labels).all())
    if not contract.target.is_classification and not numbers:
        problems.append("target: not finite float64 numbers")
    if not set(frame[contract.sensitive.name]) <= set(contract.sensitive.categories):
        problems.append("sensitive attribute: unexpected categories")
    if str(frame["event_time"].dt.tz) != "UTC" or not frame["event_time"].is_monotonic_increasing:
        problems.append("event_time: not increasing UTC timestamps")
    return problems


def fit_plain_model(frame: pd.DataFrame):
    numeric = [feature.name for feature in CONTRACT.numeric]
    categorical = [feature.name for feature in CONTRACT.categorical]
    prepared = frame.astype({name: float for name in numeric}).fillna(
        {name: "missing" for name in categorical}
    )
    model = make_pipeline(
        ColumnTransformer(
            [
                ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
                ("categorical", OneHotEncoder(handle_unknown="ignore"), categorical),
            ]
        ),
        LogisticRegression(max_iter=1000),
    )
    model.fit(prepared[CONTRACT.feature_names], prepared[CONTRACT.target.name])

    def scores(other: pd.DataFrame) -> np.ndarray:
        ready = other.astype({name: float for name in numeric}).fillna(
            {name: "missing" for name in categorical}
        )
        return model.predict_proba(ready[CONTRACT.feature_names])[:, 1]

    return scores


@pytest.fixture(scope="module")
def baseline() -> pd.DataFrame:
    return generate(6000, seed=11)


def test_the_same_seed_gives_the_same_rows_and_another_seed_does_not():
    pd.testing.assert_frame_equal(generate(400, seed=3), generate(400, seed=3))
    assert not generate(400, seed=3).equals(generate(400, seed=4))


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize(
    "drift",
    [{}, {"covariate_drift": 1.0}, {"concept_drift": 1.0}, {"covariate_drift": 1.0, "concept_drift": 1.0}],
)
def test_every_window_stays_inside_the_contract_even_when_drifted(task, drift):
    frame = example.generate(3000, seed=5, task=task, **drift)
    assert contract_violations(frame, example_contract(task)) == []


def test_missing_values_appear_only_in_nullable_columns(baseline):
    missing = baseline.isna().mean()
    nullable = {feature.name for feature in CONTRACT.features if feature.nullable}
    assert {name for name, share in missing.items() if share > 0} == nullable
    assert all(0.01 < missing[name] < 0.15 for name in nullable)


def test_the_label_is_learnable_but_noisy_and_a_plain_model_stays_within_the_bias_budget(baseline):
    assert 0.18 < baseline[CONTRACT.target.name].mean() < 0.32
    holdout = generate(4000, seed=12)
    scores = fit_plain_model(baseline)(holdout)
    assert 0.75 <= roc_auc_score(holdout[CONTRACT.target.name], scores) <= 0.87
    selection = pd.Series(scores >= 0.5).groupby(holdout["sex"].to_numpy()).mean()
    assert selection.max() - selection.min() < 0.15
    # ... yet sex matters through income, so bias metrics have something to measure.
    income = baseline.groupby("sex")["income"].median()
    assert income["female"] < 0.95 * income["male"]


def test_covariate_drift_moves_the_inputs(baseline):
    drifted = generate(6000, seed=11, covariate_drift=1.0)
    assert drifted["income"].median() < 0.9 * baseline["income"].median()
    assert drifted["loan_amount"].median() > 1.15 * baseline["loan_amount"].median()
    assert drifted["debt_to_income"].mean() > baseline["debt_to_income"].mean() + 0.05
    share = {
        name: frame["region"].value_counts(normalize=True)["south"]
        for name, frame in (("before", baseline), ("after", drifted))
    }
    assert share["after"] > share["before"] + 0.08
    unemployed = [frame["employment_type"].eq("unemployed").mean() for frame in (baseline, drifted)]
    assert unemployed[1] > unemployed[0] + 0.05


def test_concept_drift_changes_the_labels_but_not_the_inputs(baseline):
    drifted = generate(6000, seed=11, concept_drift=1.0)
    features = CONTRACT.feature_names
    pd.testing.assert_frame_equal(drifted[features], baseline[features])
    assert (drifted[CONTRACT.target.name] != baseline[CONTRACT.target.name]).mean() > 0.1
    scores = fit_plain_model(baseline)
    fresh, moved = generate(4000, seed=12), generate(4000, seed=12, concept_drift=1.0)
    before = roc_auc_score(fresh[CONTRACT.target.name], scores(fresh))
    after = roc_auc_score(moved[CONTRACT.target.name], scores(moved))
    assert after < before - 0.1


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"n_rows": 0}, "n_rows"),
        ({"n_rows": 10, "covariate_drift": 1.5}, "covariate_drift"),
        ({"n_rows": 10, "concept_drift": -0.1}, "concept_drift"),
    ],
)
def test_it_rejects_arguments_out_of_range_by_name(arguments, named):
    with pytest.raises(ValueError, match=named):
        generate(**arguments)


def test_a_project_generated_with_the_example_data_declares_the_generators_contract():
    if source.read_config(PATHS).kind != "example":
        pytest.skip("this project reads its own file, not the example data")
    project, promised = load_contract(PATHS.contract), example_contract()  # of the project's task
    assert project.features == promised.features
    assert project.target == promised.target
    if project.sensitive is not None:
        assert project.sensitive == promised.sensitive
    assert project.dataset == EXAMPLE_CONTRACT["dataset"]
