"""Task metrics in numpy agree with scikit-learn's and stay finite at the edges."""

from __future__ import annotations

import numpy as np
import pytest

from flonnx.exchange.metrics import roc_auc, task_metrics
from flonnx.exchange.ort import classification_metrics, evaluate_model, run_model
from flonnx.exchange.task import OutputKind, Task
from tests.tiny_models import gemm_mlp

metrics = pytest.importorskip("sklearn.metrics", reason="the reference implementation")


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("kind", [OutputKind.LOGITS, OutputKind.PROBABILITIES])
def test_classification_matches_sklearn(seed: int, kind: OutputKind) -> None:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(200, 4)).astype(np.float32) * 2
    y = rng.integers(0, 4, 200)
    outputs = logits if kind is OutputKind.LOGITS else _softmax(logits.astype(np.float64))

    got = task_metrics(outputs, y, Task.CLASSIFICATION, kind)

    predicted = logits.argmax(axis=1)
    assert set(got) == {"accuracy", "macro-f1", "loss"}
    assert got["accuracy"] == pytest.approx(metrics.accuracy_score(y, predicted))
    assert got["macro-f1"] == pytest.approx(metrics.f1_score(y, predicted, average="macro"))
    assert got["loss"] == pytest.approx(metrics.log_loss(y, _softmax(logits.astype(np.float64)),
                                                         labels=range(4)), rel=1e-6)


def test_macro_f1_counts_a_predicted_class_absent_from_the_labels() -> None:
    y = np.array([0, 0, 1, 1])
    logits = np.array([[5.0, 0, 0], [0, 0, 5.0], [0, 5.0, 0], [0, 5.0, 0]])

    got = task_metrics(logits, y, "classification", "logits")

    assert got["macro-f1"] == pytest.approx(metrics.f1_score(y, logits.argmax(axis=1), average="macro"))


@pytest.mark.parametrize("seed", range(5))
def test_binary_one_logit_matches_sklearn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    z = np.round(rng.normal(size=300) + y, 1)  # rounding makes many tied scores
    assert len(np.unique(z)) < 100

    got = task_metrics(z[:, None].astype(np.float32), y, Task.BINARY, OutputKind.LOGIT)

    p = 1 / (1 + np.exp(-z))
    predicted = (z > 0).astype(int)
    assert set(got) == {"accuracy", "macro-f1", "roc-auc", "loss"}
    assert got["roc-auc"] == pytest.approx(metrics.roc_auc_score(y, z), abs=1e-12)
    assert got["accuracy"] == pytest.approx(metrics.accuracy_score(y, predicted))
    assert got["macro-f1"] == pytest.approx(metrics.f1_score(y, predicted, average="macro"))
    assert got["loss"] == pytest.approx(metrics.log_loss(y, p), rel=1e-5)


@pytest.mark.parametrize("kind", [OutputKind.LOGITS, OutputKind.PROBABILITIES])
def test_binary_two_classes_matches_sklearn(kind: OutputKind) -> None:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 300)
    logits = np.round(rng.normal(size=(300, 2)) + np.eye(2)[y], 1)
    probabilities = _softmax(logits)
    outputs = logits if kind is OutputKind.LOGITS else probabilities

    got = task_metrics(outputs, y, "binary", kind)

    predicted = logits.argmax(axis=1)
    # logits rank by their difference (exact ties stay ties), probabilities by class 1
    score = logits[:, 1] - logits[:, 0] if kind is OutputKind.LOGITS else probabilities[:, 1]
    assert got["roc-auc"] == pytest.approx(metrics.roc_auc_score(y, score), abs=1e-12)
    assert got["accuracy"] == pytest.approx(metrics.accuracy_score(y, predicted))
    assert got["macro-f1"] == pytest.approx(metrics.f1_score(y, predicted, average="macro"))
    assert got["loss"] == pytest.approx(metrics.log_loss(y, probabilities), rel=1e-6)


def test_binary_probability_output_matches_sklearn() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 100)
    p = np.clip(rng.random(100) * 0.5 + 0.4 * y, 0.01, 0.99)

    got = task_metrics(p, y, "binary", "probability")

    assert got["roc-auc"] == pytest.approx(metrics.roc_auc_score(y, p))
    assert got["loss"] == pytest.approx(metrics.log_loss(y, p), rel=1e-6)
    assert got["accuracy"] == pytest.approx(metrics.accuracy_score(y, (p > 0.5).astype(int)))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("flat", [True, False])
