"""Train a definition that has no native PyTorch module: the flonnx interpreter's torch backend.

Used by the torch trainer for definitions that did not come from the model zoo (e.g. a model
exported by skl2onnx): parameters are the definition's initializers as leaf tensors, and autograd
differentiates the interpreted graph.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from flonnx.client.trainers import TrainConfig, TrainResult
from flonnx.client.trainers._loop import objective, proximal_term, task_loss, torch_ops, train_loop
from flonnx.exchange.definition import Definition
from flonnx.exchange.interpreter import Program

__all__ = ["train_graph"]

_PROGRAMS: dict[str, Program] = {}


def _program(definition: Definition, weights: Mapping[str, np.ndarray]) -> Program:
    if definition.id not in _PROGRAMS:
        _PROGRAMS[definition.id] = Program(definition.materialize(weights), backend="torch")
    return _PROGRAMS[definition.id]


def train_graph(
    definition: Definition,
    weights: Mapping[str, np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    config: TrainConfig,
) -> TrainResult:
    """Parity check, then Adam on the task's loss of the task output (see :mod:`flonnx.exchange.task`)."""
    torch.manual_seed(config.seed)
    goal = objective(definition, config)
    program = _program(definition, weights)
    input_name = definition.input_names[0]
    tensors = {k: torch.tensor(np.array(v, copy=True)) for k, v in weights.items()}

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.no_grad():
            outputs, _ = program.run(tensors, {input_name: torch.from_numpy(inputs[input_name])})
        return {name: value.numpy() for name, value in outputs.items()}

    xs = torch.from_numpy(np.asarray(x, np.float32))
    ys = torch.from_numpy(goal.targets(y))
    with torch.no_grad():
        _, state = program.run(tensors, {input_name: xs[:2]}, training=True)
    params = {k: v.requires_grad_(True) for k, v in tensors.items() if k not in state}
    buffers = {k: v for k, v in tensors.items() if k in state}
    anchor = {k: v.detach().clone() for k, v in params.items()}
    optimizer = torch.optim.Adam(params.values(), lr=config.learning_rate)
    generator = torch.Generator().manual_seed(config.seed)  # dropout and other random ops
    ops = torch_ops()

    def step(idx: np.ndarray) -> torch.Tensor:
        batch = torch.from_numpy(idx)
        optimizer.zero_grad()
        outputs, new_state = program.run({**params, **buffers}, {input_name: xs[batch]},
                                         training=True, rng=generator)
        loss = task_loss(ops, goal.output.kind, outputs[goal.output.name], ys[batch])
        if config.proximal_mu:
            loss = loss + proximal_term(params, anchor, config.proximal_mu)
        loss.backward()
        optimizer.step()
        buffers.update({k: v.detach() for k, v in new_state.items()})
        return loss.detach()

    def finish() -> dict[str, np.ndarray]:
        trained = {**{k: v.detach() for k, v in params.items()}, **buffers}
        return {k: trained[k].numpy().astype(definition.specs[k].dtype) for k in definition.specs}

    return train_loop(definition, weights, config, framework="torch", num_examples=len(xs),
                      run=run, step=step, finish=finish)
