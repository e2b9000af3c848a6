"""The lean preprocessing graph computes what scikit-learn's ColumnTransformer computes, row for row.

Batch scoring runs this graph on every row (ml/feature_graph.py says why it is written by hand);
these tests hold it to scikit-learn on the rows that are easy to get wrong: missing numbers,
missing and unknown categories, a contract whose own category is "missing".
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from onnx import helper
from sklearn.preprocessing import MinMaxScaler

from data_pipelines.example import EXAMPLE_CONTRACT, example_contract, generate
from governance.core.contract import Contract, parse_contract
from governance.core.encoding import Scorer
from governance.core.tasks import TASKS
from ml import feature_graph
from ml.estimator import FAMILIES
from ml.export import convert, parity
from ml.features import model_frame, onnx_inputs, preprocessor
from ml.train import fit, labels, split
from tests.support.training import small_params

ROWS = 1500
STRING_HANDLING = ("Where", "ArrayFeatureExtractor")  # skl2onnx's imputing of text


def awkward_rows(contract: Contract) -> pd.DataFrame:
    """Example rows, then rows with every number missing, every category missing, unknown, "missing"."""
    frame = generate(ROWS, seed=3)
    rows = pd.concat([frame, frame.iloc[:3]], ignore_index=True)
    odd = rows.index[-3:]
    for feature in contract.features:
        rows.loc[odd, feature.name] = np.nan if feature.is_numeric else [None, "martian", "missing"]
    return rows


def features_alone(preprocessing, contract: Contract) -> ort.InferenceSession:
    """The preprocessing graph in front of an Identity "estimator": the session answers the features."""
    steps = feature_graph.plan(preprocessing, contract)
    assert steps is not None, "the preprocessing `preprocessor` builds must get the lean graph"
    width = [None, steps.width]
    identity = helper.make_model(
        helper.make_graph(
            [helper.make_node("Identity", [feature_graph.FEATURES], ["out"])],
            "identity",
            [helper.make_tensor_value_info(feature_graph.FEATURES, onnx.TensorProto.FLOAT, width)],
            [helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, width)],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    model = feature_graph.compose(steps, identity, contract)
    onnx.checker.check_model(model, full_check=True)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def assert_same_features(preprocessing, contract: Contract, raw: pd.DataFrame) -> None:
    frame = model_frame(raw, contract)
    expected = preprocessing.transform(frame)
    (answered,) = features_alone(preprocessing, contract).run(None, onnx_inputs(frame, contract))
    assert answered.shape == expected.shape
    np.testing.assert_allclose(answered, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("scale_numeric", "settings"),
    [(True, {}), (False, {}), (True, {"numeric__scale__with_mean": False})],
    ids=["scaled", "unscaled", "scaled-without-centring"],
)
def test_it_imputes_scales_and_one_hot_encodes_as_scikit_learn_does(scale_numeric, settings):
    contract = example_contract()
    raw = awkward_rows(contract)
    preprocessing = preprocessor(contract, scale_numeric=scale_numeric).set_params(**settings)
    preprocessing.fit(model_frame(raw.iloc[:ROWS], contract))
    assert_same_features(preprocessing, contract, raw)


def test_an_unknown_category_encodes_as_all_zeros_and_a_missing_one_as_missing():
    contract = example_contract()
    raw = awkward_rows(contract)
    preprocessing = preprocessor(contract).fit(model_frame(raw.iloc[:ROWS], contract))
    (answered,) = features_alone(preprocessing, contract).run(
        None, onnx_inputs(model_frame(raw, contract), contract)
    )
    onehot = answered[-3:, len(contract.numeric) :]
    missing, unknown, named_missing = onehot
    assert unknown.sum() == 0
    assert np.array_equal(missing, named_missing) and missing.sum() == len(contract.categorical)


def test_a_contract_category_named_missing_takes_the_missing_values():
    schema = {**EXAMPLE_CONTRACT}
    schema["features"] = [
        {**feature, "categories": [*feature["categories"], "missing"]}
        if feature["name"] == "loan_purpose"
        else feature
        for feature in EXAMPLE_CONTRACT["features"]
    ]
    contract = parse_contract(schema)
    raw = awkward_rows(contract)
    preprocessing = preprocessor(contract).fit(model_frame(raw.iloc[:ROWS], contract))
    assert_same_features(preprocessing, contract, raw)


@pytest.mark.parametrize("kind", ["numeric", "categorical"])
def test_a_contract_of_one_kind_of_feature_gets_the_lean_graph_too(kind):
    schema = {
        **EXAMPLE_CONTRACT,
        "features": [feature for feature in EXAMPLE_CONTRACT["features"] if feature["kind"] == kind],
    }
    contract = parse_contract(schema)
    raw = awkward_rows(contract)
    preprocessing = preprocessor(contract).fit(model_frame(raw.iloc[:ROWS], contract))
    assert_same_features(preprocessing, contract, raw)


@pytest.mark.parametrize(
    "settings",
    [
        {"remainder": "passthrough"},
        {"numeric__impute__add_indicator": True},
        {"numeric__scale": MinMaxScaler()},
        {"categorical__encode__drop": "first"},
        {"categorical__encode__handle_unknown": "error"},
    ],
    ids=["remainder-passthrough", "missing-indicator", "another-scaler", "drop-first", "unknown-error"],
)
def test_preprocessing_of_your_own_is_left_to_skl2onnx(settings):
    contract = example_contract()
    preprocessing = preprocessor(contract).set_params(**settings)
    preprocessing.fit(model_frame(generate(200, seed=1), contract))
    assert feature_graph.plan(preprocessing, contract) is None


def test_your_own_preprocessing_still_exports_with_parity(policy):
    contract = example_contract()
    params = small_params("linear", contract.task)
    rows = generate(ROWS, seed=5)
    parts = split(rows, contract, params)
    pipeline = fit(parts.train, contract, params)
    pipeline.set_params(features__numeric__scale=MinMaxScaler())
    pipeline.fit(model_frame(parts.train, contract), labels(parts.train, contract))
    model = convert(pipeline, contract, policy.onnx.opset, "mine")
    assert not [node for node in model.graph.node if node.name.startswith(feature_graph.PREFIX)]
    result = parity(
        Scorer(model.SerializeToString()), pipeline, model_frame(parts.test, contract), contract,
        policy.onnx.parity_tolerance, "v",
    )  # fmt: skip
    assert result.passed, result


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_task_and_family_exports_the_lean_graph_with_parity(task, family, policy):
    """On the example data (categories, missing values) of each task: no text imputing in the graph."""
    contract = example_contract(task)
    params = small_params(family, task)
    rows = awkward_rows(contract).assign(
        **{contract.target.name: generate(ROWS + 3, seed=3, task=task)[contract.target.name]}
    )
    parts = split(rows, contract, params)
    pipeline = fit(parts.train, contract, params)
    model = convert(pipeline, contract, policy.onnx.opset, "lean")
    assert not [node.op_type for node in model.graph.node if node.op_type in STRING_HANDLING]
    assert {"LabelEncoder", "Gather"} <= {node.op_type for node in model.graph.node}
    assert (
        model.SerializeToString()
        == convert(pipeline, contract, policy.onnx.opset, "lean").SerializeToString()
    )
    frame = model_frame(rows, contract)  # every row, the awkward ones included
    result = parity(
        Scorer(model.SerializeToString()), pipeline, frame, contract, policy.onnx.parity_tolerance, "v"
    )
    assert result.passed, f"{task}/{family}: {result}"
