"""Gradients through the interpreter equal the native framework's gradients.

The models are exported from PyTorch; flonnx trains the exported graph with the interpreter, so
its gradients must equal those of the original ``nn.Module`` (torch backend) and the same numbers
must come out of ``jax.grad`` (jax backend, jitted).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from flonnx.exchange.interpreter import Program
from tests.interpreter._models import example_input
from tests.interpreter.conftest import require_backend

TOL = 1e-5
LABELS = np.array([0, 1, 2, 3, 4, 5, 6, 7], dtype=np.int64)


def _native_step(module: Any, x: np.ndarray, training: bool) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Loss, gradients and buffers after one forward/backward of the native module."""
    import torch

    native = copy.deepcopy(module)
    native.train(training)
    if training:
        native.drop.p = 0.0  # the eval-mode export has no Dropout node to mirror the mask
    out = native(torch.from_numpy(x))
    loss = torch.nn.functional.nll_loss(out, torch.from_numpy(LABELS))
    loss.backward()
    grads = {k: p.grad.detach().clone() for k, p in native.named_parameters()}
    buffers = {k: b.detach().clone() for k, b in native.named_buffers() if "running" in k}
    return out.detach(), grads, buffers


@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_torch_backend_gradients_equal_native_module(
    torch_exports: dict[str, Any], name: str, training: bool
) -> None:
    import torch

    module, model = torch_exports[name]
    x = example_input(name)
    ref_out, ref_grads, ref_buffers = _native_step(module, x, training)
    program = Program(model, "torch")
    trainable = {k for k, _ in module.named_parameters()}
    params = {
        k: v.detach().clone().requires_grad_(k in trainable)
        for k, v in module.state_dict().items()
        if k in program.initializers
    }

    outputs, state = program.run(params, {"x": torch.from_numpy(x)}, training=training)
    (out,) = outputs.values()
    torch.nn.functional.nll_loss(out, torch.from_numpy(LABELS)).backward()

    torch.testing.assert_close(out.detach(), ref_out, rtol=TOL, atol=TOL)
    assert set(ref_grads) == {k for k in params if params[k].requires_grad}
    for k, grad in ref_grads.items():
        torch.testing.assert_close(params[k].grad, grad, rtol=TOL, atol=TOL, msg=k)
    if training and ref_buffers:
        assert set(state) == set(ref_buffers)
        for k, value in ref_buffers.items():
            torch.testing.assert_close(state[k], value, rtol=TOL, atol=TOL, msg=k)
    else:
        assert state == {}


@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_jitted_jax_grad_equals_torch_gradients(
    torch_exports: dict[str, Any], name: str, training: bool
) -> None:
    require_backend("jax")
    import jax
    import jax.numpy as jnp

    module, model = torch_exports[name]
    x = example_input(name)
    _, ref_grads, ref_buffers = _native_step(module, x, training)
    program = Program(model, "jax")
    weights = {k: v.detach().numpy() for k, v in module.state_dict().items() if k in program.initializers}
    trainable = {k: jnp.asarray(v) for k, v in weights.items() if k in ref_grads}
    buffers = {k: jnp.asarray(v) for k, v in weights.items() if k not in ref_grads}
    labels = jnp.asarray(LABELS)

    def loss(params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        outputs, state = program.run({**params, **buffers}, {"x": jnp.asarray(x)}, training=training)
        (logp,) = outputs.values()
        return -jnp.mean(logp[jnp.arange(logp.shape[0]), labels]), state

    grads, state = jax.jit(jax.grad(loss, has_aux=True))(trainable)

    assert set(grads) == set(ref_grads)
    for k, grad in ref_grads.items():
        np.testing.assert_allclose(np.asarray(grads[k]), grad.numpy(), rtol=1e-4, atol=TOL, err_msg=k)
    if training and ref_buffers:
        for k, value in ref_buffers.items():
            np.testing.assert_allclose(np.asarray(state[k]), value.numpy(), rtol=1e-4, atol=TOL, err_msg=k)
