"""Injected faults, for demos and tests of failure handling only (never a production trainer).

A node is told to misbehave by node config ``fault="raise"`` or ``fault="nan"`` (in simulation, by
the spec's ``[faults]`` table, partition id -> fault), so the same faults run in simulation and in
deployment. The wrapped trainer keeps the real framework's name and version.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from flonnx.client.trainers import TrainConfig, Trainer, TrainResult
from flonnx.exchange.definition import Definition
from flonnx.exchange.errors import FlonnxError

__all__ = ["FAULTS", "faulty"]


class _Raising:
    """Raises in every round, like a node whose training crashes."""

    def __init__(self, inner: Trainer) -> None:
        self.inner, self.name = inner, inner.name

    def version(self) -> str:
        """The real framework's version."""
        return self.inner.version()

    def train(self, definition: Definition, weights: Mapping[str, np.ndarray], x: np.ndarray,
              y: np.ndarray, config: TrainConfig) -> TrainResult:
        """Always raise ``RuntimeError`` (not a flonnx error: it reaches Flower as a failure)."""
        raise RuntimeError("injected failure: this node crashes in every round (fault=raise)")


class _NaN(_Raising):
    """Trains, then sets the first element of the first tensor to NaN (a corrupt update)."""

    def train(self, definition: Definition, weights: Mapping[str, np.ndarray], x: np.ndarray,
              y: np.ndarray, config: TrainConfig) -> TrainResult:
        """Train with the real trainer and corrupt one value."""
        result = self.inner.train(definition, weights, x, y, config)
        name = sorted(result.weights)[0]
        corrupt = np.array(result.weights[name], copy=True)
        corrupt.flat[0] = np.nan
        result.weights[name] = corrupt
        return result


FAULTS: dict[str, type[_Raising]] = {"raise": _Raising, "nan": _NaN}


def faulty(trainer: Trainer, fault: str) -> Trainer:
    """``trainer`` with ``fault`` injected."""
    if fault not in FAULTS:
        raise FlonnxError(f"unknown fault {fault!r}; known: {', '.join(FAULTS)}")
    return FAULTS[fault](trainer)
