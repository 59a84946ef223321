"""Elementwise operators: arithmetic, comparisons, logic, math functions and activations."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import reduce
from typing import Any

from flonnx.exchange.interpreter._context import Context
from flonnx.exchange.interpreter._registry import op
from flonnx.exchange.interpreter.ops._common import Array, is_float, is_int

# --- unary math -------------------------------------------------------------------------------

_UNARY: dict[str, Callable[[Any, Array], Array]] = {
    "Abs": lambda xp, x: xp.abs(x),
    "Neg": lambda xp, x: -x,
    "Exp": lambda xp, x: xp.exp(x),
    "Log": lambda xp, x: xp.log(x),
    "Sqrt": lambda xp, x: xp.sqrt(x),
    "Reciprocal": lambda xp, x: 1 / x,
    "Floor": lambda xp, x: xp.floor(x),
    "Ceil": lambda xp, x: xp.ceil(x),
    "Round": lambda xp, x: xp.round(x),
    "Sign": lambda xp, x: xp.sign(x),
    "Sin": lambda xp, x: xp.sin(x),
    "Cos": lambda xp, x: xp.cos(x),
    "Tan": lambda xp, x: xp.tan(x),
    "Asin": lambda xp, x: xp.asin(x),
    "Acos": lambda xp, x: xp.acos(x),
    "Atan": lambda xp, x: xp.atan(x),
    "Sinh": lambda xp, x: xp.sinh(x),
    "Cosh": lambda xp, x: xp.cosh(x),
    "Tanh": lambda xp, x: xp.tanh(x),
    "Asinh": lambda xp, x: xp.asinh(x),
    "Acosh": lambda xp, x: xp.acosh(x),
    "Atanh": lambda xp, x: xp.atanh(x),
    "Not": lambda xp, x: xp.logical_not(x),
    "IsNaN": lambda xp, x: xp.isnan(x),
    "Identity": lambda xp, x: x,
    "Softsign": lambda xp, x: x / (1 + xp.abs(x)),
    "Softplus": lambda xp, x: xp.logaddexp(x, xp.zeros_like(x)),
}


def _make_unary(fn: Callable[[Any, Array], Array]) -> Callable[[Context, Array], Array]:
    def unary(ctx: Context, x: Array) -> Array:
        return fn(ctx.xp, x)

    return unary


for _name, _fn in _UNARY.items():
    op(_name)(_make_unary(_fn))


@op("Erf", 9)
def erf(ctx: Context, x: Array) -> Array:
    """ONNX ``ai.onnx::Erf`` from opset 9."""
    return ctx.be.erf(x)


@op("IsInf", 10)
def isinf(ctx: Context, x: Array, *, detect_negative: int = 1, detect_positive: int = 1) -> Array:
    """ONNX ``ai.onnx::IsInf`` from opset 10."""
    xp = ctx.xp
    inf = xp.isinf(x)
    if not detect_negative:
        inf = xp.logical_and(inf, x > 0)
    if not detect_positive:
        inf = xp.logical_and(inf, x < 0)
    return inf


# --- activations ------------------------------------------------------------------------------


@op("Relu")
def relu(ctx: Context, x: Array) -> Array:
    """ONNX ``ai.onnx::Relu`` from opset 1."""
    # where, not maximum: maximum splits the gradient at 0 between both arguments.
    return ctx.xp.where(x > 0, x, 0)


@op("Sigmoid")
def sigmoid(ctx: Context, x: Array) -> Array:
    """ONNX ``ai.onnx::Sigmoid`` from opset 1."""
    xp = ctx.xp
    # Both branches finite for any x, so neither overflows nor poisons the gradient.
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


@op("LeakyRelu")
def leaky_relu(ctx: Context, x: Array, *, alpha: float = 0.01) -> Array:
    """ONNX ``ai.onnx::LeakyRelu`` from opset 1."""
    return ctx.xp.where(x > 0, x, x * alpha)


@op("Elu")
def elu(ctx: Context, x: Array, *, alpha: float = 1.0) -> Array:
    """ONNX ``ai.onnx::Elu`` from opset 1."""
    xp = ctx.xp
    return xp.where(x > 0, x, alpha * xp.expm1(xp.minimum(x, 0)))


@op("Celu", 12)
def celu(ctx: Context, x: Array, *, alpha: float = 1.0) -> Array:
    """ONNX ``ai.onnx::Celu`` from opset 12."""
    xp = ctx.xp
    return xp.where(x > 0, x, alpha * xp.expm1(xp.minimum(x, 0) / alpha))


@op("Selu")
def selu(
    ctx: Context,
    x: Array,
    *,
    alpha: float = 1.67326319217681884765625,
    gamma: float = 1.05070102214813232421875,
) -> Array:
    """ONNX ``ai.onnx::Selu`` from opset 1."""
    xp = ctx.xp
    return gamma * xp.where(x > 0, x, alpha * xp.expm1(xp.minimum(x, 0)))


@op("HardSigmoid")
def hard_sigmoid(ctx: Context, x: Array, *, alpha: float = 0.2, beta: float = 0.5) -> Array:
    """ONNX ``ai.onnx::HardSigmoid`` from opset 1."""
    return ctx.xp.clip(x * alpha + beta, 0.0, 1.0)


@op("HardSwish", 14)
def hard_swish(ctx: Context, x: Array) -> Array:
    """ONNX ``ai.onnx::HardSwish`` from opset 14."""
    return x * ctx.xp.clip(x / 6 + 0.5, 0.0, 1.0)


@op("ThresholdedRelu", 10)
def thresholded_relu(ctx: Context, x: Array, *, alpha: float = 1.0) -> Array:
    """ONNX ``ai.onnx::ThresholdedRelu`` from opset 10."""
    return ctx.xp.where(x > alpha, x, 0)


@op("Mish", 18)
def mish(ctx: Context, x: Array) -> Array:
    """ONNX ``ai.onnx::Mish`` from opset 18."""
    xp = ctx.xp
    return x * xp.tanh(xp.logaddexp(x, xp.zeros_like(x)))


@op("Gelu", 20)
def gelu(ctx: Context, x: Array, *, approximate: str = "none") -> Array:
    """ONNX ``ai.onnx::Gelu`` from opset 20."""
    xp = ctx.xp
    if approximate == "tanh":
        inner = math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)
        return 0.5 * x * (1 + xp.tanh(inner))
    return 0.5 * x * (1 + ctx.be.erf(x / math.sqrt(2)))


@op("Shrink", 9)
def shrink(ctx: Context, x: Array, *, bias: float = 0.0, lambd: float = 0.5) -> Array:
    """ONNX ``ai.onnx::Shrink`` from opset 9."""
    xp = ctx.xp
    zero = xp.zeros_like(x)
    return xp.where(x < -lambd, x + bias, xp.where(x > lambd, x - bias, zero))


@op("PRelu")
def prelu_v1(ctx: Context, x: Array, slope: Array) -> Array:
    """ONNX ``ai.onnx::PRelu`` from opset 1."""
    # Before opset 7 a per-channel slope [C] broadcast along axis 1, not numpy-style.
    if slope.ndim == 1 and x.ndim > 2 and slope.shape[0] != x.shape[-1]:
        slope = ctx.xp.reshape(slope, (slope.shape[0],) + (1,) * (x.ndim - 2))
    return ctx.xp.where(x >= 0, x, x * slope)


@op("PRelu", 7)
def prelu(ctx: Context, x: Array, slope: Array) -> Array:
    """ONNX ``ai.onnx::PRelu`` from opset 7."""
    return ctx.xp.where(x >= 0, x, x * slope)


# --- binary arithmetic ------------------------------------------------------------------------


def _legacy_align(ctx: Context, a: Array, b: Array, broadcast: int, axis: int | None) -> Array:
    """Opset < 7 broadcasting: ``b`` is aligned to ``a`` starting at ``axis``."""
    if broadcast and axis is not None and b.ndim > 0:
        axis = axis + a.ndim if axis < 0 else axis
        trailing = a.ndim - axis - b.ndim
        if trailing > 0:
            b = ctx.xp.reshape(b, tuple(b.shape) + (1,) * trailing)
    return b


def _int_div(xp: Any, a: Array, b: Array) -> Array:
    """Integer division truncating toward zero (C semantics, as the ONNX reference)."""
    q = xp.floor_divide(a, b)
    inexact = xp.logical_and(xp.remainder(a, b) != 0, (a < 0) != (b < 0))
    return xp.where(inexact, q + 1, q)


def _div(ctx: Context, a: Array, b: Array) -> Array:
    if is_int(ctx.xp, a):
        return _int_div(ctx.xp, a, b)
    return a / b


_BINARY: dict[str, Callable[[Context, Array, Array], Array]] = {
    "Add": lambda ctx, a, b: a + b,
    "Sub": lambda ctx, a, b: a - b,
    "Mul": lambda ctx, a, b: a * b,
    "Div": _div,
}


def _make_binary(fn: Callable[[Context, Array, Array], Array]) -> tuple[Any, Any]:
    def legacy(
        ctx: Context,
        a: Array,
        b: Array,
        *,
        broadcast: int = 0,
        axis: int | None = None,
    ) -> Array:
        return fn(ctx, a, _legacy_align(ctx, a, b, broadcast, axis))

    def binary(ctx: Context, a: Array, b: Array) -> Array:
        return fn(ctx, a, b)

    return legacy, binary


for _name, _bfn in _BINARY.items():
    _legacy, _modern = _make_binary(_bfn)
    op(_name, 1)(_legacy)
    op(_name, 7)(_modern)


@op("Pow", 1)
def pow_v1(ctx: Context, a: Array, b: Array, *, broadcast: int = 0, axis: int | None = None) -> Array:
    """ONNX ``ai.onnx::Pow`` from opset 1."""
    return pow_(ctx, a, _legacy_align(ctx, a, b, broadcast, axis))


@op("Pow", 7)
def pow_(ctx: Context, a: Array, b: Array) -> Array:
    """ONNX ``ai.onnx::Pow`` from opset 7."""
    xp = ctx.xp
    # The result has the base's type, whatever the exponent's type.
    if is_int(xp, a) and is_float(xp, b):
        return xp.astype(xp.pow(xp.astype(a, b.dtype), b), a.dtype)
    if b.dtype != a.dtype:
        b = xp.astype(b, a.dtype)
    return xp.pow(a, b)


@op("Mod", 10)
def mod(ctx: Context, a: Array, b: Array, *, fmod: int = 0) -> Array:
    """ONNX ``ai.onnx::Mod`` from opset 10."""
    xp = ctx.xp
    r = xp.remainder(a, b)  # sign of the divisor, like Python's %
    if fmod:
        wrong_sign = xp.logical_and(r != 0, (r < 0) != (a < 0))
        r = xp.where(wrong_sign, r - b, r)
    return r


# --- comparisons and logic ----------------------------------------------------------------------

_COMPARE: dict[str, Callable[[Any, Array, Array], Array]] = {
    "Equal": lambda xp, a, b: xp.equal(a, b),
    "Less": lambda xp, a, b: xp.less(a, b),
    "LessOrEqual": lambda xp, a, b: xp.less_equal(a, b),
    "Greater": lambda xp, a, b: xp.greater(a, b),
    "GreaterOrEqual": lambda xp, a, b: xp.greater_equal(a, b),
    "And": lambda xp, a, b: xp.logical_and(a, b),
    "Or": lambda xp, a, b: xp.logical_or(a, b),
    "Xor": lambda xp, a, b: xp.logical_xor(a, b),
}


def _make_compare(fn: Callable[[Any, Array, Array], Array]) -> Callable[..., Array]:
    def compare(ctx: Context, a: Array, b: Array) -> Array:
        return fn(ctx.xp, a, b)

    return compare


for _name, _cfn in _COMPARE.items():
    op(_name, 7)(_make_compare(_cfn))


@op("Where", 9)
def where(ctx: Context, condition: Array, x: Array, y: Array) -> Array:
    """ONNX ``ai.onnx::Where`` from opset 9."""
    return ctx.xp.where(condition, x, y)


# --- variadic ---------------------------------------------------------------------------------


@op("Sum")
def sum_(ctx: Context, *xs: Array) -> Array:
    """ONNX ``ai.onnx::Sum`` from opset 1."""
    return reduce(lambda a, b: a + b, xs)


@op("Mean")
def mean(ctx: Context, *xs: Array) -> Array:
    """ONNX ``ai.onnx::Mean`` from opset 1."""
    return reduce(lambda a, b: a + b, xs) / len(xs)


@op("Max")
def max_(ctx: Context, *xs: Array) -> Array:
    """ONNX ``ai.onnx::Max`` from opset 1."""
    return reduce(ctx.xp.maximum, xs)


@op("Min")
def min_(ctx: Context, *xs: Array) -> Array:
    """ONNX ``ai.onnx::Min`` from opset 1."""
    return reduce(ctx.xp.minimum, xs)


@op("Clip")
def clip_v6(ctx: Context, x: Array, *, min: float = -math.inf, max: float = math.inf) -> Array:  # noqa: A002
    """ONNX ``ai.onnx::Clip`` from opset 1 (bounds as attributes)."""
    xp = ctx.xp
    return xp.minimum(xp.maximum(x, min), max)


@op("Clip", 11)
def clip(ctx: Context, x: Array, lo: Array | None = None, hi: Array | None = None) -> Array:
    """ONNX ``ai.onnx::Clip`` from opset 1."""
    """ONNX ``ai.onnx::Clip`` from opset 11."""
    xp = ctx.xp
    if lo is not None:
        x = xp.where(x < lo, xp.astype(lo, x.dtype), x)
    if hi is not None:
        x = xp.where(x > hi, xp.astype(hi, x.dtype), x)
    return x
