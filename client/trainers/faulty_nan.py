"""A demo node whose update is corrupt (scenario ``digits-faulty``): it trains, then NaNs a weight."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from client.trainers import TrainConfig, TrainResult, get_trainer
from exchange.definition import Definition

__all__ = ["TRAINER", "NanTrainer"]


class NanTrainer:
    """Trains with torch, then sets the first element of the first tensor to NaN."""

    name = "faulty-nan"

    def version(self) -> str:
        """A fixed demo version."""
        return "demo"

    def train(
        self, definition: Definition, weights: Mapping[str, np.ndarray], x: np.ndarray,
        y: np.ndarray, config: TrainConfig,
    ) -> TrainResult:
        """Train with the torch trainer and corrupt one value."""
        result = get_trainer("torch").train(definition, weights, x, y, config)
        name = sorted(result.weights)[0]
        corrupt = np.array(result.weights[name], copy=True)
        corrupt.flat[0] = np.nan
        result.weights[name] = corrupt
        return result


TRAINER = NanTrainer()
