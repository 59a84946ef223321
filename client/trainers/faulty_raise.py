"""A demo node that always fails (scenario ``digits-faulty``): its training raises."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from client.trainers import TrainConfig, TrainResult
from exchange.definition import Definition

__all__ = ["TRAINER", "RaisingTrainer"]


class RaisingTrainer:
    """Raises on every round, like a node whose training crashes."""

    name = "faulty-raise"

    def version(self) -> str:
        """A fixed demo version."""
        return "demo"

    def train(
        self, definition: Definition, weights: Mapping[str, np.ndarray], x: np.ndarray,
        y: np.ndarray, config: TrainConfig,
    ) -> TrainResult:
        """Always raise ``RuntimeError``."""
        raise RuntimeError("injected failure: the faulty-raise demo node crashes in every round")


TRAINER = RaisingTrainer()
