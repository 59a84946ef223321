"""Training-step time: native PyTorch vs the flonnx interpreter (torch backend, jitted JAX).

One step = forward + backward + Adam update, batch 32, digits-sized inputs:
  * MLP 64 -> 32 -> 10 with ReLU;
  * small CNN on 1x8x8 images: Conv + BatchNorm + ReLU + MaxPool + Flatten + Linear.
The interpreter runs the ONNX export of the same module (dynamo exporter, ``optimize=False``) in
training mode, so BatchNorm uses batch statistics and its running stats are carried as state.

B6 of the suite: ``python -m benchmarks run --quick --only B6`` (:func:`run`, JSON in
``benchmarks/results/b6_interpreter.json``, a section of ``docs/benchmarks.md``). Standalone, it
prints the table: ``python benchmarks/interpreter_speed.py [--steps 300] [--repeats 7]``.
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
TARGET = 1.25  # torch interpreter step time <= 1.25x native
DESCRIPTIONS = {
    "mlp": "MLP 64-32-10, ReLU",
    "cnn": "Conv3x3(1->8) + BatchNorm + ReLU + MaxPool2 + Flatten + Linear(128->10), 1x8x8 input",
}


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
        program = torch.onnx.export(
            module.eval(),
            (x,),
            dynamo=True,
            optimize=False,
            dynamic_shapes=({0: torch.export.Dim("batch", min=2)},),
        )
    assert program is not None  # dynamo=True always returns the program
    return program.model_proto


def time_steps(
    runners: dict[str, tuple[Callable[[], None], Callable[[], None]]], steps: int, repeats: int,
    cpu: dict[str, float] | None = None,
) -> dict[str, float]:
    """Median over ``repeats`` of the mean wall time per step (microseconds), per runner.

    The runners take turns within each repeat, so a change in machine load hits all of them.
    ``cpu``, if given, receives the same medians of the process's CPU time per step (all its
    threads), which other jobs on a shared machine inflate less than wall time.
    """
    for step, sync in runners.values():
        for _ in range(20):
            step()
        sync()
    results: dict[str, list[float]] = {name: [] for name in runners}
    cpu_results: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, (step, sync) in runners.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(steps):
                step()
            sync()
            results[name].append((time.perf_counter() - start) / steps * 1e6)
            cpu_results[name].append((time.process_time() - start_cpu) / steps * 1e6)
    if cpu is not None:
        cpu.update({name: statistics.median(times) for name, times in cpu_results.items()})
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


def _has_jax() -> bool:
    return importlib.util.find_spec("jax") is not None and importlib.util.find_spec("optax") is not None


def measure(module: nn.Module, shape: tuple[int, ...], steps: int, repeats: int,
            cpu: dict[str, float] | None = None) -> dict[str, float]:
    """Microseconds per step of each runner (native, interp, and jax if installed) for one module."""
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
    if _has_jax():
        runners["jax"] = jax_step(module, model, x_np, y_np.astype(np.int32))
    return time_steps(runners, steps, repeats, cpu)


def run(quick: bool, steps: int | None = None, repeats: int | None = None, threads: int = 1
        ) -> dict[str, Any]:
    """B6: milliseconds per training step of each model and runner, and the ratios to native torch.

    ``quick``: 100 steps x 5 repeats per runner (the export and JAX's compilation dominate);
    otherwise 300 x 7. Wall and CPU milliseconds per step. Torch runs with ``threads`` intra-op
    threads (restored afterwards).
    """
    from importlib import metadata

    steps = steps or (100 if quick else 300)
    repeats = repeats or (5 if quick else 7)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    rows = []
    try:
        for name, (module, shape) in make_models().items():
            cpu: dict[str, float] = {}
            t = measure(module, shape, steps, repeats, cpu)
            native = t["native"] / 1e3
            row: dict[str, Any] = {
                "model": name, "description": DESCRIPTIONS[name],
                "parameters": sum(p.numel() for p in module.parameters()),
                "native_ms": native, "torch_interpreter_ms": t["interp"] / 1e3,
                "torch_ratio": t["interp"] / t["native"],
                "jax_jit_interpreter_ms": t["jax"] / 1e3 if "jax" in t else None,
                "jax_ratio": t["jax"] / t["native"] if "jax" in t else None,
                "cpu_ms": {k: v / 1e3 for k, v in cpu.items()},
                "torch_cpu_ratio": cpu["interp"] / cpu["native"],
            }
            rows.append(row)
            print(f"  B6 {name}: native {native:.3f} ms, torch interpreter "
                  f"{row['torch_interpreter_ms']:.3f} ms ({row['torch_ratio']:.2f}x)", flush=True)
    finally:
        torch.set_num_threads(previous)
    versions = {}
    for package in ("torch", "jax", "optax"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {"batch": BATCH, "steps": steps, "repeats": repeats, "threads": threads,
            "target_ratio": TARGET, "versions": versions, "models": rows}


def main(argv: list[str] | None = None) -> None:
    """Print one row per model: microseconds per step and the ratio to native torch."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (1: tiny ops, no spinning)"
    )
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, threads {args.threads}, batch {BATCH}")
    result = run(False, args.steps, args.repeats, args.threads)
    print(f"{'model':6} {'native torch':>14} {'torch interp':>14} {'ratio':>6} {'jax jit interp':>15}")
    for row in result["models"]:
        jax = row["jax_jit_interpreter_ms"]
        jax_cell = f"{1e3 * jax:12.1f} us" if jax is not None else "n/a"
        native, interp = 1e3 * row["native_ms"], 1e3 * row["torch_interpreter_ms"]
        ratio = row["torch_ratio"]
        print(f"{row['model']:6} {native:11.1f} us {interp:11.1f} us {ratio:6.2f} {jax_cell:>15}")


if __name__ == "__main__":
    main()
