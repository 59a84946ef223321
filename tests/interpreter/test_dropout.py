"""Dropout is the identity in inference and a seeded, rescaled mask in training."""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from flonnx.exchange.interpreter import Program
from flonnx.exchange.interpreter.backend import load_backend


def _dropout_model(ratio: float = 0.5) -> Any:
    graph = helper.make_graph(
        [helper.make_node("Dropout", ["x", "ratio"], ["y"])],
        "dropout",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64, 64])],
        [numpy_helper.from_array(np.array(ratio, np.float32), "ratio")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _rng(backend: str, seed: int) -> Any:
    if backend == "jax":
        import jax

        return jax.random.key(seed)
    return seed


def test_inference_dropout_is_identity(backend: str) -> None:
    be = load_backend(backend)
    x = np.ones((64, 64), np.float32)

    outputs, _ = Program(_dropout_model(), backend).run({}, {"x": be.asarray(x)})

    np.testing.assert_array_equal(be.to_numpy(outputs["y"]), x)


def test_training_dropout_zeroes_about_ratio_and_rescales_survivors(backend: str) -> None:
    be = load_backend(backend)
    program = Program(_dropout_model(0.25), backend)

    y = be.to_numpy(
        program.run({}, {"x": be.asarray(np.ones((64, 64), np.float32))}, True, _rng(backend, 3))[0]["y"]
    )

    assert 0.2 < np.mean(y == 0) < 0.3
    np.testing.assert_allclose(y[y != 0], 1 / 0.75, rtol=1e-6)


def test_training_dropout_is_reproducible_per_seed(backend: str) -> None:
    be = load_backend(backend)
    program = Program(_dropout_model(), backend)
    x = be.asarray(np.ones((64, 64), np.float32))

    first = be.to_numpy(program.run({}, {"x": x}, True, _rng(backend, 1))[0]["y"])
    again = be.to_numpy(program.run({}, {"x": x}, True, _rng(backend, 1))[0]["y"])
    other = be.to_numpy(program.run({}, {"x": x}, True, _rng(backend, 2))[0]["y"])

    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
