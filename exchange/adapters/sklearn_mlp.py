"""scikit-learn ``MLPClassifier``/``MLPRegressor`` <-> a flonnx definition that is a dense chain.

``coefs_[i]`` is ``[in, out]``; a torch-exported Gemm weight is ``[out, in]`` (``transB=1``). The map
comes from :func:`~flonnx.exchange.adapters.dense_chain.read_dense_chain`, which reads the graph.
scikit-learn is imported only in this module.

Per task (see :mod:`flonnx.exchange.task`):

* classification with >= 3 classes: ``MLPClassifier`` (softmax output), layer for layer;
* one logit (binary): ``MLPClassifier`` with classes {0, 1}, whose single logistic unit is the logit;
* two classes (binary, or classification with 2 classes): ``MLPClassifier``'s single unit is the
  difference of the two output rows, ``w1 - w0`` and ``b1 - b0``: ``softmax([z0, z1])[1] =
  sigmoid(z1 - z0)``, so the estimator computes exactly the graph's probabilities. The mean ``m`` of
  the two rows does not change the probabilities and scikit-learn cannot see it; mapping back keeps it
  as it was: ``w0' = m - d'/2``, ``w1' = m + d'/2``;
* regression: ``MLPRegressor`` (identity output), one output unit.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from flonnx.exchange.adapters.dense_chain import DenseChain, read_dense_chain
from flonnx.exchange.definition import Definition
from flonnx.exchange.errors import InvalidModel
from flonnx.exchange.task import OutputKind, Task, TaskOutput, parse_task, task_output

if TYPE_CHECKING:
    from sklearn.neural_network import MLPClassifier, MLPRegressor

__all__ = [
    "SklearnMap",
    "classifier_from_weights",
    "estimator_from_weights",
    "estimator_outputs",
    "read_dense_chain",
    "reference_outputs",
    "to_sklearn",
    "weights_from_classifier",
    "weights_from_estimator",
]

_SKLEARN_ACTIVATION = {"Relu": "relu", "Tanh": "tanh", "Sigmoid": "logistic", "Identity": "identity"}


def to_sklearn(
    chain: DenseChain, weights: Mapping[str, np.ndarray]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``(coefs_, intercepts_)`` in scikit-learn's layout from definition weights."""
    coefs, intercepts = [], []
    for layer in chain.layers:
        w = np.asarray(weights[layer.weight])
        # a copy: scikit-learn updates coefs_ in place and a view may be read-only
        coefs.append(np.array(w.T if layer.transposed else w, order="C", copy=True))
        b = weights[layer.bias].reshape(-1) if layer.bias else np.zeros(layer.out_features, w.dtype)
        intercepts.append(np.array(b, copy=True))
    return coefs, intercepts


@dataclass(frozen=True)
class SklearnMap:
    """How an estimator's parameters map onto a definition's weights.

    ``pair_mean`` holds, for a two-class graph mapped onto one logistic unit, the mean of the two
    output rows (weight column ``[in]`` in scikit-learn's layout, bias scalar) that mapping back keeps.
    """

    chain: DenseChain
    task: Task
    output: TaskOutput
    pair_mean: tuple[np.ndarray, np.ndarray] | None = None


