"""The numpy backend: the reference for inference, no autodiff."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import array_api_compat.numpy as xp_numpy
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from flonnx.exchange.interpreter._registry import OpTable
from flonnx.exchange.interpreter.backend import Backend

__all__ = ["BACKEND", "NumpyBackend"]


def _windows(
    x: np.ndarray,
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    pads_begin: Sequence[int],
    pads_end: Sequence[int],
    fill: Any,
) -> np.ndarray:
    """A strided view ``[N, C, *out, *kernel]`` of the padded input."""
    n = len(kernel)
    widths = [(0, 0), (0, 0)] + list(zip(pads_begin, pads_end, strict=True))
    padded = np.pad(x, widths, constant_values=fill) if any(pads_begin) or any(pads_end) else x
    span = [(k - 1) * d + 1 for k, d in zip(kernel, dilations, strict=True)]
    view = sliding_window_view(padded, span, axis=tuple(range(2, 2 + n)))
    index = (slice(None), slice(None))
    index += tuple(slice(None, None, s) for s in strides)
    index += tuple(slice(None, None, d) for d in dilations)
    return view[index]


class NumpyBackend(Backend):
    """Backend over numpy arrays."""

    name = "numpy"
    xp = xp_numpy
    overrides = OpTable()

    def asarray(self, value: np.ndarray) -> np.ndarray:
        """Implements :meth:`Backend.asarray`."""
        return np.asarray(value)

    def to_numpy(self, value: Any) -> np.ndarray:
        """Implements :meth:`Backend.to_numpy`."""
        return np.asarray(value)

    def dtype(self, np_dtype: np.dtype) -> Any:
        """Implements :meth:`Backend.dtype`."""
        return np_dtype

    def make_rng(self, rng: Any) -> np.random.Generator:
        """Implements :meth:`Backend.make_rng`."""
        return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)

    def uniform(self, ctx: Any, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """Implements :meth:`Backend.uniform`."""
        sample_type = dtype if dtype in (np.float32, np.float64) else np.float64
        return ctx.rng.random(shape, dtype=sample_type)

    def stop_gradient(self, value: np.ndarray) -> np.ndarray:
        """Implements :meth:`Backend.stop_gradient`."""
        return value

    def conv(
        self,
        x: np.ndarray,
        w: np.ndarray,
        *,
        strides: Sequence[int],
        dilations: Sequence[int],
        pads_begin: Sequence[int],
        pads_end: Sequence[int],
        group: int,
    ) -> np.ndarray:
        """Implements :meth:`Backend.conv`."""
        kernel = w.shape[2:]
        n = len(kernel)
        win = _windows(x, kernel, strides, dilations, pads_begin, pads_end, 0)
        batch, channels = x.shape[:2]
        out_spatial = win.shape[2 : 2 + n]
        win = win.reshape((batch, group, channels // group) + out_spatial + tuple(kernel))
        wg = w.reshape((group, w.shape[0] // group, w.shape[1]) + tuple(kernel))
        letters = "hijklm"[:n]
        taps = "pqrstu"[:n]
        spec = f"ngc{letters}{taps},goc{taps}->ngo{letters}"
        y = np.einsum(spec, win, wg, optimize=True)
        return y.reshape((batch, w.shape[0]) + out_spatial).astype(x.dtype, copy=False)

    def pool(
        self,
        x: np.ndarray,
        *,
        kind: str,
        kernel: Sequence[int],
        strides: Sequence[int],
        dilations: Sequence[int],
        pads_begin: Sequence[int],
        pads_end: Sequence[int],
    ) -> np.ndarray:
        """Implements :meth:`Backend.pool`."""
        if kind == "max":
            fill = -np.inf if np.issubdtype(x.dtype, np.floating) else np.iinfo(x.dtype).min
        else:
            fill = 0
        win = _windows(x, kernel, strides, dilations, pads_begin, pads_end, fill)
        axes = tuple(range(win.ndim - len(kernel), win.ndim))
        reduced = win.max(axis=axes) if kind == "max" else win.sum(axis=axes)
        return reduced.astype(x.dtype, copy=False)

    def erf(self, x: np.ndarray) -> np.ndarray:
        """Implements :meth:`Backend.erf`."""
        return np.vectorize(math.erf, otypes=[x.dtype])(x)

    def einsum(self, equation: str, *operands: np.ndarray) -> np.ndarray:
        """Implements :meth:`Backend.einsum`."""
        return np.einsum(equation, *operands)


BACKEND = NumpyBackend()
