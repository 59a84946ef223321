"""Content ids: canonical encodings and their SHA-256 hashes.

Every id in flonnx is the SHA-256 (hex) of a canonical byte encoding, never of protobuf bytes, which
are not canonical (initializer order, ``raw_data`` vs typed fields, map order). The same bytes are what
the registry stores, so a blob's file name is the hash of its content.

Weights encoding (``FLONNXW1``), all integers little-endian::

    magic b"FLONNXW1" | u32 count | per tensor, in sorted-name (UTF-8 byte) order:
        u32 len(name) | name (UTF-8) | u8 len(dtype) | dtype (numpy ``str``, e.g. "<f4")
        | u8 ndim | u64 dims... | u64 nbytes | C-order little-endian data
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from flonnx.exchange.errors import InvalidUpdate

__all__ = [
    "MAX_WEIGHTS_BYTES",
    "MAX_WEIGHT_DIMS",
    "MAX_WEIGHT_NAME",
    "MAX_WEIGHT_TENSORS",
    "canonical_json",
    "decode_weights",
    "encode_weights",
    "sha256_hex",
    "weights_id",
]

_MAGIC = b"FLONNXW1"

#: Bytes of a weights blob :func:`decode_weights` reads (the protobuf ceiling of one ONNX model).
MAX_WEIGHTS_BYTES = 2 << 30
#: Tensors in one weights blob.
MAX_WEIGHT_TENSORS = 1 << 20
#: Bytes of one tensor name in a weights blob.
MAX_WEIGHT_NAME = 4096
#: Dimensions of one tensor in a weights blob.
MAX_WEIGHT_DIMS = 32
#: The dtypes a canonical blob may name (what ``encode_weights`` writes for numbers and bools).
_WEIGHT_DTYPES = {
    np.dtype(t).str.encode("ascii"): np.dtype(t)
    for t in ("?", "i1", "u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "<f2", "<f4", "<f8", "<c8", "<c16")
}


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _little_endian(array: np.ndarray) -> np.ndarray:
    dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
    # ascontiguousarray makes a 0-d array 1-d: a scalar weight would hash, and be stored, as shape [1]
    return np.ascontiguousarray(array, dtype=dtype).reshape(array.shape)


def _canonical_tensors(weights: Mapping[str, np.ndarray]) -> Iterator[tuple[bytes, memoryview]]:
    """Per tensor in canonical order: its encoded header and a byte view of its C-order data.

    An array that is already C-contiguous and little-endian is viewed in place; any other is made so
    on its own (one tensor at a time), never the whole update at once.
    """
    for name in sorted(weights, key=lambda n: n.encode("utf-8")):
        array = _little_endian(np.asarray(weights[name]))
        if array.dtype.hasobject:
            raise InvalidUpdate(f"tensor {name!r}: object arrays cannot be weights")
        name_b = name.encode("utf-8")
        dtype_b = array.dtype.str.encode("ascii")
        header = b"".join([
            struct.pack("<I", len(name_b)),
            name_b,
            struct.pack("<B", len(dtype_b)),
            dtype_b,
            struct.pack("<B", array.ndim),
            struct.pack(f"<{array.ndim}Q", *array.shape),
            struct.pack("<Q", array.nbytes),
        ])
        # a flat uint8 view of the contiguous array: its bytes in C order, whatever the dtype
        if array.nbytes == 0:  # also covers zero-width dtypes, which have no uint8 view
            yield header, memoryview(b"")
        else:
            yield header, memoryview(array.reshape(-1).view(np.uint8))  # type: ignore[arg-type]


def encode_weights(weights: Mapping[str, np.ndarray]) -> bytes:
    """Encode named tensors canonically: sorted names, dtype, shape and little-endian bytes.

    The encoding depends only on the decoded values, never on how they were stored or ordered. It is
    built with one copy of the tensors' data (into the result).
    """
    parts: list[bytes | memoryview] = [_MAGIC, struct.pack("<I", len(weights))]
    for header, data in _canonical_tensors(weights):
        parts += [header, data]
    return b"".join(parts)


def decode_weights(blob: bytes, *, max_bytes: int = MAX_WEIGHTS_BYTES) -> dict[str, np.ndarray]:
    """Inverse of :func:`encode_weights`; raises :class:`InvalidUpdate` on malformed input.

    Only the canonical encoding is accepted (names unique and in order, little-endian plain number
    dtypes), so an accepted blob is exactly ``encode_weights`` of what it decodes to and its hash is
    the weights id. Bounded by ``max_bytes``, :data:`MAX_WEIGHT_TENSORS`, :data:`MAX_WEIGHT_NAME` and,
    per tensor, ``MAX_TENSOR_ELEMENTS`` of ``exchange/definition.py``.
    """
    from flonnx.exchange.definition import MAX_TENSOR_ELEMENTS  # definition imports this module

    if len(blob) > max_bytes:
        raise InvalidUpdate(f"weights blob of {len(blob)} bytes; the limit is {max_bytes}")
    view = memoryview(blob)
    if bytes(view[:8]) != _MAGIC:
        raise InvalidUpdate("not a flonnx weights blob (bad magic)")
    pos = 8

    def take(n: int) -> memoryview:
        nonlocal pos
        if pos + n > len(view):
            raise InvalidUpdate("truncated weights blob")
        chunk = view[pos : pos + n]
        pos += n
        return chunk

    (count,) = struct.unpack("<I", take(4))
    if count > MAX_WEIGHT_TENSORS:
        raise InvalidUpdate(f"weights blob declares {count} tensors; the limit is {MAX_WEIGHT_TENSORS}")
    out: dict[str, np.ndarray] = {}
    previous = b""
    for index in range(count):
        (name_len,) = struct.unpack("<I", take(4))
        if name_len > MAX_WEIGHT_NAME:
            raise InvalidUpdate(f"tensor {index}: name of {name_len} bytes; the limit is {MAX_WEIGHT_NAME}")
        name_b = bytes(take(name_len))
        try:
            name = name_b.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidUpdate(f"tensor {index}: name is not UTF-8") from exc
        if index and name_b <= previous:
            raise InvalidUpdate(f"tensor {name!r}: names are not unique and in order")
        previous = name_b
        (dtype_len,) = struct.unpack("<B", take(1))
        dtype_s = bytes(take(dtype_len))
        dtype = _WEIGHT_DTYPES.get(dtype_s)
        if dtype is None:
            raise InvalidUpdate(f"tensor {name!r}: dtype {dtype_s[:16]!r} is not a little-endian number type")
        (ndim,) = struct.unpack("<B", take(1))
        if ndim > MAX_WEIGHT_DIMS:
            raise InvalidUpdate(f"tensor {name!r}: {ndim} dims; the limit is {MAX_WEIGHT_DIMS}")
        shape = struct.unpack(f"<{ndim}Q", take(8 * ndim))
        (nbytes,) = struct.unpack("<Q", take(8))
        elements = math.prod(shape)
        # each dim too: [2**31, 2**31, 0] has no elements, but numpy cannot shape it
        if elements > MAX_TENSOR_ELEMENTS or any(d > MAX_TENSOR_ELEMENTS for d in shape):
            what = f"{elements} elements" if elements > MAX_TENSOR_ELEMENTS else f"a dim of {max(shape)}"
            raise InvalidUpdate(
                f"tensor {name!r}: shape {list(shape)} has {what}; the limit is {MAX_TENSOR_ELEMENTS}"
            )
        expected = dtype.itemsize * elements
        if nbytes != expected:
            raise InvalidUpdate(f"tensor {name!r}: {nbytes} bytes for shape {shape} of {dtype}")
        out[name] = np.frombuffer(bytes(take(nbytes)), dtype=dtype).reshape(shape)
    if pos != len(view):
        raise InvalidUpdate("trailing bytes after the last tensor in weights blob")
    return out


def weights_id(weights: Mapping[str, np.ndarray]) -> str:
    """The weights id: SHA-256 of :func:`encode_weights`, streamed.

    The digest is the same bit for bit as hashing the encoding, but the encoding is never built: each
    tensor's header is hashed, then its data in place (see :func:`_canonical_tensors`).
    """
    digest = hashlib.sha256(_MAGIC + struct.pack("<I", len(weights)))
    for header, data in _canonical_tensors(weights):
        digest.update(header)
        digest.update(data)
    return digest.hexdigest()


def _check_json_value(value: Any, path: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{path}: non-finite float {value} has no canonical JSON form")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{path}: key {key!r} is not a string")
            _check_json_value(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_json_value(item, f"{path}[{i}]")


def canonical_json(value: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, no insignificant space, UTF-8, shortest float repr."""
    _check_json_value(value, "$")
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")
