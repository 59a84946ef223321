"""One round of aggregation by a Flower strategy, exactly reproducible.

The live federation and ``lineage replay`` both go through :func:`configure_round` and
:func:`aggregate_round`: the strategy sees messages rebuilt from validated updates (arrays + a single
MetricRecord, in client-key order), inside a global RNG seeded by (run seed, round, phase). So
replaying the recorded updates with the recorded strategy, config and state gives the same weights,
bit for bit.
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
from flwr.supercore.task_identity import TaskIdentity

from flonnx.exchange import wire
from flonnx.exchange.definition import Definition
from flonnx.exchange.errors import FlonnxError
from flonnx.exchange.seeds import derive_seed
from flonnx.server.strategy_state import seeded_global_rng

__all__ = ["AggregationInput", "aggregate_round", "configure_round", "update_message"]


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
    if aggregated is None:
        raise FlonnxError(
            f"round {rnd}: strategy {label or type(strategy).__name__} returned no weights from "
            f"{len(ordered)} update(s)"
        )
    weights = {}
    for name, array in aggregated.items():
        value = array.numpy()
        spec = definition.specs.get(name)
        if spec is not None and value.dtype != spec.dtype and value.dtype.kind == spec.dtype.kind:
            value = value.astype(spec.dtype)
        weights[name] = value
    definition.validate(weights, source=f"round {rnd} aggregate")
    train_metrics = {k: float(v) for k, v in dict(metrics or {}).items()
                     if isinstance(v, int | float) and not isinstance(v, bool)}
    return weights, train_metrics
