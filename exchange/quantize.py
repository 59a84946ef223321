"""Derived exports: an int8 version of an exported model, checked by the metric it costs.

ONNX Runtime's dynamic quantisation (``quantize_dynamic``, int8 weights) makes the derived file. Its
check is the metric change on the run's evaluation data, measured on the derived and the original
model alike: a derived file whose headline metric (``HEADLINE_METRIC``) drops more than
``max_drop`` percentage points is refused, and nothing is written. The file carries its own record
(``flonnx.derived.*``): the version it derives from, the transformation, sizes and metrics before
and after.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from flonnx.exchange.errors import FlonnxError
from flonnx.exchange.export import export_version
from flonnx.exchange.models import input_dims
from flonnx.exchange.ort import evaluate_model
from flonnx.exchange.predict import run_spec
from flonnx.exchange.preprocess import METADATA_KEY, Preprocessing
from flonnx.exchange.registry import Registry
from flonnx.exchange.sources import evaluation_source
from flonnx.exchange.task import HEADLINE_METRIC

__all__ = ["DERIVED_PREFIX", "Derived", "quantize_int8", "quantized_version", "weight_bytes"]

DERIVED_PREFIX = "flonnx.derived."
TRANSFORMATION = "int8: onnxruntime.quantization.quantize_dynamic, QInt8 weights"


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


def quantized_version(registry: Registry, version_id: str, *, max_drop: float = 1.0) -> Derived:
    """The int8 export of ``version_id``, measured on its run's evaluation data.

    Raises:
        FlonnxError: the run has no evaluation source, the model takes categorical text columns
            (not supported yet), or the headline metric drops more than ``max_drop`` points.
    """
    original = export_version(registry, version_id)
    spec = run_spec(registry, version_id)
    source = evaluation_source(spec)
    if source is None:
        raise FlonnxError(f"the run of version {version_id[:12]} has no evaluation source; "
                          "--quantize needs one to measure the metric change")
    meta = {p.key: p.value for p in original.metadata_props}
    if METADATA_KEY in meta and Preprocessing.from_json(meta[METADATA_KEY]).vocabularies:
        raise FlonnxError("--quantize does not yet support models that take categorical text columns")
    x, y = source.load()
    definition = registry.get_definition(registry.record(version_id).definition_id)
    dims = input_dims(definition.proto)
    if METADATA_KEY not in meta and dims is not None and len(dims) > 1:
        x = x.reshape((len(x), *dims))
    x = np.ascontiguousarray(x, np.float32)
    quantized = quantize_int8(original)
    metric = HEADLINE_METRIC[spec.task]
    before = evaluate_model(original, x, y, spec.task)[metric]
    after = evaluate_model(quantized, x, y, spec.task)[metric]
    derived = Derived(quantized, metric, before, after, weight_bytes(original), weight_bytes(quantized))
    if derived.drop_points > max_drop:
        raise FlonnxError(
            f"int8 export of {version_id[:12]} refused: {metric} drops {derived.drop_points:.2f} points "
            f"({before:.4f} -> {after:.4f}) on the evaluation data, more than --max-drop {max_drop:g}")
    record = {
        "from_version": version_id, "transformation": TRANSFORMATION,
        "weight_bytes_before": str(derived.bytes_before), "weight_bytes_after": str(derived.bytes_after),
        "metric": metric, "metric_before": repr(before), "metric_after": repr(after),
        "evaluated_on": source.describe(),
    }
    quantized.metadata_props.extend(
        onnx.StringStringEntryProto(key=DERIVED_PREFIX + k, value=v) for k, v in record.items())
    onnx.checker.check_model(quantized, full_check=True)
    return derived

