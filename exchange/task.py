"""What a federation fits: the task, and which graph output a trainer fits for it.

A task (``classification``, ``binary``, ``regression``) names the loss every trainer minimises and
the metrics ONNX Runtime reports. The definition's output must fit the task; :func:`task_output`
reads the graph to find that output and its kind:

* classification: ``[batch, classes]`` logits, or probabilities when a ``Softmax`` produces them
  (skl2onnx ends MLPClassifier and LogisticRegression in Softmax, next to an integer label output);
* binary: one logit (``[batch, 1]`` or ``[batch]``; a probability when a ``Sigmoid`` produces it) or
  two classes (``[batch, 2]`` logits or probabilities);
* regression: one value (``[batch, 1]`` or ``[batch]``).

A ``LogSoftmax`` output counts as logits: the softmax of log-probabilities is the probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import onnx

from flonnx.exchange.definition import Definition
from flonnx.exchange.errors import FlonnxError, InvalidModel

__all__ = [
    "HEADLINE_METRIC",
    "ClassifierOutput",
    "InvalidTargets",
    "InvalidTask",
    "OutputKind",
    "Task",
    "TaskOutput",
    "check_targets",
    "classifier_output",
    "num_classes",
    "parse_task",
    "task_output",
]

#: The one metric that stands for a task (a site evaluation's worst/mean/spread, the local baseline).
HEADLINE_METRIC = {"classification": "accuracy", "binary": "accuracy", "regression": "r2"}

_FLOATS = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16}
_RESHAPING = frozenset({"Identity", "Squeeze", "Unsqueeze", "Reshape", "Flatten"})


class Task(StrEnum):
    """The learning task of a federation."""

    CLASSIFICATION = "classification"
    BINARY = "binary"
    REGRESSION = "regression"


class OutputKind(StrEnum):
    """What the fitted graph output holds."""

    LOGITS = "logits"  # [batch, classes], classes >= 2
    PROBABILITIES = "probabilities"  # [batch, classes] from Softmax
    LOGIT = "logit"  # binary: one logit per example
    PROBABILITY = "probability"  # binary: one probability per example, from Sigmoid
    VALUE = "value"  # regression: one value per example

    @property
    def per_class(self) -> bool:
        """Whether the output has one column per class (labels index it)."""
        return self in (OutputKind.LOGITS, OutputKind.PROBABILITIES)


class InvalidTask(FlonnxError):
    """A task name that flonnx does not know."""


class InvalidTargets(FlonnxError):
    """Labels or regression targets that do not fit the task and the model's output."""


def parse_task(text: str | Task) -> Task:
    """The :class:`Task` named ``text`` (case and surrounding spaces ignored)."""
    if isinstance(text, Task):
        return text
    try:
        return Task(str(text).strip().lower())
    except ValueError:
        allowed = ", ".join(task.value for task in Task)
        raise InvalidTask(f"unknown task {text!r}; allowed tasks: {allowed}") from None


@dataclass(frozen=True)
class TaskOutput:
    """The graph output a trainer fits for a task, its kind and its width (columns; 1 if rank 1)."""

    name: str
    kind: OutputKind
    width: int


@dataclass(frozen=True)
class ClassifierOutput:
    """The graph output a classifier trains on, and whether it holds logits or probabilities."""

    name: str
    probabilities: bool


def _proto(model: Definition | onnx.ModelProto) -> onnx.ModelProto:
    return model.proto if isinstance(model, Definition) else model


def _float_output(proto: onnx.ModelProto) -> tuple[onnx.ValueInfoProto, str | None]:
    """The first floating-point output of rank 1 or 2, and the op computing its values.

    Ops that only reshape (``Squeeze``, ``Reshape``, ...) are looked through: a ``Sigmoid`` squeezed
    to ``[batch]`` still outputs probabilities.
    """
    producers = {out: node for node in proto.graph.node for out in node.output}
    for value in proto.graph.output:
        tensor = value.type.tensor_type
        if tensor.elem_type in _FLOATS and (not tensor.HasField("shape") or len(tensor.shape.dim) in (1, 2)):
            node = producers.get(value.name)
            while node is not None and node.op_type in _RESHAPING and node.input:
                node = producers.get(node.input[0])
            return value, node.op_type if node is not None else None
    names = [v.name for v in proto.graph.output]
    raise InvalidModel(f"no floating-point [batch] or [batch, n] output to train on among {names}")


