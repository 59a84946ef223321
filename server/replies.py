"""Validation of client replies: every update is checked before it can reach a strategy."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import Message

from exchange import wire
from exchange.definition import Definition
from exchange.errors import FlonnxError, InvalidUpdate
from exchange.hashing import weights_id

__all__ = ["ClientInfo", "Rejection", "Update", "check_reply"]


@dataclass(frozen=True)
class ClientInfo:
    """A connected node, as it introduced itself in the handshake."""

    node_id: int
    key: str
    framework: str
    framework_version: str
    num_examples: int


@dataclass(frozen=True)
class Rejection:
    """A reply that was excluded from aggregation, and why."""

    client: str
    node_id: int
    reason: str
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class Update:
    """A validated client update."""

    client: str
    node_id: int
    framework: str
    framework_version: str
    weights: dict[str, np.ndarray]
    weights_id: str
    num_examples: int
    metrics: dict[str, float]
    seed: int
    environment: dict[str, str]
    message: Message = field(repr=False)


def check_reply(
    reply: Message, *, client: ClientInfo, definition: Definition, base_version: str, seed: int
) -> Update | Rejection:
    """An :class:`Update` if ``reply`` is a valid update of ``base_version``, else a :class:`Rejection`."""
    try:
        return _check(reply, client, definition, base_version, seed)
    except _Refused as exc:
        return Rejection(client.key, client.node_id, str(exc), exc.metrics)
    except InvalidUpdate as exc:
        return Rejection(client.key, client.node_id, str(exc))


class _Refused(InvalidUpdate):
    """The client declined to train (e.g. its parity check failed); carries its measurements."""

    def __init__(self, reason: str, metrics: dict[str, float]) -> None:
        super().__init__(reason)
        self.metrics = metrics


def _check(
    reply: Message, client: ClientInfo, definition: Definition, base_version: str, seed: int
) -> Update:
    if reply.has_error():
        raise InvalidUpdate(f"client failed: {reply.error.reason}")
    content = reply.content
    if wire.REFUSAL in content:
        refusal = content.config_records[wire.REFUSAL]
        records = content.metric_records
        measured = {k: float(v) for k, v in records[wire.METRICS].items()  # type: ignore[arg-type]
                    if isinstance(v, int | float)} if wire.METRICS in records else {}
        raise _Refused(f"client refused to train: {refusal[wire.REFUSAL_REASON]!s}", measured)
    missing = [k for k in (wire.ARRAYS, wire.METRICS, wire.LINEAGE) if k not in content]
    if missing:
        raise InvalidUpdate(f"reply lacks records {missing}")
    lineage: dict[str, Any] = dict(content[wire.LINEAGE])
    metrics = {k: float(v) for k, v in content[wire.METRICS].items()}  # type: ignore[arg-type]
    if lineage.get(wire.REPLY_BASE_VERSION) != base_version:
        raise InvalidUpdate(
            f"update is based on {str(lineage.get(wire.REPLY_BASE_VERSION))[:12]}, expected "
            f"{base_version[:12]}"
        )
    if lineage.get(wire.REPLY_CLIENT) != client.key:
        raise InvalidUpdate(
            f"reply names client {lineage.get(wire.REPLY_CLIENT)!r}, expected {client.key!r}"
        )
    num_examples = metrics.get(wire.REPLY_NUM_EXAMPLES, 0.0)
    if num_examples <= 0 or num_examples != int(num_examples):
        raise InvalidUpdate(f"num-examples must be a positive integer, got {num_examples}")
    weights = {name: array.numpy() for name, array in content.array_records[wire.ARRAYS].items()}
    definition.validate(weights, source=f"update from {client.key}")
    actual = weights_id(weights)
    if actual != lineage.get(wire.REPLY_WEIGHTS_ID):
        raise InvalidUpdate(
            f"weights hash to {actual[:12]} but the client reported "
            f"{str(lineage.get(wire.REPLY_WEIGHTS_ID))[:12]}"
        )
    try:
        environment = {str(k): str(v) for k, v in
                       json.loads(str(lineage.get(wire.REPLY_ENVIRONMENT, "{}"))).items()}
    except (ValueError, AttributeError) as exc:
        raise InvalidUpdate(f"unreadable environment in reply: {exc}") from exc
    if int(lineage.get(wire.REPLY_SEED, -1)) != seed:  # type: ignore[call-overload]
        raise InvalidUpdate(f"client trained with seed {lineage.get(wire.REPLY_SEED)}, sent {seed}")
    return Update(
        client=client.key,
        node_id=client.node_id,
        framework=str(lineage.get(wire.REPLY_FRAMEWORK, "")),
        framework_version=str(lineage.get(wire.REPLY_FRAMEWORK_VERSION, "")),
        weights=weights,
        weights_id=actual,
        num_examples=int(num_examples),
        metrics={k: v for k, v in metrics.items() if k != wire.REPLY_NUM_EXAMPLES},
        seed=seed,
        environment=environment,
        message=reply,
    )


def describe_error(exc: BaseException) -> str:
    """A one-line reason for the lineage."""
    return str(exc) if isinstance(exc, FlonnxError) else f"{type(exc).__name__}: {exc}"
