"""FedProx on the trainers: torch adds the proximal term, sklearn refuses the round."""

from __future__ import annotations

import numpy as np
import pytest

from flonnx.client.trainers import TrainConfig
from flonnx.exchange.definition import Definition
from tests.digits import digits_partition


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    return digits_partition(0, 6)


def _distance(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    return float(np.sqrt(sum(np.sum((a[k] - b[k]) ** 2) for k in a)))


def test_torch_proximal_term_keeps_weights_closer_to_the_global_model(
    mlp_model: tuple[Definition, dict[str, np.ndarray]], digits: tuple[np.ndarray, np.ndarray],
) -> None:
    pytest.importorskip("torch", reason="the torch trainer needs torch")
    from flonnx.client.trainers.torch_trainer import TRAINER

    definition, weights = mlp_model
    x, y = digits
    plain = TRAINER.train(definition, weights, x, y, TrainConfig(local_epochs=3, seed=1))
    prox = TRAINER.train(definition, weights, x, y, TrainConfig(local_epochs=3, seed=1,
                                                                proximal_mu=10.0))

    assert _distance(prox.weights, weights) < 0.5 * _distance(plain.weights, weights)


def test_sklearn_refuses_a_proximal_term_instead_of_ignoring_it(
    mlp_model: tuple[Definition, dict[str, np.ndarray]], digits: tuple[np.ndarray, np.ndarray],
) -> None:
    pytest.importorskip("sklearn", reason="the sklearn trainer needs scikit-learn")
    from flonnx.client.trainers.sklearn_trainer import TRAINER, UnsupportedTraining

    definition, weights = mlp_model
    x, y = digits

    with pytest.raises(UnsupportedTraining, match=r"proximal-mu=0.1.*refuses the round"):
        TRAINER.train(definition, weights, x, y, TrainConfig(proximal_mu=0.1))
