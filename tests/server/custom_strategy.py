"""The custom strategy of docs/strategies.md (``--strategy tests.server.custom_strategy:FedAvgEMA``)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from flwr.app import Array, ArrayRecord, Message, MetricRecord
from flwr.serverapp.strategy import FedAvg


class FedAvgEMA(FedAvg):
    """FedAvg whose global model is an exponential moving average of the FedAvg aggregates."""

    def __init__(
        self,
        decay: float = 0.5,
        fraction_train: float = 1.0,
        fraction_evaluate: float = 1.0,
        min_train_nodes: int = 2,
        min_evaluate_nodes: int = 2,
        min_available_nodes: int = 2,
    ) -> None:
        super().__init__(
            fraction_train=fraction_train, fraction_evaluate=fraction_evaluate,
            min_train_nodes=min_train_nodes, min_evaluate_nodes=min_evaluate_nodes,
            min_available_nodes=min_available_nodes,
        )
        self.decay = decay
        self.average: dict[str, np.ndarray] | None = None  # state: flonnx saves and restores it

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """FedAvg, then blend into the running average."""
        arrays, metrics = super().aggregate_train(server_round, replies)
        if arrays is None:
            return arrays, metrics
        new = {name: array.numpy() for name, array in arrays.items()}
        if self.average is None:
            self.average = new
        else:
            self.average = {k: self.decay * self.average[k] + (1 - self.decay) * v
                            for k, v in new.items()}
        return ArrayRecord({k: Array(v) for k, v in self.average.items()}), metrics
