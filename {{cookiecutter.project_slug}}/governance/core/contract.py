"""The data contract: every column declared once, in data_pipelines/contract.yaml.

The Great Expectations suite, the scikit-learn preprocessing, the ONNX input signature, the
serving request rules and the drift tests are all derived from this record, so it lives in
the ground layer where every domain (the serving image included) may read it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, PrivateAttr, StrictBool, StrictFloat, StrictInt, StrictStr, model_validator

from governance.core.errors import FieldRule, InputError
from governance.core.paths import PATHS
from governance.core.records import IDENTIFIER, Record, parse

NUMERIC_DTYPES = ("int64", "float64")
Number = StrictInt | StrictFloat


class ContractError(InputError):
    """The contract file breaks a rule; the message names the field, the rule and the value."""


class Feature(Record):
    """One model input: numeric (a range) or categorical (a closed list of values)."""

    name: str = Field(pattern=IDENTIFIER)
    kind: Literal["numeric", "categorical"]
    dtype: Literal["int64", "float64", "string"] | None = None
    nullable: StrictBool = False
    min: Number | None = None
    max: Number | None = None
    categories: tuple[StrictStr, ...] = ()
    description: str = ""

    @model_validator(mode="after")
    def _fits_its_kind(self) -> Feature:
        if self.kind == "numeric":
            dtype = self.dtype or "float64"
            if dtype not in NUMERIC_DTYPES:
                raise FieldRule("dtype", f"must be one of {NUMERIC_DTYPES} for a numeric feature", dtype)
            if self.min is not None and self.max is not None and self.min > self.max:
                raise FieldRule("min", "must not exceed max", self.min)
        else:
            dtype = self.dtype or "string"
            if dtype != "string":
                raise FieldRule("dtype", "must be string for a categorical feature", dtype)
            if not self.categories:
                raise FieldRule("categories", "must be a non-empty list of strings", list(self.categories))
            if len(set(self.categories)) != len(self.categories):
                raise FieldRule("categories", "must not repeat", list(self.categories))
        object.__setattr__(self, "dtype", dtype)
        return self

    @property
    def is_numeric(self) -> bool:
        return self.kind == "numeric"


class Target(Record):
    """The label: a binary target with its two classes and the positive one."""

    name: str = Field(pattern=IDENTIFIER)
    dtype: Literal["int64"] = "int64"
    classes: tuple[StrictInt, ...] = (0, 1)
    positive_class: StrictInt | None = None

    @model_validator(mode="after")
    def _binary(self) -> Target:
        if len(self.classes) != 2 or len(set(self.classes)) != 2:
            raise FieldRule("classes", "must list the two classes of a binary target", list(self.classes))
        positive = self.classes[-1] if self.positive_class is None else self.positive_class
        if positive not in self.classes:
            raise FieldRule("positive_class", "must be one of target.classes", positive)
        object.__setattr__(self, "positive_class", positive)
        return self


class SensitiveAttribute(Record):
    """A column used for bias metrics only: captured in serving, never a model input."""

    name: str = Field(pattern=IDENTIFIER)
    categories: tuple[StrictStr, ...] = ()
    nullable: StrictBool = False


class Contract(Record):
    version: int = 1
    dataset: str = "dataset"
    description: str = ""
    target: Target
    sensitive_attribute: SensitiveAttribute | None = None
    features: tuple[Feature, ...]
    _digest: str = PrivateAttr(default="")

    @model_validator(mode="after")
    def _distinct_columns(self) -> Contract:
        if not self.features:
            raise FieldRule("features", "must be a non-empty list", [])
        seen: set[str] = set()
        for index, feature in enumerate(self.features):
            if feature.name in seen:
                raise FieldRule(f"features[{index}].name", "must be unique", feature.name)
            seen.add(feature.name)
        if self.target.name in seen:
            raise FieldRule("target.name", "must not also be a feature", self.target.name)
        sensitive = self.sensitive_attribute
        if sensitive and (sensitive.name in seen or sensitive.name == self.target.name):
            raise FieldRule("sensitive_attribute.name", "must not be a feature or the target", sensitive.name)
        return self

    @property
    def digest(self) -> str:
        """sha256 of the file's bytes: travels with every snapshot and model as lineage."""
        return self._digest

    @property
    def sensitive(self) -> SensitiveAttribute | None:
        return self.sensitive_attribute

    @property
    def feature_names(self) -> list[str]:
        """The model's input order: the order of the contract, everywhere."""
        return [feature.name for feature in self.features]

    @property
    def numeric(self) -> list[Feature]:
        return [feature for feature in self.features if feature.is_numeric]

    @property
    def categorical(self) -> list[Feature]:
        return [feature for feature in self.features if not feature.is_numeric]

    @property
    def columns(self) -> list[str]:
        """Every column a dataset must have: features, the target, the sensitive attribute."""
        extra = [self.sensitive.name] if self.sensitive else []
        return [*self.feature_names, self.target.name, *extra]

    def feature(self, name: str) -> Feature:
        for feature in self.features:
            if feature.name == name:
                return feature
        raise KeyError(name)


def parse_contract(raw: Any, digest: str = "", source: str = "contract") -> Contract:
    """A Contract from parsed YAML, rejecting anything the rest of the code cannot trust."""
    if not isinstance(raw, dict):
        raise ContractError(
            f"{source}: must be a mapping with target and features (got {type(raw).__name__})"
        )
    contract = parse(Contract, raw, source, ContractError)
    contract._digest = digest
    return contract


def load(path: Path | str | None = None) -> Contract:
    """Read the contract (default: data_pipelines/contract.yaml of this project)."""
    path = Path(path) if path else PATHS.contract
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise ContractError(f"contract file {path} does not exist") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ContractError(f"contract file {path} is not valid YAML: {error}") from None
    return parse_contract(raw, hashlib.sha256(text).hexdigest(), source=str(path))
