"""BatchNormalization trains like ``nn.BatchNorm2d``: batch statistics and running-stat updates."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from flonnx.exchange.interpreter import Program
from flonnx.exchange.interpreter.backend import load_backend

MOMENTUM_TORCH = 0.1


def _bn_model(training_outputs: bool = False) -> Any:
    rng = np.random.default_rng(1)
    inits = {
        "bn.weight": rng.standard_normal(3).astype(np.float32),
        "bn.bias": rng.standard_normal(3).astype(np.float32),
        "bn.running_mean": rng.standard_normal(3).astype(np.float32),
        "bn.running_var": rng.uniform(0.5, 2.0, 3).astype(np.float32),
    }
    outputs = ["y", "new_mean", "new_var"] if training_outputs else ["y"]
    node = helper.make_node(
        "BatchNormalization",
        ["x", *inits],
        outputs,
        epsilon=1e-5,
        momentum=1 - MOMENTUM_TORCH,  # ONNX momentum weights the old value
        training_mode=int(training_outputs),
    )
    graph = helper.make_graph(
        [node],
        "bn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, 4, 4])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])


def _torch_train_step(model: Any, x: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    torch = pytest.importorskip("torch", reason="the reference is torch's nn.BatchNorm2d")
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    bn = torch.nn.BatchNorm2d(3, eps=1e-5, momentum=MOMENTUM_TORCH)
    bn.load_state_dict(
        {k.removeprefix("bn."): torch.from_numpy(v.copy()) for k, v in inits.items()}, strict=False
    )
    y = bn.train()(torch.from_numpy(x)).detach().numpy()
    return y, {"bn.running_mean": bn.running_mean.numpy(), "bn.running_var": bn.running_var.numpy()}


def test_training_run_updates_running_stats_like_torch_batchnorm2d(backend: str) -> None:
    model = _bn_model()
    x = np.random.default_rng(2).standard_normal((5, 3, 4, 4)).astype(np.float32)
    ref_y, ref_state = _torch_train_step(model, x)
    be = load_backend(backend)

    outputs, state = Program(model, backend).run({}, {"x": be.asarray(x)}, training=True)

    np.testing.assert_allclose(be.to_numpy(outputs["y"]), ref_y, rtol=1e-5, atol=1e-5)
    assert set(state) == set(ref_state)
    for name, value in ref_state.items():
        np.testing.assert_allclose(be.to_numpy(state[name]), value, rtol=1e-5, atol=1e-6)


def test_inference_run_uses_running_stats_and_returns_no_state(backend: str) -> None:
    model = _bn_model()
    x = np.random.default_rng(3).standard_normal((2, 3, 4, 4)).astype(np.float32)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    shape = (1, 3, 1, 1)
    expected = (x - inits["bn.running_mean"].reshape(shape)) / np.sqrt(
        inits["bn.running_var"].reshape(shape) + 1e-5
    ) * inits["bn.weight"].reshape(shape) + inits["bn.bias"].reshape(shape)
    be = load_backend(backend)

    outputs, state = Program(model, backend).run({}, {"x": be.asarray(x)})

    np.testing.assert_allclose(be.to_numpy(outputs["y"]), expected, rtol=1e-5, atol=1e-5)
    assert state == {}


def test_biased_option_updates_running_var_with_population_variance(backend: str) -> None:
    model = _bn_model()
    x = np.random.default_rng(4).standard_normal((5, 3, 4, 4)).astype(np.float32)
    old_var = numpy_helper.to_array(model.graph.initializer[3])
    expected = old_var * 0.9 + x.var(axis=(0, 2, 3)) * 0.1
    be = load_backend(backend)

    _, state = Program(model, backend, running_var="biased").run({}, {"x": be.asarray(x)}, training=True)

    np.testing.assert_allclose(be.to_numpy(state["bn.running_var"]), expected, rtol=1e-5, atol=1e-6)


def test_graph_declared_training_mode_outputs_follow_onnx_reference(backend: str) -> None:
    model = _bn_model(training_outputs=True)
    x = np.random.default_rng(5).standard_normal((5, 3, 4, 4)).astype(np.float32)
    old_mean = numpy_helper.to_array(model.graph.initializer[2])
    be = load_backend(backend)

    outputs, state = Program(model, backend).run({}, {"x": be.asarray(x)})

    expected_mean = old_mean * 0.9 + x.mean(axis=(0, 2, 3)) * 0.1
    np.testing.assert_allclose(be.to_numpy(outputs["new_mean"]), expected_mean, rtol=1e-5, atol=1e-6)
    assert state == {}
