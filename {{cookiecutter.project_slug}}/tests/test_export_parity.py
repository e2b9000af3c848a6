"""Every offered model family exports to ONNX with the serving interface and matches scikit-learn."""

import json

import numpy as np
import onnx
import pandas as pd
import pytest
import yaml

from ml.export import parity, session
from ml.features import model_frame
from ml.train import FAMILIES
from tests.ml_support import PROJECT, contract, offered_families, trained

POLICY = yaml.safe_load((PROJECT / "governance" / "policy.yaml").read_text())
TOLERANCE = POLICY["onnx"]["parity_tolerance"]


def test_every_configured_family_is_offered_and_tested():
    params = yaml.safe_load((PROJECT / "ml" / "params.yaml").read_text())
    assert set(params["estimators"]) == set(FAMILIES) == set(offered_families())


@pytest.mark.parametrize("family", offered_families())
def test_family_matches_scikit_learn_on_the_whole_test_split(family):
    model = trained(family)
    result = parity(session(model.content), model.pipeline, model.frame, contract(), TOLERANCE)
    assert result["rows"] == len(model.parts.test)
    assert result["labels_equal"], f"{family}: {result['mismatched_labels']} labels differ"
    assert result["max_abs_diff"] <= TOLERANCE, f"{family}: max |diff| {result['max_abs_diff']:.3g}"
    assert result["passed"]


@pytest.mark.parametrize("family", offered_families())
def test_exported_model_has_the_serving_interface(family):
    model = onnx.load_from_string(trained(family).content)
    onnx.checker.check_model(model, full_check=True)
    terms = contract()
    inputs = {item.name: item.type.tensor_type for item in model.graph.input}
    assert list(inputs) == terms.feature_names
    for feature in terms.features:
        expected = onnx.TensorProto.FLOAT if feature.is_numeric else onnx.TensorProto.STRING
        assert inputs[feature.name].elem_type == expected
        assert [dim.dim_value for dim in inputs[feature.name].shape.dim][1:] == [1]
    outputs = {item.name: item.type.tensor_type for item in model.graph.output}
    assert list(outputs) == ["label", "probabilities"]
    assert outputs["label"].elem_type == onnx.TensorProto.INT64
    assert outputs["probabilities"].elem_type == onnx.TensorProto.FLOAT
    assert outputs["probabilities"].shape.dim[1].dim_value == 2
    assert not [node for node in model.graph.node if node.op_type == "ZipMap"]
    assert {entry.domain: entry.version for entry in model.opset_import}[""] == POLICY["onnx"]["opset"]


def test_metadata_carries_version_contract_and_feature_order():
    model = trained("logistic_regression")
    props = {item.key: item.value for item in onnx.load_from_string(model.content).metadata_props}
    terms = contract()
    assert props["version"] == model.version
    assert props["contract_sha256"] == terms.digest
    assert json.loads(props["feature_order"]) == terms.feature_names
    assert json.loads(props["classes"]) == [0, 1]
    assert props["model_family"] == "logistic_regression"
    assert props["model_name"] == model.params.model_name


def edge_rows() -> pd.DataFrame:
    """Rows that stress the imputers and encoders: every nullable value missing, unseen categories."""
    terms = contract()
    base = {
        feature.name: (feature.min if feature.min is not None else 1.0)
        if feature.is_numeric
        else feature.categories[0]
        for feature in terms.features
    }
    missing = {name: (np.nan if terms.feature(name).is_numeric else None) for name in base}
    missing = {name: value if terms.feature(name).nullable else base[name] for name, value in missing.items()}
    unseen = {**base, **{feature.name: "never-seen" for feature in terms.categorical}}
    empty = {**base, **{feature.name: "" for feature in terms.categorical}}
    return pd.DataFrame([base, missing, unseen, empty])


@pytest.mark.parametrize("family", offered_families())
def test_missing_and_unseen_values_score_the_same_in_both_runtimes(family):
    model = trained(family)
    frame = model_frame(edge_rows(), contract())
    result = parity(session(model.content), model.pipeline, frame, contract(), TOLERANCE)
    assert result["labels_equal"] and result["max_abs_diff"] <= TOLERANCE, result


def test_missing_categorical_is_imputed_the_same_from_none_nan_and_empty_string():
    terms = contract()
    nullable = next(feature for feature in terms.categorical if feature.nullable)
    rows = edge_rows().iloc[[0, 0, 0]].reset_index(drop=True)
    rows[nullable.name] = pd.Series([None, np.nan, ""], dtype=object)
    proba = trained("logistic_regression").pipeline.predict_proba(model_frame(rows, terms))
    assert np.allclose(proba, proba[0])
