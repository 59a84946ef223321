"""The model zoo: native PyTorch modules that scenarios start from.

A scenario's initial definition is exported from one of these; a torch client that trains natively
rebuilds the same module from the name in the definition's ``flonnx.model`` metadata.
torch is imported inside the builders only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from exchange.errors import InvalidModel

if TYPE_CHECKING:
    import torch

__all__ = ["MODELS", "ModelSpec", "build"]


@dataclass(frozen=True)
class ModelSpec:
    """A zoo entry: how to build the module and the shape of one input example."""

    name: str
    builder: Callable[[], torch.nn.Module]
    input_shape: tuple[int, ...]
    description: str


def _digits_mlp() -> torch.nn.Module:
    from torch import nn

    class DigitsMLP(nn.Module):
        """64 -> 32 (ReLU) -> 10 logits."""

        def __init__(self) -> None:
            super().__init__()
            self.fc1 = nn.Linear(64, 32)
            self.fc2 = nn.Linear(32, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc2(self.fc1(x).relu())

    return DigitsMLP()


MODELS: dict[str, ModelSpec] = {
    "digits-mlp": ModelSpec("digits-mlp", _digits_mlp, (64,), "MLP 64->32->10, ReLU"),
}


def build(name: str) -> torch.nn.Module:
    """A fresh module of zoo entry ``name``."""
    if name not in MODELS:
        raise InvalidModel(f"unknown model {name!r}; the zoo has {sorted(MODELS)}")
    return MODELS[name].builder()
