"""Conversion between lineage dataclasses and the protobuf schema in ``protos/flonnx_lineage.proto``.

The only module that touches the generated protobuf code; the rest of flonnx works with
:class:`~flonnx.exchange.lineage.VersionRecord`.
"""

from __future__ import annotations

from flonnx.exchange._proto import flonnx_lineage_pb2 as pb
from flonnx.exchange.errors import LineageError
from flonnx.exchange.lineage import VersionKind, VersionRecord

__all__ = ["deserialize_record", "record_from_proto", "record_to_proto", "serialize_record"]

_KIND_TO_PB = {
    VersionKind.INITIAL: pb.INITIAL,
    VersionKind.CLIENT_UPDATE: pb.CLIENT_UPDATE,
    VersionKind.AGGREGATE: pb.AGGREGATE,
    VersionKind.REJECTED: pb.REJECTED,
}
_PB_TO_KIND = {v: k for k, v in _KIND_TO_PB.items()}


def record_to_proto(record: VersionRecord) -> pb.VersionRecord:
    """The protobuf message of ``record`` (maps as entries sorted by key)."""
    msg = pb.VersionRecord(
        schema=record.schema,
        kind=_KIND_TO_PB[record.kind],
        round=record.round,
        parents=list(record.parents),
        definition_id=record.definition_id,
        weights_id=record.weights_id,
        framework=record.framework,
        framework_version=record.framework_version,
        client=record.client,
        num_examples=record.num_examples,
        seed=record.seed,
        strategy=record.strategy,
        reason=record.reason,
    )
    msg.metrics.extend(pb.Metric(name=k, value=v) for k, v in sorted(record.metrics.items()))
    msg.strategy_config.extend(
        pb.Entry(key=k, value=v) for k, v in sorted(record.strategy_config.items())
    )
    msg.environment.extend(pb.Entry(key=k, value=v) for k, v in sorted(record.environment.items()))
    return msg


def record_from_proto(msg: pb.VersionRecord) -> VersionRecord:
    """Inverse of :func:`record_to_proto`."""
    if msg.kind not in _PB_TO_KIND:
        raise LineageError(f"version record has unknown kind {msg.kind}")
    return VersionRecord(
        schema=msg.schema,
        kind=_PB_TO_KIND[msg.kind],
        round=msg.round,
        parents=tuple(msg.parents),
        definition_id=msg.definition_id,
        weights_id=msg.weights_id,
        framework=msg.framework,
        framework_version=msg.framework_version,
        client=msg.client,
        num_examples=msg.num_examples,
        metrics={m.name: m.value for m in msg.metrics},
        seed=msg.seed,
        strategy=msg.strategy,
        strategy_config={e.key: e.value for e in msg.strategy_config},
        environment={e.key: e.value for e in msg.environment},
        reason=msg.reason,
    )


def serialize_record(record: VersionRecord) -> bytes:
    """Protobuf bytes of ``record`` (for transport and model cards; not used for ids)."""
    return record_to_proto(record).SerializeToString(deterministic=True)


def deserialize_record(data: bytes) -> VersionRecord:
    """Parse protobuf bytes written by :func:`serialize_record`."""
    msg = pb.VersionRecord()
    try:
        msg.ParseFromString(data)
    except Exception as exc:
        raise LineageError(f"not a flonnx version record: {exc}") from exc
    return record_from_proto(msg)
