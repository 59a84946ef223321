"""Derived exports: an int8 or float16 version of an exported model, checked by the metric it costs.

int8: ONNX Runtime's dynamic quantisation (``quantize_dynamic``, int8 weights). float16: every float32
initializer stored as float16 and cast back to float32 by a ``Cast`` node where the graph reads it, so
the file's inputs, outputs and arithmetic stay float32 (any CPU runtime runs it; only the stored
weights are halved). A derived file's check is the metric change on the run's evaluation data,
measured on the derived and the original model alike: a derived file whose headline metric
(``HEADLINE_METRIC``) drops more than ``max_drop`` percentage points is refused, and nothing is
written; it must also pass ``onnx.checker`` (full check) and load in ONNX Runtime. The file carries
its own record (``flonnx.derived.*``): the version it derives from and that version's definition id,
the file's own definition id, the transformation, sizes and metrics before and after.

A model that takes categorical text columns (its preprocessing one-hot encodes them with
``ai.onnx.ml.OneHotEncoder``) is derived like any other: dynamic quantisation needs no calibration
data, so the string inputs never reach ONNX Runtime's quantiser, which quantises only the weights of
the ops it knows (``MatMul``/``Gemm`` here) and leaves the string encoding and the rest of the
preprocessing as they are. Both models are measured on the columns the file takes: the numbers, and
each categorical column as text, recovered from the evaluation rows' one-hot encoding (a value outside
the vocabulary or missing becomes a text the vocabulary does not hold, which the graph encodes as
``<other>`` just as the evaluation did).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from flonnx.exchange.definition import Definition
from flonnx.exchange.errors import FlonnxError
from flonnx.exchange.export import check_loadable, export_version
from flonnx.exchange.metrics import task_metrics
from flonnx.exchange.models import input_dims
from flonnx.exchange.ort import session
from flonnx.exchange.predict import run_spec
from flonnx.exchange.preprocess import METADATA_KEY, Preprocessing
from flonnx.exchange.registry import Registry
from flonnx.exchange.sources import evaluation_source
from flonnx.exchange.task import HEADLINE_METRIC, task_output

__all__ = [
    "DERIVED_PREFIX", "TRANSFORMATIONS", "Derived", "derived_definition_id", "derived_version",
    "float16_version", "measured_metrics", "quantize_int8", "quantized_version", "raw_columns", "to_float16",
    "weight_bytes",
]

DERIVED_PREFIX = "flonnx.derived."
TRANSFORMATION = "int8: onnxruntime.quantization.quantize_dynamic, QInt8 weights"
FLOAT16_TRANSFORMATION = ("float16: float32 initializers stored as float16, each cast back to float32 "
                          "by a Cast node (inputs, outputs and arithmetic stay float32)")
#: ``--quantize int8`` / ``--float16`` -> what the file's record calls the transformation.
TRANSFORMATIONS = {"int8": TRANSFORMATION, "float16": FLOAT16_TRANSFORMATION}


@dataclass(frozen=True)
class Derived:
    """A derived model and what the transformation changed."""

    model: onnx.ModelProto
    metric: str
    before: float
    after: float
    bytes_before: int
    bytes_after: int

    @property
    def drop_points(self) -> float:
        """How far the headline metric fell, in percentage points (negative: it rose)."""
        return (self.before - self.after) * 100.0


def weight_bytes(model: onnx.ModelProto) -> int:
    """Bytes of the model's initializers (the weights as stored)."""
    return sum(int(onnx.numpy_helper.to_array(t).nbytes) for t in model.graph.initializer)


