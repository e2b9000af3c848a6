"""The one ONNX feed encoder: the values every domain feeds the model are encoded here."""

from __future__ import annotations

import math

import numpy as np

from governance.core.contract import Contract
from governance.core.encoding import MISSING_TEXT, encode_column, encode_words, feeds


def test_numbers_become_float32_columns_with_nan_for_missing(example_contract: Contract):
    income = example_contract.feature("income")
    encoded = encode_column(income, [1200.5, None, 7])
    assert encoded.dtype == np.float32 and encoded.shape == (3, 1)
    assert encoded[0, 0] == np.float32(1200.5) and math.isnan(encoded[1, 0]) and encoded[2, 0] == 7
    from_numpy = encode_column(income, np.array([1.0, np.nan]))
    assert from_numpy.dtype == np.float32 and math.isnan(from_numpy[1, 0])


def test_categories_become_strings_with_empty_text_for_missing(example_contract: Contract):
    purpose = example_contract.feature("loan_purpose")
    encoded = encode_column(purpose, ["car", None, float("nan"), "home"])
    assert encoded.dtype == object and encoded.shape == (4, 1)
    assert encoded.ravel().tolist() == ["car", MISSING_TEXT, MISSING_TEXT, "home"]


def test_a_feed_has_one_input_per_feature_in_contract_order(example_contract: Contract):
    columns = {
        feature.name: [0.0] if feature.is_numeric else [feature.categories[0]]
        for feature in example_contract.features
    }
    feed = feeds(columns, example_contract)
    assert list(feed) == example_contract.feature_names
    assert all(array.shape == (1, 1) for array in feed.values())


def test_a_numpy_column_of_text_is_fed_as_it_is_without_a_copy(example_contract: Contract):
    region = example_contract.feature("region")
    values = np.array(["north", "south", "north"], dtype=object)
    encoded = encode_column(region, values)
    assert encoded.shape == (3, 1) and encoded.dtype == object
    assert np.shares_memory(encoded, values) and encoded.ravel().tolist() == ["north", "south", "north"]


def test_a_numpy_column_with_missing_or_non_text_values_is_still_converted(example_contract: Contract):
    region = example_contract.feature("region")
    values = np.array(["north", None, float("nan"), 7], dtype=object)
    encoded = encode_column(region, values)
    assert encoded.ravel().tolist() == ["north", MISSING_TEXT, MISSING_TEXT, "7"]
    assert not np.shares_memory(encoded, values) and values[1] is None  # the caller's array is untouched


def test_a_column_given_as_words_and_positions_is_the_column_those_positions_spell(
    example_contract: Contract,
):
    region = example_contract.feature("region")
    words = np.array(["north", None, "west"], dtype=object)
    positions = np.array([2, 0, 1, 2, 0])
    encoded = encode_words(region, words, positions)
    assert encoded.shape == (5, 1) and encoded.dtype == object
    assert encoded.ravel().tolist() == ["west", "north", MISSING_TEXT, "west", "north"]
    assert encoded.ravel().tolist() == encode_column(region, words[positions]).ravel().tolist()
