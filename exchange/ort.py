"""ONNX Runtime: the reference executor for evaluation, parity checks and exports."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx

from flonnx.exchange.definition import Definition, check_graph
from flonnx.exchange.metrics import task_metrics
from flonnx.exchange.task import Task, task_output

__all__ = ["classification_metrics", "evaluate_model", "probe_inputs", "run_definition", "run_model",
           "session", "weights_as_inputs"]

#: How many definitions' sessions :func:`run_definition` keeps (least recently used dropped first).
CACHED_SESSIONS = 4
_sessions: OrderedDict[str, Any] = OrderedDict()
_sessions_lock = threading.Lock()


def session(model: onnx.ModelProto, *, threads: int = 1):  # type: ignore[no-untyped-def]
    """An ONNX Runtime CPU session; one intra-op thread by default so results are reproducible.

    The graph is checked first (:func:`flonnx.exchange.definition.check_graph`: structure, no
    external data, no constant-shaped allocation above ``MAX_TENSOR_ELEMENTS``), so a hostile file
    is refused with :class:`InvalidModel` before ONNX Runtime sees it.
    """
    import onnxruntime as ort

    check_graph(model)

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(
        model.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"]
    )


def run_model(model: onnx.ModelProto, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run ``model`` once on ``inputs``; returns every graph output by name."""
    sess = session(model)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, dict(inputs)), strict=True))


def weights_as_inputs(definition: Definition) -> onnx.ModelProto:
    """``definition``'s graph with its weights as graph inputs instead of initializers.

    One ONNX Runtime session of it serves every set of weights of that definition: a caller feeds
    the weights with the data, instead of building a session around each set (for a 40 MB model
    that costs more than running it on a small batch).
    """
    model = definition.proto
    graph = model.graph
    kept = [t for t in graph.initializer if t.name not in definition.specs]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    declared = {v.name for v in graph.input}
    for name, spec in sorted(definition.specs.items()):
        if name not in declared:
            graph.input.append(onnx.helper.make_tensor_value_info(
                name, onnx.helper.np_dtype_to_tensor_dtype(spec.dtype), list(spec.shape)))
    return model


def run_definition(
    definition: Definition, weights: Mapping[str, np.ndarray], inputs: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Run ``definition`` with ``weights`` on ``inputs``; returns every graph output by name.

    The same computation as :func:`run_model` of ``definition.materialize(weights)``, on one session
    per definition (:func:`weights_as_inputs`; the last :data:`CACHED_SESSIONS` definitions are
    kept), so a node checking each round's weights builds a session once per definition. The
    weights are validated against the definition first (names, shapes, dtypes).
    """
    definition.validate(weights, source="weights")
    with _sessions_lock:
        sess = _sessions.get(definition.id)
        if sess is not None:
            _sessions.move_to_end(definition.id)
    if sess is None:
        sess = session(weights_as_inputs(definition))
        with _sessions_lock:
            _sessions[definition.id] = sess
            while len(_sessions) > CACHED_SESSIONS:
                _sessions.popitem(last=False)
    feed = {**inputs, **{name: np.ascontiguousarray(value) for name, value in weights.items()}}
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feed), strict=True))


def evaluate_model(
    model: onnx.ModelProto, x: np.ndarray, y: np.ndarray, task: Task | str, *, batch_size: int = 4096
) -> dict[str, float]:
    """The task's metrics of ``model`` on ``x`` (:func:`flonnx.exchange.metrics.task_metrics`).

    ONNX Runtime runs ``x`` in batches; the evaluated output and its kind come from
    :func:`flonnx.exchange.task.task_output`.

    ``y`` holds int64 labels (classification, binary) or float32 targets (regression), shape ``[N]``.
    """
    output = task_output(model, task)
    sess = session(model)
    input_name = sess.get_inputs()[0].name
    outputs = np.concatenate(
        [sess.run([output.name], {input_name: x[i : i + batch_size]})[0]
         for i in range(0, len(x), batch_size)]
    )
    return task_metrics(outputs, y, task, output.kind)


def classification_metrics(
    model: onnx.ModelProto, x: np.ndarray, y: np.ndarray, *, batch_size: int = 4096
) -> dict[str, float]:
    """Accuracy and mean cross-entropy of a classifier.

    :func:`evaluate_model` for classification, restricted to the two keys it has always reported.
    """
    metrics = evaluate_model(model, x, y, Task.CLASSIFICATION, batch_size=batch_size)
    return {"accuracy": metrics["accuracy"], "loss": metrics["loss"]}


def probe_inputs(definition: Definition, *, batch: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded random inputs matching the definition's data inputs (dynamic dims become ``batch``)."""
    rng = np.random.default_rng(seed)
    proto = definition.proto
    inits = {t.name for t in proto.graph.initializer}
    out: dict[str, np.ndarray] = {}
    for value in proto.graph.input:
        if value.name in inits:
            continue
        tensor_type = value.type.tensor_type
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
        shape = [d.dim_value if d.HasField("dim_value") else batch for d in tensor_type.shape.dim]
        out[value.name] = rng.standard_normal(shape).astype(dtype)
    return out
