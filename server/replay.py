"""``flonnx lineage replay``: re-aggregate a run's rounds from the registry alone and compare.

For every committed round ``r``: rebuild the recorded strategy from its recorded name and config,
restore the strategy state saved after round ``r - 1``, configure the round on the recorded global
weights, aggregate the recorded client updates (the aggregate's parents) and compare the weights id
with the recorded aggregate's, and the new strategy state with the one saved after round ``r``.
No client and no Flower grid is involved. Each round is aggregated by the aggregator its aggregate
records (``aggregator`` and ``aggregator-scale-bits`` in its strategy config,
:func:`~flonnx.server.strategies.recorded_aggregator`); a run from before streaming records none and
replays the held way (``float-v0``). A streamed round loads, folds and drops one update at a time.
A strategy that cannot be built at all (a custom
``module:Class`` that is not importable here, see docs/strategies.md) is one error before any round,
not a mismatch of every round.

A run whose retention (``[registry] retention = "last:K"``) let go of the blobs of its older rounds'
client updates cannot re-aggregate those rounds: each is reported ``pruned`` (not replayed, and no
mismatch), by name; the rounds whose updates are kept are replayed as any other. A blob that
retention keeps and that is missing is a failure of its round, as ever.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flonnx.exchange.errors import FlonnxError, LineageError
from flonnx.exchange.hashing import weights_id
from flonnx.exchange.lineage import VersionKind
from flonnx.exchange.registry import Registry, retention_horizon, strategy_state_id
from flonnx.server.aggregation import AggregationInput, RoundAggregation, configure_round
from flonnx.server.settings import Settings
from flonnx.server.strategies import DP_CLIPPING_MODE, build_strategy, recorded_aggregator
from flonnx.server.strategy_state import capture_state, restore_state

__all__ = ["ReplayReport", "RoundReplay", "replay_run"]


@dataclass(frozen=True)
class RoundReplay:
    """The outcome of re-aggregating one round."""

    round: int
    ok: bool
    weights_id: str  # what replay produced ("" if it could not aggregate)
    problem: str = ""
    pruned: bool = False  # not replayed: retention let go of its updates' blobs (``problem`` says so)


@dataclass
class ReplayReport:
    """Every round's outcome; ``ok`` when all match."""

    run_id: str
    strategy: str
    rounds: list[RoundReplay] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every round replayed re-aggregated to its recorded weights and state."""
        return all(r.ok or r.pruned for r in self.rounds)

    @property
    def pruned(self) -> list[int]:
        """The rounds not replayed because the run's retention let go of their updates."""
        return [r.round for r in self.rounds if r.pruned]


def replay_run(registry: Registry, run_id: str) -> ReplayReport:
    """Re-aggregate every committed round of ``run_id``; see the module docstring.

    Raises:
        FlonnxError: the run's strategy cannot be built here (e.g. ``cannot import strategy X``).
    """
    config = registry.run(run_id).config
    settings = Settings.from_json(config)
    build_strategy(settings.strategy, settings.strategy_config, settings.strategy_defaults())
    heads = registry.heads(run_id)
    if 0 not in heads:
        raise LineageError(f"run {run_id} has no initial version")
    report = ReplayReport(run_id, settings.strategy)
    sampled: dict[int, int] = {}
    for version in registry.versions(run_id):
        if version.record.kind in (VersionKind.CLIENT_UPDATE, VersionKind.REJECTED):
            sampled[version.record.round] = sampled.get(version.record.round, 0) + 1
    horizon = retention_horizon(config, max(heads))
    for rnd in sorted(r for r in heads if r > 0):
        pruned = rnd <= horizon and _pruned(registry, heads[rnd])
        report.rounds.append(
            RoundReplay(rnd, False, "", f"not replayed: retention {settings.spec.retention} let go of "
                        "its client updates", pruned=True) if pruned
            else _replay_round(registry, run_id, settings, heads, rnd, sampled.get(rnd, 0))
        )
    return report


def _pruned(registry: Registry, aggregate_id: str) -> bool:
    """Whether a blob of an update the aggregate ``aggregate_id`` was made of is gone."""
    return any(not registry.blobs.exists(registry.record(parent).weights_id)
               for parent in registry.record(aggregate_id).parents)


def _replay_round(
    registry: Registry, run_id: str, settings: Settings, heads: dict[int, str], rnd: int,
    sampled: int,
) -> RoundReplay:
    aggregate = registry.record(heads[rnd])
    base = registry.record(heads[rnd - 1])
    if aggregate.kind is not VersionKind.AGGREGATE:
        return RoundReplay(rnd, False, "", f"head {heads[rnd][:12]} is a {aggregate.kind.value}")
    try:
        built = build_strategy(aggregate.strategy, aggregate.strategy_config,
                               settings.strategy_defaults())
        before = registry.state_at(run_id, rnd - 1)
        if before is None:
            raise LineageError(f"no strategy state saved after round {rnd - 1}")
        restore_state(built.strategy, *registry.get_state(before))
        definition = registry.get_definition(aggregate.definition_id)
        aggregator, bits = recorded_aggregator(aggregate.strategy_config)
        train_config: dict[str, Any] = dict(settings.train)
        if built.dp_clipping:
            train_config[DP_CLIPPING_MODE] = built.dp_clipping
        configure_round(built.strategy, rnd, settings.seed, registry.get_weights(base.weights_id),
                        train_config, list(range(1, max(sampled, len(aggregate.parents)) + 1)))
        aggregation = RoundAggregation(built.strategy, aggregator, rnd, settings.seed, definition,
                                       updates=len(aggregate.parents), bits=bits,
                                       label=aggregate.strategy)
        if aggregator.streams and not aggregation.streaming:
            raise LineageError(f"round {rnd} records {aggregator.name} at scale 2**{bits}, which "
                               "this strategy and definition cannot use")
        for parent in aggregate.parents:
            record = registry.record(parent)
            aggregation.add(AggregationInput(record.client, registry.get_weights(record.weights_id),
                                             record.num_examples, dict(record.metrics)))
        weights, _ = aggregation.finish()
    except FlonnxError as exc:
        return RoundReplay(rnd, False, "", str(exc))
    produced = weights_id(weights)
    if produced != aggregate.weights_id:
        return RoundReplay(rnd, False, produced,
                           f"recorded weights {aggregate.weights_id[:12]}, replay gave {produced[:12]}")
    recorded_state = registry.state_at(run_id, rnd)
    replayed_state = strategy_state_id(*capture_state(built.strategy))
    if recorded_state != replayed_state:
        return RoundReplay(rnd, False, produced,
                           f"strategy state after the round differs from the recorded one "
                           f"({str(recorded_state)[:12]} vs {replayed_state[:12]})")
    return RoundReplay(rnd, True, produced)
