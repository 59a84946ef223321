"""The model zoo: native PyTorch modules a federation spec can name (`model = "digits-mlp"`).

A scenario's initial definition is exported from one of these; a torch client that trains natively
rebuilds the same module from the name in the definition's ``flonnx.model`` metadata.
torch is imported inside the builders only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flonnx.exchange.errors import InvalidModel

if TYPE_CHECKING:
    import torch

__all__ = ["MODELS", "ModelSpec", "build", "model_spec"]


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


def _digits_cnn() -> torch.nn.Module:
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 16, kernel_size=3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 16 x 4 x 4
        nn.Conv2d(16, 32, kernel_size=3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 32 x 2 x 2
        nn.Flatten(),
        nn.Linear(128, 10),
    )


MODELS: dict[str, ModelSpec] = {
    "digits-mlp": ModelSpec("digits-mlp", _digits_mlp, (64,), "MLP 64->32->10, ReLU"),
    "digits-cnn": ModelSpec(
        "digits-cnn", _digits_cnn, (1, 8, 8),
        "CNN on 1x8x8: 2 x (Conv3x3 + BatchNorm + ReLU + MaxPool2), Linear 128->10",
    ),
}


def _mlp(widths: tuple[int, ...]) -> Callable[[], torch.nn.Module]:
    def builder() -> torch.nn.Module:
        from torch import nn

        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths, widths[1:], strict=False)):
            layers.append(nn.Linear(a, b))
            if i < len(widths) - 2:
                layers.append(nn.ReLU())
        return nn.Sequential(*layers)

    return builder


def model_spec(name: str) -> ModelSpec | None:
    """The zoo entry ``name``: a fixed entry, or ``mlp-IN-HIDDEN…-OUT`` (dense layers with ReLU)."""
    if name in MODELS:
        return MODELS[name]
    parts = name.split("-")
    if parts[0] == "mlp" and len(parts) >= 3 and all(p.isdigit() and 0 < int(p) <= 65536
                                                      for p in parts[1:]):
        widths = tuple(int(p) for p in parts[1:])
        return ModelSpec(name, _mlp(widths), (widths[0],),
                         "MLP " + "->".join(map(str, widths)) + ", ReLU")
    return None


def build(name: str) -> torch.nn.Module:
    """A fresh module of zoo entry ``name``."""
    spec = model_spec(name)
    if spec is None:
        raise InvalidModel(f"unknown model {name!r}; the zoo has {sorted(MODELS)} and mlp-IN-…-OUT")
    return spec.builder()
