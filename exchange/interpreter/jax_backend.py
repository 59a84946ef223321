"""The JAX backend: pure functions of the parameters, usable under ``jax.grad`` and ``jax.jit``.

Nothing here branches on array values: shapes are concrete even under ``jit``, and shape-like
inputs reach the operators as numpy arrays (see ``program.py``). Dropout needs a PRNG key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from flonnx.exchange.interpreter._context import Context
from flonnx.exchange.interpreter._registry import OpTable
from flonnx.exchange.interpreter.backend import Backend

__all__ = ["BACKEND", "JaxBackend"]

OVERRIDES = OpTable()


class _KeyStream:
    """Hands out a fresh subkey per random draw, in graph order (deterministic under jit)."""

    def __init__(self, key: Any) -> None:
        self.key = key

    def next(self) -> Any:
        self.key, sub = jax.random.split(self.key)
        return sub


class JaxBackend(Backend):
    """Backend over ``jax.Array`` (and tracers)."""

    name = "jax"
    xp = jnp
    overrides = OVERRIDES
    traceable = True

    def asarray(self, value: np.ndarray) -> jax.Array:
        """Implements :meth:`Backend.asarray`."""
        return jnp.asarray(value)

    def to_numpy(self, value: Any) -> np.ndarray:
        """Implements :meth:`Backend.to_numpy`."""
        return np.asarray(value)

    def dtype(self, np_dtype: np.dtype) -> Any:
        """Implements :meth:`Backend.dtype`."""
        # Without jax_enable_x64, 64-bit types silently become 32-bit ones: ask for those.
        return jax.dtypes.canonicalize_dtype(np_dtype)

    def make_rng(self, rng: Any) -> _KeyStream | None:
        """Implements :meth:`Backend.make_rng`."""
        if rng is None:
            return None
        if isinstance(rng, int | np.integer):
            rng = jax.random.key(int(rng))
        return _KeyStream(rng)

    def uniform(self, ctx: Any, shape: tuple[int, ...], dtype: Any) -> jax.Array:
        """Implements :meth:`Backend.uniform`."""
        if ctx.rng is None:
            raise ValueError("training with active Dropout on jax needs rng=<PRNG key or int seed>")
        return jax.random.uniform(ctx.rng.next(), shape, dtype=dtype)

    def stop_gradient(self, value: jax.Array) -> jax.Array:
        """Implements :meth:`Backend.stop_gradient`."""
        return lax.stop_gradient(value)

    def conv(
        self,
        x: jax.Array,
        w: jax.Array,
        *,
        strides: Sequence[int],
        dilations: Sequence[int],
        pads_begin: Sequence[int],
        pads_end: Sequence[int],
        group: int,
    ) -> jax.Array:
        """Implements :meth:`Backend.conv`."""
        return lax.conv_general_dilated(
            x,
            w,
            window_strides=tuple(strides),
            padding=tuple(zip(pads_begin, pads_end, strict=True)),
            rhs_dilation=tuple(dilations),
            feature_group_count=group,
            precision=lax.Precision.HIGHEST,
        )

    def pool(
        self,
        x: jax.Array,
        *,
        kind: str,
        kernel: Sequence[int],
        strides: Sequence[int],
        dilations: Sequence[int],
        pads_begin: Sequence[int],
        pads_end: Sequence[int],
    ) -> jax.Array:
        """Implements :meth:`Backend.pool`."""
        if kind == "max":
            floating = jnp.issubdtype(x.dtype, jnp.floating)
            init = -jnp.inf if floating else jnp.iinfo(x.dtype).min
            reducer = lax.max
        else:
            init, reducer = 0, lax.add
        return lax.reduce_window(
            x,
            # A concrete numpy init lets JAX recognise the max/add monoid and use the
            # differentiable reduce_window_max/sum primitives (a traced init is not differentiable).
            np.asarray(init, dtype=x.dtype),
            reducer,
            window_dimensions=(1, 1, *kernel),
            window_strides=(1, 1, *strides),
            padding=((0, 0), (0, 0), *zip(pads_begin, pads_end, strict=True)),
            window_dilation=(1, 1, *dilations),
        )

    def erf(self, x: jax.Array) -> jax.Array:
        """Implements :meth:`Backend.erf`."""
        return jax.scipy.special.erf(x)

    def einsum(self, equation: str, *operands: jax.Array) -> jax.Array:
        """Implements :meth:`Backend.einsum`."""
        return jnp.einsum(equation, *operands, precision=lax.Precision.HIGHEST)


@OVERRIDES.register("Relu")
def relu(ctx: Context, x: jax.Array) -> jax.Array:
    return jax.nn.relu(x)


@OVERRIDES.register("Sigmoid")
def sigmoid(ctx: Context, x: jax.Array) -> jax.Array:
    return jax.nn.sigmoid(x)


@OVERRIDES.register("MatMul")
def matmul(ctx: Context, a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.matmul(a, b, precision=lax.Precision.HIGHEST)


@OVERRIDES.register("Gemm")
def gemm(
    ctx: Context,
    a: jax.Array,
    b: jax.Array,
    c: jax.Array | None = None,
    *,
    alpha: float = 1.0,
    beta: float = 1.0,
    transA: int = 0,  # noqa: N803 - ONNX attribute names
    transB: int = 0,  # noqa: N803
    broadcast: int = 0,
) -> jax.Array:
    y = jnp.matmul(a.T if transA else a, b.T if transB else b, precision=lax.Precision.HIGHEST)
    if alpha != 1.0:
        y = y * alpha
    if c is not None:
        y = y + (c * beta if beta != 1.0 else c)
    return y


BACKEND = JaxBackend()
