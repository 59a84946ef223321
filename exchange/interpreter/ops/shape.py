"""Shape and layout operators: reshape, slicing, concatenation, casting, constants.

Shape-like inputs (a Reshape's target shape, Slice bounds, Squeeze axes, Pad widths) are declared
``static``: they arrive as numpy arrays, so a jitted JAX graph never depends on traced values for
its shapes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from flonnx.exchange.errors import InvalidModel
from flonnx.exchange.interpreter._context import Context
from flonnx.exchange.interpreter._registry import op
from flonnx.exchange.interpreter.ops._common import Array, axes_of, axis_of, check_size, ints, np_dtype

# --- constants --------------------------------------------------------------------------------


@op("Constant")
def constant(
    ctx: Context,
    *,
    value: np.ndarray | None = None,
    value_float: float | None = None,
    value_floats: Sequence[float] | None = None,
    value_int: int | None = None,
    value_ints: Sequence[int] | None = None,
) -> np.ndarray:
    """ONNX ``ai.onnx::Constant`` from opset 1."""
    if value is not None:
        return value
    if value_float is not None:
        return np.asarray(value_float, dtype=np.float32)
    if value_floats is not None:
        return np.asarray(value_floats, dtype=np.float32)
    if value_int is not None:
        return np.asarray(value_int, dtype=np.int64)
    if value_ints is not None:
        return np.asarray(value_ints, dtype=np.int64)
    raise ValueError("Constant node without a supported value attribute")


@op("ConstantOfShape", 9, static=(0,))
def constant_of_shape(ctx: Context, shape: np.ndarray, *, value: np.ndarray | None = None) -> Array:
    """ONNX ``ai.onnx::ConstantOfShape`` from opset 9."""
    fill = np.zeros(1, np.float32) if value is None else np.asarray(value)
    return np.full(check_size("ConstantOfShape", ints(shape)), fill.reshape(-1)[0], dtype=fill.dtype)


@op("Range", 11, static=(0, 1, 2))
def range_(ctx: Context, start: np.ndarray, limit: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """ONNX ``ai.onnx::Range`` from opset 11."""
    s, lim, d = (np.asarray(v).reshape(()) for v in (start, limit, delta))
    if d == 0 or not np.all(np.isfinite(np.asarray([s, lim, d], dtype=np.float64))):
        raise InvalidModel(f"Range with start {s}, limit {lim} and delta {d} has no finite length")
    count = max(int(np.ceil((float(lim) - float(s)) / float(d))), 0)
    check_size("Range", (count,))
    return (s + np.arange(count, dtype=s.dtype) * d).astype(s.dtype)


@op("Shape", shape_only=True)
def shape_v1(ctx: Context, x: Array) -> np.ndarray:
    """ONNX ``ai.onnx::Shape`` from opset 1."""
    return np.asarray(tuple(x.shape), dtype=np.int64)


@op("Shape", 15, shape_only=True)
def shape(ctx: Context, x: Array, *, start: int = 0, end: int | None = None) -> np.ndarray:
    """ONNX ``ai.onnx::Shape`` from opset 15."""
    return np.asarray(tuple(x.shape), dtype=np.int64)[start:end]


@op("Size", shape_only=True)
def size(ctx: Context, x: Array) -> np.ndarray:
    """ONNX ``ai.onnx::Size`` from opset 1."""
    return np.asarray(math.prod(x.shape), dtype=np.int64)


# --- reshaping --------------------------------------------------------------------------------


def _target_shape(in_shape: Sequence[int], shape: Sequence[int], allowzero: int) -> tuple[int, ...]:
    out = [in_shape[i] if (d == 0 and not allowzero) else d for i, d in enumerate(shape)]
    if -1 in out:
        known = math.prod(d for d in out if d != -1)
        out[out.index(-1)] = math.prod(in_shape) // known if known else 0
    return tuple(out)


@op("Reshape")
def reshape_v1(ctx: Context, x: Array, *, shape: Sequence[int] = ()) -> Array:
    """ONNX ``ai.onnx::Reshape`` from opset 1."""
    return ctx.xp.reshape(x, _target_shape(x.shape, shape, 0))


@op("Reshape", 5, static=(1,))
def reshape(ctx: Context, x: Array, shape: np.ndarray, *, allowzero: int = 0) -> Array:
    """ONNX ``ai.onnx::Reshape`` from opset 5."""
    return ctx.xp.reshape(x, _target_shape(x.shape, ints(shape), allowzero))


def _squeeze(xp: Any, x: Array, axes: Sequence[int] | None) -> Array:
    if axes is None or len(axes) == 0:
        keep = tuple(d for d in x.shape if d != 1)
    else:
        drop = set(axes_of(axes, x.ndim))
        keep = tuple(d for i, d in enumerate(x.shape) if i not in drop)
    return xp.reshape(x, keep)


@op("Squeeze")
def squeeze_v1(ctx: Context, x: Array, *, axes: Sequence[int] | None = None) -> Array:
    """ONNX ``ai.onnx::Squeeze`` from opset 1."""
    return _squeeze(ctx.xp, x, axes)


@op("Squeeze", 13, static=(1,))
def squeeze(ctx: Context, x: Array, axes: np.ndarray | None = None) -> Array:
    """ONNX ``ai.onnx::Squeeze`` from opset 13."""
    return _squeeze(ctx.xp, x, None if axes is None else ints(axes))


def _unsqueeze(xp: Any, x: Array, axes: Sequence[int]) -> Array:
    rank = x.ndim + len(axes)
    new = set(axes_of(axes, rank))
    dims = iter(x.shape)
    return xp.reshape(x, tuple(1 if i in new else next(dims) for i in range(rank)))


@op("Unsqueeze")
def unsqueeze_v1(ctx: Context, x: Array, *, axes: Sequence[int] = ()) -> Array:
    """ONNX ``ai.onnx::Unsqueeze`` from opset 1."""
    return _unsqueeze(ctx.xp, x, axes)


@op("Unsqueeze", 13, static=(1,))
def unsqueeze(ctx: Context, x: Array, axes: np.ndarray) -> Array:
    """ONNX ``ai.onnx::Unsqueeze`` from opset 13."""
    return _unsqueeze(ctx.xp, x, ints(axes))


@op("Transpose")
def transpose(ctx: Context, x: Array, *, perm: Sequence[int] | None = None) -> Array:
    """ONNX ``ai.onnx::Transpose`` from opset 1."""
    return ctx.xp.permute_dims(x, tuple(perm) if perm is not None else tuple(reversed(range(x.ndim))))


@op("Expand", 8, static=(1,))
def expand(ctx: Context, x: Array, shape: np.ndarray) -> Array:
    """ONNX ``ai.onnx::Expand`` from opset 8."""
    target = check_size("Expand", np.broadcast_shapes(tuple(x.shape), ints(shape)))
    return ctx.xp.broadcast_to(x, target)


@op("Tile", 6, static=(1,))
def tile(ctx: Context, x: Array, repeats: np.ndarray) -> Array:
    """ONNX ``ai.onnx::Tile`` from opset 6."""
    reps = ints(repeats)
    if len(reps) != x.ndim or any(r < 0 for r in reps):
        raise InvalidModel(f"Tile repeats {list(reps)} do not fit an input of rank {x.ndim}")
    check_size("Tile", [d * r for d, r in zip(x.shape, reps, strict=True)])
    return ctx.xp.tile(x, reps)


@op("DepthToSpace", 13)
def depth_to_space(ctx: Context, x: Array, *, blocksize: int, mode: str = "DCR") -> Array:
    """ONNX ``ai.onnx::DepthToSpace`` from opset 13."""
    xp = ctx.xp
    n, c, h, w = x.shape
    b = blocksize
    if mode == "DCR":
        t = xp.reshape(x, (n, b, b, c // (b * b), h, w))
        t = xp.permute_dims(t, (0, 3, 4, 1, 5, 2))
    else:
        t = xp.reshape(x, (n, c // (b * b), b, b, h, w))
        t = xp.permute_dims(t, (0, 1, 4, 2, 5, 3))
    return xp.reshape(t, (n, c // (b * b), h * b, w * b))


@op("SpaceToDepth")
def space_to_depth(ctx: Context, x: Array, *, blocksize: int, mode: str = "DCR") -> Array:
    """ONNX ``ai.onnx::SpaceToDepth`` from opset 1."""
    xp = ctx.xp
    n, c, h, w = x.shape
    b = blocksize
    t = xp.reshape(x, (n, c, h // b, b, w // b, b))
    t = xp.permute_dims(t, (0, 3, 5, 1, 2, 4) if mode == "DCR" else (0, 1, 3, 5, 2, 4))
    return xp.reshape(t, (n, c * b * b, h // b, w // b))


# --- joining and splitting --------------------------------------------------------------------


@op("Concat")
def concat(ctx: Context, *xs: Array, axis: int = 1) -> Array:
    """ONNX ``ai.onnx::Concat`` from opset 1."""
    return ctx.xp.concat(list(xs), axis=axis)


def _split(xp: Any, x: Array, axis: int, sizes: Sequence[int]) -> tuple[Array, ...]:
    axis = axis_of(axis, x.ndim)
    out, start = [], 0
    for s in sizes:
        index = [slice(None)] * x.ndim
        index[axis] = slice(start, start + s)
        out.append(x[tuple(index)])
        start += s
    return tuple(out)


def _even_sizes(length: int, parts: int) -> list[int]:
    # Opset 18 num_outputs: all chunks ceil(length / parts) but the last.
    chunk = -(-length // parts)
    return [min(chunk, length - i * chunk) for i in range(parts)]


@op("Split", 2, outputs=-1)
def split_v2(
    ctx: Context, x: Array, *, axis: int = 0, split: Sequence[int] | None = None, _n_outputs: int = 1
) -> tuple[Array, ...]:
    """ONNX ``ai.onnx::Split`` from opset 2."""
    length = x.shape[axis_of(axis, x.ndim)]
    return _split(ctx.xp, x, axis, split or _even_sizes(length, _n_outputs))


@op("Split", 13, static=(1,), outputs=-1)
def split(
    ctx: Context,
    x: Array,
    sizes: np.ndarray | None = None,
    *,
    axis: int = 0,
    num_outputs: int | None = None,
    _n_outputs: int = 1,
) -> tuple[Array, ...]:
    """ONNX ``ai.onnx::Split`` from opset 13."""
    length = x.shape[axis_of(axis, x.ndim)]
    if sizes is not None:
        return _split(ctx.xp, x, axis, ints(sizes))
    return _split(ctx.xp, x, axis, _even_sizes(length, num_outputs or _n_outputs))


def _slice(
    xp: Any,
    x: Array,
    starts: Sequence[int],
    ends: Sequence[int],
    axes: Sequence[int] | None,
    steps: Sequence[int] | None,
) -> Array:
    axes_ = axes_of(axes, x.ndim) if axes is not None else tuple(range(len(starts)))
    steps_ = steps if steps is not None else [1] * len(starts)
    index: list[slice] = [slice(None)] * x.ndim
    flip: list[int] = []
    for a, s, e, st in zip(axes_, starts, ends, steps_, strict=True):
        dim = x.shape[a]
        # Python clamps the (huge) INT64 bounds ONNX uses for "to the end".
        lo, hi, step = slice(max(min(s, 2**62), -(2**62)), max(min(e, 2**62), -(2**62)), st).indices(dim)
        if step > 0:
            index[a] = slice(lo, hi, step)
        else:
            # torch has no negative strides: take the same elements ascending, then flip.
            count = max(0, -(-(lo - hi) // -step))
            first = lo + (count - 1) * step
            index[a] = slice(first, lo + 1, -step) if count else slice(0, 0)
            flip.append(a)
    y = x[tuple(index)]
    return xp.flip(y, axis=tuple(flip)) if flip else y


@op("Slice")
def slice_v1(
    ctx: Context,
    x: Array,
    *,
    starts: Sequence[int] = (),
    ends: Sequence[int] = (),
    axes: Sequence[int] | None = None,
) -> Array:
    """ONNX ``ai.onnx::Slice`` from opset 1."""
    return _slice(ctx.xp, x, starts, ends, axes, None)


@op("Slice", 10, static=(1, 2, 3, 4))
def slice_(
    ctx: Context,
    x: Array,
    starts: np.ndarray,
    ends: np.ndarray,
    axes: np.ndarray | None = None,
    steps: np.ndarray | None = None,
) -> Array:
    """ONNX ``ai.onnx::Slice`` from opset 10."""
    return _slice(
        ctx.xp,
        x,
        ints(starts),
        ints(ends),
        None if axes is None else ints(axes),
        None if steps is None else ints(steps),
    )


# --- padding ----------------------------------------------------------------------------------


def _pad(xp: Any, x: Array, pads: Sequence[int], mode: str, value: Any) -> Array:
    """Pad (negative widths crop) with the ONNX modes constant / reflect / edge / wrap."""
    n = x.ndim
    if len(pads) != 2 * n:
        raise InvalidModel(f"Pad widths {list(pads)} do not fit an input of rank {n}")
    begin, end = list(pads[:n]), list(pads[n:])
    check_size("Pad", [int(d) + int(b) + int(e) for d, b, e in zip(x.shape, begin, end, strict=True)])
    crop = tuple(
        slice(max(0, -b), x.shape[i] - max(0, -e)) for i, (b, e) in enumerate(zip(begin, end, strict=True))
    )
    x = x[crop]
    for axis in range(n):
        b, e = max(0, begin[axis]), max(0, end[axis])
        if b == 0 and e == 0:
            continue
        size = x.shape[axis]
        if mode == "constant":
            shape_b = x.shape[:axis] + (b,) + x.shape[axis + 1 :]
            shape_e = x.shape[:axis] + (e,) + x.shape[axis + 1 :]
            fill_b = (
                xp.full(shape_b, value, dtype=x.dtype)
                if not hasattr(value, "shape")
                else xp.broadcast_to(xp.astype(value, x.dtype), shape_b)
            )
            fill_e = (
                xp.full(shape_e, value, dtype=x.dtype)
                if not hasattr(value, "shape")
                else xp.broadcast_to(xp.astype(value, x.dtype), shape_e)
            )
            x = xp.concat([fill_b, x, fill_e], axis=axis)
            continue
        positions = np.arange(-b, size + e)
        if mode == "edge":
            idx = np.clip(positions, 0, size - 1)
        elif mode == "wrap":
            idx = positions % size
        else:  # reflect, without repeating the edge
            period = 2 * (size - 1) if size > 1 else 1
            idx = np.abs(positions) % period
            idx = np.where(idx >= size, period - idx, idx)
        x = xp.take(x, xp.asarray(idx.astype(np.int64)), axis=axis)
    return x


@op("Pad", 2)
def pad_v2(
    ctx: Context, x: Array, *, pads: Sequence[int] = (), mode: str = "constant", value: float = 0.0
) -> Array:
    """ONNX ``ai.onnx::Pad`` from opset 2."""
    return _pad(ctx.xp, x, pads, mode, value)


@op("Pad", 11, static=(1, 3))
def pad(
    ctx: Context,
    x: Array,
    pads: np.ndarray,
    constant_value: Array | None = None,
    axes: np.ndarray | None = None,
    *,
    mode: str = "constant",
) -> Array:
    """ONNX ``ai.onnx::Pad`` from opset 11."""
    widths = ints(pads)
    if axes is not None:
        chosen = axes_of(ints(axes), x.ndim)
        full = [0] * (2 * x.ndim)
        for k, a in enumerate(chosen):
            full[a] = widths[k]
            full[a + x.ndim] = widths[k + len(chosen)]
        widths = tuple(full)
    value: Any = 0 if constant_value is None else constant_value
    if value is not None and hasattr(value, "shape") and len(value.shape) == 1:
        value = ctx.xp.reshape(value, ())
    return _pad(ctx.xp, x, widths, mode, value)


# --- indexing ---------------------------------------------------------------------------------


@op("Gather")
def gather(ctx: Context, data: Array, indices: Array, *, axis: int = 0) -> Array:
    """ONNX ``ai.onnx::Gather`` from opset 1."""
    xp = ctx.xp
    axis = axis_of(axis, data.ndim)
    n = data.shape[axis]
    flat = xp.reshape(indices, (-1,))
    flat = xp.where(flat < 0, flat + n, flat)
    taken = xp.take(data, flat, axis=axis)
    shape = data.shape[:axis] + tuple(indices.shape) + data.shape[axis + 1 :]
    return xp.reshape(taken, shape)


@op("GatherElements", 11)
def gather_elements(ctx: Context, data: Array, indices: Array, *, axis: int = 0) -> Array:
    """ONNX ``ai.onnx::GatherElements`` from opset 11."""
    xp = ctx.xp
    axis = axis_of(axis, data.ndim)
    idx = xp.where(indices < 0, indices + data.shape[axis], indices)
    return xp.take_along_axis(data, idx, axis=axis)


# --- types ------------------------------------------------------------------------------------


@op("Cast")
def cast(ctx: Context, x: Array, *, to: int, saturate: int = 1) -> Array:
    """ONNX ``ai.onnx::Cast`` from opset 1."""
    return ctx.xp.astype(x, ctx.be.dtype(np_dtype(to)))


@op("CastLike", 15)
def cast_like(ctx: Context, x: Array, like: Array, *, saturate: int = 1) -> Array:
    """ONNX ``ai.onnx::CastLike`` from opset 15."""
    return ctx.xp.astype(x, like.dtype)
