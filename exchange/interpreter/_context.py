"""Per-run context handed to every operator as its first argument."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flonnx.exchange.interpreter.backend import Backend

__all__ = ["Context"]


@dataclass(slots=True)
class Context:
    """What an operator needs besides its inputs and attributes.

    Attributes:
        be: The backend (conv, pooling, random numbers, dtype mapping).
        xp: The backend's array-API namespace (``be.xp``), here for brevity.
        training: Training semantics: batch statistics in BatchNormalization, active Dropout.
        rng: Backend random state from :meth:`Backend.make_rng` (None when not training).
        unbiased_running_var: Update BatchNormalization's running variance with the unbiased
            batch variance (PyTorch's convention) instead of the biased one (the ONNX reference).
    """

    be: Backend
    xp: Any
    training: bool = False
    rng: Any = None
    unbiased_running_var: bool = True
