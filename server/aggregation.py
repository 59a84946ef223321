"""One round of aggregation by a Flower strategy, exactly reproducible.

The live federation and ``lineage replay`` both go through :func:`configure_round` and
:func:`aggregate_round`: the strategy sees messages rebuilt from validated updates (arrays + a single
MetricRecord, in client-key order), inside a global RNG seeded by (run seed, round, phase). So
replaying the recorded updates with the recorded strategy, config and state gives the same weights,
bit for bit.

:class:`RoundAggregation` is what the round loop and replay feed, one accepted update at a time.
With the held aggregator (``float-v0``) it keeps every update and calls :func:`aggregate_round` at
the end. With ``fixed-point-v1`` (:mod:`flonnx.server.streaming`) it folds each update into an exact
integer weighted mean as it is added, so the caller can drop the update's arrays at once; at the
end FedAvg and FedProx return that mean, and FedAvgM and FedAdagrad/FedAdam/FedYogi apply their
server step to it (their ``aggregate_train`` is given one message holding the mean, whose FedAvg is
the mean times exactly 1.0). Train metrics are aggregated from every update's MetricRecord in
client-key order by the strategy's own ``train_metrics_aggr_fn``, exactly as on the held path.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import (
    DEFAULT_TTL,
    Array,
    ArrayRecord,
    ConfigRecord,
    Message,
    MessageType,
    Metadata,
    MetricRecord,
    RecordDict,
)
from flwr.serverapp.strategy import FedAvg
from flwr.serverapp.strategy.strategy_utils import validate_message_reply_consistency
from flwr.supercore.task_identity import TaskIdentity

from flonnx.exchange import wire
from flonnx.exchange.definition import Definition
from flonnx.exchange.errors import FlonnxError
from flonnx.exchange.seeds import derive_seed
from flonnx.server.strategies import (
    AGGREGATOR,
    AGGREGATOR_SCALE_BITS,
    AggregatorSpec,
    aggregator_config,
)
from flonnx.server.strategy_state import seeded_global_rng
from flonnx.server.streaming import HELD, FixedPointMean

__all__ = [
    "AggregationInput", "RoundAggregation", "aggregate_round", "configure_round", "update_message",
]


@dataclass(frozen=True)
class AggregationInput:
    """What a strategy needs of one accepted client update."""

    client: str
    weights: Mapping[str, np.ndarray]
    num_examples: int
    metrics: Mapping[str, float]


class _NodesGrid:
    """The only part of a Grid a strategy's ``configure_train`` uses: the nodes to sample from."""

    def __init__(self, grid: Any, node_ids: Sequence[int]) -> None:
        self._grid, self._node_ids = grid, list(node_ids)

    def get_node_ids(self) -> Iterable[int]:
        return list(self._node_ids)

    def __getattr__(self, name: str) -> Any:
        if self._grid is None:
            raise AttributeError(f"replay has no grid; a strategy asked for {name!r}")
        return getattr(self._grid, name)


@contextmanager
def _task_identity() -> Iterator[None]:
    """Outside a ServerApp (replay), give Flower's Message constructor the identity it requires."""
    if getattr(TaskIdentity, "_run_id", None) is not None:
        yield
        return
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 0, 0, 0
    try:
        yield
    finally:
        TaskIdentity._run_id = TaskIdentity._node_id = TaskIdentity._task_id = None  # type: ignore[assignment]  # noqa: SLF001, E501


def configure_round(
    strategy: Any, rnd: int, seed: int, weights: Mapping[str, np.ndarray],
    train_config: Mapping[str, Any], node_ids: Sequence[int], grid: Any = None,
) -> list[Message]:
    """Call ``strategy.configure_train`` for round ``rnd`` offering exactly ``node_ids``."""
    # Sorted names everywhere: several strategies zip arrays by position, not by name.
    arrays = ArrayRecord({name: Array(np.asarray(weights[name])) for name in sorted(weights)})
    with _task_identity(), seeded_global_rng(derive_seed(seed, "strategy", rnd, "configure")):
        return list(strategy.configure_train(
            rnd, arrays, ConfigRecord(dict(train_config)), _NodesGrid(grid, node_ids)
        ))


def update_message(update: AggregationInput, node_id: int) -> Message:
    """The reply message a strategy aggregates: arrays + one MetricRecord with ``num-examples``."""
    content = RecordDict({
        wire.ARRAYS: ArrayRecord({k: Array(np.ascontiguousarray(update.weights[k]))
                                  for k in sorted(update.weights)}),
        wire.METRICS: MetricRecord({wire.REPLY_NUM_EXAMPLES: update.num_examples,
                                    **{k: float(v) for k, v in sorted(update.metrics.items())}}),
    })
    # Explicit metadata: replay runs outside any Flower run. Strategies only log the node id.
    metadata = Metadata(
        run_id=0, message_id=f"flonnx-{node_id}", src_node_id=node_id, dst_node_id=0,
        reply_to_message_id="", group_id="", created_at=0.0, ttl=DEFAULT_TTL,
        message_type=MessageType.TRAIN,
    )
    return Message(content, metadata=metadata)  # type: ignore[call-overload]


