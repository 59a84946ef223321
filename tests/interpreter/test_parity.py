"""Every backend computes what ONNX Runtime computes on exported models."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest

from flonnx.exchange.interpreter import Program, missing_ops
from flonnx.exchange.interpreter.backend import load_backend
from tests.interpreter._models import example_input


def _compare_with_onnxruntime(model: onnx.ModelProto, feeds: dict[str, np.ndarray], backend: str) -> None:
    ort = pytest.importorskip("onnxruntime", reason="the reference is ONNX Runtime")
    reference = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = dict(zip([o.name for o in reference.get_outputs()], reference.run(None, feeds), strict=True))
    be = load_backend(backend)

    outputs, _ = Program(model, backend).run({}, {k: be.asarray(v) for k, v in feeds.items()})

    assert set(outputs) == set(expected)
    for name, ref in expected.items():
        got = be.to_numpy(outputs[name])
        assert got.shape == ref.shape, name
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_torch_exports_match_onnxruntime(torch_exports: dict[str, Any], name: str, backend: str) -> None:
    _, model = torch_exports[name]

    _compare_with_onnxruntime(model, {"x": example_input(name, batch=5, seed=7)}, backend)


@pytest.mark.parametrize("name", ["mlp", "logreg", "logreg_binary"])
def test_sklearn_exports_match_onnxruntime(
    sklearn_exports: dict[str, onnx.ModelProto], name: str, backend: str
) -> None:
    x = np.random.default_rng(0).uniform(0, 16, (6, 64)).astype(np.float32)

    _compare_with_onnxruntime(sklearn_exports[name], {"X": x}, backend)


def test_sklearn_linear_classifier_without_black_op_is_reported_missing(
    sklearn_exports: dict[str, onnx.ModelProto],
) -> None:
    assert missing_ops(sklearn_exports["logreg_native"], "numpy") == [("ai.onnx.ml", "LinearClassifier", 1)]
