"""Training-step time: native PyTorch vs the flonnx interpreter (torch backend, jitted JAX).

One step = forward + backward + Adam update, batch 32, digits-sized inputs:
  * MLP 64 -> 32 -> 10 with ReLU;
  * small CNN on 1x8x8 images: Conv + BatchNorm + ReLU + MaxPool + Flatten + Linear.
The interpreter runs the ONNX export of the same module (dynamo exporter, ``optimize=False``) in
training mode, so BatchNorm uses batch statistics and its running stats are carried as state.

Run: ``python benchmarks/interpreter_speed.py [--steps 300] [--repeats 5]``
This is a measurement, not a test; the target is torch interpreter <= 1.25x native.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import io
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from flonnx.exchange.interpreter import Program

BATCH = 32


def make_models() -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    """The two benchmark modules and their input shapes (without the batch axis)."""
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    cnn = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 10),
    )
    return {"mlp": (mlp, (64,)), "cnn": (cnn, (1, 8, 8))}


def export(module: nn.Module, shape: tuple[int, ...]) -> Any:
    """ONNX export as flonnx makes it (eval mode, unoptimised, dynamic batch)."""
    x = torch.zeros((BATCH, *shape))
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        return torch.onnx.export(
            module.eval(),
            (x,),
            dynamo=True,
            optimize=False,
            dynamic_shapes=({0: torch.export.Dim("batch", min=2)},),
        ).model_proto


def time_steps(
    runners: dict[str, tuple[Callable[[], None], Callable[[], None]]], steps: int, repeats: int
) -> dict[str, float]:
    """Median over ``repeats`` of the mean time per step (microseconds), per runner.

    The runners take turns within each repeat, so a change in machine load hits all of them.
    """
    for step, sync in runners.values():
        for _ in range(20):
            step()
        sync()
    results: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, (step, sync) in runners.items():
            start = time.perf_counter()
            for _ in range(steps):
                step()
            sync()
            results[name].append((time.perf_counter() - start) / steps * 1e6)
    return {name: statistics.median(times) for name, times in results.items()}


def native_step(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    """A native nn.Module training step."""
    module.train()
    opt = torch.optim.Adam(module.parameters(), lr=1e-3)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(module(x), y)
        loss.backward()
        opt.step()

    return step


def interpreter_step(module: nn.Module, model: Any, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    """The same step through the torch backend of the interpreter."""
    program = Program(model, "torch")
    trainable = {k for k, _ in module.named_parameters()}
    params = {
        k: v.detach().clone().requires_grad_(k in trainable)
        for k, v in module.state_dict().items()
        if k in program.initializers
    }
    opt = torch.optim.Adam([params[k] for k in trainable], lr=1e-3)
    (output,) = program.output_names
    inputs = {program.input_names[0]: x}

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        outputs, state = program.run(params, inputs, training=True)
        loss = nn.functional.cross_entropy(outputs[output], y)
        loss.backward()
        opt.step()
        params.update(state)

    return step


def jax_step(
    module: nn.Module, model: Any, x: np.ndarray, y: np.ndarray
) -> tuple[Callable[[], None], Callable[[], None]]:
    """The same step with jax.grad + optax.adam through the jax backend, jitted."""
    import jax
    import jax.numpy as jnp
    import optax

    program = Program(model, "jax")
    trainable = {k for k, _ in module.named_parameters()}
    weights = {
        k: jnp.asarray(v.detach().numpy())
        for k, v in module.state_dict().items()
        if k in program.initializers
    }
    params = {k: v for k, v in weights.items() if k in trainable}
    buffers = {k: v for k, v in weights.items() if k not in trainable}
    tx = optax.adam(1e-3)
    (output,) = program.output_names
    name = program.input_names[0]
    xb, yb = jnp.asarray(x), jnp.asarray(y)

    def loss_fn(p: Any, b: Any) -> tuple[Any, Any]:
        outputs, state = program.run({**p, **b}, {name: xb}, training=True)
        logits = outputs[output]
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean(), state

    @jax.jit
    def train(p: Any, b: Any, s: Any) -> tuple[Any, Any, Any]:
        grads, state = jax.grad(loss_fn, has_aux=True)(p, b)
        updates, s = tx.update(grads, s, p)
        return optax.apply_updates(p, updates), {**b, **state}, s

    carry = [params, buffers, tx.init(params)]

    def step() -> None:
        carry[0], carry[1], carry[2] = train(*carry)

    return step, lambda: jax.block_until_ready(carry[0])


def main() -> None:
    """Print one row per model: microseconds per step and the ratio to native torch."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (1: tiny ops, no spinning)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    has_jax = importlib.util.find_spec("jax") is not None and importlib.util.find_spec("optax") is not None
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {BATCH}")
    print(f"{'model':6} {'native torch':>14} {'torch interp':>14} {'ratio':>6} {'jax jit interp':>15}")
    for name, (module, shape) in make_models().items():
        rng = np.random.default_rng(0)
        x_np = rng.standard_normal((BATCH, *shape)).astype(np.float32)
        y_np = rng.integers(0, 10, BATCH).astype(np.int64)
        x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
        model = export(module, shape)

        def no_sync() -> None:  # torch CPU ops are synchronous
            return None

        runners = {
            "native": (native_step(copy.deepcopy(module), x, y), no_sync),
            "interp": (interpreter_step(copy.deepcopy(module), model, x, y), no_sync),
        }
        if has_jax:
            runners["jax"] = jax_step(module, model, x_np, y_np.astype(np.int32))
        t = time_steps(runners, args.steps, args.repeats)
        jax_cell = f"{t['jax']:12.1f} us" if has_jax else "n/a"
        ratio = t["interp"] / t["native"]
        print(f"{name:6} {t['native']:11.1f} us {t['interp']:11.1f} us {ratio:6.2f} {jax_cell:>15}")


if __name__ == "__main__":
    main()