def test_regression_matches_sklearn(seed: int, flat: bool) -> None:
    rng = np.random.default_rng(seed)
    y = rng.normal(size=150).astype(np.float32)
    predicted = (y + rng.normal(scale=0.5, size=150)).astype(np.float32)

    got = task_metrics(predicted if flat else predicted[:, None], y, Task.REGRESSION, OutputKind.VALUE)

    assert set(got) == {"mse", "mae", "r2", "loss"}
    assert got["mse"] == pytest.approx(metrics.mean_squared_error(y, predicted), rel=1e-6)
    assert got["loss"] == got["mse"]
    assert got["mae"] == pytest.approx(metrics.mean_absolute_error(y, predicted), rel=1e-6)
    assert got["r2"] == pytest.approx(metrics.r2_score(y, predicted), rel=1e-6)


def test_roc_auc_with_one_class_is_one_half() -> None:
    assert roc_auc(np.ones(5, int), np.arange(5.0)) == 0.5
    assert roc_auc(np.zeros(5, int), np.arange(5.0)) == 0.5
    assert roc_auc(np.array([0, 1]), np.array([0.1, 0.9])) == 1.0
    assert roc_auc(np.array([0, 1]), np.array([0.5, 0.5])) == 0.5


def test_r2_with_constant_targets_stays_finite_like_sklearn() -> None:
    y = np.full(10, 3.0, np.float32)

    exact = task_metrics(y.copy(), y, "regression", "value")["r2"]
    off = task_metrics(y + 1, y, "regression", "value")["r2"]

    assert exact == metrics.r2_score(y, y) == 1.0
    assert off == metrics.r2_score(y, y + 1) == 0.0


@pytest.mark.parametrize(("task", "kind", "outputs", "y", "min_loss"), [
    ("classification", "probabilities", [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], [1, 0, 0], 10.0),
    ("binary", "probability", [0.0, 1.0, 0.0], [1, 0, 0], 10.0),
    ("binary", "logit", [1e30, -1e30, np.inf], [0, 1, 1], 1e29),
    ("classification", "logits", [[np.nan, 0.0], [np.inf, -np.inf], [1.0, 0.0]], [1, 1, 1], 1e37),
    ("regression", "value", [np.nan, np.inf, -np.inf], [0.0, 1.0, 2.0], 1e70),
])
def test_every_metric_is_finite_at_saturated_or_broken_outputs(task, kind, outputs, y, min_loss) -> None:
    got = task_metrics(np.array(outputs), np.array(y), task, kind)

    assert all(np.isfinite(v) for v in got.values()), got
    assert got["loss"] > min_loss  # confidently wrong on at least one example


def test_rejects_outputs_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="3 outputs for 2 targets"):
        task_metrics(np.zeros((3, 2)), np.zeros(2, int), "classification", "logits")
    with pytest.raises(ValueError, match="one value per example"):
        task_metrics(np.zeros((3, 2)), np.zeros(3), "regression", "value")
    with pytest.raises(ValueError, match="not probabilities"):
        task_metrics(np.zeros((3, 2)), np.zeros(3), "regression", "probabilities")


def test_evaluate_model_runs_the_task_output_through_onnx_runtime() -> None:
    definition, weights = gemm_mlp(5, 8, 1, seed=1)
    model = definition.materialize(weights)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 5)).astype(np.float32)
    y = rng.integers(0, 2, 50)

    got = evaluate_model(model, x, y, "binary", batch_size=7)

    z = run_model(model, {"x": x})["y"]
    assert got == task_metrics(z, y, "binary", "logit")
    assert got["roc-auc"] == pytest.approx(metrics.roc_auc_score(y, z[:, 0]))


def test_classification_metrics_keeps_its_two_keys() -> None:
    definition, weights = gemm_mlp(5, 8, 3)
    x = np.random.default_rng(0).normal(size=(20, 5)).astype(np.float32)
    y = np.arange(20) % 3

    got = classification_metrics(definition.materialize(weights), x, y)

    full = evaluate_model(definition.materialize(weights), x, y, "classification")
    assert got == {"accuracy": full["accuracy"], "loss": full["loss"]}
