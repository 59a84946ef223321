"""Every trainer fits every task: classification, binary (one logit, two classes), regression."""

from __future__ import annotations

import numpy as np
import pytest

from flonnx.client.trainers import TrainConfig, get_trainer
from flonnx.exchange.definition import Definition
from flonnx.exchange.errors import InvalidModel
from flonnx.exchange.hashing import weights_id
from flonnx.exchange.ort import evaluate_model
from flonnx.exchange.task import InvalidTargets, InvalidTask
from tests.tiny_models import gemm_mlp

#: (framework, graph): torch "native" trains the zoo's nn.Module, "graph" the interpreted ONNX graph
FRAMEWORKS = [("torch", "native"), ("torch", "graph"), ("jax", "graph"), ("sklearn", "graph")]
IDS = ["torch-native", "torch-graph", "jax", "sklearn"]
#: task case -> (task, model outputs)
CASES = {
    "classification": ("classification", 3),
    "binary-logit": ("binary", 1),
    "binary-pair": ("binary", 2),
    "regression": ("regression", 1),
}


def _trainer(framework: str):  # type: ignore[no-untyped-def]
    pytest.importorskip(framework, reason=f"{framework} is not installed")
    return get_trainer(framework)


@pytest.fixture(scope="module")
def zoo_models():  # type: ignore[no-untyped-def]
    """Exported zoo MLPs ``mlp-10-16-K`` for K = 1, 2, 3: the native definition and a copy without
    the zoo name (which every trainer trains as a plain graph)."""
    torch = pytest.importorskip("torch", reason="the torch exporter produces the models")
    from flonnx.exchange.adapters.torch_native import export_module
    from flonnx.exchange.zoo import build

    models = {}
    for outputs in (1, 2, 3):
        name = f"mlp-10-16-{outputs}"
        torch.manual_seed(outputs)
        native, weights = export_module(build(name), torch.zeros(2, 10), metadata={"flonnx.model": name})
        model = native.materialize(weights)
        del model.metadata_props[:]
        graph, _ = Definition.from_model(model)
        models[outputs] = {"native": native, "graph": graph, "weights": weights}
    return models


def _data(task: str, n: int = 240, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 10)).astype(np.float32)
    w = np.random.default_rng(99).normal(size=(10, 3))
    if task == "classification":
        return x, np.argmax(x @ w, axis=1).astype(np.int64)
    if task == "binary":
        return x, (x @ w[:, 0] > 0).astype(np.int64)
    y = x @ w[:, 0] + 0.5 * np.tanh(x[:, 1] * x[:, 2])
    return x, ((y - y.mean()) / y.std()).astype(np.float32)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize(("framework", "graph"), FRAMEWORKS, ids=IDS)
def test_training_lowers_the_task_loss(framework, graph, case, zoo_models) -> None:
    task, outputs = CASES[case]
    model = zoo_models[outputs]
    definition, weights = model[graph], model["weights"]
    x, y = _data(task)
    before = evaluate_model(definition.materialize(weights), x, y, task)

    result = _trainer(framework).train(definition, weights, x, y,
                                       TrainConfig(seed=1, local_epochs=5, task=task))

    definition.validate(result.weights)
    after = evaluate_model(definition.materialize(result.weights), x, y, task)
    assert after["loss"] < 0.7 * before["loss"], (before, after)
    assert result.metrics["parity-max-abs"] < 1e-4
    assert np.isfinite(result.metrics["train-loss"])
    # the reported training loss is the task's loss, on the scale ONNX Runtime measures
    assert result.metrics["train-loss"] < before["loss"]
    if task == "regression":
        assert after["r2"] > 0.5
    else:
        assert after["accuracy"] > 0.8


@pytest.mark.parametrize("case", ["binary-logit", "binary-pair", "regression"])
@pytest.mark.parametrize(("framework", "graph"), FRAMEWORKS, ids=IDS)
def test_same_seed_same_weights_for_every_task(framework, graph, case, zoo_models) -> None:
    task, outputs = CASES[case]
    definition, weights = zoo_models[outputs][graph], zoo_models[outputs]["weights"]
    x, y = _data(task)
    trainer = _trainer(framework)

    def train(seed: int) -> str:
        config = TrainConfig(seed=seed, local_epochs=1, task=task)
        return weights_id(trainer.train(definition, weights, x, y, config).weights)

    first, again, other = train(5), train(5), train(6)

    assert first == again
    assert first != other


