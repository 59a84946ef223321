"""Train any supported definition in JAX: the flonnx interpreter's jax backend, optax Adam, jit.

There is no native JAX model: the ONNX graph itself is executed with ``jax.numpy`` and differentiated
with ``jax.grad``, so parameters are exactly the definition's initializers (names and ONNX layouts).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from client.trainers import TrainConfig, TrainResult
from exchange.definition import Definition
from exchange.interpreter import Program
from exchange.parity import check_parity
from exchange.task import classifier_output

__all__ = ["TRAINER", "JaxTrainer"]

#: Compiled programs and steps per (definition id, learning rate, mu): Ray actors keep them across rounds.
_CACHE: dict[tuple[str, float, float], tuple[Program, list[str], list[str], Callable[..., Any], Any]] = {}


def _compile(
    definition: Definition, weights: Mapping[str, np.ndarray], learning_rate: float, mu: float
) -> tuple[Program, list[str], list[str], Callable[..., Any], Any]:
    key = (definition.id, learning_rate, mu)
    if key in _CACHE:
        return _CACHE[key]
    program = Program(definition.materialize(weights), backend="jax")
    input_name, target = definition.input_names[0], classifier_output(definition)
    # Which initializers are state (e.g. BatchNorm running statistics) rather than parameters:
    # those a training-mode run returns as updated state.
    probe = {input_name: jnp.zeros((2, *program_input_shape(definition)), jnp.float32)}
    _, state = program.run({k: jnp.asarray(v) for k, v in weights.items()}, probe, training=True,
                           rng=jax.random.PRNGKey(0))
    state_names = sorted(state)
    param_names = sorted(n for n in definition.specs if n not in state)
    optimizer = optax.adam(learning_rate)

    def loss_fn(params: dict[str, Any], state: dict[str, Any], anchor: dict[str, Any],
                x: Any, y: Any, key: Any) -> tuple[Any, dict[str, Any]]:
        outputs, new_state = program.run({**params, **state}, {input_name: x}, training=True, rng=key)
        out = outputs[target.name]
        if target.probabilities:
            log_p = jnp.log(jnp.clip(out, 1e-12, None))
            loss = -jnp.take_along_axis(log_p, y[:, None], axis=1).mean()
        else:
            loss = optax.softmax_cross_entropy_with_integer_labels(out, y).mean()
        if mu:
            loss = loss + 0.5 * mu * sum(jnp.sum((params[k] - anchor[k]) ** 2) for k in params)
        return loss, {**state, **new_state}

    @jax.jit
    def step(params: dict[str, Any], state: dict[str, Any], opt_state: Any, anchor: dict[str, Any],
             x: Any, y: Any, key: Any) -> tuple[Any, ...]:
        (loss, new_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, state, anchor, x, y, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_state, opt_state, loss

    _CACHE[key] = (program, param_names, state_names, step, optimizer)
    return _CACHE[key]


def program_input_shape(definition: Definition) -> tuple[int, ...]:
    """The per-example shape of the definition's data input (dimensions after the batch)."""
    value = next(v for v in definition.proto.graph.input if v.name == definition.input_names[0])
    return tuple(d.dim_value for d in value.type.tensor_type.shape.dim[1:])


class JaxTrainer:
    """Adam (optax) on cross-entropy through the interpreter; FedProx via ``proximal-mu``."""

    name = "jax"

    def version(self) -> str:
        """The installed JAX version."""
        return str(jax.__version__)

    def train(
        self,
        definition: Definition,
        weights: Mapping[str, np.ndarray],
        x: np.ndarray,
        y: np.ndarray,
        config: TrainConfig,
    ) -> TrainResult:
        """Check parity with ONNX Runtime, train ``local_epochs`` epochs, return weights."""
        program, param_names, state_names, step, optimizer = _compile(
            definition, weights, config.learning_rate, config.proximal_mu)
        input_name = definition.input_names[0]
        every = {k: jnp.asarray(v) for k, v in weights.items()}

        def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            outputs, _ = program.run(every, {input_name: jnp.asarray(inputs[input_name])})
            return {name: np.asarray(value) for name, value in outputs.items()}

        parity = check_parity(definition, weights, run, framework="jax", seed=config.seed)
        params = {k: every[k] for k in param_names}
        state = {k: every[k] for k in state_names}
        anchor = dict(params)
        opt_state = optimizer.init(params)
        rng = np.random.default_rng(config.seed)
        key = jax.random.PRNGKey(config.seed)
        xs, ys = np.asarray(x, np.float32), np.asarray(y, np.int32)
        losses: list[Any] = []
        for _ in range(config.local_epochs):
            losses = []
            order = rng.permutation(len(xs))
            for start in range(0, len(xs), config.batch_size):
                idx = order[start : start + config.batch_size]
                key, sub = jax.random.split(key)
                params, state, opt_state, loss = step(params, state, opt_state, anchor,
                                                      jnp.asarray(xs[idx]), jnp.asarray(ys[idx]), sub)
                losses.append(loss)
        new = {**params, **state}
        out = {k: np.asarray(new[k], dtype=definition.specs[k].dtype) for k in definition.specs}
        return TrainResult(
            weights=out,
            num_examples=len(xs),
            metrics={"train-loss": float(np.mean([float(v) for v in losses])) if losses else 0.0,
                     "parity-max-abs": parity.max_abs},
        )


TRAINER = JaxTrainer()
