"""Every framework trainer: parity first, then training that helps, deterministically, on any graph."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from flonnx.client.trainers import TrainConfig, get_trainer
from flonnx.exchange.definition import Definition
from flonnx.exchange.errors import ParityError
from flonnx.exchange.hashing import weights_id
from flonnx.exchange.ort import classification_metrics, run_model
from tests.digits import digits_holdout, digits_partition

FRAMEWORKS = ["torch", "jax", "sklearn"]


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's digits scaled to [0, 1]: client 0 of 6 of an 80 % pool, and the other 20 %."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x, y = (bunch.data / 16.0).astype(np.float32), bunch.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(y))
    test, pool = order[: len(y) // 5], order[len(y) // 5 :]
    part = np.sort(np.array_split(pool, 6)[0])
    return x[part], y[part], x[test], y[test]


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    x, y = digits_partition(0, 6)
    return (x, y, *digits_holdout())


def _trainer(framework: str):  # type: ignore[no-untyped-def]
    pytest.importorskip({"sklearn": "sklearn"}.get(framework, framework),
                        reason=f"{framework} is not installed")
    return get_trainer(framework)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_training_improves_test_accuracy_and_keeps_the_definition(framework, mlp_model, data) -> None:
    definition, weights = mlp_model
    x, y, x_test, y_test = data
    before = classification_metrics(definition.materialize(weights), x_test, y_test)["accuracy"]

    result = _trainer(framework).train(definition, weights, x, y, TrainConfig(seed=1))

    definition.validate(result.weights)
    after = classification_metrics(definition.materialize(result.weights), x_test, y_test)["accuracy"]
    assert after > before + 0.3
    assert result.num_examples == len(y)
    assert set(result.metrics) == {"train-loss", "parity-max-abs"}
    assert result.metrics["parity-max-abs"] < 1e-4


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_same_seed_same_weights_other_seed_other_weights(framework, mlp_model, data) -> None:
    definition, weights = mlp_model
    x, y, _, _ = data
    trainer = _trainer(framework)

    first = trainer.train(definition, weights, x, y, TrainConfig(seed=5, local_epochs=1))
    again = trainer.train(definition, weights, x, y, TrainConfig(seed=5, local_epochs=1))
    other = trainer.train(definition, weights, x, y, TrainConfig(seed=6, local_epochs=1))

    assert weights_id(first.weights) == weights_id(again.weights)
    assert weights_id(first.weights) != weights_id(other.weights)


@pytest.mark.parametrize("framework", ["torch", "jax"])
@pytest.mark.parametrize("estimator", ["mlp", "logistic"])
def test_trains_a_definition_exported_by_skl2onnx(framework, estimator, data) -> None:
    skl2onnx = pytest.importorskip("skl2onnx", reason="produces the foreign definition")
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    x, y, x_test, y_test = data
    native = (MLPClassifier(hidden_layer_sizes=(16,), max_iter=2, random_state=0) if estimator == "mlp"
              else LogisticRegression(max_iter=2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        native.fit(x, y)
    options = {"black_op": {"LinearClassifier"}} if estimator == "logistic" else {}
    definition, weights = Definition.from_model(
        skl2onnx.to_onnx(native, x[:1], options={"zipmap": False}, **options))

    def accuracy(w: dict[str, np.ndarray]) -> float:
        out = run_model(definition.materialize(w), {definition.input_names[0]: x_test})
        return float(np.mean(np.argmax(out["probabilities"], axis=1) == y_test))

    result = _trainer(framework).train(definition, weights, x, y, TrainConfig(seed=2, local_epochs=3))

    definition.validate(result.weights)
    assert accuracy(result.weights) > accuracy(weights)


def _sigmoid_variant(definition: Definition, weights: dict[str, np.ndarray]) -> Definition:
    """The same definition (and zoo name) with ReLU replaced by Sigmoid."""
    model = definition.materialize(weights)
    relu = next(n for n in model.graph.node if n.op_type == "Relu")
    relu.op_type = "Sigmoid"
    altered, _ = Definition.from_model(model)
    return altered


def test_torch_refuses_a_graph_its_native_module_does_not_compute(mlp_model, data) -> None:
    definition, weights = mlp_model
    x, y, _, _ = data
    altered = _sigmoid_variant(definition, weights)  # the zoo's native MLP still applies ReLU

    with pytest.raises(ParityError, match="torch does not reproduce ONNX Runtime") as info:
        _trainer("torch").train(altered, weights, x, y, TrainConfig(seed=1))

    assert info.value.max_abs > 1e-3


def test_sklearn_reads_the_activation_from_the_graph(mlp_model, data) -> None:
    definition, weights = mlp_model
    x, y, _, _ = data
    altered = _sigmoid_variant(definition, weights)

    result = _trainer("sklearn").train(altered, weights, x, y, TrainConfig(seed=1, local_epochs=1))

    assert result.metrics["parity-max-abs"] < 1e-6


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_proximal_term_keeps_the_update_closer_to_the_global_model(framework, mlp_model, data) -> None:
    definition, weights = mlp_model
    x, y, _, _ = data
    trainer = _trainer(framework)

    def distance(mu: float) -> float:
        result = trainer.train(definition, weights, x, y, TrainConfig(seed=3, proximal_mu=mu))
        return float(sum(np.sum((result.weights[k] - weights[k]) ** 2) for k in weights))

    assert distance(1.0) < 0.8 * distance(0.0)
