"""The estimator seam (ml/estimator.py): the family's estimator, seeded; replace it and training,
the ONNX export and the parity check carry on unchanged."""

import onnx
import pytest
from sklearn.base import is_regressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

import ml.train
from governance.core.contract import load as load_contract
from governance.core.paths import Paths
from governance.core.records import Parity, TrainingRecord, read_json
from governance.core.tasks import MULTICLASS, REGRESSION, TASKS
from ml.estimator import FAMILIES, build_estimator, estimator_class, needs_scaling
from ml.pipeline import train
from ml.train import ParamsError, build_pipeline
from tests.support.training import make_workspace, small_params, small_settings, task_data


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_family_is_built_for_the_task_with_its_settings_and_the_seed(family, task):
    settings = small_settings(task)[family]
    estimator = build_estimator(family, settings, seed=11, task=task)
    assert type(estimator) is estimator_class(family, task)
    assert is_regressor(estimator) == (task == REGRESSION)
    assert estimator.get_params()["random_state"] == 11
    assert {key: estimator.get_params()[key] for key in settings} == settings


def test_the_linear_family_is_logistic_regression_or_ridge():
    assert type(build_estimator("linear", {}, seed=0, task=MULTICLASS)) is LogisticRegression
    assert type(build_estimator("linear", {}, seed=0, task=REGRESSION)) is Ridge


def test_a_classification_setting_is_refused_for_the_regressor(tmp_path):
    data = task_data(REGRESSION)
    params = small_params("linear", REGRESSION).model_copy(update={"estimators": {"linear": {"C": 1.0}}})
    with pytest.raises(ParamsError, match=r"estimators\.linear"):
        build_pipeline(data.contract, params)


def test_only_models_that_split_on_value_order_skip_scaling():
    assert needs_scaling(build_estimator("linear", {}, seed=0))
    assert needs_scaling(build_estimator("linear", {}, seed=0, task=REGRESSION))
    assert not needs_scaling(build_estimator("random_forest", {}, seed=0, task=REGRESSION))
    assert not needs_scaling(build_estimator("random_forest", {}, seed=0))
    assert not needs_scaling(build_estimator("gradient_boosting", {}, seed=0))
    assert not needs_scaling(DecisionTreeClassifier())


def test_a_replaced_estimator_trains_exports_and_passes_parity(tmp_path, monkeypatch):
    seeds = []

    def decision_tree(family, settings, seed, task):
        seeds.append(seed)
        tree = DecisionTreeRegressor if task == REGRESSION else DecisionTreeClassifier
        return tree(max_depth=5, min_samples_leaf=10, random_state=seed)

    monkeypatch.setattr(ml.train, "build_estimator", decision_tree)
    paths = Paths(make_workspace(tmp_path / "project"))
    report = train(paths)

    out = paths.models / report.version
    training = read_json(TrainingRecord, out / "training.json")
    assert seeds == [training.seed]
    model = onnx.load(out / "model.onnx")
    operators = {node.op_type for node in model.graph.node}
    kind = "Regressor" if load_contract(paths.contract).task == REGRESSION else "Classifier"
    assert f"TreeEnsemble{kind}" in operators  # the replacement is what was exported
    assert f"Linear{kind}" not in operators and "Scaler" not in operators
    parity = read_json(Parity, out / "parity.json")
    assert parity.passed and parity.labels_equal and parity.rows == training.data.test_rows
    gate = next(gate for gate in report.gates if gate.name == "onnx_parity")
    assert gate.passed