def _pair_to_unit(
    coef: np.ndarray, intercept: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(difference coef [in, 1], difference intercept [1], mean coef [in], mean intercept [])."""
    c64, b64 = coef.astype(np.float64), intercept.astype(np.float64)
    diff_c = (c64[:, 1] - c64[:, 0]).astype(coef.dtype)[:, None]
    diff_b = np.array([b64[1] - b64[0]], intercept.dtype)
    return diff_c, diff_b, (c64[:, 0] + c64[:, 1]) / 2.0, np.array((b64[0] + b64[1]) / 2.0)


def _unit_to_pair(
    coef: np.ndarray, intercept: np.ndarray, mean: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`_pair_to_unit` around the kept mean: columns ``m - d/2`` and ``m + d/2``."""
    d_c, d_b = coef.astype(np.float64)[:, 0], float(np.asarray(intercept, np.float64).reshape(-1)[0])
    m_c, m_b = mean
    new_c = np.stack([m_c - d_c / 2.0, m_c + d_c / 2.0], axis=1)
    new_b = np.array([m_b - d_b / 2.0, m_b + d_b / 2.0])
    return new_c, new_b


def weights_from_estimator(
    mapping: SklearnMap, definition: Definition, estimator: MLPClassifier | MLPRegressor
) -> dict[str, np.ndarray]:
    """Definition weights (names, layouts and dtypes of the definition) from a fitted estimator."""
    coefs, intercepts = list(estimator.coefs_), list(estimator.intercepts_)
    if mapping.pair_mean is not None:
        coefs[-1], intercepts[-1] = _unit_to_pair(coefs[-1], intercepts[-1], mapping.pair_mean)
    out: dict[str, np.ndarray] = {}
    for layer, coef, intercept in zip(mapping.chain.layers, coefs, intercepts, strict=True):
        spec = definition.specs[layer.weight]
        w = coef.T if layer.transposed else coef
        out[layer.weight] = np.ascontiguousarray(w, dtype=spec.dtype)
        if layer.bias:
            bias_spec = definition.specs[layer.bias]
            out[layer.bias] = np.asarray(intercept, dtype=bias_spec.dtype).reshape(bias_spec.shape)
    return out


def weights_from_classifier(
    chain: DenseChain, definition: Definition, clf: MLPClassifier
) -> dict[str, np.ndarray]:
    """Definition weights from a classifier mapped layer for layer (>= 3 classes or one logit)."""
    if clf.coefs_[-1].shape[1] != chain.layers[-1].out_features:
        raise InvalidModel(
            f"the classifier has {clf.coefs_[-1].shape[1]} output units, the graph "
            f"{chain.layers[-1].out_features}; map a two-class graph back with weights_from_estimator"
        )
    return weights_from_estimator(
        SklearnMap(chain, Task.CLASSIFICATION, TaskOutput("", OutputKind.LOGITS, 0)), definition, clf)


def estimator_from_weights(
    definition: Definition,
    weights: Mapping[str, np.ndarray],
    task: Task | str = Task.CLASSIFICATION,
    *,
    random_state: np.random.RandomState,
    **params: Any,
) -> tuple[MLPClassifier | MLPRegressor, SklearnMap]:
    """A ready-to-train estimator for ``task`` holding ``weights``, with a fresh optimiser.

    ``params`` are passed to the estimator (learning_rate_init, batch_size, alpha, ...).

    Raises:
        InvalidModel: the graph is no dense chain, its output does not fit the task, or it ends in
            an activation scikit-learn's estimator for the task does not have.
    """
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    task = parse_task(task)
    output = task_output(definition, task)
    chain = read_dense_chain(definition)
    if chain.output_activation == "LogSoftmax":
        raise InvalidModel("scikit-learn's MLPClassifier cannot reproduce a LogSoftmax output")
    if task is Task.REGRESSION and chain.output_activation is not None:
        raise InvalidModel(
            f"MLPRegressor has an identity output; the graph ends in {chain.output_activation}")
    dtype = definition.specs[chain.layers[0].weight].dtype
    n_features = chain.layers[0].in_features
    common = {
        "hidden_layer_sizes": tuple(layer.out_features for layer in chain.layers[:-1]),
        "activation": _SKLEARN_ACTIVATION[chain.activation],
        "solver": "adam",
        "shuffle": True,
        "random_state": random_state,
        **params,
    }
    estimator: MLPClassifier | MLPRegressor
    # One public partial_fit call builds every attribute (label binarizer, layer count, output
    # activation); its result is then replaced by the definition's weights.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "batch_size larger than sample size"
        if task is Task.REGRESSION:
            estimator = MLPRegressor(**common)
            estimator.partial_fit(np.zeros((2, n_features), dtype=dtype), np.zeros(2, dtype=dtype))
        else:
            n_classes = 2 if task is Task.BINARY else output.width
            classes = np.arange(n_classes)
            estimator = MLPClassifier(**common)
            estimator.partial_fit(np.zeros((n_classes, n_features), dtype=dtype), classes, classes=classes)
    coefs, intercepts = to_sklearn(chain, weights)
    pair_mean = None
    if task is not Task.REGRESSION and output.width == 2:
        coefs[-1], intercepts[-1], mean_c, mean_b = _pair_to_unit(coefs[-1], intercepts[-1])
        pair_mean = (mean_c, mean_b)
    estimator.coefs_, estimator.intercepts_ = coefs, intercepts
    # A fresh Adam state for the new weights: partial_fit creates one when none exists.
    del estimator._optimizer
    estimator.t_, estimator.n_iter_, estimator.loss_curve_ = 0, 0, []
    return estimator, SklearnMap(chain, task, output, pair_mean)


def classifier_from_weights(
    definition: Definition,
    weights: Mapping[str, np.ndarray],
    *,
    random_state: np.random.RandomState,
    **params: Any,
) -> tuple[MLPClassifier, DenseChain]:
    """:func:`estimator_from_weights` for classification: an ``MLPClassifier`` and the dense chain."""
    clf, mapping = estimator_from_weights(
        definition, weights, Task.CLASSIFICATION, random_state=random_state, **params)
    return clf, mapping.chain  # type: ignore[return-value]


def estimator_outputs(
    mapping: SklearnMap, estimator: MLPClassifier | MLPRegressor, x: np.ndarray
) -> np.ndarray:
    """What the estimator computes on ``x``: class probabilities ``[N, 2 or classes]`` or values ``[N]``."""
    if mapping.task is Task.REGRESSION:
        return np.asarray(estimator.predict(x)).reshape(-1)
    return np.asarray(estimator.predict_proba(x))  # type: ignore[union-attr]


def reference_outputs(mapping: SklearnMap, output: np.ndarray) -> np.ndarray:
    """The graph's output (e.g. ONNX Runtime's) as :func:`estimator_outputs` reports it."""
    kind = mapping.output.kind
    out = np.asarray(output, np.float64)
    if kind is OutputKind.VALUE:
        return out.reshape(-1)
    if kind is OutputKind.LOGIT:
        p = 1.0 / (1.0 + np.exp(-out.reshape(-1)))
        return np.stack([1.0 - p, p], axis=1)
    if kind is OutputKind.LOGITS:
        e = np.exp(out - out.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]
    return out
