"""Neural-network operators: dense layers, convolution, pooling, normalisation, dropout, softmax.

Convolution and windowed pooling are computed by the backend (:meth:`Backend.conv`,
:meth:`Backend.pool`); this module turns the ONNX attributes (``auto_pad``, ``ceil_mode``,
``count_include_pad``, ``output_padding``...) into the explicit geometry those primitives take.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from flonnx.exchange.interpreter._context import Context
from flonnx.exchange.interpreter._registry import op
from flonnx.exchange.interpreter.ops._common import Array, axis_of

# --- dense ------------------------------------------------------------------------------------


@op("Gemm")
def gemm(
    ctx: Context,
    a: Array,
    b: Array,
    c: Array | None = None,
    *,
    alpha: float = 1.0,
    beta: float = 1.0,
    transA: int = 0,  # noqa: N803 - ONNX attribute names
    transB: int = 0,  # noqa: N803
    broadcast: int = 0,
) -> Array:
    """ONNX ``ai.onnx::Gemm`` from opset 1."""
    xp = ctx.xp
    y = xp.matmul(xp.matrix_transpose(a) if transA else a, xp.matrix_transpose(b) if transB else b)
    if alpha != 1.0:
        y = y * alpha
    if c is not None:
        y = y + (c * beta if beta != 1.0 else c)
    return y


@op("MatMul")
def matmul(ctx: Context, a: Array, b: Array) -> Array:
    """ONNX ``ai.onnx::MatMul`` from opset 1."""
    return ctx.xp.matmul(a, b)


@op("Einsum", 12)
def einsum(ctx: Context, *xs: Array, equation: str) -> Array:
    """ONNX ``ai.onnx::Einsum`` from opset 12."""
    return ctx.be.einsum(equation, *xs)


@op("Flatten")
def flatten(ctx: Context, x: Array, *, axis: int = 1) -> Array:
    """ONNX ``ai.onnx::Flatten`` from opset 1."""
    axis = axis_of(axis, x.ndim)
    lead = math.prod(x.shape[:axis])
    return ctx.xp.reshape(x, (lead, math.prod(x.shape[axis:])))


# --- convolution geometry ----------------------------------------------------------------------


def _same_pads(in_size: int, kernel: int, stride: int, dilation: int, upper: bool) -> tuple[int, int]:
    out = -(-in_size // stride)
    total = max(0, (out - 1) * stride + (kernel - 1) * dilation + 1 - in_size)
    small, big = total // 2, total - total // 2
    return (small, big) if upper else (big, small)


def _explicit_pads(
    spatial: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    pads: Sequence[int] | None,
    auto_pad: str,
) -> tuple[list[int], list[int]]:
    """Begin and end padding per spatial axis, resolving ``auto_pad``."""
    n = len(kernel)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pairs = [
            _same_pads(spatial[i], kernel[i], strides[i], dilations[i], auto_pad == "SAME_UPPER")
            for i in range(n)
        ]
        return [p[0] for p in pairs], [p[1] for p in pairs]
    if auto_pad == "VALID" or not pads:
        return [0] * n, [0] * n
    return list(pads[:n]), list(pads[n:])


def _geometry(
    x: Array,
    kernel_shape: Sequence[int] | None,
    w_shape: Sequence[int] | None,
    strides: Sequence[int] | None,
    dilations: Sequence[int] | None,
    pads: Sequence[int] | None,
    auto_pad: str,
) -> tuple[list[int], list[int], list[int], list[int], list[int]]:
    spatial = list(x.shape[2:])
    n = len(spatial)
    kernel = list(kernel_shape) if kernel_shape else list(w_shape or ())[2:]
    strides_ = list(strides) if strides else [1] * n
    dilations_ = list(dilations) if dilations else [1] * n
    begin, end = _explicit_pads(spatial, kernel, strides_, dilations_, pads, auto_pad)
    return kernel, strides_, dilations_, begin, end


def _bias_shape(ndim: int) -> tuple[int, ...]:
    return (1, -1) + (1,) * (ndim - 2)


@op("Conv")
def conv(
    ctx: Context,
    x: Array,
    w: Array,
    b: Array | None = None,
    *,
    auto_pad: str = "NOTSET",
    dilations: Sequence[int] | None = None,
    group: int = 1,
    kernel_shape: Sequence[int] | None = None,
    pads: Sequence[int] | None = None,
    strides: Sequence[int] | None = None,
) -> Array:
    """ONNX ``ai.onnx::Conv`` from opset 1."""
    _, strides_, dilations_, begin, end = _geometry(
        x, kernel_shape, w.shape, strides, dilations, pads, auto_pad
    )
    y = ctx.be.conv(x, w, strides=strides_, dilations=dilations_, pads_begin=begin, pads_end=end, group=group)
    if b is not None:
        y = y + ctx.xp.reshape(b, _bias_shape(y.ndim))
    return y


def _dilate(xp: Any, x: Array, axis: int, factor: int) -> Array:
    """Insert ``factor - 1`` zeros between neighbours along ``axis`` (a strided conv's adjoint)."""
    if factor == 1:
        return x
    n = x.shape[axis]
    zeros = xp.zeros_like(x)
    stacked = xp.stack([x] + [zeros] * (factor - 1), axis=axis + 1)
    merged = xp.reshape(stacked, x.shape[:axis] + (n * factor,) + x.shape[axis + 1 :])
    index = [slice(None)] * x.ndim
    index[axis] = slice(0, (n - 1) * factor + 1)
    return merged[tuple(index)]


@op("ConvTranspose")
def conv_transpose(
    ctx: Context,
    x: Array,
    w: Array,
    b: Array | None = None,
    *,
    auto_pad: str = "NOTSET",
    dilations: Sequence[int] | None = None,
    group: int = 1,
    kernel_shape: Sequence[int] | None = None,
    output_padding: Sequence[int] | None = None,
    output_shape: Sequence[int] | None = None,
    pads: Sequence[int] | None = None,
    strides: Sequence[int] | None = None,
) -> Array:
    """ONNX ``ai.onnx::ConvTranspose`` from opset 1."""
    xp = ctx.xp
    spatial = list(x.shape[2:])
    n = len(spatial)
    kernel = list(kernel_shape) if kernel_shape else list(w.shape[2:])
    s = list(strides) if strides else [1] * n
    d = list(dilations) if dilations else [1] * n
    extra = list(output_padding) if output_padding else [0] * n
    span = [(kernel[i] - 1) * d[i] + 1 for i in range(n)]
    if output_shape is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        target = (
            list(output_shape)[-n:] if output_shape is not None else [spatial[i] * s[i] for i in range(n)]
        )
        total = [s[i] * (spatial[i] - 1) + extra[i] + span[i] - target[i] for i in range(n)]
        if auto_pad == "SAME_UPPER":
            begin = [t // 2 for t in total]
        else:
            begin = [t - t // 2 for t in total]
        end = [total[i] - begin[i] for i in range(n)]
    elif pads and auto_pad != "VALID":
        begin, end = list(pads[:n]), list(pads[n:])
    else:
        begin, end = [0] * n, [0] * n
    # A transposed conv is a stride-1 conv over the zero-dilated input with the flipped kernel.
    for i in range(n):
        x = _dilate(xp, x, 2 + i, s[i])
    c_in, c_out_g = w.shape[0], w.shape[1]
    wt = xp.reshape(w, (group, c_in // group, c_out_g) + tuple(w.shape[2:]))
    wt = xp.permute_dims(wt, (0, 2, 1) + tuple(range(3, 3 + n)))
    wt = xp.reshape(wt, (group * c_out_g, c_in // group) + tuple(w.shape[2:]))
    wt = xp.flip(wt, axis=tuple(range(2, 2 + n)))
    pb = [span[i] - 1 - begin[i] for i in range(n)]
    pe = [span[i] - 1 - end[i] + extra[i] for i in range(n)]
    # Negative padding crops.
    crop = [slice(None), slice(None)] + [
        slice(max(0, -pb[i]), x.shape[2 + i] - max(0, -pe[i])) for i in range(n)
    ]
    x = x[tuple(crop)]
    y = ctx.be.conv(
        x,
        wt,
        strides=[1] * n,
        dilations=d,
        pads_begin=[max(0, p) for p in pb],
        pads_end=[max(0, p) for p in pe],
        group=group,
    )
    if b is not None:
        y = y + xp.reshape(b, _bias_shape(y.ndim))
    return y


# --- pooling ----------------------------------------------------------------------------------


def _pool_extent(size: int, k: int, s: int, d: int, pb: int, pe: int, ceil_mode: int) -> tuple[int, int]:
    """Output length and the extra end padding ``ceil_mode`` needs beyond ``pe``."""
    span = (k - 1) * d + 1
    room = size + pb + pe - span
    out = (-(-room // s) if ceil_mode else room // s) + 1
    if ceil_mode and (out - 1) * s >= size + pb:
        out -= 1  # the last window would start in the end padding
    extra = max(0, (out - 1) * s + span - (size + pb + pe))
    return out, extra


def _pool_setup(
    x: Array,
    kernel_shape: Sequence[int],
    strides: Sequence[int] | None,
    dilations: Sequence[int] | None,
    pads: Sequence[int] | None,
    auto_pad: str,
    ceil_mode: int,
) -> tuple[list[int], list[int], list[int], list[int], list[int], list[int], list[int]]:
    kernel, s, d, begin, end = _geometry(x, kernel_shape, None, strides, dilations, pads, auto_pad)
    outs, extras = [], []
    for i, size in enumerate(x.shape[2:]):
        out, extra = _pool_extent(size, kernel[i], s[i], d[i], begin[i], end[i], ceil_mode)
        outs.append(out)
        extras.append(extra)
    return kernel, s, d, begin, end, extras, outs


@op("MaxPool")
def max_pool(
    ctx: Context,
    x: Array,
    *,
    auto_pad: str = "NOTSET",
    ceil_mode: int = 0,
    dilations: Sequence[int] | None = None,
    kernel_shape: Sequence[int] = (),
    pads: Sequence[int] | None = None,
    storage_order: int = 0,
    strides: Sequence[int] | None = None,
) -> Array:
    """ONNX ``ai.onnx::MaxPool`` from opset 1."""
    kernel, s, d, begin, end, extras, _ = _pool_setup(
        x, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode
    )
    return ctx.be.pool(
        x,
        kind="max",
        kernel=kernel,
        strides=s,
        dilations=d,
        pads_begin=begin,
        pads_end=[e + x_ for e, x_ in zip(end, extras, strict=True)],
    )


def _window_counts(
    size: int, out: int, k: int, s: int, d: int, pb: int, pe: int, include_pad: int
) -> np.ndarray:
    """How many taps of each output window fall in the input (or its declared padding)."""
    lo, hi = (-pb, size + pe) if include_pad else (0, size)
    starts = np.arange(out) * s - pb
    taps = starts[:, None] + np.arange(k)[None, :] * d
    return ((taps >= lo) & (taps < hi)).sum(axis=1)


@op("AveragePool")
def average_pool(
    ctx: Context,
    x: Array,
    *,
    auto_pad: str = "NOTSET",
    ceil_mode: int = 0,
    count_include_pad: int = 0,
    dilations: Sequence[int] | None = None,
    kernel_shape: Sequence[int] = (),
    pads: Sequence[int] | None = None,
    strides: Sequence[int] | None = None,
) -> Array:
    """ONNX ``ai.onnx::AveragePool`` from opset 1."""
    kernel, s, d, begin, end, extras, outs = _pool_setup(
        x, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode
    )
    total = ctx.be.pool(
        x,
        kind="sum",
        kernel=kernel,
        strides=s,
        dilations=d,
        pads_begin=begin,
        pads_end=[e + x_ for e, x_ in zip(end, extras, strict=True)],
    )
    # The divisor depends on shapes only: build it in numpy, once per call, as a constant.
    counts = np.ones((), dtype=np.float64)
    for i, size in enumerate(x.shape[2:]):
        c = _window_counts(size, outs[i], kernel[i], s[i], d[i], begin[i], end[i], count_include_pad)
        counts = np.multiply.outer(counts, c)
    divisor = ctx.xp.astype(ctx.be.asarray(counts.astype(np.float32)), total.dtype)
    return total / divisor


@op("GlobalAveragePool")
def global_average_pool(ctx: Context, x: Array) -> Array:
    """ONNX ``ai.onnx::GlobalAveragePool`` from opset 1."""
    return ctx.xp.mean(x, axis=tuple(range(2, x.ndim)), keepdims=True)


@op("GlobalMaxPool")
def global_max_pool(ctx: Context, x: Array) -> Array:
    """ONNX ``ai.onnx::GlobalMaxPool`` from opset 1."""
    return ctx.xp.max(x, axis=tuple(range(2, x.ndim)), keepdims=True)


@op("LRN")
def lrn(
    ctx: Context,
    x: Array,
    *,
    size: int,
    alpha: float = 1e-4,
    beta: float = 0.75,
    bias: float = 1.0,
) -> Array:
    """ONNX ``ai.onnx::LRN`` from opset 1."""
    xp = ctx.xp
    channels = x.shape[1]
    before, after = (size - 1) // 2, size - 1 - (size - 1) // 2
    sq = x * x
    zeros = xp.zeros_like(sq[:, :1])
    padded = xp.concat([zeros] * before + [sq] + [zeros] * after, axis=1)
    window = padded[:, 0:channels]
    for i in range(1, size):
        window = window + padded[:, i : i + channels]
    return x / (bias + (alpha / size) * window) ** beta


# --- normalisation ----------------------------------------------------------------------------


def _channel(xp: Any, v: Array, ndim: int) -> Array:
    # spatial=0 (opset < 9) statistics are per activation [C, H, W], not per channel [C].
    return xp.reshape(v, (1,) + tuple(v.shape)) if v.ndim > 1 else xp.reshape(v, _bias_shape(ndim))


@op("BatchNormalization", state={1: 3, 2: 4}, outputs=5)
def batch_normalization(
    ctx: Context,
    x: Array,
    scale: Array,
    bias: Array,
    mean: Array,
    var: Array,
    *,
    epsilon: float = 1e-5,
    momentum: float = 0.9,
    spatial: int = 1,
    is_test: int = 0,
    training_mode: int = 0,
) -> Array | tuple[Array, ...]:
    """ONNX ``ai.onnx::BatchNormalization`` from opset 1."""
    xp = ctx.xp
    nd = x.ndim
    if not (ctx.training or training_mode):
        inv = scale / xp.sqrt(var + epsilon)
        return x * _channel(xp, inv, nd) + _channel(xp, bias - mean * inv, nd)
    axes = (0,) + tuple(range(2, nd)) if spatial else (0,)
    batch_mean = xp.mean(x, axis=axes, keepdims=True)
    centred = x - batch_mean
    batch_var = xp.mean(centred * centred, axis=axes, keepdims=True)
    y = centred / xp.sqrt(batch_var + epsilon) * _channel(xp, scale, nd) + _channel(xp, bias, nd)
    flat_mean = xp.reshape(batch_mean, mean.shape)
    flat_var = xp.reshape(batch_var, var.shape)
    count = math.prod(x.shape) // max(math.prod(mean.shape), 1)
    run_var = flat_var
    if ctx.training and ctx.unbiased_running_var and count > 1:
        run_var = flat_var * (count / (count - 1))
    stop = ctx.be.stop_gradient
    new_mean = stop(mean * momentum + flat_mean * (1 - momentum))
    new_var = stop(var * momentum + run_var * (1 - momentum))
    return y, new_mean, new_var, flat_mean, flat_var


@op("InstanceNormalization", 6)
def instance_normalization(
    ctx: Context, x: Array, scale: Array, bias: Array, *, epsilon: float = 1e-5
) -> Array:
    """ONNX ``ai.onnx::InstanceNormalization`` from opset 6."""
    xp = ctx.xp
    axes = tuple(range(2, x.ndim))
    mu = xp.mean(x, axis=axes, keepdims=True)
    var = xp.mean((x - mu) ** 2, axis=axes, keepdims=True)
    shape = _bias_shape(x.ndim)
    return (x - mu) / xp.sqrt(var + epsilon) * xp.reshape(scale, shape) + xp.reshape(bias, shape)


@op("LayerNormalization", 17, outputs=3)
def layer_normalization(
    ctx: Context,
    x: Array,
    scale: Array,
    bias: Array | None = None,
    *,
    axis: int = -1,
    epsilon: float = 1e-5,
    stash_type: int = 1,
) -> tuple[Array, Array, Array]:
    """ONNX ``ai.onnx::LayerNormalization`` from opset 17."""
    xp = ctx.xp
    axes = tuple(range(axis_of(axis, x.ndim), x.ndim))
    mu = xp.mean(x, axis=axes, keepdims=True)
    var = xp.mean((x - mu) ** 2, axis=axes, keepdims=True)
    inv_std = 1 / xp.sqrt(var + epsilon)
    y = (x - mu) * inv_std * scale
    if bias is not None:
        y = y + bias
    return y, mu, inv_std


# --- dropout ----------------------------------------------------------------------------------


def _dropout(ctx: Context, x: Array, ratio: float, active: bool) -> tuple[Array, Array]:
    xp = ctx.xp
    if not active or ratio == 0.0:
        return x, xp.ones(x.shape, dtype=xp.bool)
    keep = ctx.be.uniform(ctx, tuple(x.shape), x.dtype) >= ratio
    return xp.where(keep, x / (1.0 - ratio), 0), keep


@op("Dropout", 1, random=True, outputs=2)
def dropout_v1(ctx: Context, x: Array, *, ratio: float = 0.5, is_test: int = 0) -> tuple[Array, Array]:
    """ONNX ``ai.onnx::Dropout`` from opset 1."""
    return _dropout(ctx, x, ratio, ctx.training)


@op("Dropout", 12, static=(1, 2), random=True, outputs=2)
def dropout(
    ctx: Context,
    x: Array,
    ratio: Any = None,
    training_mode: Any = None,
    *,
    seed: int | None = None,
) -> tuple[Array, Array]:
    """ONNX ``ai.onnx::Dropout`` from opset 12."""
    rate = 0.5 if ratio is None else float(np.asarray(ratio))
    declared = training_mode is not None and bool(np.asarray(training_mode))
    return _dropout(ctx, x, rate, ctx.training or declared)


# --- softmax ----------------------------------------------------------------------------------


def _softmax(xp: Any, x: Array, axis: int, log: bool) -> Array:
    shifted = x - xp.max(x, axis=axis, keepdims=True)
    if log:
        return shifted - xp.log(xp.sum(xp.exp(shifted), axis=axis, keepdims=True))
    e = xp.exp(shifted)
    return e / xp.sum(e, axis=axis, keepdims=True)


def _softmax_2d(xp: Any, x: Array, axis: int, log: bool) -> Array:
    """Opset < 13: softmax over the input coerced to 2-D at ``axis``."""
    axis = axis_of(axis, x.ndim)
    flat = xp.reshape(x, (math.prod(x.shape[:axis]), math.prod(x.shape[axis:])))
    return xp.reshape(_softmax(xp, flat, 1, log), x.shape)


@op("Softmax")
def softmax_v1(ctx: Context, x: Array, *, axis: int = 1) -> Array:
    """ONNX ``ai.onnx::Softmax`` from opset 1."""
    return _softmax_2d(ctx.xp, x, axis, log=False)


@op("Softmax", 13)
def softmax(ctx: Context, x: Array, *, axis: int = -1) -> Array:
    """ONNX ``ai.onnx::Softmax`` from opset 13."""
    return _softmax(ctx.xp, x, axis, log=False)


@op("LogSoftmax")
def log_softmax_v1(ctx: Context, x: Array, *, axis: int = 1) -> Array:
    """ONNX ``ai.onnx::LogSoftmax`` from opset 1."""
    return _softmax_2d(ctx.xp, x, axis, log=True)


@op("LogSoftmax", 13)
def log_softmax(ctx: Context, x: Array, *, axis: int = -1) -> Array:
    """ONNX ``ai.onnx::LogSoftmax`` from opset 13."""
    return _softmax(ctx.xp, x, axis, log=True)


@op("Hardmax", 13)
def hardmax(ctx: Context, x: Array, *, axis: int = -1) -> Array:
    """ONNX ``ai.onnx::Hardmax`` from opset 13."""
    xp = ctx.xp
    axis = axis_of(axis, x.ndim)
    idx = xp.argmax(x, axis=axis, keepdims=True)
    positions = xp.reshape(xp.arange(x.shape[axis]), (1,) * axis + (-1,) + (1,) * (x.ndim - axis - 1))
    return xp.astype(positions == idx, x.dtype)
