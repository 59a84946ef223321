"""Per-class metrics of a version on its run's evaluation data, for the model card.

The rows are the server's evaluation source (:func:`flonnx.exchange.sources.evaluation_source`: the
spec's hold-out or evaluation file) and the model the one the server evaluates with
(:func:`flonnx.exchange.evaluation.evaluate_rows`: the served model minus its string encoding, run by
ONNX Runtime). A class's precision, recall and F1 are those of ``sklearn.metrics.classification_report``
(``zero_division=0``: a class never predicted has precision 0); its support is its count in the rows.
Everything is deterministic in the registry and the spec.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from flonnx.exchange.definition import Definition
from flonnx.exchange.evaluation import evaluation_outputs
from flonnx.exchange.task import OutputKind, Task

__all__ = ["ClassMetrics", "per_class_metrics", "predicted_classes"]


@dataclass(frozen=True)
class ClassMetrics:
    """One class's precision, recall, F1 and support (its number of rows)."""

    label: str
    precision: float
    recall: float
    f1: float
    support: int

    def describe(self) -> str:
        """``precision=… recall=… f1=… support=N`` (floats as ``repr``: exact and stable)."""
        return (f"precision={self.precision!r} recall={self.recall!r} f1={self.f1!r} "
                f"support={self.support}")


def predicted_classes(definition: Definition, weights: Mapping[str, np.ndarray], x: np.ndarray,
                      task: Task | str, *, batch_size: int = 4096) -> np.ndarray:
    """The class index the version predicts for each row of ``x`` (as ``evaluate_rows`` sees them)."""
    raw, kind_name = evaluation_outputs(definition, weights, x, str(getattr(task, "value", task)),
                                        batch_size=batch_size)
    kind = OutputKind(kind_name)
    if kind.per_class:
        return np.argmax(raw, axis=1).astype(np.int64)
    threshold = 0.0 if kind is OutputKind.LOGIT else 0.5
    return (raw.reshape(len(x)) > threshold).astype(np.int64)


def per_class_metrics(y: np.ndarray, predicted: np.ndarray, labels: Sequence[str]) -> list[ClassMetrics]:
    """Precision, recall, F1 and support of each class ``0 .. len(labels)-1``, named by ``labels``."""
    y, predicted = np.asarray(y, np.int64), np.asarray(predicted, np.int64)
    out = []
    for index, label in enumerate(labels):
        hits = int(np.sum((predicted == index) & (y == index)))
        predicted_n, support = int(np.sum(predicted == index)), int(np.sum(y == index))
        precision = hits / predicted_n if predicted_n else 0.0
        recall = hits / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out.append(ClassMetrics(str(label), float(precision), float(recall), float(f1), support))
    return out
