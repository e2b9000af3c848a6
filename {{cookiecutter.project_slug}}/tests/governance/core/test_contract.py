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
    assert contract.target.positive_class == 1
    assert contract.columns[-2:] == ["defaulted", "sex"]


@pytest.mark.parametrize(
    ("changes", "field", "value"),
    [
        ({"features__0__kind": "text"}, "features[0].kind", "'text'"),
        ({"features__0__min": 200}, "features[0].min", "200"),
        ({"features__6__categories": []}, "features[6].categories", "[]"),
        ({"features__1__name": "age"}, "features[1].name", "'age'"),
        ({"target__classes": [0, 1, 2]}, "target.classes", "[0, 1, 2]"),
        ({"target__positive_class": 7}, "target.positive_class", "7"),
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
