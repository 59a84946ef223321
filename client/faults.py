"""Injected faults and Byzantine attacks, for demos and tests only (never a production trainer).

A node is told to misbehave by node config ``fault=NAME`` (in simulation, by the spec's ``[faults]``
table, partition id -> fault, or by its ``[byzantine]`` table, a seeded share of malicious
partitions), so the same faults run in simulation and in deployment. The names are
:data:`flonnx.exchange.spec.FAULTS`; each is implemented once, at one of two levels:

- **trainer** faults wrap the framework trainer (:func:`faulty`): ``raise`` (an exception),
  ``nan`` / ``inf`` (one non-finite weight), ``label-flip`` (trains on labels ``C - 1 - y``). The
  wrapped trainer keeps the real framework's name and version.
- **message** faults rewrite the train reply (or the way it is produced) in
  :func:`flonnx.client.mods.fault_mod`, a ClientApp mod: ``hang`` (sleeps ``fault-seconds``, default
  one hour, before answering), ``kill`` (SIGKILL of its own process: deployment only), ``garbage``
  and ``truncated`` (array payloads that do not decode), ``nan-metric`` and ``metric-type``,
  ``lineage-oversized`` and ``lineage-malformed``, ``wrong-shape`` / ``wrong-name`` /
  ``wrong-dtype`` (a consistent weights id, so only the structure check can catch them),
  ``stale-base``, ``replay`` (round 1 honest, then the round-1 reply again), and the attacks
  ``sign-flip``, ``scaled``, ``noise`` and ``copy`` (which pass every check by design: robust
  aggregation is what limits them; docs/reliability.md has the figures).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp.typing import ClientAppCallable

from flonnx.client.trainers import TrainConfig, Trainer, TrainResult
from flonnx.exchange import wire
from flonnx.exchange.definition import Definition
from flonnx.exchange.errors import FlonnxError
from flonnx.exchange.hashing import weights_id
from flonnx.exchange.seeds import derive_seed
from flonnx.exchange.spec import FAULTS as FAULT_NAMES
from flonnx.exchange.spec import FederationSpec, byzantine_clients

__all__ = ["FAULTS", "MESSAGE_FAULTS", "TRAINER_FAULTS", "FaultParams", "fault_of", "faulty"]


# -- which fault a node runs -------------------------------------------------------------------------
def fault_of(node_config: Mapping[str, Any], spec: FederationSpec | None) -> str | None:
    """The fault this node injects (``None``: it is honest).

    Node config ``fault``, else (simulation) the spec's ``[faults]`` entry for its partition, else
    its ``[byzantine]`` attack if it is one of the malicious share.
    """
    fault = node_config.get("fault")
    if fault:
        return str(fault)
    if spec is None or "partition-id" not in node_config:
        return None
    partition = int(node_config["partition-id"])
    explicit = dict(spec.faults).get(partition)
    if explicit:
        return explicit
    return byzantine_clients(spec, int(node_config.get("num-partitions", spec.clients or 0))).get(partition)


@dataclass(frozen=True)
class FaultParams:
    """Strengths of the faults that have one (node config ``fault-*`` keys, else ``[byzantine]``)."""

    seconds: float = 3600.0  # hang
    scale: float | None = None  # scaled (default 10) and sign-flip (default 1)
    sigma: float = 1.0  # noise
    spec: FederationSpec | None = None  # the run's spec (simulation), for copy

    @classmethod
    def of(cls, node_config: Mapping[str, Any], spec: FederationSpec | None) -> FaultParams:
        """Node config ``fault-seconds``, ``fault-scale``, ``fault-sigma`` override the spec's."""
        byz = spec.byzantine if spec is not None else None
        scale = node_config.get("fault-scale", byz.scale if byz is not None else None)
        return cls(
            seconds=float(node_config.get("fault-seconds", cls.seconds)),
            scale=None if scale is None else float(scale),
            sigma=float(node_config.get("fault-sigma", byz.sigma if byz is not None else cls.sigma)),
            spec=spec,
        )