def quantize_int8(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with int8 weights (ONNX Runtime's dynamic quantisation), its metadata kept."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process models is printed on the root logger
    try:
        with tempfile.TemporaryDirectory(prefix="flonnx-quantize-") as folder:
            source, target = Path(folder) / "model.onnx", Path(folder) / "model.int8.onnx"
            source.write_bytes(model.SerializeToString())
            quantize_dynamic(source, target, weight_type=QuantType.QInt8)
            quantized = onnx.load_model_from_string(target.read_bytes())
    finally:
        root.setLevel(level)
    del quantized.metadata_props[:]
    quantized.metadata_props.extend(model.metadata_props)
    return quantized


def to_float16(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with its float32 initializers stored as float16, cast back to float32 where read.

    Each converted initializer ``NAME`` becomes ``NAME.float16`` and a ``Cast(to=FLOAT)`` node at the
    top of the graph produces ``NAME`` again, so no other node, input or output changes. An
    initializer that is also a graph input (an overridable default) is left as it is.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inputs = {v.name for v in graph.input}
    taken = {t.name for t in graph.initializer} | {o for n in graph.node for o in n.output} | inputs
    casts, kept = [], []
    for tensor in graph.initializer:
        if tensor.data_type != onnx.TensorProto.FLOAT or tensor.name in inputs:
            kept.append(tensor)
            continue
        half = tensor.name + ".float16"
        while half in taken:
            half += "_"
        taken.add(half)
        values = onnx.numpy_helper.to_array(tensor).astype(np.float16)
        kept.append(onnx.numpy_helper.from_array(values, half))
        casts.append(onnx.helper.make_node("Cast", [half], [tensor.name], to=onnx.TensorProto.FLOAT,
                                           name=f"{tensor.name}.cast_float32"))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend([*casts, *nodes])
    return out


def derived_definition_id(model: onnx.ModelProto) -> str:
    """The definition id of a derived file (its graph and ``flonnx.*`` metadata, without its record).

    The ``flonnx.derived.*`` record is left out: it names this id, so it cannot be part of it.
    """
    bare = onnx.ModelProto()
    bare.CopyFrom(model)
    kept = [p for p in bare.metadata_props if not p.key.startswith(DERIVED_PREFIX)]
    del bare.metadata_props[:]
    bare.metadata_props.extend(kept)
    return Definition.from_model(bare)[0].id


def quantized_version(registry: Registry, version_id: str, *, max_drop: float = 1.0) -> Derived:
    """The int8 export of ``version_id``, measured on its run's evaluation data (:func:`derived_version`)."""
    return derived_version(registry, version_id, "int8", max_drop=max_drop)


def float16_version(registry: Registry, version_id: str, *, max_drop: float = 1.0) -> Derived:
    """The float16 export of ``version_id``, measured on the evaluation data (:func:`derived_version`)."""
    return derived_version(registry, version_id, "float16", max_drop=max_drop)


def derived_version(registry: Registry, version_id: str, kind: str, *, max_drop: float = 1.0) -> Derived:
    """The ``kind`` (``int8`` or ``float16``) export of ``version_id``, measured on the evaluation data.

    Raises:
        FlonnxError: the run has no evaluation source, the headline metric drops more than
            ``max_drop`` points, or the derived file fails ``onnx.checker`` or does not load in ONNX
            Runtime.
    """
    if kind not in TRANSFORMATIONS:
        raise FlonnxError(f"{kind!r} is not a derived export; use one of {', '.join(TRANSFORMATIONS)}")
    option = "--quantize" if kind == "int8" else "--float16"
    original = export_version(registry, version_id)
    spec = run_spec(registry, version_id)
    source = evaluation_source(spec)
    if source is None:
        raise FlonnxError(f"the run of version {version_id[:12]} has no evaluation source; "
                          f"{option} needs one to measure the metric change")
    meta = {p.key: p.value for p in original.metadata_props}
    pre = Preprocessing.from_json(meta[METADATA_KEY]) if METADATA_KEY in meta else None
    record_of = registry.record(version_id)
    if pre is not None and pre.vocabularies:
        x, y = source.load(pre.vocabularies)
        inputs = raw_columns(original, pre, x)
    else:
        x, y = source.load()
        dims = input_dims(registry.get_definition(record_of.definition_id).proto)
        if pre is None and dims is not None and len(dims) > 1:
            x = x.reshape((len(x), *dims))
        inputs = {_data_inputs(original)[0]: np.ascontiguousarray(x, np.float32)}
    derived_model = quantize_int8(original) if kind == "int8" else to_float16(original)
    check_loadable(derived_model, f"{kind} export of {version_id[:12]}")
    metric = HEADLINE_METRIC[spec.task]
    before = measured_metrics(original, inputs, y, spec.task)[metric]
    after = measured_metrics(derived_model, inputs, y, spec.task)[metric]
    derived = Derived(derived_model, metric, before, after, weight_bytes(original),
                      weight_bytes(derived_model))
    if derived.drop_points > max_drop:
        raise FlonnxError(
            f"{kind} export of {version_id[:12]} refused: {metric} drops {derived.drop_points:.2f} points "
            f"({before:.4f} -> {after:.4f}) on the evaluation data, more than --max-drop {max_drop:g}")
    record = {
        "from_version": version_id, "from_definition_id": record_of.definition_id,
        "definition_id": derived_definition_id(derived_model), "transformation": TRANSFORMATIONS[kind],
        "weight_bytes_before": str(derived.bytes_before), "weight_bytes_after": str(derived.bytes_after),
        "metric": metric, "metric_before": repr(before), "metric_after": repr(after),
        "evaluated_on": source.describe(),
    }
    derived_model.metadata_props.extend(
        onnx.StringStringEntryProto(key=DERIVED_PREFIX + k, value=v) for k, v in record.items())
    check_loadable(derived_model, f"{kind} export of {version_id[:12]}")
    return derived


def _data_inputs(model: onnx.ModelProto) -> list[str]:
    initializers = {t.name for t in model.graph.initializer}
    return [v.name for v in model.graph.input if v.name not in initializers]


def _outside(vocabulary: tuple[str, ...]) -> str:
    """A text outside ``vocabulary``: the graph encodes it as ``<other>``."""
    text = ""
    while text in vocabulary:
        text += "?"
    return text


def raw_columns(model: onnx.ModelProto, pre: Preprocessing, x: np.ndarray) -> dict[str, np.ndarray]:
    """The inputs of ``model`` (which takes categorical text columns) for the encoded rows ``x``.

    ``x`` is as :meth:`flonnx.exchange.sources.DataSource.load` gives it over ``pre``'s
    vocabularies: numeric columns as they are (NaN = missing) and each categorical column as a
    one-hot block of its vocabulary plus ``<other>``, in ``pre.features`` order. The model takes the
    numeric columns as one float input and each categorical column as a string input of its name.

    Raises:
        FlonnxError: ``x``'s width does not match the features and vocabularies.
    """
    vocabularies = dict(pre.vocabularies)
    numeric: list[np.ndarray] = []
    columns: dict[str, np.ndarray] = {}
    at = 0
    for feature in pre.features:
        if feature not in vocabularies:
            numeric.append(x[:, at])
            at += 1
            continue
        values = vocabularies[feature]
        picked = np.argmax(x[:, at:at + len(values) + 1], axis=1)
        other = _outside(values)
        columns[feature] = np.asarray([values[i] if i < len(values) else other for i in picked], dtype=object)
        at += len(values) + 1
    if at != x.shape[1] or not pre.features:
        raise FlonnxError(f"the evaluation rows have {x.shape[1]} encoded columns; the model's features "
                          f"({', '.join(pre.features)}) and vocabularies make {at}")
    (float_input,) = [name for name in _data_inputs(model) if name not in vocabularies]
    stacked = np.stack(numeric, axis=1) if numeric else np.zeros((len(x), 0))
    return {float_input: np.ascontiguousarray(stacked, np.float32), **columns}


def measured_metrics(model: onnx.ModelProto, inputs: dict[str, np.ndarray], y: np.ndarray, task: str, *,
                     batch_size: int = 4096) -> dict[str, float]:
    """The task's metrics of ``model`` run by ONNX Runtime on ``inputs`` (every data input, by name)."""
    output = task_output(model, task)
    sess = session(model)
    outputs = np.concatenate([
        sess.run([output.name], {name: value[i:i + batch_size] for name, value in inputs.items()})[0]
        for i in range(0, len(y), batch_size)])
    return task_metrics(outputs, y, task, output.kind)
