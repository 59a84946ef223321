"""Train in PyTorch: natively for zoo models, through the flonnx interpreter for any other graph.

A definition naming a zoo model (``flonnx.model`` metadata) is loaded into that native module, whose
state-dict names are the initializer names; any other definition is executed by the interpreter's
torch backend (:mod:`flonnx.client.trainers.torch_graph`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from flonnx.client.trainers import TrainConfig, TrainResult
from flonnx.client.trainers._loop import objective, proximal_term, task_loss, torch_ops, train_loop
from flonnx.exchange.adapters.torch_native import load_weights, module_weights
from flonnx.exchange.definition import Definition
from flonnx.exchange.zoo import build, model_spec

__all__ = ["TRAINER", "TorchTrainer"]


class TorchTrainer:
    """Adam on the task's loss (plus FedProx's proximal term when ``proximal_mu > 0``), deterministic."""

    name = "torch"

    def version(self) -> str:
        """The installed PyTorch version."""
        return str(torch.__version__)

    def train(
        self,
        definition: Definition,
        weights: Mapping[str, np.ndarray],
        x: np.ndarray,
        y: np.ndarray,
        config: TrainConfig,
    ) -> TrainResult:
        """Load, check parity with ONNX Runtime, train ``local_epochs`` epochs, return weights."""
        torch.manual_seed(config.seed)
        torch.use_deterministic_algorithms(True)
        torch.set_num_threads(1)
        model_name = definition.metadata.get("flonnx.model")
        if model_name is None or model_spec(model_name) is None:
            # Not a zoo model (e.g. exported by skl2onnx): train the ONNX graph itself.
            from flonnx.client.trainers.torch_graph import train_graph

            return train_graph(definition, weights, x, y, config)
        goal = objective(definition, config)
        module = build(model_name)
        load_weights(module, definition, weights)
        input_name, output_name = definition.input_names[0], definition.output_names[0]

        def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            module.eval()
            with torch.no_grad():
                out = module(torch.from_numpy(inputs[input_name])).numpy()
            module.train()
            return {output_name: out}

        params = dict(module.named_parameters())
        anchor = {k: p.detach().clone() for k, p in params.items()}  # the round's global weights
        optimizer = torch.optim.Adam(params.values(), lr=config.learning_rate)
        ops = torch_ops()
        xs = torch.from_numpy(np.asarray(x, np.float32))
        ys = torch.from_numpy(goal.targets(y))

        def step(idx: np.ndarray) -> torch.Tensor:
            batch = torch.from_numpy(idx)
            optimizer.zero_grad()
            loss = task_loss(ops, goal.output.kind, module(xs[batch]), ys[batch])
            if config.proximal_mu > 0.0:
                loss = loss + proximal_term(params, anchor, config.proximal_mu)
            loss.backward()
            optimizer.step()
            return loss.detach()

        module.train()
        return train_loop(definition, weights, config, framework="torch", num_examples=len(xs),
                          run=run, step=step, finish=lambda: module_weights(module, definition))


TRAINER = TorchTrainer()
