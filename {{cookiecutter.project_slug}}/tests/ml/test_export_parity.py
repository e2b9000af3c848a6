"""Every offered model family exports to ONNX with the serving interface and matches scikit-learn."""

import json

import numpy as np
import onnx
import pandas as pd
import yaml

from governance.core import encoding
from governance.core.encoding import Scorer
from ml.estimator import FAMILIES
from ml.export import parity
from ml.features import model_frame, onnx_inputs
from tests.support.training import PROJECT, offered_families


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


def test_exported_model_has_the_serving_interface(family_model, example_contract, policy):
    model = onnx.load_from_string(family_model.content)
    onnx.checker.check_model(model, full_check=True)
    inputs = {item.name: item.type.tensor_type for item in model.graph.input}
    assert list(inputs) == example_contract.feature_names
    for feature in example_contract.features:
        expected = onnx.TensorProto.FLOAT if feature.is_numeric else onnx.TensorProto.STRING
        assert inputs[feature.name].elem_type == expected
        assert [dim.dim_value for dim in inputs[feature.name].shape.dim][1:] == [1]
    outputs = {item.name: item.type.tensor_type for item in model.graph.output}
    assert list(outputs) == list(encoding.OUTPUTS) == ["label", "probabilities"]
    assert outputs["label"].elem_type == onnx.TensorProto.INT64
    assert outputs["probabilities"].elem_type == onnx.TensorProto.FLOAT
    assert outputs["probabilities"].shape.dim[1].dim_value == 2
    assert not [node for node in model.graph.node if node.op_type == "ZipMap"]
    assert {entry.domain: entry.version for entry in model.opset_import}[""] == policy.onnx.opset


def test_metadata_carries_version_contract_and_feature_order(logistic_model, example_contract):
    props = Scorer(logistic_model.content).metadata
    assert props["version"] == logistic_model.version
    assert props["contract_sha256"] == example_contract.digest
    assert json.loads(props["feature_order"]) == example_contract.feature_names
    assert json.loads(props["classes"]) == [0, 1]
    assert props["model_family"] == "linear"
    assert props["model_name"] == logistic_model.params.model_name


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
    logistic_model, example_contract
):
    nullable = next(feature for feature in example_contract.categorical if feature.nullable)
    rows = edge_rows(example_contract).iloc[[0, 0, 0]].reset_index(drop=True)
    rows[nullable.name] = pd.Series([None, np.nan, ""], dtype=object)
    proba = logistic_model.pipeline.predict_proba(model_frame(rows, example_contract))
    assert np.allclose(proba, proba[0])


# --- one encoder: parity feeds the model exactly as serving and monitoring do ------------------


def test_parity_feeds_the_model_through_the_ground_encoder(
    logistic_model, example_contract, policy, monkeypatch
):
    encoded: list[str] = []
    original = encoding.encode_column

    def counting(feature, values):
        encoded.append(feature.name)
        return original(feature, values)

    monkeypatch.setattr(encoding, "encode_column", counting)
    result = parity(
        Scorer(logistic_model.content),
        logistic_model.pipeline,
        logistic_model.frame,
        example_contract,
        policy.onnx.parity_tolerance,
        logistic_model.version,
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
