"""Decoding of untrusted ``.npy`` bytes, the form in which a Flower ``Array`` carries an ndarray.

``Array.numpy()`` calls ``np.load``, which allocates the array its header declares before it reads
the data: twenty bytes claiming a shape of ``(2**40,)`` ask for 4 TiB. :func:`decode_npy` reads the
header, checks it against the bytes that are really there and against the caller's bound, and only
then views the data; no allocation depends on what the header claims.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

from flonnx.exchange.definition import MAX_TENSOR_ELEMENTS, Definition
from flonnx.exchange.errors import InvalidUpdate

__all__ = ["MAX_NPY_DIMS", "MAX_NPY_HEADER", "NUMPY_STYPE", "decode_npy", "decode_tensors"]

#: How Flower marks an ``Array`` that holds ``.npy`` bytes.
NUMPY_STYPE = "numpy.ndarray"

#: Bytes of a ``.npy`` header (numpy's own default bound for ``np.load``).
MAX_NPY_HEADER = 10_000
#: Dimensions of one array.
MAX_NPY_DIMS = 32
#: Dtype kinds a weight tensor may have: bool, signed and unsigned integers, floats, complex.
_KINDS = frozenset("biufc")


def decode_npy(data: bytes, *, max_bytes: int | None = None) -> np.ndarray:
    """The ndarray in ``.npy`` bytes, read-only; :class:`InvalidUpdate` for anything else.

    Refused, with a one-line message (the caller names the array): more than ``max_bytes`` bytes (if
    given), a
    malformed header, a dtype that is not a plain number or bool (objects, strings, records), more
    than :data:`MAX_NPY_DIMS` dims or :data:`MAX_TENSOR_ELEMENTS` elements, a data section whose length
    is not what the header declares.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidUpdate(f"array data is a {type(data).__name__}, not bytes")
    if max_bytes is not None and len(data) > max_bytes:
        raise InvalidUpdate(f"array of {len(data)} bytes; at most {max_bytes} are accepted here")
    stream = io.BytesIO(data)
    try:
        version = npy_format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(stream, max_header_size=MAX_NPY_HEADER)
        elif version == (2, 0):
            shape, fortran, dtype = npy_format.read_array_header_2_0(stream, max_header_size=MAX_NPY_HEADER)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except Exception as exc:  # noqa: BLE001 - numpy raises ValueError, SyntaxError, RecursionError…
        message = " ".join(str(exc).split())[:200]
        raise InvalidUpdate(f"not a readable .npy array ({message})") from exc
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None or dtype.kind not in _KINDS:
        raise InvalidUpdate(f"dtype {dtype.str} is not a number or bool type")
    if len(shape) > MAX_NPY_DIMS or any(not isinstance(d, int) or d < 0 for d in shape):
        raise InvalidUpdate(f"shape {list(shape)[:MAX_NPY_DIMS + 1]} is not a valid array shape")
    elements = math.prod(shape)
    # each dim too: (2**31, 2**31, 0) has no elements, but numpy cannot shape it
    if elements > MAX_TENSOR_ELEMENTS or any(d > MAX_TENSOR_ELEMENTS for d in shape):
        what = f"{elements} elements" if elements > MAX_TENSOR_ELEMENTS else f"a dim of {max(shape)}"
        raise InvalidUpdate(f"shape {list(shape)} has {what}; the limit is {MAX_TENSOR_ELEMENTS}")
    offset = stream.tell()
    if len(data) - offset != elements * dtype.itemsize:
        raise InvalidUpdate(
            f"EOF: the header declares {elements * dtype.itemsize} bytes of {dtype.str} data, "
            f"{len(data) - offset} follow"
        )
    array = np.frombuffer(data, dtype=dtype, count=elements, offset=offset)
    return array.reshape(shape, order="F" if fortran else "C")


def decode_tensors(arrays: Mapping[str, Any], definition: Definition, *,
                   source: str) -> dict[str, np.ndarray]:
    """A message's model tensors (name -> Flower ``Array``), decoded within what ``definition`` allows.

    No more tensors than the definition has; each one's bytes at most what its spec needs (the
    largest spec's for an unknown name, which validation then refuses by name). So decoding a message
    costs at most one model's memory, whatever its headers claim.

    Raises:
        InvalidUpdate: too many tensors, a payload that is not ``.npy``, or one that does not decode.
    """
    if len(arrays) > len(definition.specs):
        raise InvalidUpdate(f"{source} carries {len(arrays)} tensors; definition {definition.id[:12]} has "
                            f"{len(definition.specs)}")
    largest = max((s.dtype.itemsize * math.prod(s.shape) for s in definition.specs.values()), default=0)
    weights: dict[str, np.ndarray] = {}
    for name, array in arrays.items():
        label = f"tensor {str(name)[:80]!r}"
        stype = getattr(array, "stype", None)
        if stype != NUMPY_STYPE:
            raise InvalidUpdate(f"{label} is serialised as {str(stype)[:40]!r}, not {NUMPY_STYPE!r}")
        spec = definition.specs.get(name)
        expected = spec.dtype.itemsize * math.prod(spec.shape) if spec is not None else largest
        try:
            weights[name] = decode_npy(getattr(array, "data", None),  # type: ignore[arg-type]
                                       max_bytes=expected + MAX_NPY_HEADER + 128)
        except InvalidUpdate as exc:
            raise InvalidUpdate(f"{label} does not decode: {exc}") from exc
    return weights
