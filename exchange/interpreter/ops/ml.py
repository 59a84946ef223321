"""Operators of the ``ai.onnx.ml`` domain that skl2onnx emits around numeric models.

Only the numeric ones are here; string-valued operators (``LabelEncoder`` with string labels,
``ZipMap``) have no array-API equivalent and are reported by ``missing_ops``.
"""

from __future__ import annotations

from flonnx.exchange.interpreter._context import Context
from flonnx.exchange.interpreter._registry import ML_DOMAIN, op
from flonnx.exchange.interpreter.ops._common import Array


@op("ArrayFeatureExtractor", domain=ML_DOMAIN)
def array_feature_extractor(ctx: Context, x: Array, indices: Array) -> Array:
    """ONNX ``ai.onnx.ml::ArrayFeatureExtractor`` from opset 1."""
    xp = ctx.xp
    flat = xp.reshape(indices, (-1,))
    taken = xp.take(x, flat, axis=x.ndim - 1)
    # ONNX Runtime returns a row ([1, k]) for a 1-D input; skl2onnx's label path relies on it.
    return xp.reshape(taken, (1, -1)) if x.ndim == 1 else taken


@op("Binarizer", domain=ML_DOMAIN)
def binarizer(ctx: Context, x: Array, *, threshold: float = 0.0) -> Array:
    """ONNX ``ai.onnx.ml::Binarizer`` from opset 1."""
    xp = ctx.xp
    return xp.astype(x > threshold, x.dtype)


@op("Normalizer", domain=ML_DOMAIN)
def normalizer(ctx: Context, x: Array, *, norm: str = "MAX") -> Array:
    """ONNX ``ai.onnx.ml::Normalizer`` from opset 1."""
    xp = ctx.xp
    if norm == "L1":
        return x / xp.sum(xp.abs(x), axis=-1, keepdims=True)
    if norm == "L2":
        return x / xp.sqrt(xp.sum(x * x, axis=-1, keepdims=True))
    return x / xp.max(x, axis=-1, keepdims=True)
