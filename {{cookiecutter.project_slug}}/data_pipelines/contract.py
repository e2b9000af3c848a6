"""Load and check the data contract, the one file every other part derives from.

Deliberately light (standard library + PyYAML only): the serving image imports this
module, so it must not pull in pandas or scikit-learn.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

CONTRACT_PATH = Path(__file__).with_name("contract.yaml")
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
NUMERIC_DTYPES = ("int64", "float64")


class ContractError(ValueError):
    """The contract file breaks a rule; the message names the field, the rule and the value."""


@dataclass(frozen=True)
class Feature:
    name: str
    kind: Literal["numeric", "categorical"]
    dtype: str
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] = ()
    description: str = ""

    @property
    def is_numeric(self) -> bool:
        return self.kind == "numeric"


@dataclass(frozen=True)
class Target:
    name: str
    classes: tuple[int, ...] = (0, 1)
    positive_class: int = 1
    dtype: str = "int64"


@dataclass(frozen=True)
class SensitiveAttribute:
    name: str
    categories: tuple[str, ...] = ()
    nullable: bool = False


@dataclass(frozen=True)
class Contract:
    dataset: str
    target: Target
    features: tuple[Feature, ...]
    sensitive: SensitiveAttribute | None = None
    digest: str = field(default="", compare=False)

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


def _require(condition: bool, where: str, rule: str, value: Any) -> None:
    if not condition:
        raise ContractError(f"contract field '{where}' {rule} (got {value!r})")


def _feature(raw: Any, index: int, seen: set[str]) -> Feature:
    where = f"features[{index}]"
    _require(isinstance(raw, dict), where, "must be a mapping", raw)
    name = raw.get("name")
    _require(isinstance(name, str) and bool(NAME.match(name)), f"{where}.name", "must be an identifier", name)
    where = f"features[{index}] ({name})"
    _require(name not in seen, f"{where}.name", "must be unique", name)
    seen.add(name)
    kind = raw.get("kind")
    _require(kind in ("numeric", "categorical"), f"{where}.kind", "must be numeric or categorical", kind)
    nullable = raw.get("nullable", False)
    _require(isinstance(nullable, bool), f"{where}.nullable", "must be true or false", nullable)
    description = str(raw.get("description", ""))
    if kind == "numeric":
        dtype = raw.get("dtype", "float64")
        _require(dtype in NUMERIC_DTYPES, f"{where}.dtype", f"must be one of {NUMERIC_DTYPES}", dtype)
        low, high = raw.get("min"), raw.get("max")
        for key, bound in (("min", low), ("max", high)):
            _require(
                bound is None or (isinstance(bound, int | float) and not isinstance(bound, bool)),
                f"{where}.{key}",
                "must be a number",
                bound,
            )
        _require(low is None or high is None or low <= high, f"{where}.min", "must not exceed max", low)
        return Feature(name, "numeric", dtype, nullable, low, high, (), description)
    dtype = raw.get("dtype", "string")
    _require(dtype == "string", f"{where}.dtype", "must be string for a categorical feature", dtype)
    categories = raw.get("categories")
    _require(
        isinstance(categories, list) and len(categories) >= 1 and all(isinstance(c, str) for c in categories),
        f"{where}.categories",
        "must be a non-empty list of strings",
        categories,
    )
    _require(len(set(categories)) == len(categories), f"{where}.categories", "must not repeat", categories)
    return Feature(name, "categorical", "string", nullable, None, None, tuple(categories), description)


def parse(raw: Any, digest: str = "") -> Contract:
    """Build a Contract from parsed YAML, rejecting anything the rest of the code cannot trust."""
    _require(isinstance(raw, dict), "<root>", "must be a mapping", type(raw).__name__)
    target = raw.get("target")
    _require(isinstance(target, dict), "target", "must be a mapping with a name", target)
    target_name = target.get("name")
    _require(
        isinstance(target_name, str) and bool(NAME.match(target_name)),
        "target.name",
        "must be an identifier",
        target_name,
    )
    classes = tuple(target.get("classes", (0, 1)))
    _require(
        len(classes) == 2, "target.classes", "must list the two classes of a binary target", list(classes)
    )
    positive = target.get("positive_class", classes[-1])
    _require(positive in classes, "target.positive_class", "must be one of target.classes", positive)
    features_raw = raw.get("features")
    _require(
        isinstance(features_raw, list) and bool(features_raw),
        "features",
        "must be a non-empty list",
        features_raw,
    )
    seen: set[str] = set()
    features = tuple(_feature(item, index, seen) for index, item in enumerate(features_raw))
    _require(target_name not in seen, "target.name", "must not also be a feature", target_name)
    sensitive = None
    if raw.get("sensitive_attribute"):
        block = raw["sensitive_attribute"]
        _require(isinstance(block, dict), "sensitive_attribute", "must be a mapping", block)
        name = block.get("name")
        _require(
            isinstance(name, str) and bool(NAME.match(name)),
            "sensitive_attribute.name",
            "must be an identifier",
            name,
        )
        _require(
            name not in seen and name != target_name,
            "sensitive_attribute.name",
            "must not be a feature or the target",
            name,
        )
        sensitive = SensitiveAttribute(
            name, tuple(block.get("categories", ())), bool(block.get("nullable", False))
        )
    return Contract(
        dataset=str(raw.get("dataset", "dataset")),
        target=Target(target_name, classes, positive, str(target.get("dtype", "int64"))),
        features=features,
        sensitive=sensitive,
        digest=digest,
    )


def load(path: Path | str = CONTRACT_PATH) -> Contract:
    """Read the contract; its sha256 (of the file's bytes) travels with the model as lineage."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise ContractError(f"contract file {path} does not exist") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ContractError(f"contract file {path} is not valid YAML: {error}") from None
    return parse(raw, digest=hashlib.sha256(text).hexdigest())
