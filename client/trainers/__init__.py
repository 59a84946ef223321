"""Framework trainers. Each lives in its own module and imports its framework only there.

A trainer takes the round's definition and weights, checks parity against ONNX Runtime, trains on
local data and returns weights with the definition's names, shapes and dtypes.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from flonnx.exchange.definition import Definition
from flonnx.exchange.errors import FlonnxError
from flonnx.exchange.frameworks import FRAMEWORKS
from flonnx.exchange.task import Task, parse_task

__all__ = ["TRAINERS", "TrainConfig", "TrainResult", "Trainer", "get_trainer"]

#: framework name -> module implementing it (one per entry of flonnx.exchange.frameworks.FRAMEWORKS)
TRAINERS = {name: f"flonnx.client.trainers.{name}_trainer" for name in FRAMEWORKS}


@dataclass(frozen=True)
class TrainConfig:
    """Local training settings sent by the server each round."""

    local_epochs: int = 5
    batch_size: int = 32
    learning_rate: float = 0.01
    seed: int = 0
    proximal_mu: float = 0.0  # FedProx: weight of (mu/2)·||w - w_global||², sent as ``proximal-mu``
    task: str = Task.CLASSIFICATION.value  # the loss: classification, binary or regression

    @classmethod
    def from_config(cls, config: Mapping[str, object], seed: int) -> TrainConfig:
        """From a round's ConfigRecord.

        Keys: ``local-epochs``, ``batch-size``, ``learning-rate``, ``proximal-mu``, ``task``.

        Raises:
            InvalidTask: ``task`` names no task flonnx knows.
        """
        return cls(
            local_epochs=int(config.get("local-epochs", cls.local_epochs)),  # type: ignore[call-overload]
            batch_size=int(config.get("batch-size", cls.batch_size)),  # type: ignore[call-overload]
            learning_rate=float(config.get("learning-rate", cls.learning_rate)),  # type: ignore[arg-type]
            seed=seed,
            proximal_mu=float(config.get("proximal-mu", 0.0)),  # type: ignore[arg-type]
            task=parse_task(str(config.get("task", cls.task))).value,
        )


@dataclass
class TrainResult:
    """A trainer's output: new weights, the example count and metrics (same keys for every framework)."""

    weights: dict[str, np.ndarray]
    num_examples: int
    metrics: dict[str, float] = field(default_factory=dict)


class Trainer(Protocol):
    """What a framework module provides."""

    name: str

    def version(self) -> str:
        """The framework's version string."""

    def train(
        self,
        definition: Definition,
        weights: Mapping[str, np.ndarray],
        x: np.ndarray,
        y: np.ndarray,
        config: TrainConfig,
    ) -> TrainResult:
        """Check parity, train, return the new weights."""


def get_trainer(framework: str) -> Trainer:
    """The trainer for ``framework`` (imports that framework now, and only it)."""
    if framework not in TRAINERS:
        raise FlonnxError(f"unknown framework {framework!r}; flonnx trains with {sorted(TRAINERS)}")
    try:
        module = importlib.import_module(TRAINERS[framework])
    except ImportError as exc:
        extra = FRAMEWORKS[framework].extra
        raise FlonnxError(f"framework {framework!r} is not installed on this node ({exc}); install "
                          f"it with: pip install 'flonnx[{extra}]'") from exc
    return module.TRAINER  # type: ignore[no-any-return]
