"""The data contract record: one parser, errors that name the field, the rule and the value."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from data_pipelines.example import EXAMPLE_CONTRACT
from governance.core.contract import ContractError, load, parse_contract


def broken(**changes: object) -> dict:
    raw = yaml.safe_load(yaml.safe_dump(EXAMPLE_CONTRACT))
    for dotted, value in changes.items():
        target = raw
        *parents, last = dotted.split("__")
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[int(last) if last.isdigit() else last] = value
    return raw


def test_the_example_contract_parses_with_features_in_order():
    contract = parse_contract(EXAMPLE_CONTRACT)
    assert contract.feature_names == [feature["name"] for feature in EXAMPLE_CONTRACT["features"]]
    assert contract.target.task == EXAMPLE_CONTRACT["target"].get("task", "binary_classification")
    assert contract.target.positive_class == EXAMPLE_CONTRACT["target"].get("positive_class")
    assert contract.columns[-2:] == [EXAMPLE_CONTRACT["target"]["name"], "sex"]


@pytest.mark.parametrize(
    ("changes", "field", "value"),
    [
        ({"features__0__kind": "text"}, "features[0].kind", "'text'"),
        ({"features__0__min": 200}, "features[0].min", "200"),
        ({"features__6__categories": []}, "features[6].categories", "[]"),
        ({"features__1__name": "age"}, "features[1].name", "'age'"),
        ({"target": {"name": "y", "classes": [0, 1, 2]}}, "target.classes", "[0, 1, 2]"),
        ({"target": {"name": "y", "classes": [0, 1], "positive_class": 7}}, "target.positive_class", "7"),
        ({"target": {"name": "y", "classes": ["no", 1]}}, "target.classes", "['no', 1]"),
        ({"target": {"name": "y", "classes": [True, True]}}, "target.classes", "[True, True]"),
        ({"target": {"name": "y", "classes": ["1", "2"], "dtype": "int64"}}, "target.dtype", "'int64'"),
        (
            {"target": {"name": "y", "task": "multiclass_classification", "classes": ["a", "b"]}},
            "target.classes",
            "['a', 'b']",
        ),
        (
            {
                "target": {
                    "name": "y",
                    "task": "multiclass_classification",
                    "classes": [1, 2, 3],
                    "positive_class": 3,
                }
            },
            "target.positive_class",
            "3",
        ),
        ({"target": {"name": "y", "task": "regression", "classes": [0, 1]}}, "target.classes", "[0, 1]"),
        ({"target": {"name": "y", "task": "regression", "dtype": "string"}}, "target.dtype", "'string'"),
        ({"target": {"name": "y", "task": "ranking"}}, "target.task", "'ranking'"),
        ({"sensitive_attribute__name": "age"}, "sensitive_attribute.name", "'age'"),
        ({"features__0__colour": "red"}, "features[0].colour", "'red'"),
    ],
)
def test_a_broken_contract_is_refused_naming_the_field_and_the_value(changes, field, value):
    with pytest.raises(ContractError) as refusal:
        parse_contract(broken(**changes), source="contract.yaml")
    message = str(refusal.value)
    assert message.startswith(f"contract.yaml: field '{field}' ")
    assert f"(got {value})" in message


def test_the_digest_is_the_sha256_of_the_files_bytes(tmp_path: Path):
    path = tmp_path / "contract.yaml"
    path.write_text(yaml.safe_dump(EXAMPLE_CONTRACT))
    assert load(path).digest == hashlib.sha256(path.read_bytes()).hexdigest()
    path.write_text(path.read_text() + "# a comment changes the lineage too\n")
    assert load(path).digest == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_missing_or_unreadable_contract_is_one_sentence(tmp_path: Path):
    with pytest.raises(ContractError, match="does not exist"):
        load(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("features: [unclosed\n")
    with pytest.raises(ContractError, match="not valid YAML"):
        load(tmp_path / "bad.yaml")


@pytest.mark.parametrize(
    ("target", "dtype", "positive"),
    [
        ({"classes": ["benign", "malignant"], "positive_class": "malignant"}, "string", "malignant"),
        ({"classes": [False, True]}, "bool", True),
        ({"classes": [0, 1]}, "int64", 1),
        ({"task": "multiclass_classification", "classes": ["low", "medium", "high"]}, "string", None),
        ({"task": "regression"}, "float64", None),
    ],
)
def test_a_target_of_any_task_keeps_its_own_labels(target, dtype, positive):
    raw = broken()
    raw["target"] = {"name": "y", **target}
    parsed = parse_contract(raw).target
    assert (parsed.dtype, parsed.positive_class) == (dtype, positive)
    assert list(parsed.classes) == target.get("classes", [])
    if parsed.is_classification:
        assert parsed.class_values(parsed.class_indices(list(reversed(parsed.classes)))) == list(
            reversed(parsed.classes)
        )


def test_class_indices_refuse_a_value_outside_the_classes_and_a_lookalike_of_another_type():
    raw = broken()
    raw["target"] = {"name": "y", "classes": ["0", "1"]}
    target = parse_contract(raw).target
    assert target.class_indices(["1", "0"]).tolist() == [1, 0]
    with pytest.raises(ValueError, match="outside the classes"):
        target.class_indices([1])  # the number 1 is not the text class "1"
    raw["target"] = {"name": "y", "classes": [0, 1]}
    target = parse_contract(raw).target
    assert target.class_indices([1.0, 0]).tolist() == [1, 0]  # a float read from a file counts
    with pytest.raises(ValueError, match="outside the classes"):
        target.class_indices([True])  # a boolean is not the class 1
