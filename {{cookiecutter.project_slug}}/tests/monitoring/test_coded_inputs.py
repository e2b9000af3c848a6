"""Batch scoring may feed a category's position instead of its text (monitoring/coded_inputs.py):
the model then answers exactly what it answers to the text, and an input it reads any other way
stays text.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from governance.core.contract import load as load_contract
from governance.core.encoding import Scorer, encode_column, feeds
from monitoring import batch_score, coded_inputs
from tests.support.training import example_frame


def positions(feed: dict, lookups: dict, contract) -> dict:
    """The text feed with each coded input's texts replaced by their lookups' positions."""
    coded = dict(feed)
    for name, lookup in lookups.items():
        feature = contract.feature(name)
        coded[name] = lookup.of(encode_column(feature, feed[name].reshape(-1)).reshape(-1)).reshape(-1, 1)
    return coded


def test_positions_give_the_registered_models_answers_bit_for_bit(registered_workspace):
    paths, _ = registered_workspace
    contract = load_contract(paths.contract)
    content, _ = batch_score.resolve_model(paths, None)
    coded = coded_inputs.derive(content)
    # the lean preprocessing graph (ml/feature_graph.py) reads every category through one encoder
    assert sorted(coded.lookups) == sorted(feature.name for feature in contract.categorical)
    frame = example_frame(300, seed=11)[contract.feature_names].astype(
        {f.name: object for f in contract.categorical}
    )
    for offset, feature in enumerate(contract.categorical):  # missing, unknown and empty texts too
        frame.loc[offset * 3 : offset * 3 + 2, feature.name] = [None, "martian", ""]
    text_feed = feeds({name: frame[name].to_numpy() for name in contract.feature_names}, contract)
    expected = Scorer(content).score(text_feed)
    got = Scorer(coded.content).score(positions(text_feed, coded.lookups, contract))
    for name in ("label", "probabilities", "value"):
        if getattr(expected, name) is not None:
            assert np.array_equal(getattr(got, name), getattr(expected, name)), name


def two_texts_graph() -> bytes:
    """`a` is read by one LabelEncoder; `b` by a LabelEncoder and by an Identity (an output)."""
    encoder = {"keys_strings": ["x", "y"], "values_int64s": [4, 7], "domain": "ai.onnx.ml"}
    nodes = [
        helper.make_node("LabelEncoder", ["a"], ["a_position"], default_int64=9, **encoder),
        helper.make_node("LabelEncoder", ["b"], ["b_position"], **encoder),
        helper.make_node("Identity", ["b"], ["b_text"]),
        helper.make_node("Add", ["a_position", "b_position"], ["total"]),
    ]
    text = [helper.make_tensor_value_info(name, onnx.TensorProto.STRING, [None, 1]) for name in ("a", "b")]
    outputs = [
        helper.make_tensor_value_info("total", onnx.TensorProto.INT64, [None, 1]),
        helper.make_tensor_value_info("b_text", onnx.TensorProto.STRING, [None, 1]),
    ]
    graph = helper.make_graph(nodes, "two_texts", text, outputs)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 2)]
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()


def test_an_input_read_only_by_an_encoder_takes_positions_any_other_stays_text():
    import onnxruntime as ort

    content = two_texts_graph()
    coded = coded_inputs.derive(content)
    assert list(coded.lookups) == ["a"]
    lookup = coded.lookups["a"]
    assert (lookup.positions, lookup.default) == ({"x": 4, "y": 7}, 9)
    words = np.array([["x"], ["y"], ["unknown"], [""]], dtype=object)
    b = np.array([["y"], ["x"], ["x"], ["nope"]], dtype=object)
    original = ort.InferenceSession(content, providers=["CPUExecutionProvider"]).run(
        None, {"a": words, "b": b}
    )
    variant = ort.InferenceSession(coded.content, providers=["CPUExecutionProvider"])
    answers = variant.run(None, {"a": lookup.of(words.reshape(-1)).reshape(-1, 1), "b": b})
    assert answers[0].tolist() == original[0].tolist() == [[11], [11], [13], [8]]
    assert answers[1].tolist() == original[1].tolist()


@pytest.mark.parametrize(
    ("attributes", "lookup"),
    [
        (
            {"keys_strings": ["x"], "values_int64s": [1]},
            coded_inputs.Lookup({"x": 1}, -1),
        ),  # the spec's default
        ({"keys_strings": ["x"], "values_floats": [1.0]}, None),  # text -> float is not a position
        ({"keys_int64s": [1], "values_strings": ["x"]}, None),  # int -> text: the input is no text
    ],
)
def test_only_an_encoder_from_text_to_int64_is_bypassed(attributes, lookup):
    kinds = {
        "strings": onnx.TensorProto.STRING,
        "int64s": onnx.TensorProto.INT64,
        "floats": onnx.TensorProto.FLOAT,
    }
    key_type, value_type = (kinds[name.split("_")[1]] for name in attributes)
    graph = helper.make_graph(
        [
            helper.make_node("LabelEncoder", ["a"], ["position"], domain="ai.onnx.ml", **attributes),
            helper.make_node("Identity", ["position"], ["out"]),
        ],
        "one_encoder",
        [helper.make_tensor_value_info("a", key_type, [None, 1])],
        [helper.make_tensor_value_info("out", value_type, [None, 1])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 2)]
    )
    assert coded_inputs.derive(model.SerializeToString()).lookups.get("a") == lookup
