"""Reductions (``ReduceSum`` ... ``ReduceLogSumExp``) and ``ArgMax``/``ArgMin``.

Before opset 18 (13 for ``ReduceSum``) the axes are an attribute; afterwards a static input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from flonnx.exchange.interpreter._context import Context
from flonnx.exchange.interpreter._registry import op
from flonnx.exchange.interpreter.ops._common import Array, axes_of, axis_of, ints, is_float


def _sum(xp: Any, x: Array, axis: tuple[int, ...], keepdims: bool) -> Array:
    # Keep the input dtype: the array API would widen small integers to the default int.
    return xp.sum(x, axis=axis, keepdims=keepdims, dtype=x.dtype)


def _log_sum_exp(xp: Any, x: Array, axis: tuple[int, ...], keepdims: bool) -> Array:
    m = xp.max(x, axis=axis, keepdims=True)
    m = xp.where(xp.isfinite(m), m, xp.zeros_like(m))
    out = xp.log(xp.sum(xp.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else xp.squeeze(out, axis=axis)


_KINDS: dict[str, Callable[[Any, Array, tuple[int, ...], bool], Array]] = {
    "ReduceSum": _sum,
    "ReduceMean": lambda xp, x, a, k: xp.mean(x, axis=a, keepdims=k),
    "ReduceMax": lambda xp, x, a, k: xp.max(x, axis=a, keepdims=k),
    "ReduceMin": lambda xp, x, a, k: xp.min(x, axis=a, keepdims=k),
    "ReduceProd": lambda xp, x, a, k: xp.prod(x, axis=a, keepdims=k, dtype=x.dtype),
    "ReduceL1": lambda xp, x, a, k: _sum(xp, xp.abs(x), a, k),
    "ReduceL2": lambda xp, x, a, k: _l2(xp, x, a, k),
    "ReduceSumSquare": lambda xp, x, a, k: _sum(xp, x * x, a, k),
    "ReduceLogSum": lambda xp, x, a, k: xp.log(_sum(xp, x, a, k)),
    "ReduceLogSumExp": _log_sum_exp,
}


def _lowest(dtype: Any) -> Any:
    np_type = np.dtype(str(dtype).removeprefix("torch."))
    if np_type == np.bool_:
        return False
    return -np.inf if np_type.kind == "f" else np.iinfo(np_type).min


def _highest(dtype: Any) -> Any:
    np_type = np.dtype(str(dtype).removeprefix("torch."))
    if np_type == np.bool_:
        return True
    return np.inf if np_type.kind == "f" else np.iinfo(np_type).max


_EMPTY_IDENTITY: dict[Any, Callable[[Any], Any]] = {
    _KINDS["ReduceMax"]: _lowest,
    _KINDS["ReduceMin"]: _highest,
    _log_sum_exp: lambda dtype: -np.inf,
}

#: Opset from which the axes are an input rather than an attribute.
_AXES_INPUT_SINCE = {name: 18 for name in _KINDS} | {"ReduceSum": 13}


def _l2(xp: Any, x: Array, axis: tuple[int, ...], keepdims: bool) -> Array:
    if is_float(xp, x):
        return xp.sqrt(_sum(xp, x * x, axis, keepdims))
    # Integer L2 is computed in float and rounded back, as the ONNX reference does.
    as_float = xp.astype(x, xp.float32)
    return xp.astype(xp.round(xp.sqrt(xp.sum(as_float * as_float, axis=axis, keepdims=keepdims))), x.dtype)


def _reduce(
    kind: Callable[[Any, Array, tuple[int, ...], bool], Array],
    xp: Any,
    x: Array,
    axes: Sequence[int] | None,
    keepdims: int,
    noop_with_empty_axes: int,
) -> Array:
    if not axes:
        if noop_with_empty_axes:
            return x
        axes = range(x.ndim)
    chosen = axes_of(axes, x.ndim)
    identity = _EMPTY_IDENTITY.get(kind)
    if identity is not None and any(x.shape[a] == 0 for a in chosen):
        # Max/min over nothing has no element to return: ONNX defines the identity instead.
        shape = tuple(1 if i in chosen else d for i, d in enumerate(x.shape) if keepdims or i not in chosen)
        return xp.full(shape, identity(x.dtype), dtype=x.dtype)
    return kind(xp, x, chosen, bool(keepdims))


def _make(kind: Callable[..., Array]) -> tuple[Callable[..., Array], Callable[..., Array]]:
    def with_attribute(
        ctx: Context, x: Array, *, axes: Sequence[int] | None = None, keepdims: int = 1
    ) -> Array:
        return _reduce(kind, ctx.xp, x, axes, keepdims, 0)

    def with_input(
        ctx: Context,
        x: Array,
        axes: np.ndarray | None = None,
        *,
        keepdims: int = 1,
        noop_with_empty_axes: int = 0,
    ) -> Array:
        chosen = None if axes is None else ints(axes)
        return _reduce(kind, ctx.xp, x, chosen, keepdims, noop_with_empty_axes)

    return with_attribute, with_input


for _name, _kind in _KINDS.items():
    _attr_fn, _input_fn = _make(_kind)
    op(_name)(_attr_fn)
    op(_name, _AXES_INPUT_SINCE[_name], static=(1,))(_input_fn)


def _arg(ctx: Context, find: Callable[..., Array], x: Array, axis: int, keepdims: int, last: int) -> Array:
    xp = ctx.xp
    axis = axis_of(axis, x.ndim)
    if last:
        flipped = find(xp.flip(x, axis=axis), axis=axis, keepdims=bool(keepdims))
        idx = (x.shape[axis] - 1) - flipped
    else:
        idx = find(x, axis=axis, keepdims=bool(keepdims))
    return xp.astype(idx, ctx.be.dtype(np.dtype(np.int64)))


@op("ArgMax")
def argmax(ctx: Context, x: Array, *, axis: int = 0, keepdims: int = 1, select_last_index: int = 0) -> Array:
    """ONNX ``ai.onnx::ArgMax`` from opset 1."""
    return _arg(ctx, ctx.xp.argmax, x, axis, keepdims, select_last_index)


@op("ArgMin")
def argmin(ctx: Context, x: Array, *, axis: int = 0, keepdims: int = 1, select_last_index: int = 0) -> Array:
    """ONNX ``ai.onnx::ArgMin`` from opset 1."""
    return _arg(ctx, ctx.xp.argmin, x, axis, keepdims, select_last_index)
