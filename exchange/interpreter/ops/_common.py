"""Small helpers shared by the operator modules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx.helper

from flonnx.exchange.definition import MAX_TENSOR_ELEMENTS
from flonnx.exchange.errors import InvalidModel

Array = Any


def check_size(op_type: str, shape: Sequence[int]) -> tuple[int, ...]:
    """``shape`` as ints, refused (before anything is allocated) above ``MAX_TENSOR_ELEMENTS``."""
    dims = tuple(int(d) for d in shape)
    count = 1
    for d in dims:
        count *= max(d, 0)
    if count > MAX_TENSOR_ELEMENTS or any(d > MAX_TENSOR_ELEMENTS for d in dims):  # a huge dim beside a 0
        raise InvalidModel(
            f"{op_type} would produce shape {list(dims)} ({count} elements); the limit is "
            f"{MAX_TENSOR_ELEMENTS}"
        )
    return dims


def ints(value: Any) -> tuple[int, ...]:
    """A static int vector (numpy array, list or scalar) as a tuple of Python ints."""
    return tuple(int(v) for v in np.asarray(value).reshape(-1))


def axis_of(axis: int, ndim: int) -> int:
    """Normalise a possibly negative axis."""
    return axis + ndim if axis < 0 else axis


def axes_of(axes: Sequence[int], ndim: int) -> tuple[int, ...]:
    """Normalise possibly negative axes."""
    return tuple(axis_of(int(a), ndim) for a in axes)


def np_dtype(elem_type: int) -> np.dtype:
    """The numpy dtype of an ONNX ``TensorProto`` element type."""
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))


def is_float(xp: Any, x: Array) -> bool:
    """Whether ``x`` has a real floating dtype."""
    return bool(xp.isdtype(x.dtype, "real floating"))


def is_int(xp: Any, x: Array) -> bool:
    """Whether ``x`` has an integer dtype."""
    return bool(xp.isdtype(x.dtype, "integral"))
