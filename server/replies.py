"""Validation of client replies: every update is checked before it can reach a strategy."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord

from flonnx.exchange import wire
from flonnx.exchange.definition import Definition
from flonnx.exchange.errors import FlonnxError, InvalidUpdate
from flonnx.exchange.hashing import weights_id
from flonnx.exchange.lineage import flonnx_version
from flonnx.exchange.npy import decode_tensors

__all__ = ["ClientInfo", "Rejection", "Update", "check_protocol", "check_reply", "parse_environment"]


@dataclass(frozen=True)
class ClientInfo:
    """A connected node, as it introduced itself in the handshake."""

    node_id: int
    key: str
    framework: str
    framework_version: str
    num_examples: int
    #: the node's environment from its hello reply (protocol 2), recorded with each of its updates
    environment: dict[str, str] = field(default_factory=dict, compare=False)


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


def check_protocol(hello: Mapping[str, Any]) -> str | None:
    """``None`` if a node's handshake reply speaks this coordinator's protocol, else why not.

    A node that states no version (an older flonnx) or another one cannot be trusted to read or
    write the messages of this one: it is refused before any round.
    """
    protocol = hello.get(wire.REPLY_PROTOCOL)
    if isinstance(protocol, int) and not isinstance(protocol, bool) and protocol == wire.PROTOCOL_VERSION:
        return None
    version = hello.get(wire.REPLY_FLONNX)
    node_flonnx = one_line(str(version))[:40] if isinstance(version, str) and version else "unknown"
    mine = f"this coordinator speaks protocol {wire.PROTOCOL_VERSION} (flonnx {flonnx_version()})"
    if protocol is None:
        return f"node states no flonnx protocol (flonnx {node_flonnx}); {mine}"
    return f"node speaks flonnx protocol {one_line(str(protocol))[:40]} (flonnx {node_flonnx}); {mine}"


#: Bounds on a node's environment (untrusted, in its hello reply; every update's record holds it).
MAX_ENVIRONMENT_KEYS = 100
MAX_ENVIRONMENT_TEXT = 200


def parse_environment(text: object) -> dict[str, str]:
    """A node's environment from its hello reply: canonical JSON ``{name: version}``, bounded.

    Raises:
        InvalidUpdate: not a JSON object of at most ``MAX_ENVIRONMENT_KEYS`` short entries.
    """
    # quotes, colon and comma per entry, and each character escaped at worst as \uXXXX (6 characters)
    bound = MAX_ENVIRONMENT_KEYS * (2 * 6 * MAX_ENVIRONMENT_TEXT + 8)
    data = wire.loads_field(text, "the environment", max_chars=bound)
    if not isinstance(data, dict):
        raise InvalidUpdate(f"the environment must be a JSON object, got {type(data).__name__}")
    environment = {str(k): str(v) for k, v in data.items()}
    if len(environment) > MAX_ENVIRONMENT_KEYS or any(
            len(k) > MAX_ENVIRONMENT_TEXT or len(v) > MAX_ENVIRONMENT_TEXT for k, v in environment.items()):
        raise InvalidUpdate(f"the environment must have at most {MAX_ENVIRONMENT_KEYS} entries of at "
                            f"most {MAX_ENVIRONMENT_TEXT} characters")
    return environment


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
        raise InvalidUpdate(f"client failed: {failure_line(str(reply.error.reason))}")
    content = reply.content
    if wire.REFUSAL in content:
        refusal = _record(content, wire.REFUSAL, ConfigRecord)
        records = content.metric_records
        measured = {k: v for k, v in _metrics(records[wire.METRICS], strict=False).items()
                    if math.isfinite(v)} if wire.METRICS in records else {}
        raise _Refused(f"client refused to train: "
                       f"{one_line(str(refusal.get(wire.REFUSAL_REASON, 'no reason given')))}",
                       measured)
    missing = [k for k in (wire.ARRAYS, wire.METRICS, wire.LINEAGE) if k not in content]
    if missing:
        raise InvalidUpdate(f"reply lacks records {missing}")
    lineage: dict[str, Any] = dict(_record(content, wire.LINEAGE, ConfigRecord))
    _lineage_fields(lineage)
    metrics = _metrics(_record(content, wire.METRICS, MetricRecord))
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
    if num_examples <= 0 or num_examples != int(num_examples) or num_examples > MAX_NUM_EXAMPLES:
        raise InvalidUpdate(f"num-examples must be a positive integer, got {num_examples}")
    weights = _decoded(_record(content, wire.ARRAYS, ArrayRecord), definition)
    for array in weights.values():  # the id computed here is trusted when the update is stored
        array.flags.writeable = False
    definition.validate(weights, source=f"update from {client.key}")
    actual = weights_id(weights)
    if actual != lineage.get(wire.REPLY_WEIGHTS_ID):
        raise InvalidUpdate(
            f"weights hash to {actual[:12]} but the client reported "
            f"{str(lineage.get(wire.REPLY_WEIGHTS_ID))[:12]}"
        )
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
        environment=dict(client.environment),  # stated once, in the node's hello reply
        message=reply,
    )


#: Bound on each text field of a reply's lineage record (ids are 64 characters; names are short).
MAX_LINEAGE_TEXT = 256
_LINEAGE_TEXT = (wire.REPLY_BASE_VERSION, wire.REPLY_CLIENT, wire.REPLY_FRAMEWORK,
                 wire.REPLY_FRAMEWORK_VERSION, wire.REPLY_WEIGHTS_ID)


def _lineage_fields(lineage: Mapping[str, Any]) -> None:
    """Reject a lineage record whose fields have the wrong type or an unbounded size.

    Each field reaches a version record (and the CLI and reports) verbatim, so a 1 MiB framework
    name or a seed that is not an integer rejects the reply instead of being stored or crashing.
    """
    for key in _LINEAGE_TEXT:
        value = lineage.get(key)
        if not isinstance(value, str):
            raise InvalidUpdate(f"lineage field {key!r} must be text, got {type(value).__name__}")
        if len(value) > MAX_LINEAGE_TEXT:
            raise InvalidUpdate(f"lineage field {key!r} has {len(value)} characters; at most "
                                f"{MAX_LINEAGE_TEXT} are accepted")
    seed = lineage.get(wire.REPLY_SEED)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidUpdate(f"lineage field {wire.REPLY_SEED!r} must be an integer, got "
                            f"{one_line(repr(seed))[:40]}")


def _decoded(record: ArrayRecord, definition: Definition) -> dict[str, np.ndarray]:
    """A reply's tensors, decoded; a payload that is not a plain ``.npy`` array rejects the reply.

    Flower's ``Array.numpy()`` allocates whatever shape the ``.npy`` header claims before reading the
    data; :func:`~flonnx.exchange.npy.decode_tensors` checks each header against the bytes that are
    there and against what the definition expects, so a reply costs at most one model's memory.
    """
    return decode_tensors(record, definition, source="reply")


#: Bound on a reply's ``num-examples`` (aggregation weights by it; a trillion is past any real data set).
MAX_NUM_EXAMPLES = 10**12


def _record(content: Any, name: str, kind: type) -> Any:
    """The record ``name`` of a reply, which must be a ``kind``; anything else rejects the reply."""
    record = content[name]
    if not isinstance(record, kind):
        raise InvalidUpdate(f"record {name!r} is a {type(record).__name__}, expected a {kind.__name__}")
    return record


#: Bounds on what a client may send as metrics (untrusted input).
MAX_METRICS = 64
MAX_METRIC_NAME = 64


def _metrics(record: Any, *, strict: bool = True) -> dict[str, float]:
    """A reply's metrics as finite floats; with ``strict`` anything else rejects the reply.

    Every value reaches a lineage record, whose canonical JSON has no form for NaN or infinity:
    one client's NaN loss must reject that reply, not fail the run.
    """
    items = list(record.items())
    if len(items) > MAX_METRICS:
        raise InvalidUpdate(f"reply has {len(items)} metrics; at most {MAX_METRICS} are accepted")
    out: dict[str, float] = {}
    for key, value in items:
        name = str(key)
        if len(name) > MAX_METRIC_NAME:
            if strict:
                raise InvalidUpdate(f"metric name of {len(name)} characters; at most {MAX_METRIC_NAME}")
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            if strict:
                raise InvalidUpdate(f"metric {name!r} is a {type(value).__name__}, not a number")
            continue
        number = float(value)
        if strict and not math.isfinite(number):
            raise InvalidUpdate(f"metric {name!r} is not a finite number ({number})")
        out[name] = number
    return out


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit|Warning)): (.+)$")
_WRAPPERS = ("ClientAppException", "RayTaskError")
_VOLATILE = re.compile(r"0x[0-9a-fA-F]+|\bpid=\d+|\bactor_id=[0-9a-f]+|\bip=[\d.]+")
MAX_REASON = 500


def one_line(text: str) -> str:
    """Untrusted text as one printable line of at most :data:`MAX_REASON` characters."""
    text = _ANSI.sub("", text[: 8 * MAX_REASON])  # bounded work, however long the text
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"


def failure_line(reason: str) -> str:
    """The canonical line of a client failure: the original exception's type and message.

    Flower's Ray backend reports a failed ClientApp with the whole traceback, process and actor
    ids, memory addresses and colour codes, which differ on every run; recording them would make
    the ids of rejected versions irreproducible. The first ``Type: message`` line that is not a
    wrapper of the engine is the cause; without one, the last line, volatile parts removed.
    """
    lines = [_ANSI.sub("", line).rstrip() for line in reason.splitlines()]
    for line in lines:
        match = _EXCEPTION_LINE.match(line)
        if match and not any(w in match.group(1) for w in _WRAPPERS):
            return one_line(f"{match.group(1).rsplit('.', 1)[-1]}: {match.group(2)}")
    last = next((line for line in reversed(lines) if line.strip()), "")
    return one_line(_VOLATILE.sub("…", last))


def describe_error(exc: BaseException) -> str:
    """A one-line reason for the lineage."""
    return str(exc) if isinstance(exc, FlonnxError) else f"{type(exc).__name__}: {exc}"
