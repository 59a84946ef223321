"""Train natively in scikit-learn: an ``MLPClassifier`` mapped onto the definition's dense chain."""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import sklearn
from sklearn.exceptions import ConvergenceWarning

from client.trainers import TrainConfig, TrainResult
from exchange.adapters.sklearn_mlp import classifier_from_weights, weights_from_classifier
from exchange.definition import Definition
from exchange.errors import FlonnxError
from exchange.parity import check_parity

__all__ = ["TRAINER", "SklearnTrainer", "UnsupportedTraining"]


class UnsupportedTraining(FlonnxError):
    """The server asked for a training objective this framework's trainer cannot implement."""


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]


class SklearnTrainer:
    """``MLPClassifier`` with Adam, one ``partial_fit`` per epoch."""

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
                ``MLPClassifier.partial_fit`` cannot add to its loss; training without it would
                silently be FedAvg.
        """
        if config.proximal_mu > 0.0:
            raise UnsupportedTraining(
                f"the sklearn trainer cannot add FedProx's proximal term (proximal-mu="
                f"{config.proximal_mu}): MLPClassifier has no hook for it, so this node refuses the "
                "round instead of training plain FedAvg; use proximal-mu=0 or torch/jax nodes"
            )
        clf, chain = classifier_from_weights(
            definition,
            weights,
            random_state=np.random.RandomState(config.seed),
            learning_rate_init=config.learning_rate,
            batch_size=config.batch_size,
            alpha=0.0,
        )
        input_name, output_name = definition.input_names[0], definition.output_names[0]

        def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return {output_name: clf.predict_proba(inputs[input_name])}

        def reference_probabilities(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return outputs if chain.output_activation else {output_name: _softmax(outputs[output_name])}

        parity = check_parity(
            definition, weights, run, framework="sklearn", seed=config.seed,
            transform_reference=reference_probabilities,
        )
        x = np.asarray(x, dtype=definition.specs[chain.layers[0].weight].dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for _ in range(config.local_epochs):
                clf.partial_fit(x, y)
        return TrainResult(
            weights=weights_from_classifier(chain, definition, clf),
            num_examples=len(y),
            metrics={"train-loss": float(clf.loss_), "parity-max-abs": parity.max_abs},
        )


TRAINER = SklearnTrainer()