# -- trainer faults ----------------------------------------------------------------------------------
class _Raising:
    """Raises in every round, like a node whose training crashes."""

    def __init__(self, inner: Trainer) -> None:
        self.inner, self.name = inner, inner.name

    def version(self) -> str:
        """The real framework's version."""
        return self.inner.version()

    def train(self, definition: Definition, weights: Mapping[str, np.ndarray], x: np.ndarray,
              y: np.ndarray, config: TrainConfig) -> TrainResult:
        """Always raise ``RuntimeError`` (not a flonnx error: it reaches Flower as a failure)."""
        raise RuntimeError("injected failure: this node crashes in every round (fault=raise)")


class _NaN(_Raising):
    """Trains, then sets the first element of the first tensor to NaN (a corrupt update)."""

    value = np.nan

    def train(self, definition: Definition, weights: Mapping[str, np.ndarray], x: np.ndarray,
              y: np.ndarray, config: TrainConfig) -> TrainResult:
        """Train with the real trainer and corrupt one value."""
        result = self.inner.train(definition, weights, x, y, config)
        name = sorted(result.weights)[0]
        corrupt = np.array(result.weights[name], copy=True)
        corrupt.flat[0] = self.value
        result.weights[name] = corrupt
        return result


class _Inf(_NaN):
    """Trains, then sets the first element of the first tensor to +inf."""

    value = np.inf


class _LabelFlip(_Raising):
    """Trains honestly on flipped labels: class ``c`` becomes ``C - 1 - c`` (binary: ``1 - y``)."""

    def train(self, definition: Definition, weights: Mapping[str, np.ndarray], x: np.ndarray,
              y: np.ndarray, config: TrainConfig) -> TrainResult:
        """Train the real trainer on flipped labels (regression: negated targets)."""
        if config.task == "regression":
            return self.inner.train(definition, weights, x, -y, config)
        if config.task == "binary":
            classes = 2
        else:
            from flonnx.exchange.task import task_output

            classes = task_output(definition, config.task).width  # type: ignore[attr-defined]
        flipped = (classes - 1 - np.asarray(y)).astype(np.asarray(y).dtype)
        return self.inner.train(definition, weights, x, flipped, config)


TRAINER_FAULTS: dict[str, type[_Raising]] = {"raise": _Raising, "nan": _NaN, "inf": _Inf,
                                             "label-flip": _LabelFlip}


def faulty(trainer: Trainer, fault: str) -> Trainer:
    """``trainer`` with ``fault`` injected (unchanged if ``fault`` acts on the reply message)."""
    if fault not in FAULTS:
        raise FlonnxError(f"unknown fault {fault!r}; known: {', '.join(FAULTS)}")
    return TRAINER_FAULTS[fault](trainer) if fault in TRAINER_FAULTS else trainer


# -- message faults ----------------------------------------------------------------------------------
MessageFault = Callable[[Message, Context, ClientAppCallable, FaultParams], Message]
#: A rewrite of an honest reply: (request, reply, params) -> the reply to send.
_Change = Callable[[Message, Message, FaultParams], Message]


def _weights(record: ArrayRecord) -> dict[str, np.ndarray]:
    return {name: array.numpy() for name, array in record.items()}


def _with_weights(reply: Message, weights: Mapping[str, np.ndarray], *, rehash: bool = True) -> Message:
    """``reply`` carrying ``weights`` (and, with ``rehash``, their id, so only other checks can object)."""
    content = reply.content
    content[wire.ARRAYS] = ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in weights.items()})
    if rehash:
        content.config_records[wire.LINEAGE][wire.REPLY_WEIGHTS_ID] = weights_id(dict(weights))
    return reply


def _update(reply: Message) -> bool:
    """Whether ``reply`` is an update (not an error or a refusal, which there is nothing to corrupt in)."""
    return not reply.has_error() and all(k in reply.content for k in (wire.ARRAYS, wire.METRICS,
                                                                       wire.LINEAGE))


def _rewriting(change: _Change) -> MessageFault:
    """A fault that rewrites the honest reply with ``change(request, reply, params)``."""

    def fault(msg: Message, context: Context, call_next: ClientAppCallable,
              params: FaultParams) -> Message:
        reply = call_next(msg, context)
        return change(msg, reply, params) if _update(reply) else reply

    return fault