def aggregate_round(
    strategy: Any, rnd: int, seed: int, updates: Sequence[AggregationInput], definition: Definition,
    *, label: str = "",
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Aggregate ``updates`` (in client-key order) with ``strategy``; returns (weights, train metrics).

    Aggregated arrays are cast to the definition's dtypes (FedOpt computes in float64) and validated.

    Raises:
        FlonnxError: the strategy returned nothing, or weights that do not fit the definition.
    """
    ordered = sorted(updates, key=lambda u: u.client)
    messages = [update_message(u, i + 1) for i, u in enumerate(ordered)]
    with seeded_global_rng(derive_seed(seed, "strategy", rnd, "aggregate")):
        aggregated, metrics = strategy.aggregate_train(rnd, messages)
    del messages, ordered
    return _result(aggregated, metrics, rnd, definition, label or type(strategy).__name__,
                   len(updates))


def _result(
    aggregated: ArrayRecord | Mapping[str, np.ndarray] | None, metrics: Any, rnd: int,
    definition: Definition, label: str, count: int,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Arrays cast to the definition's dtypes and validated; numeric train metrics as floats."""
    if aggregated is None:
        raise FlonnxError(f"round {rnd}: strategy {label} returned no weights from {count} update(s)")
    weights = {}
    for name in list(aggregated.keys()):
        item = aggregated[name]
        value = item.numpy() if isinstance(item, Array) else np.asarray(item)
        spec = definition.specs.get(name)
        if spec is not None and value.dtype != spec.dtype and value.dtype.kind == spec.dtype.kind:
            value = value.astype(spec.dtype)
        weights[name] = value
    definition.validate(weights, source=f"round {rnd} aggregate")
    train_metrics = {k: float(v) for k, v in dict(metrics or {}).items()
                     if isinstance(v, int | float) and not isinstance(v, bool)}
    return weights, train_metrics


class RoundAggregation:
    """One round's aggregation, fed one accepted update at a time (see the module docstring).

    Args:
        strategy: The Flower strategy, configured for round ``rnd``.
        aggregator: The aggregator the run uses; it streams only for a FedAvg-family strategy and
            a definition of float tensors, and only when a scale exists for ``updates``.
        updates: At most this many updates will be added (the clients sampled), which fixes the
            fixed-point scale before the first one arrives.
        bits: The scale exponent to use instead (replay: the one the round recorded).
    """

    def __init__(
        self, strategy: Any, aggregator: AggregatorSpec, rnd: int, seed: int,
        definition: Definition, *, updates: int, bits: int | None = None, label: str = "",
    ) -> None:
        self.strategy, self.aggregator, self.rnd, self.seed = strategy, aggregator, rnd, seed
        self.definition, self.label = definition, label or type(strategy).__name__
        self._held: list[AggregationInput] = []
        self._metrics: list[tuple[str, MetricRecord]] = []
        self._mean: FixedPointMean | None = None
        floats = all(spec.dtype.kind == "f" for spec in definition.specs.values())
        if aggregator.streams and isinstance(strategy, FedAvg) and floats:
            bits = aggregator.scale_bits(max(updates, 1)) if bits is None else bits
            if bits is not None:
                self._mean = FixedPointMean(bound=aggregator.bound,
                                            max_examples=aggregator.max_examples, bits=bits)

    @property
    def streaming(self) -> bool:
        """Whether updates are folded as they are added (their arrays may be dropped after)."""
        return self._mean is not None

    def recorded_config(self, config: Mapping[str, str]) -> dict[str, str]:
        """The strategy config the round's aggregate records: ``config`` + how it was aggregated."""
        if self._mean is not None:
            return {**config, **aggregator_config(self.aggregator),
                    AGGREGATOR_SCALE_BITS: str(self._mean.bits)}
        if AGGREGATOR not in config:
            return dict(config)
        return {**{k: v for k, v in config.items() if not k.startswith(f"{AGGREGATOR}-")},
                AGGREGATOR: HELD}

    def add(self, update: AggregationInput) -> None:
        """Take one accepted update.

        Raises:
            InvalidUpdate: (streaming) a value or weight outside the aggregator's declared bounds;
                nothing of the update was added and the caller records it as rejected.
            AggregationOverflow: (streaming) more weight arrived than the scale allows.
        """
        if self._mean is None:
            self._held.append(update)
            return
        self._mean.add(update.weights, update.num_examples)
        self._metrics.append((update.client, MetricRecord({
            wire.REPLY_NUM_EXAMPLES: update.num_examples,
            **{k: float(v) for k, v in sorted(update.metrics.items())}})))

    def finish(self) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """The round's weights (definition dtypes, validated) and train metrics.

        Raises:
            FlonnxError: no update was added, or the strategy returned nothing usable.
        """
        if self._mean is None:
            held, self._held = self._held, []
            return aggregate_round(self.strategy, self.rnd, self.seed, held, self.definition,
                                   label=self.label)
        count, total = self._mean.count, self._mean.total_weight
        if not count:
            raise FlonnxError(f"round {self.rnd}: strategy {self.label} returned no weights from "
                              "0 update(s)")
        mean = self._mean.mean(release=True)
        records = [RecordDict({wire.METRICS: m})
                   for _, m in sorted(self._metrics, key=lambda item: item[0])]
        strategy = self.strategy
        with seeded_global_rng(derive_seed(self.seed, "strategy", self.rnd, "aggregate")):
            validate_message_reply_consistency(records, strategy.weighted_by_key,
                                               check_arrayrecord=False)
            aggregated: ArrayRecord | dict[str, np.ndarray] | None = mean
            if type(strategy).aggregate_train is not FedAvg.aggregate_train:
                message = update_message(AggregationInput("", mean, total, {}), 1)
                del mean
                aggregated, _ = strategy.aggregate_train(self.rnd, [message])
                del message
            metrics = strategy.train_metrics_aggr_fn(records, strategy.weighted_by_key)
        return _result(aggregated, metrics, self.rnd, self.definition, self.label, count)
