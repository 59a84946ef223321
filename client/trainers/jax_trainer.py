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

from flonnx.client.trainers import TrainConfig, TrainResult
from flonnx.client.trainers._loop import Objective, jax_ops, objective, proximal_term, task_loss, train_loop
from flonnx.exchange.definition import Definition
from flonnx.exchange.interpreter import Program

__all__ = ["TRAINER", "JaxTrainer"]

_Compiled = tuple[Program, list[str], list[str], Callable[..., Any], Any]

#: Compiled programs and steps per (definition id, learning rate, mu, objective): Ray actors keep
#: them across rounds.
_CACHE: dict[tuple[str, float, float, Objective], _Compiled] = {}


def _compile(
    definition: Definition, weights: Mapping[str, np.ndarray], learning_rate: float, mu: float,
    goal: Objective,
) -> _Compiled:
    key = (definition.id, learning_rate, mu, goal)
    if key in _CACHE:
        return _CACHE[key]
    program = Program(definition.materialize(weights), backend="jax")
    input_name, target, ops = definition.input_names[0], goal.output, jax_ops()
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
        loss = task_loss(ops, target.kind, outputs[target.name], y)
        if mu:
            loss = loss + proximal_term(params, anchor, mu)
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
    """Adam (optax) on the task's loss through the interpreter; FedProx via ``proximal-mu``."""

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
        goal = objective(definition, config)
        program, param_names, state_names, step_fn, optimizer = _compile(
            definition, weights, config.learning_rate, config.proximal_mu, goal)
        input_name = definition.input_names[0]
        every = {k: jnp.asarray(v) for k, v in weights.items()}

        def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            outputs, _ = program.run(every, {input_name: jnp.asarray(inputs[input_name])})
            return {name: np.asarray(value) for name, value in outputs.items()}

        params = {k: every[k] for k in param_names}
        carry: dict[str, Any] = {"params": params, "state": {k: every[k] for k in state_names},
                                 "opt": optimizer.init(params), "key": jax.random.PRNGKey(config.seed)}
        anchor = dict(params)
        xs, ys = np.asarray(x, np.float32), goal.targets(y, label_dtype=np.int32)

        def step(idx: np.ndarray) -> Any:
            carry["key"], sub = jax.random.split(carry["key"])
            carry["params"], carry["state"], carry["opt"], loss = step_fn(
                carry["params"], carry["state"], carry["opt"], anchor,
                jnp.asarray(xs[idx]), jnp.asarray(ys[idx]), sub)
            return loss

        def finish() -> dict[str, np.ndarray]:
            new = {**carry["params"], **carry["state"]}
            return {k: np.asarray(new[k], dtype=definition.specs[k].dtype) for k in definition.specs}

        return train_loop(definition, weights, config, framework="jax", num_examples=len(xs),
                          run=run, step=step, finish=finish)


TRAINER = JaxTrainer()