def _hang(msg: Message, context: Context, call_next: ClientAppCallable, params: FaultParams) -> Message:
    time.sleep(params.seconds)
    return call_next(msg, context)


def _kill(msg: Message, context: Context, call_next: ClientAppCallable, params: FaultParams) -> Message:
    # A SIGKILL in a test process or a Ray worker would take the test runner or the simulation with it.
    if "pytest" in sys.modules or "partition-id" in context.node_config:
        raise RuntimeError("fault=kill runs in deployment only (a real SuperNode's ClientApp process)")
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable: SIGKILL cannot be caught")


def _garbage(msg: Message, reply: Message, params: FaultParams) -> Message:
    rng = np.random.default_rng(0)
    reply.content[wire.ARRAYS] = ArrayRecord({
        name: Array(a.dtype, tuple(a.shape), a.stype, rng.bytes(len(a.data)))
        for name, a in reply.content.array_records[wire.ARRAYS].items()})
    return reply


def _truncated(msg: Message, reply: Message, params: FaultParams) -> Message:
    reply.content[wire.ARRAYS] = ArrayRecord({
        name: Array(a.dtype, tuple(a.shape), a.stype, a.data[: len(a.data) // 2])
        for name, a in reply.content.array_records[wire.ARRAYS].items()})
    return reply


def _metric(value: Any) -> _Change:
    def change(msg: Message, reply: Message, params: FaultParams) -> Message:
        metrics = dict(reply.content.metric_records[wire.METRICS])
        reply.content[wire.METRICS] = MetricRecord({**metrics, "train-loss": value})
        return reply

    return change


def _lineage(**fields: Any) -> _Change:
    def change(msg: Message, reply: Message, params: FaultParams) -> Message:
        lineage = dict(reply.content.config_records[wire.LINEAGE])
        reply.content[wire.LINEAGE] = ConfigRecord({**lineage, **fields})
        return reply

    return change


def _structure(edit: Callable[[dict[str, np.ndarray]], None]) -> _Change:
    def change(msg: Message, reply: Message, params: FaultParams) -> Message:
        weights = _weights(reply.content.array_records[wire.ARRAYS])
        edit(weights)
        return _with_weights(reply, weights)

    return change


def _wrong_shape(weights: dict[str, np.ndarray]) -> None:
    name = sorted(weights)[0]
    weights[name] = np.ascontiguousarray(weights[name].reshape(-1)[:-1])


def _wrong_name(weights: dict[str, np.ndarray]) -> None:
    name = sorted(weights)[0]
    weights[name + ".injected"] = weights.pop(name)


def _wrong_dtype(weights: dict[str, np.ndarray]) -> None:
    name = sorted(weights)[0]
    weights[name] = weights[name].astype(np.float64)


_BASE_KEY = "flonnx.fault.base"


def _stale_base(msg: Message, context: Context, call_next: ClientAppCallable,
                params: FaultParams) -> Message:
    """Report the previous round's base version (in round 1, a version that never existed)."""
    current = str(msg.content.config_records[wire.LINEAGE][wire.LINEAGE_VERSION])
    seen = context.state.config_records.get(_BASE_KEY)
    stale = str(seen["version"]) if seen is not None else "0" * 64
    context.state[_BASE_KEY] = ConfigRecord({"version": current})
    reply = call_next(msg, context)
    return _lineage(**{wire.REPLY_BASE_VERSION: stale})(msg, reply, params) if _update(reply) else reply


_REPLAY = "flonnx.fault.replay."


def _replay(msg: Message, context: Context, call_next: ClientAppCallable, params: FaultParams) -> Message:
    """Answer round 1 honestly and keep that reply; answer every later round with it again."""
    state = context.state
    if _REPLAY + wire.LINEAGE in state.config_records:
        content = RecordDict({
            wire.ARRAYS: state.array_records[_REPLAY + wire.ARRAYS],
            wire.METRICS: state.metric_records[_REPLAY + wire.METRICS],
            wire.LINEAGE: state.config_records[_REPLAY + wire.LINEAGE],
        })
        return Message(content, reply_to=msg)
    reply = call_next(msg, context)
    if _update(reply):
        for key in (wire.ARRAYS, wire.METRICS, wire.LINEAGE):
            state[_REPLAY + key] = reply.content[key]
    return reply


def _attack(kind: str) -> _Change:
    """Model poisoning relative to the round's global weights ``g``.

    With the honest update ``d = w - g``, sign-flip sends ``g - scale·d`` (scale 1), scaled
    ``g + scale·d`` (scale 10), noise ``w + N(0, sigma²)`` (seeded by the round's seed).
    """

    def change(msg: Message, reply: Message, params: FaultParams) -> Message:
        start = _weights(msg.content.array_records[wire.ARRAYS])
        trained = _weights(reply.content.array_records[wire.ARRAYS])
        seed = int(str(reply.content.config_records[wire.LINEAGE][wire.REPLY_SEED]))
        rng = np.random.default_rng(derive_seed(seed, "byzantine-noise"))
        out = {}
        for name in sorted(trained):
            w, g = trained[name], start[name]
            if kind == "sign-flip":
                value = g - (1.0 if params.scale is None else params.scale) * (w - g)
            elif kind == "scaled":
                value = g + (10.0 if params.scale is None else params.scale) * (w - g)
            else:
                value = w + rng.normal(0.0, params.sigma, size=w.shape)
            out[name] = np.asarray(value, dtype=w.dtype)
        return _with_weights(reply, out)

    return change


def _copy(msg: Message, context: Context, call_next: ClientAppCallable, params: FaultParams) -> Message:
    """Send (a near-copy of) another client's update.

    The node trains as the next honest partition would, on its data and with its framework, then
    names itself in the reply.

    An attacker cannot read another client's update off the wire, so the copy is modelled as a
    colluder who has the victim's data: the same data, framework and starting weights as the victim,
    only this node's seed. Simulation only (a real node has no other partition).
    """
    config = context.node_config
    if "partition-id" not in config:
        raise RuntimeError("fault=copy needs a simulated federation (another partition to copy)")
    spec = params.spec
    n, me = int(config["num-partitions"]), int(config["partition-id"])
    attackers = set() if spec is None else {*byzantine_clients(spec, n), *(p for p, _ in spec.faults)}
    victim = next((p % n for p in range(me + 1, me + n) if p % n not in attackers), me)
    victim_context = Context(run_id=context.run_id, node_id=context.node_id,
                             node_config={**config, "partition-id": victim}, state=context.state,
                             run_config=context.run_config)
    reply = call_next(msg, victim_context)
    if not _update(reply):
        return reply
    key = str(config.get("client-id") or f"partition-{me}")
    return _lineage(**{wire.REPLY_CLIENT: key})(msg, reply, params)


MESSAGE_FAULTS: dict[str, MessageFault] = {
    "hang": _hang,
    "kill": _kill,
    "garbage": _rewriting(_garbage),
    "truncated": _rewriting(_truncated),
    "nan-metric": _rewriting(_metric(float("nan"))),
    "metric-type": _rewriting(_metric([1.0, 2.0])),
    # 1 MiB where a framework name belongs
    "lineage-oversized": _rewriting(_lineage(**{wire.REPLY_FRAMEWORK: "x" * (1 << 20)})),
    "lineage-malformed": _rewriting(_lineage(**{wire.REPLY_SEED: "not-a-seed",
                                                wire.REPLY_ENVIRONMENT: "{not json"})),
    "wrong-shape": _rewriting(_structure(_wrong_shape)),
    "wrong-name": _rewriting(_structure(_wrong_name)),
    "wrong-dtype": _rewriting(_structure(_wrong_dtype)),
    "stale-base": _stale_base,
    "replay": _replay,
    "sign-flip": _rewriting(_attack("sign-flip")),
    "scaled": _rewriting(_attack("scaled")),
    "noise": _rewriting(_attack("noise")),
    "copy": _copy,
}

#: Every fault, with the level it acts at.
FAULTS: dict[str, str] = {**{k: "trainer" for k in TRAINER_FAULTS},
                          **{k: "message" for k in MESSAGE_FAULTS}}
assert set(FAULTS) == set(FAULT_NAMES), "flonnx.exchange.spec.FAULTS and this table must agree"
