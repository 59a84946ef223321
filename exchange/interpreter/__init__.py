"""A trainable ONNX interpreter over numpy, PyTorch and JAX arrays.

A flonnx client whose framework did not produce a model still trains it: :class:`Program` runs the
ONNX graph with the framework's own arrays, so its autodiff (``torch.autograd``, ``jax.grad``)
flows through the initializers. See ``docs/interpreter.md``.

Example:
    >>> prog = Program(model, backend="torch")
    >>> outputs, state = prog.run(params, {"x": batch}, training=True, rng=0)
"""

from flonnx.exchange.interpreter.backend import available_backends
from flonnx.exchange.interpreter.program import Program, missing_ops

__all__ = ["Program", "available_backends", "missing_ops"]
