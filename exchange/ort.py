"""ONNX Runtime: the reference executor for evaluation, parity checks and exports."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx

from exchange.definition import Definition

__all__ = ["classification_metrics", "probe_inputs", "run_model", "session"]


def session(model: onnx.ModelProto, *, threads: int = 1):  # type: ignore[no-untyped-def]
    """An ONNX Runtime CPU session; one intra-op thread by default so results are reproducible."""
    import onnxruntime as ort

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


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def classification_metrics(
    model: onnx.ModelProto, x: np.ndarray, y: np.ndarray, *, batch_size: int = 4096
) -> dict[str, float]:
    """Accuracy and mean cross-entropy of a logits-producing classifier, computed by ONNX Runtime."""
    sess = session(model)
    input_name = sess.get_inputs()[0].name
    output_name = sess.get_outputs()[0].name
    logits = np.concatenate(
        [sess.run([output_name], {input_name: x[i : i + batch_size]})[0]
         for i in range(0, len(x), batch_size)]
    ).astype(np.float64)
    log_probs = _log_softmax(logits)
    return {
        "accuracy": float(np.mean(np.argmax(logits, axis=1) == y)),
        "loss": float(-np.mean(log_probs[np.arange(len(y)), y])),
    }


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
