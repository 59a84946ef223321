"""Predictions of any recorded version on a table with the spec's schema (``flonnx predict``).

The model run is the exported one (:func:`flonnx.exchange.export.export_version`): the federation's
preprocessing is part of its graph, so it takes the raw columns — numbers as they are (a missing
cell imputed by the graph when the federation imputes), categorical columns as their text values.
The columns are found by name, in the order the federation agreed, so a table may carry extra
columns (an id, the label) in any order. ONNX Runtime runs it; nothing is trained or recorded.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from flonnx.exchange.data import Table
from flonnx.exchange.data._cells import as_text, missing_mask, to_numbers
from flonnx.exchange.errors import DataError, FlonnxError
from flonnx.exchange.export import export_version
from flonnx.exchange.models import input_dims
from flonnx.exchange.ort import session
from flonnx.exchange.preprocess import METADATA_KEY, Preprocessing
from flonnx.exchange.registry import Registry
from flonnx.exchange.spec import FederationSpec, spec_from_json
from flonnx.exchange.task import OutputKind, task_output

__all__ = ["Predictions", "predict_table", "run_spec"]


@dataclass(frozen=True)
class Predictions:
    """One prediction per input row.

    Attributes:
        rows: the input's data row numbers (1 = the first row after the header).
        predicted: class labels (in the label's own values when the spec names the classes, else
            class indices) or regression values.
        classes: the class names of ``scores``' columns (empty for regression).
        scores: ``[N, classes]`` class probabilities, or ``None`` for regression.
    """

    rows: np.ndarray
    predicted: list[str | int | float]
    classes: tuple[str, ...]
    scores: np.ndarray | None

    def to_csv(self) -> str:
        """``row,prediction[,p(CLASS)…]`` with one line per input row."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["row", "prediction", *(f"p({c})" for c in self.classes)])
        for i, row in enumerate(self.rows):
            value = self.predicted[i]
            cells = [int(row), repr(float(value)) if isinstance(value, float) else value]
            if self.scores is not None:
                cells += [f"{p:.6g}" for p in self.scores[i]]
            writer.writerow(cells)
        return out.getvalue()


def run_spec(registry: Registry, version_id: str) -> FederationSpec:
    """The federation spec of the (first) run that recorded ``version_id``."""
    config = registry.run(registry.stored_version(version_id).run_id).config
    if "spec" not in config:
        raise FlonnxError(f"the run of version {version_id[:12]} recorded no spec")
    return spec_from_json(config["spec"])


def predict_table(registry: Registry, version_id: str, table: Table) -> Predictions:
    """Run ``version_id`` (its exported model, preprocessing included) on ``table``.

    Raises:
        FlonnxError: a rejected version (no weights); a missing feature column (named); a cell that
            is not a number; a missing cell where the federation does not impute.
    """
    model = export_version(registry, version_id)
    definition = registry.get_definition(registry.record(version_id).definition_id)
    spec = run_spec(registry, version_id)
    pre = _preprocessing(model)
    inputs = _inputs(model, input_dims(definition.proto), spec, pre, table)
    sess = session(model)
    output = task_output(definition, spec.task)  # the served model's output keeps its name
    raw = np.asarray(sess.run([output.name], inputs)[0], np.float64)
    return _predictions(raw, output.kind, spec, table.num_rows)


def _preprocessing(model: onnx.ModelProto) -> Preprocessing | None:
    text = next((p.value for p in model.metadata_props if p.key == METADATA_KEY), None)
    return None if text is None else Preprocessing.from_json(text)


def _features(spec: FederationSpec, pre: Preprocessing | None, table: Table) -> tuple[str, ...]:
    if pre is not None and pre.features:
        return pre.features
    data = spec.data
    if data is not None and data.features:
        return data.features
    skip = {data.label if data else "label", *([data.partition_column] if data and data.partition_column
                                                else [])}
    return tuple(c for c in table.column_names if c not in skip)


def _inputs(model: onnx.ModelProto, dims: Sequence[int] | None, spec: FederationSpec,
            pre: Preprocessing | None, table: Table) -> dict[str, np.ndarray]:
    features = _features(spec, pre, table)
    for column in features:
        if column not in table.columns:
            raise DataError(f"column {column!r} is not in {table.name}; version's model needs it "
                            f"(it reads {len(features)} columns: {', '.join(features[:8])}"
                            f"{', …' if len(features) > 8 else ''})")
    categorical = dict(pre.vocabularies) if pre is not None else {}
    imputes = pre is not None  # the graph replaces NaN by the federated mean
    numeric = [c for c in features if c not in categorical]
    blocks = []
    for column in numeric:
        numbers, missing = to_numbers(table.columns[column], column)
        if missing.any() and not imputes:
            row = int(np.flatnonzero(missing)[0]) + 1
            raise DataError(f"column {column!r}, row {row}: missing, and this version's model does not "
                            "impute missing values")
        blocks.append(numbers)
    initializers = {t.name for t in model.graph.initializer}
    data_inputs = [v for v in model.graph.input if v.name not in initializers]
    float_input = next(v for v in data_inputs if v.name not in categorical)
    x = np.stack(blocks, axis=1).astype(np.float32) if blocks else np.zeros((table.num_rows, 0), np.float32)
    width = x.shape[1] if categorical or not dims else int(np.prod(dims))
    if x.shape[1] != width:
        raise DataError(f"{table.name} gives {x.shape[1]} numeric feature columns; the model reads {width}")
    if dims is not None and len(dims) > 1:
        x = x.reshape((len(x), *dims))
    inputs = {float_input.name: x}
    for column in categorical:
        values = table.columns[column]
        gone = missing_mask(values, numeric=False)
        inputs[column] = np.asarray(["" if g else as_text(v) for v, g in zip(values, gone, strict=True)],
                                    dtype=object)
    return inputs


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def _predictions(raw: np.ndarray, kind: OutputKind, spec: FederationSpec, n: int) -> Predictions:
    rows = np.arange(1, n + 1)
    if kind is OutputKind.VALUE:
        return Predictions(rows, [float(v) for v in raw.reshape(n)], (), None)
    if kind is OutputKind.LOGITS:
        scores = _softmax(raw)
    elif kind is OutputKind.PROBABILITIES:
        scores = raw
    else:
        p1 = raw.reshape(n)
        p1 = 1.0 / (1.0 + np.exp(-p1)) if kind is OutputKind.LOGIT else p1
        scores = np.stack([1.0 - p1, p1], axis=1)
    names: Sequence[str] | None = spec.data.classes if spec.data is not None else None
    index = np.argmax(scores, axis=1)
    if names is not None and len(names) == scores.shape[1]:
        return Predictions(rows, [names[i] for i in index], tuple(names), scores)
    return Predictions(rows, [int(i) for i in index], tuple(str(i) for i in range(scores.shape[1])),
                       scores)
