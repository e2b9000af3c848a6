"""Every offered model family exports to ONNX with the serving interface and matches scikit-learn."""

import json

import numpy as np
import onnx
import pandas as pd
import pytest
import yaml

from governance.core import encoding
from governance.core.encoding import Scorer
from governance.core.tasks import BINARY, REGRESSION, TASKS
from ml.estimator import FAMILIES
from ml.export import parity
from ml.features import model_frame, onnx_inputs
from tests.support.training import PROJECT, offered_families, trained_task


def test_every_configured_family_is_offered_and_tested():
    params = yaml.safe_load((PROJECT / "ml" / "params.yaml").read_text())
    assert set(params["estimators"]) == set(FAMILIES) == set(offered_families())


def test_family_matches_scikit_learn_on_the_whole_test_split(family_model, example_contract, policy):
    tolerance = policy.onnx.parity_tolerance
    result = parity(
        Scorer(family_model.content),
        family_model.pipeline,
        family_model.frame,
        example_contract,
        tolerance,
        family_model.version,
    )
    family = family_model.family
    assert result.rows == len(family_model.parts.test)
    assert result.labels_equal, f"{family}: {result.mismatched_labels} labels differ"
    assert result.max_abs_diff <= tolerance, f"{family}: max |diff| {result.max_abs_diff:.3g}"
    assert result.passed and result.version == family_model.version


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_of_every_task_matches_scikit_learn(task, family, policy):
    model = trained_task(task, family)
    tolerance = policy.onnx.parity_tolerance
    result = parity(
        Scorer(model.content), model.pipeline, model.frame, model.contract, tolerance, model.version
    )
    assert result.rows == len(model.parts.test) > 0
    assert result.labels_equal, f"{task}/{family}: {result.mismatched_labels} labels differ"
    assert result.max_abs_diff <= tolerance, f"{task}/{family}: max diff {result.max_abs_diff:.3g}"


