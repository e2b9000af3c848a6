"""The estimator seam (ml/estimator.py): the family's estimator, seeded; replace it and training,
the ONNX export and the parity check carry on unchanged."""

import onnx
import pytest
from sklearn.tree import DecisionTreeClassifier

import ml.train
from governance.core.paths import Paths
from governance.core.records import Parity, TrainingRecord, read_json
from ml.estimator import FAMILIES, build_estimator, needs_scaling
from ml.pipeline import train
from tests.support.training import SMALL, make_workspace


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_family_is_built_with_its_settings_and_the_seed(family):
    estimator = build_estimator(family, SMALL[family], seed=11)
    assert type(estimator) is FAMILIES[family]
    assert estimator.get_params()["random_state"] == 11
    assert {key: estimator.get_params()[key] for key in SMALL[family]} == SMALL[family]


def test_only_models_that_split_on_value_order_skip_scaling():
    assert needs_scaling(build_estimator("linear", {}, seed=0))
    assert not needs_scaling(build_estimator("random_forest", {}, seed=0))
    assert not needs_scaling(build_estimator("gradient_boosting", {}, seed=0))
    assert not needs_scaling(DecisionTreeClassifier())


def test_a_replaced_estimator_trains_exports_and_passes_parity(tmp_path, monkeypatch):
    seeds = []

    def decision_tree(family, settings, seed):
        seeds.append(seed)
        return DecisionTreeClassifier(max_depth=5, min_samples_leaf=10, random_state=seed)

    monkeypatch.setattr(ml.train, "build_estimator", decision_tree)
    paths = Paths(make_workspace(tmp_path / "project"))
    report = train(paths)

    out = paths.models / report.version
    training = read_json(TrainingRecord, out / "training.json")
    assert seeds == [training.seed]
    model = onnx.load(out / "model.onnx")
    operators = {node.op_type for node in model.graph.node}
    assert "TreeEnsembleClassifier" in operators  # the replacement is what was exported
    assert "LinearClassifier" not in operators and "Scaler" not in operators
    parity = read_json(Parity, out / "parity.json")
    assert parity.passed and parity.labels_equal and parity.rows == training.data.test_rows
    gate = next(gate for gate in report.gates if gate.name == "onnx_parity")
    assert gate.passed
