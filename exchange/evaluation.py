"""Evaluate a version on raw rows, as the exported model would see them (ONNX Runtime).

The served model is the definition with its weights and, when the federation standardises or
imputes, the preprocessing wrapped around it as ONNX nodes (:func:`flonnx.exchange.preprocess.wrap_model`);
without preprocessing, rows are reshaped to the model's input (e.g. 64 columns to ``1×8×8``). The
server evaluates on its evaluation source with this; a node evaluates the final model on its own
rows with it and sends back metrics only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np
import onnx

from flonnx.exchange.definition import Definition
from flonnx.exchange.models import input_dims
from flonnx.exchange.ort import evaluate_model
from flonnx.exchange.preprocess import METADATA_KEY, Preprocessing, wrap_model

__all__ = ["evaluate_rows", "evaluation_outputs", "served_model"]


def served_model(definition: Definition, weights: Mapping[str, np.ndarray]) -> onnx.ModelProto:
    """The standalone model a user runs on raw rows (preprocessing included)."""
    model = definition.materialize(weights)
    if METADATA_KEY in definition.metadata:
        model = wrap_model(model, Preprocessing.from_json(definition.metadata[METADATA_KEY]))
    return model


def evaluate_rows(
    definition: Definition, weights: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray, task: str
) -> dict[str, float]:
    """The task's metrics of this version on rows ``x`` (NaN = missing) and labels/targets ``y``.

    ``x`` holds numeric columns as they are and categorical ones already one-hot encoded (as
    :meth:`flonnx.exchange.sources.DataSource.load` gives them): the served model minus its string
    encoding (which ``tests/exchange/test_preprocess.py`` checks against the full one).
    """
    model, x = evaluation_inputs(definition, weights, x)
    return evaluate_model(model, x, y, task)


def evaluation_outputs(
    definition: Definition, weights: Mapping[str, np.ndarray], x: np.ndarray, task: str,
    *, batch_size: int = 4096,
) -> tuple[np.ndarray, str]:
    """The evaluated output of this version on rows ``x`` (as :func:`evaluate_rows` takes them) and its kind.

    What :func:`flonnx.exchange.metrics.task_metrics` takes, e.g. to compute metrics on subsets of
    the rows from one run of the model (:mod:`flonnx.exchange.groups`).
    """
    from flonnx.exchange.ort import session
    from flonnx.exchange.task import task_output

    model, x = evaluation_inputs(definition, weights, x)
    output = task_output(model, task)
    sess = session(model)
    name = sess.get_inputs()[0].name
    raw = np.concatenate([sess.run([output.name], {name: x[i: i + batch_size]})[0]
                          for i in range(0, len(x), batch_size)])
    return raw, output.kind.value


def evaluation_inputs(
    definition: Definition, weights: Mapping[str, np.ndarray], x: np.ndarray
) -> tuple[onnx.ModelProto, np.ndarray]:
    """The model the server evaluates and ``x`` as that model takes it.

    The model has the preprocessing wrapped in, minus its string encoding; ``x`` is reshaped to the
    model's input dims, contiguous float32.
    """
    model = definition.materialize(weights)
    if METADATA_KEY in definition.metadata:
        pre = Preprocessing.from_json(definition.metadata[METADATA_KEY])
        model = wrap_model(model, replace(pre, vocabularies=()))
    dims = input_dims(model)
    if dims is not None and len(dims) > 1:
        x = x.reshape((len(x), *dims))
    return model, np.ascontiguousarray(x, np.float32)
