"""The binary tensor data extension of the Open Inference Protocol (Triton's "binary_tensor_data").

Why: NVIDIA's tritonclient, the most common OIP client, sends tensors as raw bytes by default
and asks for its outputs the same way. A request is then a JSON header of
`Inference-Header-Content-Length` bytes followed by each binary input's bytes, in input order,
`parameters.binary_data_size` bytes each; the answer is built the same way. Elements are
little-endian, row-major; a BYTES element is a 4-byte little-endian length and then its bytes.

Decoding turns raw bytes into the same Python values a JSON `data` list would hold, so the one
validator (app/validation.py) checks them, and capture records them, whichever way they came.
The gRPC transport carries the same raw layout in `raw_input_contents` / `raw_output_contents`
and reuses `decode` and `encode`. Every malformed part is a 400 naming the field; the element
count is taken from the shape and checked against the row limit before anything is allocated.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from app.validation import RequestError, shown

# Fixed-size OIP datatypes as explicit little-endian numpy types (BOOL: one byte, 0 or 1).
DTYPES = {
    "BOOL": np.dtype("u1"),
    "UINT8": np.dtype("u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
PREFIX = 4  # the length prefix of a BYTES element
LENGTH = struct.Struct("<I")
MAX_DIMS = 8
HEADER_LENGTH = "inference-header-content-length"


def header_length(declared: str | None, content_type: str | None) -> str | None:
    """The JSON header's length as the client declared it, if it sent binary tensor data.

    `Inference-Header-Content-Length` (Triton's header), else the `json-header-size` parameter
    of the vendor media type `application/vnd.sagemaker-triton.binary+json` some clients use.
    """
    if declared is not None:
        return declared
    if content_type and "json-header-size=" in content_type:
        for part in content_type.split(";")[1:]:
            key, _, value = part.partition("=")
            if key.strip().lower() == "json-header-size":
                return value.strip()
    return None


def split(body: bytes, declared: str | None) -> tuple[bytes, memoryview | None]:
    """The JSON header and the raw tensor bytes after it (None when the body is all JSON)."""
    if declared is None:
        return body, None
    if not (declared.isascii() and declared.isdigit()):  # str.isdigit alone takes "²" (latin-1)
        raise RequestError(400, HEADER_LENGTH, "type", f"must be a byte count (got {shown(declared[:40])})")
    if len(declared.lstrip("0")) > len(str(len(body))) or int(declared) > len(body):  # not int("9" * 5000)
        raise RequestError(
            400,
            HEADER_LENGTH,
            "size",
            f"is {shown(declared[:40])} bytes, past the end of the {len(body)}-byte body",
        )
    length = int(declared)
    view = memoryview(body)
    return bytes(view[:length]), view[length:]


def count_of(shape: Any, where: str, max_values: int) -> int:
    """The number of elements a shape holds, at most `max_values` (checked before any allocation)."""
    if (
        type(shape) is not list
        or not 1 <= len(shape) <= MAX_DIMS
        or set(map(type, shape)) != {int}
        or min(shape) < 0
    ):
        raise RequestError(
            400,
            f"{where}.shape",
            "shape",
            f"must be a list of 1 to {MAX_DIMS} sizes >= 0 (got {shown(shape)})",
        )
    count = math.prod(shape)
    if count > max_values:
        raise RequestError(
            400,
            f"{where}.shape",
            "max_rows",
            f"{shape} holds {count} values, more than the limit of {max_values} (MAX_BATCH_ROWS)",
        )
    return count


def decode(
    datatype: Any, shape: Any, raw: bytes | memoryview, where: str, max_values: int, size_field: str = ""
) -> list[Any]:
    """One tensor's raw bytes as the flat list of values its JSON `data` would hold.

    Numbers come out as Python ints or floats (NaN, the binary form's only missing value, as
    None, like a JSON null); BYTES as str (UTF-8). The byte count must fit the shape exactly;
    a mismatch names `size_field` (REST: the input's `parameters.binary_data_size`; gRPC: its
    `raw_input_contents` entry).
    """
    count = count_of(shape, where, max_values)
    size_field = size_field or f"{where}.parameters.binary_data_size"
    if datatype == "BYTES":
        return _strings(raw, count, where, size_field)
    dtype = DTYPES.get(datatype) if type(datatype) is str else None
    if dtype is None:
        raise RequestError(
            400, f"{where}.datatype", "datatype", f"must be an OIP datatype (got {shown(datatype)})"
        )
    if len(raw) != count * dtype.itemsize:
        raise RequestError(
            400,
            size_field,
            "size",
            f"is {len(raw)} bytes, but shape {shape} of {datatype} takes {count * dtype.itemsize}",
        )
    array = np.frombuffer(raw, dtype=dtype)
    if datatype == "BOOL":
        return (array != 0).tolist()
    return missing_as_none(array) if dtype.kind == "f" else array.tolist()


def missing_as_none(array: np.ndarray) -> list[Any]:
    """A float tensor's values as Python floats, NaN (a tensor's only missing value) as None, like a
    JSON null, so the nullable rule decides."""
    values = array.tolist()
    # NaN test: a C-level map for a few values (a numpy reduction's fixed cost is larger), numpy for many.
    if any(map(math.isnan, values)) if len(values) <= 64 else np.isnan(array).any():
        return [None if value != value else value for value in values]
    return values


def _strings(raw: bytes | memoryview, count: int, where: str, size_field: str) -> list[str]:
    """BYTES elements: a 4-byte little-endian length, then that many bytes of UTF-8 text each."""
    data = bytes(raw)
    size, offset, values = len(data), 0, []
    for index in range(count):
        if offset + PREFIX > size:
            raise RequestError(
                400,
                f"{where}.data[{index}]",
                "bytes_prefix",
                f"has no 4-byte length at byte {offset}: the tensor's {size} bytes hold fewer than "
                f"the {count} elements of its shape",
            )
        (length,) = LENGTH.unpack_from(data, offset)
        start, offset = offset + PREFIX, offset + PREFIX + length
        if offset > size:
            raise RequestError(
                400,
                f"{where}.data[{index}]",
                "bytes_prefix",
                f"declares {length} bytes at byte {start - PREFIX}, past the tensor's end ({size} bytes)",
            )
        values.append(data[start:offset])
    if offset != size:
        raise RequestError(
            400,
            size_field,
            "size",
            f"is {size} bytes, but its {count} elements end at byte {offset}",
        )
    return texts(values, where)


def texts(values: list[bytes], where: str) -> list[str]:
    """BYTES elements as text: features are UTF-8 strings, anything else is the client's 400."""
    try:
        return [value.decode() for value in values]
    except UnicodeDecodeError:
        index = next(i for i, value in enumerate(values) if not _is_utf8(value))
        raise RequestError(400, f"{where}.data[{index}]", "utf8", "is not UTF-8 text") from None


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode()
    except UnicodeDecodeError:
        return False
    return True


