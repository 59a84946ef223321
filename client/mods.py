"""Client mods flonnx attaches to the train handler.

:func:`dp_clipping_mod` applies Flower's client-side clipping (``fixedclipping_mod`` /
``adaptiveclipping_mod``) when the server's DP wrapper asks for it (train config
``flonnx.dp-clipping``), and leaves every other round alone. Flower's mods expect exactly one
ConfigRecord in the message, so the flonnx lineage record is set aside while they run; and since
clipping changes the weights, the reply's weights id is recomputed afterwards so the server's hash
check still holds.

:func:`fault_mod` injects the faults and attacks that act on a train reply (``fault=`` in node
config, or the spec's ``[faults]`` / ``[byzantine]`` tables in simulation; tests and demos only,
see :mod:`flonnx.client.faults`). It is the innermost ClientApp-wide mod, so the audit log records
the faulty reply exactly as it is sent.
"""

from __future__ import annotations

from collections.abc import Callable

from flwr.app import ArrayRecord, Context, Message, MessageType
from flwr.clientapp.mod import adaptiveclipping_mod, fixedclipping_mod
from flwr.clientapp.typing import ClientAppCallable, Mod

from flonnx.exchange import wire
from flonnx.exchange.errors import FlonnxError
from flonnx.exchange.hashing import weights_id
from flonnx.exchange.spec import FederationSpec

__all__ = ["dp_clipping_mod", "fault_mod"]

_MODS = {"fixed": fixedclipping_mod, "adaptive": adaptiveclipping_mod}


def dp_clipping_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Clip this node's update as the server's client-side DP wrapper asks (else pass through)."""
    if wire.CONFIG not in msg.content or wire.LINEAGE not in msg.content:
        return call_next(msg, context)
    mode = msg.content.config_records[wire.CONFIG].get(wire.CONFIG_DP_CLIPPING)
    if mode is None:
        return call_next(msg, context)
    if mode not in _MODS:
        raise FlonnxError(f"unknown client-side clipping {mode!r}; expected one of {sorted(_MODS)}")
    lineage = msg.content.config_records.pop(wire.LINEAGE)
    key_order = list(msg.content.array_records[wire.ARRAYS].keys())

    def handler(inner: Message, ctx: Context) -> Message:
        inner.content[wire.LINEAGE] = lineage
        reply = call_next(inner, ctx)
        if not reply.has_error() and wire.ARRAYS in reply.content:
            arrays = reply.content.array_records[wire.ARRAYS]
            # Flower's mods compare key order with the incoming arrays
            reply.content[wire.ARRAYS] = ArrayRecord({k: arrays[k] for k in key_order if k in arrays})
        return reply

    try:
        reply = _MODS[str(mode)](msg, context, handler)
    finally:
        msg.content[wire.LINEAGE] = lineage
    if reply.has_error() or wire.LINEAGE not in reply.content:
        return reply
    clipped = {k: a.numpy() for k, a in reply.content.array_records[wire.ARRAYS].items()}
    reply.content.config_records[wire.LINEAGE][wire.REPLY_WEIGHTS_ID] = weights_id(clipped)
    return reply


def fault_mod(spec_of: Callable[[Context], FederationSpec | None]) -> Mod:
    """A mod that injects this node's message-level fault into its train replies.

    ``spec_of`` gives the run's spec for a context (``None`` for a real node, whose fault can only
    come from node config). Other messages, and nodes without a fault, pass through untouched.
    """

    def mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        if msg.metadata.message_type != MessageType.TRAIN:
            return call_next(msg, context)
        spec = spec_of(context) if "partition-id" in context.node_config else None
        if not context.node_config.get("fault") and (spec is None or not (spec.faults or spec.byzantine)):
            return call_next(msg, context)
        from flonnx.client.faults import MESSAGE_FAULTS, FaultParams, fault_of

        fault = fault_of(context.node_config, spec)
        if fault not in MESSAGE_FAULTS:
            return call_next(msg, context)  # none, or one the trainer injects
        return MESSAGE_FAULTS[fault](msg, context, call_next, FaultParams.of(context.node_config, spec))

    return mod
