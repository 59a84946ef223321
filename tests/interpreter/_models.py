"""Small PyTorch and scikit-learn models exported to ONNX for the interpreter tests.

Imported only by tests that have already checked torch (or sklearn) is installed.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from typing import Any

import numpy as np
import onnx


def torch_models() -> dict[str, Any]:
    """Fresh, seeded ``nn.Module``s: an MLP and a CNN with the layers flonnx must train."""
    import torch
    from torch import nn

    torch.manual_seed(0)

    class MLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = nn.Linear(64, 32)
            self.drop = nn.Dropout(0.2)
            self.fc2 = nn.Linear(32, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.log_softmax(self.fc2(self.drop(torch.relu(self.fc1(x)))), dim=1)

    class CNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 6, 3, padding=1)
            self.bn = nn.BatchNorm2d(6)
            self.pool = nn.MaxPool2d(2)
            self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
            self.avg = nn.AvgPool2d(2)
            self.gap = nn.AdaptiveAvgPool2d(1)
            self.drop = nn.Dropout(0.25)
            self.fc = nn.Linear(8 * 2 * 2 + 8, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.pool(torch.relu(self.bn(self.conv(x))))
            h = self.avg(torch.sigmoid(self.conv2(h)))
            g = self.gap(h).flatten(1)
            z = torch.cat([h.view(h.shape[0], -1), torch.tanh(g)], dim=1)
            return torch.log_softmax(self.fc(self.drop(z)), dim=1)

    return {"mlp": MLP(), "cnn": CNN()}


def example_input(name: str, batch: int = 8, seed: int = 0) -> np.ndarray:
    """A float32 batch shaped for the model ``name``."""
    rng = np.random.default_rng(seed)
    shape = (batch, 64) if name == "mlp" else (batch, 1, 8, 8)
    return rng.standard_normal(shape).astype(np.float32)


def export_torch(module: Any, x: np.ndarray) -> onnx.ModelProto:
    """Export as flonnx does: dynamo exporter, eval mode, no optimisation, dynamic batch."""
    import torch

    batch = torch.export.Dim("batch", min=2)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module.eval(),
            (torch.from_numpy(x),),
            dynamo=True,
            optimize=False,
            dynamic_shapes=({0: batch},),
        )
    return program.model_proto


def sklearn_models() -> dict[str, onnx.ModelProto]:
    """MLPClassifier and LogisticRegression on digits, exported as flonnx asks skl2onnx to."""
    from skl2onnx import to_onnx
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32)[:400]
    y = y[:400]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlp = MLPClassifier(hidden_layer_sizes=(16,), max_iter=20, random_state=0).fit(x, y)
        logreg = LogisticRegression(max_iter=50).fit(x, y)
        binary = LogisticRegression(max_iter=50).fit(x, y > 4)
        return {
            "mlp": to_onnx(mlp, x[:1], options={"zipmap": False}),
            "logreg": to_onnx(logreg, x[:1], options={"zipmap": False}, black_op={"LinearClassifier"}),
            "logreg_binary": to_onnx(binary, x[:1], options={"zipmap": False}, black_op={"LinearClassifier"}),
            "logreg_native": to_onnx(logreg, x[:1], options={"zipmap": False}),
        }
