"""Turn request bodies into model inputs, checking every rule of the data contract.

Why not pydantic models: validating a record through pydantic and then copying it into
numpy costs more than the model call itself (../shared measurements: a plain FastAPI +
pydantic endpoint tops out near 2,500 requests/s on one core). Here the body is parsed
once by orjson and each feature is checked a whole column at a time with C-level builtins
(`set(map(type, ...))`, `min`, `max`), which is as fast for one row as for a hundred. The
rules come from the contract, so a feature added there is validated here with no edit.

Every rejection is a RequestError naming the field, the rule and the offending value.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from governance.core import encoding
from governance.core.contract import Contract, Feature, Target

FLOAT32_MAX = float(np.finfo(np.float32).max)
NONE = type(None)
NUMBER_TYPES = frozenset({int, float})
INT_DATATYPES = frozenset({"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"})
FLOAT_DATATYPES = frozenset({"FP16", "FP32", "FP64"})
ALL_DATATYPES = INT_DATATYPES | FLOAT_DATATYPES | {"BOOL", "BYTES"}
# The byte budget of one row, generous enough for pretty-printed JSON with ASCII escapes (the
# default of Python's json.dumps writes "é" as 6 bytes): the body limit follows the row limit.
RECORD_BYTES = 64  # the braces, separators and indentation of one record
FIELD_BYTES = 32  # the quotes, colon, comma and indentation around one value, besides its name
VALUE_BYTES = 64  # a number (a float's longest JSON text is 24 characters) or a short text
FEEDBACK_BYTES = 256  # {"feedback_token": "<about 70 characters>", "label": ...}, besides the label
ENVELOPE_BYTES = 16 * 1024  # the fixed part of a body: "records", or OIP's id, parameters and outputs


class RequestError(Exception):
    """A client error: HTTP status, the field at fault, the rule it broke and a message."""

    def __init__(self, status: int, field: str, rule: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.status = status
        self.field = field
        self.rule = rule
        self.message = message

    def body(self) -> bytes:
        return orjson.dumps({"error": str(self), "field": self.field, "rule": self.rule})


def shown(value: Any) -> str:
    """A value as it appears in an error message, cut short."""
    text = (
        orjson.dumps(value).decode()
        if isinstance(value, str | int | float | bool | NONE)
        else type(value).__name__
    )
    return text if len(text) <= 80 else text[:77] + "..."


def value_bytes(categories: Sequence[Any]) -> int:
    """The bytes a value of a column may take: a number or text, or its longest category escaped."""
    return max(VALUE_BYTES, 2 + 6 * max((len(str(category)) for category in categories), default=0))


def containers_outside_strings(body: bytes) -> int:
    """The `{` and `[` of a JSON text that are not inside a string, in a few vectorised passes.

    Escapes go first (`\\\\`, then `\\"`, with C-speed replaces), so every quote left opens or
    closes a string: a byte is outside strings after an even number of quotes. Linear in the
    body, where a regular expression over the strings costs a match (microseconds) per string.
    """
    if b"\\" in body:
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    data = np.frombuffer(body, dtype=np.uint8)
    outside = (np.cumsum(data == ord('"'), dtype=np.uint8) & 1) == 0  # the parity survives the wrap
    return int(np.count_nonzero(((data == ord("{")) | (data == ord("["))) & outside))


def parse_json(body: bytes, status: int = 400) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise RequestError(status, "body", "json", f"is not valid JSON ({error})") from None


@dataclass(frozen=True)
class Rule:
    """The checks for one contract column, compiled once from the contract."""

    name: str
    numeric: bool
    integer: bool
    nullable: bool
    low: float
    high: float
    categories: frozenset[str]
    accept_unknown: bool
    feature: Feature | None = None  # None: validated, never fed to the model (the sensitive attribute)

    @classmethod
    def of(cls, feature: Feature, accept_unknown: bool) -> Rule:
        low = -FLOAT32_MAX if feature.min is None else max(float(feature.min), -FLOAT32_MAX)
        high = FLOAT32_MAX if feature.max is None else min(float(feature.max), FLOAT32_MAX)
        return cls(
            feature.name,
            feature.is_numeric,
            feature.dtype == "int64",
            feature.nullable,
            low,
            high,
            frozenset(feature.categories),
            accept_unknown,
            feature,
        )

    def typed(self, values: list[Any]) -> list[Any]:
        """Checked numbers as the contract types them (int64: int, float64: float), as captured.

        Why: a whole number arrives as 41 in JSON and as 41.0 from an FP32 tensor; capturing
        the contract's type makes the captured row the same whichever route scored it.
        """
        kind = int if self.integer else float
        if set(map(type, values)) <= {kind, NONE}:
            return values
        return [value if value is None else kind(value) for value in values]

    def encode(self, values: list[Any]) -> np.ndarray:
        """Checked values as the model input, through the one ONNX feed encoder (governance.core.encoding).

        Seam: training, parity and re-scoring feed the model through the same function, so
        serving can never encode a value (a null, an int64 column) differently from them.
        """
        if self.feature is None:
            return np.empty((0, 1), dtype=object)
        return encoding.encode_column(self.feature, values)

    def column(self, values: list[Any], where: Callable[[int], str], status: int) -> np.ndarray:
        """The model input [N, 1] for this column, or a RequestError for its first bad value."""
        if len(values) == 1:  # the common single-row request: plain comparisons, no set building
            value = values[0]
            kind = type(value)
            if self.numeric:
                if (
                    (kind is int or kind is float)
                    and self.low <= value <= self.high
                    and not (self.integer and kind is float and not value.is_integer())
                ):
                    return self.encode(values)
            elif kind is str and (self.accept_unknown or value in self.categories):
                return self.encode(values)
        return self.numbers(values, where, status) if self.numeric else self.strings(values, where, status)

    def _first(self, values: list[Any], bad: Callable[[Any], bool]) -> int:
        return next(index for index, value in enumerate(values) if bad(value))

    def numbers(self, values: list[Any], where: Callable[[int], str], status: int) -> np.ndarray:
        types = set(map(type, values))
        if not types <= NUMBER_TYPES:
            if NONE in types and not self.nullable:
                index = values.index(None)
                raise RequestError(status, where(index), "not_null", "must not be null")
            if not types <= NUMBER_TYPES | {NONE}:
                index = self._first(values, lambda v: v is not None and type(v) not in NUMBER_TYPES)
                raise RequestError(
                    status, where(index), "type", f"must be a number (got {shown(values[index])})"
                )
        present = values
        if NONE in types:
            present = [value for value in values if value is not None]
            values = [math.nan if value is None else value for value in values]
        if present:
            if (
                self.integer
                and float in types
                and not (
                    all(map(float.is_integer, present))  # floats only (an FP32 tensor): a C-level loop
                    if int not in types
                    else all(value.is_integer() for value in present if type(value) is float)
                )
            ):
                index = self._first(
                    values, lambda v: type(v) is float and not math.isnan(v) and not v.is_integer()
                )
                raise RequestError(
                    status, where(index), "integer", f"must be a whole number (got {values[index]!r})"
                )
            if min(present) < self.low:
                index = self._first(values, lambda v: v is not None and v < self.low)
                raise RequestError(
                    status, where(index), "minimum", f"must be >= {self.low:g} (got {shown(values[index])})"
                )
            if max(present) > self.high:
                index = self._first(values, lambda v: v is not None and v > self.high)
                raise RequestError(
                    status, where(index), "maximum", f"must be <= {self.high:g} (got {shown(values[index])})"
                )
        return self.encode(values)

    def strings(self, values: list[Any], where: Callable[[int], str], status: int) -> np.ndarray:
        types = set(map(type, values))
        present = original = values
        if types != {str}:
            if NONE in types and not self.nullable:
                index = values.index(None)
                raise RequestError(status, where(index), "not_null", "must not be null")
            if not types <= {str, NONE}:
                index = self._first(values, lambda v: v is not None and type(v) is not str)
                raise RequestError(
                    status, where(index), "type", f"must be a string (got {shown(values[index])})"
                )
            present = [value for value in values if value is not None]
            values = ["" if value is None else value for value in values]
        if not self.accept_unknown and not self.categories.issuperset(present):
            index = self._first(present, lambda v: v not in self.categories)
            value = present[index]
            index = next(row for row, sent in enumerate(original) if sent is value)
            raise RequestError(
                status,
                where(index),
                "category",
                f"must be one of {sorted(self.categories)} (got {shown(value)})",
            )
        return self.encode(values)


class Validator:
    """The request rules of one contract: records for /predict, tensors for the OIP infer call."""

    def __init__(self, contract: Contract, max_rows: int, unknown_category: str) -> None:
        accept_unknown = unknown_category == "score"
        self.contract = contract
        self.max_rows = max_rows
        self.rules = [Rule.of(feature, accept_unknown) for feature in contract.features]
        self.numeric_rules = [rule for rule in self.rules if rule.numeric]
        self.names = tuple(contract.feature_names)
        self.keys = frozenset(self.names)
        sensitive = contract.sensitive
        self.sensitive = sensitive.name if sensitive else None
        self.sensitive_rule = (
            Rule(
                sensitive.name,
                False,
                False,
                sensitive.nullable,
                0.0,
                0.0,
                frozenset(sensitive.categories),
                accept_unknown or not sensitive.categories,
            )
            if sensitive
            else None
        )
        self.keys_with_sensitive = self.keys | {sensitive.name} if sensitive else self.keys
        self.lengths = {len(self.names), len(self.names) + 1} if sensitive else {len(self.names)}
        self.getter = operator.itemgetter(*self.names)
        columns = [*contract.features, *([sensitive] if sensitive else [])]
        record_bytes = RECORD_BYTES + sum(
            len(column.name) + FIELD_BYTES + value_bytes(column.categories or ()) for column in columns
        )
        label_bytes = value_bytes(contract.target.classes or ())
        self.row_bytes = max(record_bytes, FEEDBACK_BYTES + label_bytes)
        # Objects and lists a legal body holds: one per record or label; OIP's tensors hold four
        # each (the tensor, its shape, data and parameters), plus the envelope and outputs.
        self.max_containers = max_rows + 4 * (len(columns) + 4)

    # -- limits checked before a body is parsed ------------------------------------------------
    def body_limit(self, cap: int) -> int:
        """The bytes a request of `max_rows` rows may need, at most `cap` (MAX_BODY_BYTES).

        Why: parsing costs many times a body's size in memory (an empty record, 3 bytes of
        `{},`, is a 64-byte dict), so a fixed 4 MiB limit let a few concurrent junk bodies
        outgrow the pod. A limit that follows the row limit bounds every request by what a
        legal one could need.
        """
        return min(cap, ENVELOPE_BYTES + self.max_rows * self.row_bytes)

    def check_containers(self, body: bytes, field: str, status: int) -> None:
        """Refuse a body with more objects and lists than `max_rows` rows can hold, before parsing it.

        Counting the brackets runs at memory speed, where parsing a million empty records would
        allocate a million dicts only to refuse them by their count. Brackets inside strings are
        not counted (they are told apart only on the rare body whose raw count is over).
        """
        count = body.count(b"{") + body.count(b"[")
        if count > self.max_containers:
            count = containers_outside_strings(body)
        if count > self.max_containers:
            raise RequestError(
                status,
                field,
                "max_rows",
                f"holds {count} objects and lists, more than a request of at most {self.max_rows} rows "
                f"can ({self.max_containers}; MAX_BATCH_ROWS)",
            )

    # -- /predict -------------------------------------------------------------------------
    def records(self, body: bytes) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
        """Parse {"records": [{feature: value}, ...]}; return the records and the model feeds."""
        self.check_containers(body, "records", 422)
        document = parse_json(body)
        if type(document) is not dict:
            raise RequestError(422, "body", "type", 'must be a JSON object like {"records": [...]}')
        if document.keys() != {"records"}:
            if "records" not in document:
                raise RequestError(422, "records", "required", "is required (a list of records)")
            extra = sorted(key for key in document if key != "records")
            raise RequestError(
                422, extra[0], "unknown_field", "is not accepted (the body holds only 'records')"
            )
        records = document["records"]
        if type(records) is not list:
            raise RequestError(422, "records", "type", f"must be a list of records (got {shown(records)})")
        self.check_rows(len(records), "records", 422)
        columns = self._columns(records)
        feeds = {}
        for rule, values in zip(self.rules, columns, strict=True):
            name = rule.name
            feeds[name] = rule.column(values, lambda row, name=name: f"records[{row}].{name}", 422)
            if rule.numeric:
                typed = rule.typed(values)
                if typed is not values:  # rare: 41.0 for an int64 feature, 52000 for a float64 one
                    for record, value in zip(records, typed, strict=True):
                        record[name] = value
        if self.sensitive_rule is not None:
            name = self.sensitive
            rows = [index for index, record in enumerate(records) if name in record]
            if rows:
                self.sensitive_rule.strings(
                    [records[index][name] for index in rows], lambda k: f"records[{rows[k]}].{name}", 422
                )
        return records, feeds

    def _columns(self, records: list[Any]) -> list[Sequence[Any]]:
        """Each feature's values across the records, in contract order, after the key checks.

        The checks and the transposition run in C (`map`, `itemgetter`, `zip`); the Python loop
        that names the offending record runs only when something is wrong.
        """
        if set(map(type, records)) != {dict}:
            index = next(i for i, record in enumerate(records) if type(record) is not dict)
            raise RequestError(
                422,
                f"records[{index}]",
                "type",
                f"must be an object of features (got {shown(records[index])})",
            )
        count = len(self.names)
        lengths = set(map(len, records))
        if not lengths <= self.lengths:
            self._explain_keys(records, lambda record: len(record) not in self.lengths)
        try:
            rows = list(map(self.getter, records))
        except KeyError:
            self._explain_keys(records, lambda record: any(name not in record for name in self.names))
            raise  # not reached: some record lacks a feature, and that was just reported
        if count + 1 in lengths:
            self._explain_keys(records, lambda record: len(record) != count and self.sensitive not in record)
        return list(zip(*rows, strict=True)) if count > 1 else [[row] for row in rows]

    def check_rows(self, count: int, field: str, status: int) -> None:
        if count == 0:
            raise RequestError(status, field, "min_rows", "must hold at least one row")
        if count > self.max_rows:
            raise RequestError(
                status, field, "max_rows", f"holds {count} rows, more than the limit of {self.max_rows}"
            )

    def _explain_keys(self, records: list[dict[str, Any]], wrong: Callable[[dict[str, Any]], bool]) -> None:
        """Raise for the first record `wrong` picks: its first missing feature, else its first extra key."""
        index = next((i for i, record in enumerate(records) if wrong(record)), None)
        if index is None:
            return
        record = records[index]
        missing = [name for name in self.names if name not in record]
        if missing:
            raise RequestError(
                422, f"records[{index}].{missing[0]}", "required", "is required (a model feature)"
            )
        extra = sorted(key for key in record if key not in self.keys_with_sensitive)
        raise RequestError(
            422, f"records[{index}].{extra[0]}", "unknown_field", "is not a feature of the data contract"
        )

    # -- Open Inference Protocol ------------------------------------------------------------
    def tensors(self, inputs: Any) -> tuple[int, dict[str, list[Any]], dict[str, np.ndarray]]:
        """Check OIP `inputs`; return the row count, the columns (for capture) and the feeds."""
        if type(inputs) is not list or not inputs:
            raise RequestError(400, "inputs", "required", "must be a non-empty list of input tensors")
        columns: dict[str, list[Any]] = {}
        rows = -1
        for position, tensor in enumerate(inputs):
            name, data = self._tensor(tensor, position)
            if name in columns:
                raise RequestError(
                    400, f"inputs[{position}].name", "duplicate", f"{shown(name)} is sent twice"
                )
            if rows not in (-1, len(data)):
                raise RequestError(
                    400, f"inputs[{name}].shape", "batch", f"has {len(data)} rows, other inputs have {rows}"
                )
            rows = len(data)
            columns[name] = data
        missing = [name for name in self.names if name not in columns]
        if missing:
            raise RequestError(400, f"inputs[{missing[0]}]", "required", "is required (a model feature)")
        self.check_rows(rows, "inputs", 400)
        feeds = {
            rule.name: rule.column(
                columns[rule.name], lambda row, name=rule.name: f"inputs[{name}].data[{row}]", 400
            )
            for rule in self.rules
        }
        for rule in self.numeric_rules:
            columns[rule.name] = rule.typed(columns[rule.name])
        if self.sensitive_rule is not None and self.sensitive in columns:
            name = self.sensitive
            self.sensitive_rule.strings(columns[name], lambda row: f"inputs[{name}].data[{row}]", 400)
        return rows, columns, feeds

    def _tensor(self, tensor: Any, position: int) -> tuple[str, list[Any]]:
        where = f"inputs[{position}]"
        if type(tensor) is not dict:
            raise RequestError(400, where, "type", "must be an object with name, shape, datatype and data")
        for key in ("name", "shape", "datatype", "data"):
            if key not in tensor:
                needs = (
                    " (a flat list, or parameters.binary_data_size with the binary tensor data extension)"
                    if key == "data"
                    else ""
                )
                raise RequestError(400, f"{where}.{key}", "required", f"is required{needs}")
        extra = sorted(set(tensor) - {"name", "shape", "datatype", "data", "parameters"})
        if extra:
            raise RequestError(400, f"{where}.{extra[0]}", "unknown_field", "is not part of an input tensor")
        name = tensor["name"]
        if type(name) is not str or name not in self.keys_with_sensitive:
            raise RequestError(
                400,
                f"{where}.name",
                "unknown_input",
                f"must be a model input {list(self.names)} (got {shown(name)})",
            )
        where = f"inputs[{name}]"
        shape, datatype, data = tensor["shape"], tensor["datatype"], tensor["data"]
        if (
            type(shape) is not list
            or not 1 <= len(shape) <= 2
            or any(type(d) is not int or d < 0 for d in shape)
        ):
            raise RequestError(400, f"{where}.shape", "shape", f"must be [N] or [N, 1] (got {shown(shape)})")
        if len(shape) == 2 and shape[1] != 1:
            raise RequestError(
                400, f"{where}.shape", "shape", f"must be [N, 1], one value per row (got {shape})"
            )
        if type(datatype) is not str or datatype not in ALL_DATATYPES:
            raise RequestError(
                400, f"{where}.datatype", "datatype", f"must be an OIP datatype (got {shown(datatype)})"
            )
        numeric = name != self.sensitive and self.rules[self.names.index(name)].numeric
        if numeric and datatype not in INT_DATATYPES | FLOAT_DATATYPES:
            raise RequestError(
                400, f"{where}.datatype", "datatype", f"must be a numeric type such as FP32 (got {datatype})"
            )
        if not numeric and datatype != "BYTES":
            raise RequestError(
                400, f"{where}.datatype", "datatype", f"must be BYTES for text (got {datatype})"
            )
        if type(data) is not list:
            raise RequestError(
                400, f"{where}.data", "type", "must be a flat list of values in row-major order"
            )
        if len(data) != shape[0]:
            raise RequestError(
                400,
                f"{where}.data",
                "shape",
                f"holds {len(data)} values but the shape {shape} needs {shape[0]}",
            )
        if datatype in INT_DATATYPES:
            self._integers(data, where, datatype)
        return name, data

    @staticmethod
    def _integers(data: list[Any], where: str, datatype: str) -> None:
        types = set(map(type, data))
        if not types <= {int, NONE}:
            index = next(i for i, value in enumerate(data) if value is not None and type(value) is not int)
            raise RequestError(
                400,
                f"{where}.data[{index}]",
                "datatype",
                f"must be an integer for {datatype} (got {shown(data[index])})",
            )
        if datatype.startswith("UINT") and any(value is not None and value < 0 for value in data):
            index = next(i for i, value in enumerate(data) if value is not None and value < 0)
            raise RequestError(400, f"{where}.data[{index}]", "datatype", f"must be >= 0 for {datatype}")


def label_rule(target: Target) -> Callable[[Any, str], Any]:
    """The check of a fed-back label: the answer as captured, or a RequestError (422).

    Classification: one of the contract's class values, of the class type exactly as JSON reads
    it: the string class "1" is not the integer 1, and true is not 1 (Python's `True == 1` would
    let it through, so the type is compared first). Regression: a finite number (a whole one for
    an int64 target); a float64 target records it as a float.
    """
    if target.is_classification:
        kind = type(target.classes[0])
        classes = frozenset(target.classes)
        listed = orjson.dumps(list(target.classes)).decode()

        def check_class(label: Any, where: str) -> Any:
            if type(label) is not kind or label not in classes:
                raise RequestError(
                    422,
                    f"{where}.label",
                    "category",
                    f"must be one of the classes {listed} (got {shown(label)})",
                )
            return label

        return check_class
    integer = target.dtype == "int64"

    def check_number(label: Any, where: str) -> Any:
        if type(label) not in NUMBER_TYPES or not math.isfinite(label):
            raise RequestError(422, f"{where}.label", "type", f"must be a finite number (got {shown(label)})")
        if integer and not float(label).is_integer():
            raise RequestError(
                422, f"{where}.label", "integer", f"must be a whole number (got {shown(label)})"
            )
        return int(label) if integer else float(label)

    return check_number


def feedback_items(
    document: Any,
    target: Target,
    max_rows: int,
    verify: Callable[[Any, str], tuple[str, int]],
) -> list[tuple[str, int, Any]]:
    """Check /feedback: one {"feedback_token", "label"} or a list of them; (request_id, row, label) each.

    `verify` turns a token into the (request_id, row) it was issued for, or raises (app/feedback.py):
    a prediction is named only by the token its answer carried, never by a guessable id.
    """
    check_label = label_rule(target)
    items = document if type(document) is list else [document]
    if not items:
        raise RequestError(422, "body", "min_rows", "must hold at least one label")
    if len(items) > max_rows:
        raise RequestError(422, "body", "max_rows", f"holds {len(items)} labels, more than {max_rows}")
    out = []
    for index, item in enumerate(items):
        where = f"[{index}]" if type(document) is list else "body"
        if type(item) is not dict:
            raise RequestError(
                422,
                where,
                "type",
                'must be an object like {"feedback_token": "...", "label": <the true label>}',
            )
        extra = sorted(set(item) - {"feedback_token", "label"})
        if extra:
            message = (
                "is not accepted: name the prediction by the feedback_token its answer carried"
                if extra[0] in ("request_id", "row")
                else "is not accepted"
            )
            raise RequestError(422, f"{where}.{extra[0]}", "unknown_field", message)
        label = check_label(item.get("label"), where)
        if "feedback_token" not in item:
            raise RequestError(
                422, f"{where}.feedback_token", "required", "is required (the token /predict answered)"
            )
        request_id, row = verify(item["feedback_token"], f"{where}.feedback_token")
        out.append((request_id, row, label))
    return out