def test_parity_catches_a_regressor_whose_onnx_answers_differ(policy):
    model = trained_task(REGRESSION, "linear")

    class Shifted:
        """scikit-learn's answers moved by 1% of their size: beyond any sane tolerance."""

        def predict(self, frame):
            return model.pipeline.predict(frame) * 1.01

    result = parity(
        Scorer(model.content), Shifted(), model.frame, model.contract, policy.onnx.parity_tolerance, "v"
    )
    assert not result.passed and result.max_abs_diff > policy.onnx.parity_tolerance


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_exported_model_has_the_serving_interface_of_its_task(task, family, policy):
    trained = trained_task(task, family)
    contract = trained.contract
    model = onnx.load_from_string(trained.content)
    onnx.checker.check_model(model, full_check=True)
    inputs = {item.name: item.type.tensor_type for item in model.graph.input}
    assert list(inputs) == contract.feature_names
    for feature in contract.features:
        expected = onnx.TensorProto.FLOAT if feature.is_numeric else onnx.TensorProto.STRING
        assert inputs[feature.name].elem_type == expected
        assert [dim.dim_value for dim in inputs[feature.name].shape.dim][1:] == [1]
    outputs = {item.name: item.type.tensor_type for item in model.graph.output}
    assert tuple(outputs) == encoding.outputs_for(task)
    for name, tensor in outputs.items():
        assert (
            onnx.helper.tensor_dtype_to_string(tensor.elem_type)
            .lower()
            .endswith(encoding.OUTPUT_TYPES[name].removeprefix("tensor(").removesuffix(")"))
        )
    width = outputs["probabilities" if task != REGRESSION else "value"].shape.dim[1].dim_value
    assert width == (len(contract.target.classes) if task != REGRESSION else 1)
    assert not [node for node in model.graph.node if node.op_type == "ZipMap"]
    # skl2onnx uses the lowest opset that holds the graph, never above the policy's.
    assert {entry.domain: entry.version for entry in model.opset_import}[""] <= policy.onnx.opset
    scores = Scorer(trained.content).score(onnx_inputs(trained.frame, contract))
    if task == REGRESSION:
        assert scores.value.shape == (len(trained.frame),)
    else:
        assert set(scores.label.tolist()) <= set(range(len(contract.target.classes)))
        assert np.allclose(scores.probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_metadata_carries_version_contract_task_and_feature_order(linear_model, example_contract):
    props = Scorer(linear_model.content).metadata
    assert props["version"] == linear_model.version
    assert props["contract_sha256"] == example_contract.digest
    assert json.loads(props["feature_order"]) == example_contract.feature_names
    assert props["task"] == example_contract.task
    assert json.loads(props["classes"]) == list(example_contract.target.classes)
    assert props["model_family"] == "linear"
    assert props["model_name"] == linear_model.params.model_name


def test_word_labels_train_and_export_their_classes_as_words():
    """A binary target coded malignant/benign: the model answers indices, the metadata the words."""
    model = trained_task(BINARY, "linear")
    target = model.contract.target
    props = Scorer(model.content).metadata
    assert json.loads(props["classes"]) == ["benign", "malignant"] == list(target.classes)
    scores = Scorer(model.content).score(onnx_inputs(model.frame, model.contract))
    answered = target.class_values(scores.label)
    truth = model.parts.test[target.name].tolist()
    assert set(answered) == {"benign", "malignant"}
    assert np.mean([a == b for a, b in zip(answered, truth, strict=True)]) > 0.9


def edge_rows(contract) -> pd.DataFrame:
    """Rows that stress the imputers and encoders: every nullable value missing, unseen categories."""
    base = {
        feature.name: (feature.min if feature.min is not None else 1.0)
        if feature.is_numeric
        else feature.categories[0]
        for feature in contract.features
    }
    missing = {name: (np.nan if contract.feature(name).is_numeric else None) for name in base}
    missing = {
        name: value if contract.feature(name).nullable else base[name] for name, value in missing.items()
    }
    unseen = {**base, **{feature.name: "never-seen" for feature in contract.categorical}}
    empty = {**base, **{feature.name: "" for feature in contract.categorical}}
    return pd.DataFrame([base, missing, unseen, empty])


def test_missing_and_unseen_values_score_the_same_in_both_runtimes(family_model, example_contract, policy):
    frame = model_frame(edge_rows(example_contract), example_contract)
    tolerance = policy.onnx.parity_tolerance
    result = parity(
        Scorer(family_model.content), family_model.pipeline, frame, example_contract, tolerance, "edge"
    )
    assert result.labels_equal and result.max_abs_diff <= tolerance, result


def test_missing_categorical_is_imputed_the_same_from_none_nan_and_empty_string(
    linear_model, example_contract
):
    nullable = next(feature for feature in example_contract.categorical if feature.nullable)
    rows = edge_rows(example_contract).iloc[[0, 0, 0]].reset_index(drop=True)
    rows[nullable.name] = pd.Series([None, np.nan, ""], dtype=object)
    pipeline = linear_model.pipeline
    answer = pipeline.predict_proba if example_contract.target.is_classification else pipeline.predict
    proba = answer(model_frame(rows, example_contract))
    assert np.allclose(proba, proba[0])


# --- one encoder: parity feeds the model exactly as serving and monitoring do ------------------


def test_parity_feeds_the_model_through_the_ground_encoder(
    linear_model, example_contract, policy, monkeypatch
):
    encoded: list[str] = []
    original = encoding.encode_column

    def counting(feature, values):
        encoded.append(feature.name)
        return original(feature, values)

    monkeypatch.setattr(encoding, "encode_column", counting)
    result = parity(
        Scorer(linear_model.content),
        linear_model.pipeline,
        linear_model.frame,
        example_contract,
        policy.onnx.parity_tolerance,
        linear_model.version,
    )
    assert result.passed
    assert encoded == example_contract.feature_names  # one encoded input per feature, in contract order


def test_the_parity_feed_equals_what_serving_sends_for_the_same_json_rows(example_contract):
    """Serving encodes JSON values (None for missing); training and parity encode a DataFrame."""
    rows = edge_rows(example_contract)
    as_json = json.loads(rows.to_json(orient="records"))  # NaN becomes null, as in a request
    columns = {name: [row[name] for row in as_json] for name in example_contract.feature_names}
    served = encoding.feeds(columns, example_contract)
    trained = onnx_inputs(model_frame(rows, example_contract), example_contract)
    assert list(trained) == list(served) == example_contract.feature_names
    for name in example_contract.feature_names:
        assert trained[name].dtype == served[name].dtype, name
        assert trained[name].shape == served[name].shape == (len(rows), 1), name
        np.testing.assert_array_equal(trained[name], served[name], err_msg=name)