def attach(inputs: Any, raw: memoryview | None, max_values: int) -> None:
    """Give each binary input of a parsed request its `data`, decoded from the bytes after the header.

    Inputs without `parameters.binary_data_size` keep their JSON `data`. The sizes must add up
    to exactly the bytes after the header, checked before any tensor is decoded.
    """
    if type(inputs) is not list:
        if raw is not None and len(raw):
            raise RequestError(400, "inputs", "required", "must list the tensors the binary data holds")
        return
    sized: list[tuple[dict[str, Any], str, int]] = []
    for position, tensor in enumerate(inputs):
        parameters = tensor.get("parameters") if type(tensor) is dict else None
        if type(parameters) is not dict or "binary_data_size" not in parameters:
            continue
        name = tensor.get("name")
        where = f"inputs[{name}]" if type(name) is str else f"inputs[{position}]"
        size = parameters["binary_data_size"]
        if type(size) is not int or size < 0:
            raise RequestError(
                400,
                f"{where}.parameters.binary_data_size",
                "type",
                f"must be a byte count >= 0 (got {shown(size)})",
            )
        if "data" in tensor:
            raise RequestError(
                400,
                f"{where}.data",
                "binary_data",
                "must be left out when parameters.binary_data_size sends the tensor as binary data",
            )
        sized.append((tensor, where, size))
    available = 0 if raw is None else len(raw)
    total = sum(size for _, _, size in sized)
    if total != available:
        raise RequestError(
            400,
            "inputs.parameters.binary_data_size",
            "size",
            f"the inputs' sizes add up to {total} bytes, but {available} follow the JSON header "
            f"({HEADER_LENGTH})",
        )
    offset = 0
    for tensor, where, size in sized:
        assert raw is not None  # total == available > 0, or no sized input
        tensor["data"] = decode(
            tensor.get("datatype"), tensor.get("shape"), raw[offset : offset + size], where, max_values
        )
        offset += size


def encode(datatype: str, values: Sequence[Any] | np.ndarray) -> bytes:
    """A tensor's values as raw bytes (row-major, little-endian; BYTES: length-prefixed UTF-8)."""
    if datatype == "BYTES":
        texts = [value if type(value) is bytes else str(value).encode() for value in values]
        lengths = np.fromiter(map(len, texts), dtype="<u4", count=len(texts)).tobytes()
        prefixes = [lengths[index : index + PREFIX] for index in range(0, len(lengths), PREFIX)]
        return b"".join(part for pair in zip(prefixes, texts, strict=True) for part in pair)
    return np.asarray(values).astype(DTYPES[datatype], copy=False).tobytes()
