"""Shared test set-up: Flower offline and with a project-local home, small models on demand."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION", "1")
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
os.environ.setdefault("FLWR_HOME", str(ROOT / ".flwr-home"))


@pytest.fixture(scope="session")
def mlp_model():  # type: ignore[no-untyped-def]
    """The digits MLP exported from torch: (definition, weights)."""
    torch = pytest.importorskip("torch", reason="the torch exporter produces the reference MLP")
    from flonnx.exchange.adapters.torch_native import export_module
    from flonnx.exchange.zoo import build

    torch.manual_seed(0)
    return export_module(build("digits-mlp"), torch.zeros(2, 64), metadata={"flonnx.model": "digits-mlp"})
