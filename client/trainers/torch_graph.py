"""Train a definition that has no native PyTorch module: the flonnx interpreter's torch backend.

Used by the torch trainer for definitions that did not come from the model zoo (e.g. a model
exported by skl2onnx): parameters are the definition's initializers as leaf tensors, and autograd
differentiates the interpreted graph.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from client.trainers import TrainConfig, TrainResult
from exchange.definition import Definition
from exchange.interpreter import Program
from exchange.parity import check_parity
from exchange.task import classifier_output

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
    """Parity check, then Adam on cross-entropy of the classifier output (logits or probabilities)."""
    torch.manual_seed(config.seed)
    program = _program(definition, weights)
    input_name, target = definition.input_names[0], classifier_output(definition)
    tensors = {k: torch.tensor(np.array(v, copy=True)) for k, v in weights.items()}

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.no_grad():
            outputs, _ = program.run(tensors, {input_name: torch.from_numpy(inputs[input_name])})
        return {name: value.numpy() for name, value in outputs.items()}

    parity = check_parity(definition, weights, run, framework="torch", seed=config.seed)
    xs, ys = torch.from_numpy(np.asarray(x, np.float32)), torch.from_numpy(np.asarray(y, np.int64))
    with torch.no_grad():
        _, state = program.run(tensors, {input_name: xs[:2]}, training=True)
    params = {k: v.requires_grad_(True) for k, v in tensors.items() if k not in state}
    buffers = {k: v for k, v in tensors.items() if k in state}
    anchor = {k: v.detach().clone() for k, v in params.items()}
    optimizer = torch.optim.Adam(params.values(), lr=config.learning_rate)
    generator = torch.Generator().manual_seed(config.seed)
    nll = torch.nn.NLLLoss()

    def loss_fn(out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        log_p = out.clamp_min(1e-12).log() if target.probabilities else out.log_softmax(dim=1)
        return nll(log_p, labels)

    total, batches = 0.0, 0
    for _ in range(config.local_epochs):
        total, batches = 0.0, 0
        order = torch.randperm(len(xs), generator=generator)
        for start in range(0, len(xs), config.batch_size):
            idx = order[start : start + config.batch_size]
            optimizer.zero_grad()
            outputs, new_state = program.run({**params, **buffers}, {input_name: xs[idx]},
                                             training=True, rng=generator)
            loss = loss_fn(outputs[target.name], ys[idx])
            if config.proximal_mu:
                loss = loss + 0.5 * config.proximal_mu * sum(
                    ((params[k] - anchor[k]) ** 2).sum() for k in params)
            loss.backward()
            optimizer.step()
            buffers.update({k: v.detach() for k, v in new_state.items()})
            total, batches = total + loss.item(), batches + 1
    trained = {**{k: v.detach() for k, v in params.items()}, **buffers}
    return TrainResult(
        weights={k: trained[k].numpy().astype(definition.specs[k].dtype) for k in definition.specs},
        num_examples=len(xs),
        metrics={"train-loss": total / max(batches, 1), "parity-max-abs": parity.max_abs},
    )
