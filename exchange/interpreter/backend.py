"""The backend interface: what an array library must provide beyond the array API.

The ONNX operators in :mod:`flonnx.exchange.interpreter.ops` are written once against an array-API
namespace ``xp``. The few things the array API has no word for (convolution, windowed pooling,
random numbers, ``erf``, ``einsum``) are methods of a :class:`Backend`, and a backend may also
override whole operators where its own library has a faster or more exact kernel.

Backends are looked up by name and their modules imported lazily, so importing
:mod:`flonnx.exchange.interpreter` never imports torch or jax.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from typing import Any

import numpy as np

from flonnx.exchange.interpreter._registry import OpTable

__all__ = ["Backend", "BACKEND_MODULES", "available_backends", "load_backend"]

#: Backend name -> (module defining ``BACKEND``, library that module needs).
BACKEND_MODULES: dict[str, tuple[str, str]] = {
    "numpy": ("flonnx.exchange.interpreter.numpy_backend", "numpy"),
    "torch": ("flonnx.exchange.interpreter.torch_backend", "torch"),
    "jax": ("flonnx.exchange.interpreter.jax_backend", "jax"),
}

Array = Any


class Backend:
    """Base class of the array-library bindings.

    Attributes:
        name: The name users pass to ``Program(backend=...)``.
        xp: The array-API namespace the generic operators use.
        overrides: Operators this backend implements itself (consulted before the generic table).
        traceable: Values may be tracers (jax.jit): never convert a dynamic value to numpy.
    """

    name: str = "abstract"
    xp: Any = None
    overrides: OpTable = OpTable()
    traceable: bool = False

    def asarray(self, value: np.ndarray) -> Array:
        """Convert a numpy array (a constant of the model) to a backend array."""
        raise NotImplementedError

    def to_numpy(self, value: Array) -> np.ndarray:
        """Convert a backend array to numpy (used for shape-like values only)."""
        raise NotImplementedError

    def dtype(self, np_dtype: np.dtype) -> Any:
        """The backend dtype corresponding to a numpy dtype."""
        raise NotImplementedError

    def make_rng(self, rng: Any) -> Any:
        """Normalise the user's ``rng`` argument (seed, generator or key) for :meth:`uniform`."""
        return rng

    def uniform(self, ctx: Any, shape: tuple[int, ...], dtype: Any) -> Array:
        """Uniform [0, 1) samples for dropout masks; ``ctx.rng`` holds the state."""
        raise NotImplementedError

    def stop_gradient(self, value: Array) -> Array:
        """``value`` cut off from autodiff (running statistics are state, not outputs to train)."""
        raise NotImplementedError

    def conv(
        self,
        x: Array,
        w: Array,
        *,
        strides: Sequence[int],
        dilations: Sequence[int],
        pads_begin: Sequence[int],
        pads_end: Sequence[int],
        group: int,
    ) -> Array:
        """N-d cross-correlation, channels first, weights ``[O, I/group, *kernel]``, no bias."""
        raise NotImplementedError

    def pool(
        self,
        x: Array,
        *,
        kind: str,
        kernel: Sequence[int],
        strides: Sequence[int],
        dilations: Sequence[int],
        pads_begin: Sequence[int],
        pads_end: Sequence[int],
    ) -> Array:
        """Window reduction over the trailing spatial axes.

        ``kind`` is ``"max"`` (padding counts as -inf) or ``"sum"`` (padding counts as 0).
        """
        raise NotImplementedError

    def erf(self, x: Array) -> Array:
        """The error function, elementwise."""
        raise NotImplementedError

    def einsum(self, equation: str, *operands: Array) -> Array:
        """Einstein summation."""
        raise NotImplementedError


def available_backends() -> list[str]:
    """Names of the backends whose array library is installed (without importing it).

    Returns:
        Sorted backend names, e.g. ``["jax", "numpy", "torch"]``.
    """
    return sorted(name for name, (_, lib) in BACKEND_MODULES.items() if _installed(lib))


def _installed(lib: str) -> bool:
    try:
        return importlib.util.find_spec(lib) is not None
    except (ImportError, ValueError):  # a broken or deliberately blocked install
        return False


def load_backend(name: str) -> Backend:
    """Import and return the backend called ``name``.

    Raises:
        ValueError: The name is unknown or its library is not installed.
    """
    if name not in BACKEND_MODULES:
        raise ValueError(f"unknown backend {name!r}; expected one of {sorted(BACKEND_MODULES)}")
    module_name, lib = BACKEND_MODULES[name]
    if not _installed(lib):
        raise ValueError(f"backend {name!r} needs {lib!r}, which is not installed")
    backend: Backend = importlib.import_module(module_name).BACKEND
    return backend
