"""Fixtures for the interpreter tests: installed backends and exported models (built once)."""

from __future__ import annotations

import importlib.util
from typing import Any

import onnx
import pytest

from flonnx.exchange.interpreter import available_backends

ALL_BACKENDS = ("numpy", "torch", "jax")


def require_backend(name: str) -> None:
    """Skip the calling test, with the reason, if ``name``'s library is not installed."""
    if name not in available_backends():
        pytest.skip(f"backend {name!r} is not installed")


@pytest.fixture(params=ALL_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each backend in turn (skipped when its library is missing)."""
    require_backend(request.param)
    return str(request.param)


@pytest.fixture(scope="session")
def torch_exports() -> dict[str, tuple[Any, onnx.ModelProto]]:
    """name -> (native module, its ONNX export) for the MLP and the CNN."""
    pytest.importorskip("torch", reason="exporting the test models needs torch")
    pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript")
    from tests.interpreter._models import example_input, export_torch, torch_models

    return {name: (m, export_torch(m, example_input(name))) for name, m in torch_models().items()}


@pytest.fixture(scope="session")
def sklearn_exports() -> dict[str, onnx.ModelProto]:
    """name -> skl2onnx export of a fitted digits classifier."""
    if importlib.util.find_spec("sklearn") is None or importlib.util.find_spec("skl2onnx") is None:
        pytest.skip("sklearn and skl2onnx are needed for the sklearn exports")
    from tests.interpreter._models import sklearn_models

    return sklearn_models()