@pytest.fixture(scope="module")
def diabetes() -> tuple[np.ndarray, ...]:
    datasets = pytest.importorskip("sklearn.datasets", reason="the diabetes data ships in scikit-learn")
    x, y = datasets.load_diabetes(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    train, test = order[:350], order[350:]
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)
    y_mean, y_std = y[train].mean(), y[train].std()

    def scale(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return ((x[idx] - mean) / std).astype(np.float32), ((y[idx] - y_mean) / y_std).astype(np.float32)

    return (*scale(train), *scale(test))


@pytest.mark.parametrize(("framework", "graph"), FRAMEWORKS, ids=IDS)
def test_regression_on_diabetes_explains_the_held_out_targets(framework, graph, zoo_models,
                                                              diabetes) -> None:
    definition, weights = zoo_models[1][graph], zoo_models[1]["weights"]
    x, y, x_test, y_test = diabetes
    before = evaluate_model(definition.materialize(weights), x_test, y_test, "regression")

    result = _trainer(framework).train(definition, weights, x, y,
                                       TrainConfig(seed=0, local_epochs=10, task="regression"))

    after = evaluate_model(definition.materialize(result.weights), x_test, y_test, "regression")
    assert before["r2"] < 0.1
    assert after["r2"] > 0.3, after


@pytest.mark.parametrize(("framework", "graph"), FRAMEWORKS, ids=IDS)
@pytest.mark.parametrize(("task", "outputs", "message"), [
    ("regression", 3, "task regression fits one value per example, but output 'logits' has 3 columns"),
    ("binary", 3, "task binary fits one logit or two classes, but output 'logits' has 3 columns"),
    ("classification", 1, "task classification needs one column per class"),
])
def test_refuses_a_model_whose_output_does_not_fit_the_task(framework, graph, task, outputs, message,
                                                            zoo_models) -> None:
    definition, weights = zoo_models[outputs][graph], zoo_models[outputs]["weights"]
    x, y = _data(task)

    with pytest.raises(InvalidModel, match=message):
        _trainer(framework).train(definition, weights, x, y, TrainConfig(task=task))


@pytest.mark.parametrize(("framework", "graph"), FRAMEWORKS, ids=IDS)
def test_refuses_labels_outside_the_classes(framework, graph, zoo_models) -> None:
    definition, weights = zoo_models[2][graph], zoo_models[2]["weights"]
    x, _ = _data("binary")
    y = np.arange(len(x)) % 3

    with pytest.raises(InvalidTargets, match="labels in 0..1; got labels from 0 to 2"):
        _trainer(framework).train(definition, weights, x, y, TrainConfig(task="binary"))


@pytest.mark.parametrize("framework", ["torch", "jax"])
@pytest.mark.parametrize(("task", "model"), [
    ("binary", {"outputs": 1, "flat": True}),
    ("binary", {"outputs": 1, "head": "Sigmoid"}),
    ("binary", {"outputs": 2, "head": "Softmax"}),
    ("regression", {"outputs": 1, "flat": True}),
])
def test_interpreted_graphs_train_every_output_form(framework, task, model) -> None:
    definition, weights = gemm_mlp(10, 16, **model)
    x, y = _data(task)
    before = evaluate_model(definition.materialize(weights), x, y, task)

    result = _trainer(framework).train(definition, weights, x, y, TrainConfig(seed=2, task=task))

    after = evaluate_model(definition.materialize(result.weights), x, y, task)
    assert after["loss"] < 0.7 * before["loss"], (before, after)


def test_sklearn_refuses_a_sigmoid_head_it_cannot_map() -> None:
    definition, weights = gemm_mlp(10, 16, 1, head="Sigmoid")
    x, y = _data("binary")

    with pytest.raises(InvalidModel, match="followed by Sigmoid"):
        _trainer("sklearn").train(definition, weights, x, y, TrainConfig(task="binary"))


def test_train_config_reads_the_task_from_the_round() -> None:
    assert TrainConfig.from_config({}, seed=0).task == "classification"
    assert TrainConfig.from_config({"task": "regression"}, seed=0).task == "regression"

    with pytest.raises(InvalidTask, match="allowed tasks: classification, binary, regression"):
        TrainConfig.from_config({"task": "clustering"}, seed=0)


def test_unknown_task_in_a_hand_made_config_is_refused_by_the_trainer(zoo_models) -> None:
    definition, weights = zoo_models[3]["native"], zoo_models[3]["weights"]
    x, y = _data("classification")

    with pytest.raises(InvalidTask, match="unknown task 'multiclass'"):
        _trainer("torch").train(definition, weights, x, y, TrainConfig(task="multiclass"))


@pytest.mark.parametrize("task", ["binary", "classification"])
def test_sklearn_trains_a_two_class_graph_as_one_logistic_unit_and_keeps_the_rows_mean(task) -> None:
    pytest.importorskip("sklearn", reason="scikit-learn adapter")
    from flonnx.exchange.adapters.sklearn_mlp import (
        estimator_from_weights,
        estimator_outputs,
        weights_from_estimator,
    )
    from flonnx.exchange.ort import run_model

    definition, weights = gemm_mlp(10, 16, 2, seed=4)
    x, y = _data("binary")
    estimator, mapping = estimator_from_weights(definition, weights, task,
                                                random_state=np.random.RandomState(0))

    assert estimator.coefs_[-1].shape == (16, 1)
    estimator.partial_fit(x, y)
    trained = weights_from_estimator(mapping, definition, estimator)

    np.testing.assert_allclose(trained["l2.w"].mean(axis=0), weights["l2.w"].mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(trained["l2.b"].mean(), weights["l2.b"].mean(), atol=1e-6)
    assert not np.allclose(trained["l2.w"], weights["l2.w"])
    logits = run_model(definition.materialize(trained), {"x": x})["y"]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(e / e.sum(axis=1, keepdims=True), estimator_outputs(mapping, estimator, x),
                               atol=1e-5)
