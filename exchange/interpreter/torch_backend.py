"""The PyTorch backend: parameters are tensors, ``torch.autograd`` differentiates through the graph.

Besides the primitives, it overrides the handful of operators on a training step's hot path with
the fused ``torch.nn.functional`` kernels the native modules use, which both removes interpreter
overhead and gives bit-for-bit the gradients of the native ``nn.Module``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import array_api_compat.torch as xp_torch
import numpy as np
import torch
import torch.nn.functional as F

from flonnx.exchange.interpreter._context import Context
from flonnx.exchange.interpreter._registry import OpTable
from flonnx.exchange.interpreter.backend import Backend
from flonnx.exchange.interpreter.ops import nn as generic_nn

__all__ = ["BACKEND", "TorchBackend"]

_DTYPES: dict[np.dtype, torch.dtype] = {
    np.dtype(k): v
    for k, v in {
        "float16": torch.float16,
        "float32": torch.float32,
        "float64": torch.float64,
        "int8": torch.int8,
        "int16": torch.int16,
        "int32": torch.int32,
        "int64": torch.int64,
        "uint8": torch.uint8,
        "uint16": torch.uint16,
        "uint32": torch.uint32,
        "uint64": torch.uint64,
        "bool": torch.bool,
    }.items()
}

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}

OVERRIDES = OpTable()


def _torch_pads(begin: Sequence[int], end: Sequence[int]) -> list[int]:
    """ONNX begin/end pads to F.pad's order (last axis first)."""
    out: list[int] = []
    for b, e in zip(reversed(begin), reversed(end), strict=True):
        out += [b, e]
    return out


class TorchBackend(Backend):
    """Backend over ``torch.Tensor`` (CPU or whatever device the inputs live on)."""

    name = "torch"
    xp = xp_torch
    overrides = OVERRIDES

    def asarray(self, value: np.ndarray) -> torch.Tensor:
        """Implements :meth:`Backend.asarray`."""
        return torch.from_numpy(np.array(value, copy=True))

    def to_numpy(self, value: Any) -> np.ndarray:
        """Implements :meth:`Backend.to_numpy`."""
        if isinstance(value, torch.Tensor):
            return value.detach().cpu().numpy()
        return np.asarray(value)

    def dtype(self, np_dtype: np.dtype) -> torch.dtype:
        """Implements :meth:`Backend.dtype`."""
        try:
            return _DTYPES[np.dtype(np_dtype)]
        except KeyError:
            raise TypeError(f"dtype {np_dtype} has no torch equivalent") from None

    def make_rng(self, rng: Any) -> torch.Generator | None:
        """Implements :meth:`Backend.make_rng`."""
        if rng is None or isinstance(rng, torch.Generator):
            return rng
        return torch.Generator().manual_seed(int(rng))

    def uniform(self, ctx: Any, shape: tuple[int, ...], dtype: Any) -> torch.Tensor:
        """Implements :meth:`Backend.uniform`."""
        return torch.rand(shape, generator=ctx.rng, dtype=dtype)

    def stop_gradient(self, value: torch.Tensor) -> torch.Tensor:
        """Implements :meth:`Backend.stop_gradient`."""
        return value.detach()

    def conv(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        *,
        strides: Sequence[int],
        dilations: Sequence[int],
        pads_begin: Sequence[int],
        pads_end: Sequence[int],
        group: int,
    ) -> torch.Tensor:
        """Implements :meth:`Backend.conv`."""
        padding: Any = list(pads_begin)
        if list(pads_begin) != list(pads_end):
            x = F.pad(x, _torch_pads(pads_begin, pads_end))
            padding = 0
        return _CONV[w.ndim - 2](x, w, None, list(strides), padding, list(dilations), group)

    def pool(
        self,
        x: torch.Tensor,
        *,
        kind: str,
        kernel: Sequence[int],
        strides: Sequence[int],
        dilations: Sequence[int],
        pads_begin: Sequence[int],
        pads_end: Sequence[int],
    ) -> torch.Tensor:
        """Implements :meth:`Backend.pool`."""
        n = len(kernel)
        symmetric = list(pads_begin) == list(pads_end)
        fits = all(2 * p <= k for p, k in zip(pads_begin, kernel, strict=True))
        if kind == "max":
            if symmetric and fits:
                return _MAX_POOL[n](x, list(kernel), list(strides), list(pads_begin), list(dilations))
            fill = -math.inf if x.is_floating_point() else torch.iinfo(x.dtype).min
            x = F.pad(x, _torch_pads(pads_begin, pads_end), value=fill)
            return _MAX_POOL[n](x, list(kernel), list(strides), 0, list(dilations))
        if any(pads_begin) or any(pads_end):
            x = F.pad(x, _torch_pads(pads_begin, pads_end))
        if all(d == 1 for d in dilations):
            return _AVG_POOL[n](x, list(kernel), list(strides)) * math.prod(kernel)
        # Dilated sum pooling: a depthwise convolution with a kernel of ones.
        channels = x.shape[1]
        ones = torch.ones((channels, 1, *kernel), dtype=x.dtype)
        return _CONV[n](x, ones, None, list(strides), 0, list(dilations), channels)

    def erf(self, x: torch.Tensor) -> torch.Tensor:
        """Implements :meth:`Backend.erf`."""
        return torch.erf(x)

    def einsum(self, equation: str, *operands: torch.Tensor) -> torch.Tensor:
        """Implements :meth:`Backend.einsum`."""
        return torch.einsum(equation, *operands)