def _width(proto: onnx.ModelProto, value: onnx.ValueInfoProto) -> tuple[int, int | None]:
    """(rank, columns) of an output; columns from the declared shape, else from shape inference."""
    for candidate in (value, _inferred(proto, value.name)):
        tensor = candidate.type.tensor_type if candidate is not None else None
        if tensor is None or not tensor.HasField("shape"):
            continue
        dims = tensor.shape.dim
        if len(dims) == 1:
            return 1, 1
        if len(dims) == 2 and dims[1].HasField("dim_value"):
            return 2, int(dims[1].dim_value)
    return 2, None


def _inferred(proto: onnx.ModelProto, name: str) -> onnx.ValueInfoProto | None:
    try:
        inferred = onnx.shape_inference.infer_shapes(proto)
    except Exception:  # noqa: BLE001 - inference is a best effort; the caller reports unknown width
        return None
    return next((v for v in inferred.graph.output if v.name == name), None)


def task_output(definition: Definition | onnx.ModelProto, task: Task | str) -> TaskOutput:
    """The output a trainer fits for ``task``; :class:`InvalidModel` says why the model does not fit.

    The output is the graph's first floating-point output of rank 1 or 2.
    """
    task = parse_task(task)
    proto = _proto(definition)
    value, producer = _float_output(proto)
    rank, width = _width(proto, value)
    where = f"output {value.name!r}"
    if width is None:
        raise InvalidModel(f"{where} has an unknown number of columns; declare its shape [batch, n]")
    if task is Task.REGRESSION:
        if width != 1:
            raise InvalidModel(
                f"task regression fits one value per example, but {where} has {width} columns; "
                "the model must end in one unit ([batch, 1] or [batch])"
            )
        return TaskOutput(value.name, OutputKind.VALUE, 1)
    if width == 1:
        if task is Task.CLASSIFICATION:
            raise InvalidModel(
                f"task classification needs one column per class (>= 2), but {where} has one; "
                "use task binary for a model with one logit"
            )
        if producer == "Softmax":
            raise InvalidModel(f"{where} is a Softmax over one column, which is always 1")
        kind = OutputKind.PROBABILITY if producer == "Sigmoid" else OutputKind.LOGIT
        return TaskOutput(value.name, kind, 1)
    if rank != 2:
        raise InvalidModel(f"{where} must be [batch, classes] for task {task.value}")
    if task is Task.BINARY and width != 2:
        raise InvalidModel(
            f"task binary fits one logit or two classes, but {where} has {width} columns; "
            "use task classification for more classes"
        )
    kind = OutputKind.PROBABILITIES if producer == "Softmax" else OutputKind.LOGITS
    return TaskOutput(value.name, kind, width)


def num_classes(definition: Definition | onnx.ModelProto, task: Task | str) -> int | None:
    """How many labels the model distinguishes: its width (classification), 2 (binary), None (regression)."""
    task = parse_task(task)
    if task is Task.REGRESSION:
        return None
    output = task_output(definition, task)
    return 2 if task is Task.BINARY else output.width


def check_targets(y: np.ndarray, task: Task | str, classes: int | None) -> None:
    """Raise :class:`InvalidTargets` unless ``y`` fits the task.

    ``y`` must be a 1-D vector of integer labels in ``[0, classes)`` (classification, binary) or of
    finite numbers (regression).
    """
    task = parse_task(task)
    y = np.asarray(y)
    if y.ndim != 1:
        raise InvalidTargets(f"targets must be one value per example (shape [N]); got shape {list(y.shape)}")
    if task is Task.REGRESSION:
        if not np.issubdtype(y.dtype, np.number) or not np.all(np.isfinite(y)):
            raise InvalidTargets("regression targets must be finite numbers")
        return
    if not np.issubdtype(y.dtype, np.integer):
        raise InvalidTargets(f"task {task.value} needs integer labels; got dtype {y.dtype}")
    if y.size and (y.min() < 0 or classes is None or y.max() >= classes):
        raise InvalidTargets(
            f"task {task.value} with {classes} classes needs labels in 0..{(classes or 0) - 1}; "
            f"got labels from {int(y.min())} to {int(y.max())}"
        )


def classifier_output(definition: Definition) -> ClassifierOutput:
    """The classification output (see :func:`task_output`): logits, or probabilities from Softmax."""
    output = task_output(definition, Task.CLASSIFICATION)
    return ClassifierOutput(output.name, output.kind is OutputKind.PROBABILITIES)
