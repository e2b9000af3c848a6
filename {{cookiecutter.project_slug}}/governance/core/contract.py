"""The data contract: every column declared once, in data_pipelines/contract.yaml.

The Great Expectations suite, the scikit-learn preprocessing, the ONNX input signature, the
serving request rules and the drift tests are all derived from this record, so it lives in
the ground layer where every domain (the serving image included) may read it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import Field, PrivateAttr, StrictBool, StrictFloat, StrictInt, StrictStr, model_validator

from governance.core.errors import FieldRule, InputError
from governance.core.paths import PATHS
from governance.core.records import IDENTIFIER, Record, parse
from governance.core.tasks import BINARY, MULTICLASS, REGRESSION, Task

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


ClassLabel = StrictBool | StrictInt | StrictStr
TARGET_DTYPES = {bool: "bool", int: "int64", str: "string"}


def class_key(value: Any) -> str:
    """A class as text (JSON object keys, metric labels): strings as they are, others as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


class Target(Record):
    """The label and its task: a binary or multiclass class list (any label type), or a number.

    Classes keep the file's own values (`yes`/`no`, `setosa`, `true`, `3`): nothing asks the
    user to recode a file. The model itself sees class indices (the position in `classes`),
    and serving maps them back, so `classes` is also the order of every probability vector.
    """

    name: str = Field(pattern=IDENTIFIER)
    task: Task = "binary_classification"
    dtype: Literal["int64", "float64", "string", "bool"] | None = None
    classes: tuple[ClassLabel, ...] = ()
    positive_class: ClassLabel | None = None
    description: str = ""

    @model_validator(mode="after")
    def _fits_its_task(self) -> Target:
        if self.task == REGRESSION:
            return self._regression()
        classes = self.classes or ((0, 1) if self.task == BINARY else ())
        kinds = {type(value) for value in classes}
        if len(kinds) > 1:
            raise FieldRule(
                "classes",
                "must all be of one type (all strings, all integers or all booleans)",
                list(classes),
            )
        if len(set(classes)) != len(classes):
            raise FieldRule("classes", "must not repeat", list(classes))
        if self.task == BINARY and len(classes) != 2:
            raise FieldRule("classes", "must list the two classes of a binary target", list(classes))
        if self.task == MULTICLASS and len(classes) < 3:
            raise FieldRule(
                "classes",
                "must list at least three classes (two classes: task binary_classification)",
                list(classes),
            )
        dtype = TARGET_DTYPES[kinds.pop()]
        if self.dtype is not None and self.dtype != dtype:
            raise FieldRule("dtype", f"must be {dtype} for classes like {list(classes)[:3]}", self.dtype)
        positive = self.positive_class
        if self.task == BINARY:
            positive = classes[-1] if positive is None else positive
            if positive not in classes or type(positive) is not type(classes[0]):
                raise FieldRule("positive_class", "must be one of target.classes", positive)
        elif positive is not None:
            raise FieldRule("positive_class", "is only for binary_classification", positive)
        object.__setattr__(self, "classes", tuple(classes))
        object.__setattr__(self, "dtype", dtype)
        object.__setattr__(self, "positive_class", positive)
        return self

    def _regression(self) -> Target:
        if self.classes:
            raise FieldRule("classes", "must be empty for a regression target", list(self.classes))
        if self.positive_class is not None:
            raise FieldRule("positive_class", "is only for binary_classification", self.positive_class)
        dtype = self.dtype or "float64"
        if dtype not in NUMERIC_DTYPES:
            raise FieldRule("dtype", f"must be one of {NUMERIC_DTYPES} for a regression target", dtype)
        object.__setattr__(self, "dtype", dtype)
        return self

    @property
    def is_classification(self) -> bool:
        return self.task != REGRESSION

    @property
    def class_keys(self) -> tuple[str, ...]:
        """The classes as text, in order: the keys of a served probabilities object."""
        return tuple(class_key(value) for value in self.classes)

    @property
    def positive_index(self) -> int:
        """Position of the positive class in `classes` (binary only)."""
        return self.classes.index(self.positive_class)

    def class_indices(self, values: Any) -> np.ndarray:
        """Class values (any sequence) as int64 positions in `classes`; unknown values are refused.

        Numbers read from a file as floats (`1.0`) count as the integer class they equal. A numeric
        or text array (a captured window's labels: a million rows) is mapped through its distinct
        values, so the per-value rules below run once per distinct value, not once per row.
        """
        array = np.asarray(values) if hasattr(values, "dtype") else None
        if array is not None and array.ndim == 1 and array.dtype.kind in "biufU" and len(array) > 1:
            distinct, positions = np.unique(array, return_inverse=True)
            return self.class_indices(distinct.tolist())[positions.reshape(-1)]
        lookup = {value: index for index, value in enumerate(self.classes)}
        items = values.tolist() if hasattr(values, "tolist") else list(values)
        indices = np.empty(len(items), dtype=np.int64)
        unknown: list[Any] = []
        for position, item in enumerate(items):
            index = lookup.get(_plain(item, self.dtype))
            if index is None:
                unknown.append(item)
                index = -1
            indices[position] = index
        if unknown:
            shown = sorted({repr(item) for item in unknown})[:5]
            raise ValueError(
                f"target '{self.name}' has value(s) {', '.join(shown)} "
                f"outside the classes {list(self.classes)}"
            )
        return indices

    def class_values(self, indices: Any) -> list[Any]:
        """Class positions (the model's label output) as the contract's class values."""
        return [self.classes[int(index)] for index in np.asarray(indices).ravel()]


def _plain(item: Any, dtype: str | None) -> Any:
    """One target value as the Python type of the contract's classes (numpy scalars, 1.0 for 1)."""
    if hasattr(item, "item"):
        item = item.item()
    if dtype == "int64" and isinstance(item, float) and item.is_integer():
        return int(item)
    if dtype == "bool" and isinstance(item, bool):
        return item
    if dtype == "int64" and isinstance(item, bool):
        return None  # True is not the class 1
    return item


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
    def task(self) -> Task:
        return self.target.task

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
