"""scikit-learn ``MLPClassifier`` <-> a flonnx definition that is a dense chain.

``coefs_[i]`` is ``[in, out]``; a torch-exported Gemm weight is ``[out, in]`` (``transB=1``). The map
comes from :func:`~exchange.adapters.dense_chain.read_dense_chain`, which reads the graph.
scikit-learn is imported only in this module.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from exchange.adapters.dense_chain import DenseChain, read_dense_chain
from exchange.definition import Definition
from exchange.errors import InvalidModel

if TYPE_CHECKING:
    from sklearn.neural_network import MLPClassifier

__all__ = ["classifier_from_weights", "read_dense_chain", "to_sklearn", "weights_from_classifier"]

_SKLEARN_ACTIVATION = {"Relu": "relu", "Tanh": "tanh", "Sigmoid": "logistic", "Identity": "identity"}


def to_sklearn(
    chain: DenseChain, weights: Mapping[str, np.ndarray]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``(coefs_, intercepts_)`` in scikit-learn's layout from definition weights."""
    coefs, intercepts = [], []
    for layer in chain.layers:
        w = np.asarray(weights[layer.weight])
        coefs.append(np.ascontiguousarray(w.T if layer.transposed else w))
        b = weights[layer.bias].reshape(-1) if layer.bias else np.zeros(layer.out_features, w.dtype)
        intercepts.append(np.array(b, copy=True))
    return coefs, intercepts


def weights_from_classifier(
    chain: DenseChain, definition: Definition, clf: MLPClassifier
) -> dict[str, np.ndarray]:
    """Definition weights (names, layouts and dtypes of the definition) from a fitted classifier."""
    out: dict[str, np.ndarray] = {}
    for layer, coef, intercept in zip(chain.layers, clf.coefs_, clf.intercepts_, strict=True):
        spec = definition.specs[layer.weight]
        w = coef.T if layer.transposed else coef
        out[layer.weight] = np.ascontiguousarray(w, dtype=spec.dtype)
        if layer.bias:
            bias_spec = definition.specs[layer.bias]
            out[layer.bias] = np.asarray(intercept, dtype=bias_spec.dtype).reshape(bias_spec.shape)
    return out


def classifier_from_weights(
    definition: Definition,
    weights: Mapping[str, np.ndarray],
    *,
    random_state: np.random.RandomState,
    **params: Any,
) -> tuple[MLPClassifier, DenseChain]:
    """A ready-to-train ``MLPClassifier`` holding ``weights``, with a fresh optimiser.

    ``params`` are passed to ``MLPClassifier`` (learning_rate_init, batch_size, alpha, ...).
    """
    from sklearn.neural_network import MLPClassifier

    chain = read_dense_chain(definition)
    if chain.output_activation == "LogSoftmax":
        raise InvalidModel("MLPClassifier cannot reproduce a LogSoftmax output")
    dtype = definition.specs[chain.layers[0].weight].dtype
    n_features, n_classes = chain.layers[0].in_features, chain.layers[-1].out_features
    if n_classes < 3:
        raise InvalidModel(f"MLPClassifier maps softmax outputs of >= 3 classes; got {n_classes}")
    clf = MLPClassifier(
        hidden_layer_sizes=tuple(layer.out_features for layer in chain.layers[:-1]),
        activation=_SKLEARN_ACTIVATION[chain.activation],
        solver="adam",
        shuffle=True,
        random_state=random_state,
        **params,
    )
    classes = np.arange(n_classes)
    # One public partial_fit call builds every attribute (label binarizer, layer count, output
    # activation); its result is then replaced by the definition's weights.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "batch_size larger than sample size"
        clf.partial_fit(np.zeros((n_classes, n_features), dtype=dtype), classes, classes=classes)
    clf.coefs_, clf.intercepts_ = to_sklearn(chain, weights)
    # A fresh Adam state for the new weights: partial_fit creates one when none exists.
    del clf._optimizer
    clf.t_, clf.n_iter_, clf.loss_curve_ = 0, 0, []
    return clf, chain
