"""Standalone ONNX files of registry versions, with a model card in ``metadata_props``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import onnx

from flonnx.exchange.evaluation import served_model
from flonnx.exchange.lineage import VersionRecord
from flonnx.exchange.registry import Registry

__all__ = ["export_version", "write_model"]


def _model_card(version_id: str, record: VersionRecord, n_params: int) -> dict[str, str]:
    card = {
        "flonnx.version_id": version_id,
        "flonnx.kind": record.kind.value,
        "flonnx.round": str(record.round),
        "flonnx.definition_id": record.definition_id,
        "flonnx.weights_id": record.weights_id,
        "flonnx.parents": ",".join(record.parents),
        "flonnx.parameter_count": str(n_params),
        "flonnx.lineage": record.canonical_bytes().decode("utf-8"),
    }
    card.update({f"flonnx.metric.{k}": repr(float(v)) for k, v in sorted(record.metrics.items())})
    if record.strategy:
        card["flonnx.strategy"] = record.strategy
    return card


def export_version(registry: Registry, version_id: str) -> onnx.ModelProto:
    """The full model of ``version_id``: checked with ``onnx.checker`` (full check)."""
    record = registry.record(version_id)
    definition = registry.get_definition(record.definition_id)
    weights = registry.get_weights(record.weights_id)
    model = served_model(definition, weights)  # takes raw features: preprocessing included
    model.producer_name = "flonnx"
    n_params = int(sum(np.size(w) for w in weights.values()))
    for key, value in _model_card(version_id, record, n_params).items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model, full_check=True)
    return model


def write_model(model: onnx.ModelProto, path: str | Path) -> Path:
    """Write atomically (temporary file, fsync, rename): never a half-written model at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(model.SerializeToString())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
