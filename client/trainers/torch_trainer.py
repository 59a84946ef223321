"""Train in PyTorch: natively for zoo models, through the flonnx interpreter for any other graph.

A definition naming a zoo model (``flonnx.model`` metadata) is loaded into that native module, whose
state-dict names are the initializer names; any other definition is executed by the interpreter's
torch backend (:mod:`client.trainers.torch_graph`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from client.trainers import TrainConfig, TrainResult
from exchange.adapters.torch_native import load_weights, module_weights
from exchange.definition import Definition
from exchange.parity import check_parity
from exchange.zoo import MODELS, build

__all__ = ["TRAINER", "TorchTrainer"]


def proximal_term(module: torch.nn.Module, anchor: list[torch.Tensor], mu: float) -> torch.Tensor:
    """FedProx's ``(mu / 2) * ||w - w_global||²`` over every parameter of ``module``."""
    squared = sum(((p - a) ** 2).sum() for p, a in zip(module.parameters(), anchor, strict=True))
    return (mu / 2.0) * squared  # type: ignore[return-value]


class TorchTrainer:
    """Adam on cross-entropy (plus FedProx's proximal term when ``proximal_mu > 0``), deterministic."""

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
        if model_name not in MODELS:
            # Not a zoo model (e.g. exported by skl2onnx): train the ONNX graph itself.
            from client.trainers.torch_graph import train_graph

            return train_graph(definition, weights, x, y, config)
        module = build(model_name)
        load_weights(module, definition, weights)
        module.eval()
        input_name, output_name = definition.input_names[0], definition.output_names[0]

        def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            with torch.no_grad():
                return {output_name: module(torch.from_numpy(inputs[input_name])).numpy()}

        parity = check_parity(definition, weights, run, framework="torch", seed=config.seed)
        module.train()
        anchor = [p.detach().clone() for p in module.parameters()]  # the round's global weights
        optimizer = torch.optim.Adam(module.parameters(), lr=config.learning_rate)
        loss_fn = torch.nn.CrossEntropyLoss()
        xs, ys = torch.from_numpy(np.asarray(x)), torch.from_numpy(np.asarray(y, np.int64))
        generator = torch.Generator().manual_seed(config.seed)
        for _ in range(config.local_epochs):
            total, batches = 0.0, 0  # the reported loss is the last epoch's mean, as sklearn's
            order = torch.randperm(len(xs), generator=generator)
            for start in range(0, len(xs), config.batch_size):
                idx = order[start : start + config.batch_size]
                optimizer.zero_grad()
                loss = loss_fn(module(xs[idx]), ys[idx])
                if config.proximal_mu > 0.0:
                    loss = loss + proximal_term(module, anchor, config.proximal_mu)
                loss.backward()
                optimizer.step()
                total, batches = total + loss.item(), batches + 1
        module.eval()
        return TrainResult(
            weights=module_weights(module, definition),
            num_examples=len(xs),
            metrics={"train-loss": total / max(batches, 1), "parity-max-abs": parity.max_abs},
        )


TRAINER = TorchTrainer()
