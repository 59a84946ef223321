"""Train natively in scikit-learn: ``MLPClassifier``/``MLPRegressor`` mapped onto the dense chain.

See :mod:`flonnx.exchange.adapters.sklearn_mlp` for the map per task. Batches come from the shared loop
(:mod:`flonnx.client.trainers._loop`): one ``partial_fit`` per batch is one Adam step on that batch.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import sklearn
from sklearn.exceptions import ConvergenceWarning

from flonnx.client.trainers import TrainConfig, TrainResult
from flonnx.client.trainers._loop import objective, train_loop
from flonnx.exchange.adapters.sklearn_mlp import (
    estimator_from_weights,
    estimator_outputs,
    reference_outputs,
    weights_from_estimator,
)
from flonnx.exchange.definition import Definition
from flonnx.exchange.errors import FlonnxError
from flonnx.exchange.task import Task

__all__ = ["TRAINER", "SklearnTrainer", "UnsupportedTraining"]


class UnsupportedTraining(FlonnxError):
    """The server asked for a training objective this framework's trainer cannot implement."""


class SklearnTrainer:
    """``MLPClassifier``/``MLPRegressor`` with Adam, one ``partial_fit`` per batch."""

    name = "sklearn"

    def version(self) -> str:
        """scikit-learn's version."""
        return str(sklearn.__version__)

    def train(
        self,
        definition: Definition,
        weights: Mapping[str, np.ndarray],
        x: np.ndarray,
        y: np.ndarray,
        config: TrainConfig,
    ) -> TrainResult:
        """Map, check parity with ONNX Runtime, train ``local_epochs`` epochs, map back.

        Raises:
            UnsupportedTraining: FedProx asked for a proximal term (``proximal-mu`` > 0), which
                ``partial_fit`` cannot add to its loss; training without it would
                silently be FedAvg.
        """
        if config.proximal_mu > 0.0:
            raise UnsupportedTraining(
                f"the sklearn trainer cannot add FedProx's proximal term (proximal-mu="
                f"{config.proximal_mu}): MLPClassifier has no hook for it, so this node refuses the "
                "round instead of training plain FedAvg; use proximal-mu=0 or torch/jax nodes"
            )
        goal = objective(definition, config)
        estimator, mapping = estimator_from_weights(
            definition,
            weights,
            goal.task,
            random_state=np.random.RandomState(config.seed),
            learning_rate_init=config.learning_rate,
            batch_size=config.batch_size,
            alpha=0.0,
        )
        input_name, output_name = definition.input_names[0], goal.output.name

        def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return {output_name: estimator_outputs(mapping, estimator, inputs[input_name])}

        def reference(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return {output_name: reference_outputs(mapping, outputs[output_name])}

        xs = np.asarray(x, dtype=definition.specs[mapping.chain.layers[0].weight].dtype)
        ys = goal.targets(y)
        # MLPRegressor's loss_ is half the mean squared error; report the MSE as torch and jax do.
        scale = 2.0 if goal.task is Task.REGRESSION else 1.0

        def step(idx: np.ndarray) -> float:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                warnings.simplefilter("ignore", UserWarning)  # a last batch smaller than batch_size
                estimator.partial_fit(xs[idx], ys[idx])
            return scale * float(estimator.loss_)

        return train_loop(definition, weights, config, framework="sklearn", num_examples=len(xs),
                          run=run, step=step, transform_reference=reference,
                          finish=lambda: weights_from_estimator(mapping, definition, estimator))


TRAINER = SklearnTrainer()
