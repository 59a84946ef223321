"""The generic operator implementations, written once against the array API.

Importing this package fills :data:`flonnx.exchange.interpreter._registry.GENERIC`.
"""

from flonnx.exchange.interpreter.ops import elementwise, ml, nn, reduce, shape

__all__ = ["elementwise", "ml", "nn", "reduce", "shape"]