# --- hot-path overrides -------------------------------------------------------------------------


@OVERRIDES.register("Relu")
def relu(ctx: Context, x: torch.Tensor) -> torch.Tensor:
    return torch.relu(x)


@OVERRIDES.register("Sigmoid")
def sigmoid(ctx: Context, x: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(x)


@OVERRIDES.register("Tanh")
def tanh(ctx: Context, x: torch.Tensor) -> torch.Tensor:
    return torch.tanh(x)


@OVERRIDES.register("Add", 7)
def add(ctx: Context, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a + b


@OVERRIDES.register("Gemm")
def gemm(
    ctx: Context,
    a: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor | None = None,
    *,
    alpha: float = 1.0,
    beta: float = 1.0,
    transA: int = 0,  # noqa: N803 - ONNX attribute names
    transB: int = 0,  # noqa: N803
    broadcast: int = 0,
) -> torch.Tensor:
    if transB and not transA and alpha == 1.0 and beta == 1.0 and (c is None or c.ndim == 1):
        return F.linear(a, b, c)  # nn.Linear's own kernel: same numbers as the native module
    return generic_nn.gemm(ctx, a, b, c, alpha=alpha, beta=beta, transA=transA, transB=transB)


@OVERRIDES.register("LogSoftmax", 13)
def log_softmax(ctx: Context, x: torch.Tensor, *, axis: int = -1) -> torch.Tensor:
    return torch.log_softmax(x, axis)


@OVERRIDES.register("Softmax", 13)
def softmax(ctx: Context, x: torch.Tensor, *, axis: int = -1) -> torch.Tensor:
    return torch.softmax(x, axis)


@OVERRIDES.register("BatchNormalization", 9, state={1: 3, 2: 4}, outputs=5)
def batch_normalization(
    ctx: Context,
    x: torch.Tensor,
    scale: torch.Tensor,
    bias: torch.Tensor,
    mean: torch.Tensor,
    var: torch.Tensor,
    *,
    epsilon: float = 1e-5,
    momentum: float = 0.9,
    training_mode: int = 0,
    _n_outputs: int = 1,
) -> torch.Tensor | tuple[torch.Tensor, ...]:
    if not (ctx.training or training_mode):
        return F.batch_norm(x, mean, var, scale, bias, False, 0.0, epsilon)
    if ctx.training and ctx.unbiased_running_var and _n_outputs <= 3:
        # torch's own kernel updates the running stats exactly as nn.BatchNorm2d does (unbiased
        # variance, torch momentum = 1 - ONNX momentum); it writes in place, hence the copies.
        new_mean, new_var = mean.detach().clone(), var.detach().clone()
        y = F.batch_norm(x, new_mean, new_var, scale, bias, True, 1.0 - momentum, epsilon)
        return y, new_mean, new_var
    return generic_nn.batch_normalization(
        ctx, x, scale, bias, mean, var, epsilon=epsilon, momentum=momentum, training_mode=training_mode
    )


@OVERRIDES.register("Conv")
def conv(
    ctx: Context,
    x: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor | None = None,
    *,
    auto_pad: str = "NOTSET",
    dilations: Sequence[int] | None = None,
    group: int = 1,
    kernel_shape: Sequence[int] | None = None,
    pads: Sequence[int] | None = None,
    strides: Sequence[int] | None = None,
) -> torch.Tensor:
    n = w.ndim - 2
    if auto_pad == "NOTSET" and n <= 3 and (not pads or list(pads[:n]) == list(pads[n:])):
        padding = list(pads[:n]) if pads else 0
        return _CONV[n](x, w, b, list(strides or [1] * n), padding, list(dilations or [1] * n), group)
    return generic_nn.conv(
        ctx,
        x,
        w,
        b,
        auto_pad=auto_pad,
        dilations=dilations,
        group=group,
        kernel_shape=kernel_shape,
        pads=pads,
        strides=strides,
    )


@OVERRIDES.register("MaxPool", 12)
def max_pool(
    ctx: Context,
    x: torch.Tensor,
    *,
    auto_pad: str = "NOTSET",
    ceil_mode: int = 0,
    dilations: Sequence[int] | None = None,
    kernel_shape: Sequence[int] = (),
    pads: Sequence[int] | None = None,
    storage_order: int = 0,
    strides: Sequence[int] | None = None,
) -> torch.Tensor:
    n = len(kernel_shape)
    simple = auto_pad == "NOTSET" and not ceil_mode and (not pads or not any(pads)) and n <= 3
    if simple:
        return _MAX_POOL[n](x, list(kernel_shape), list(strides or [1] * n), 0, list(dilations or [1] * n))
    return generic_nn.max_pool(
        ctx,
        x,
        auto_pad=auto_pad,
        ceil_mode=ceil_mode,
        dilations=dilations,
        kernel_shape=kernel_shape,
        pads=pads,
        strides=strides,
    )


BACKEND = TorchBackend()
