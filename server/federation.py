"""The versioned federation loop around a Flower strategy.

Per round: sample clients by stable key with a seeded RNG; let the inner Flower strategy configure
the round; add the definition and lineage to every message; validate every reply; hand the valid
ones to the strategy in client-key order (:mod:`server.aggregation`); evaluate the new global version
with ONNX Runtime on the server's test split; record the updates, the rejections, the aggregate and
the strategy's state in the registry in one transaction.

A round with fewer than ``min-train-nodes`` valid updates is not committed: the run is marked
``failed`` and :meth:`Federation.run` with ``Settings.resume`` continues it from its last committed
round, with the strategy state restored from the registry.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from exchange import wire
from exchange.definition import Definition
from exchange.errors import FlonnxError
from exchange.lineage import VersionKind, VersionRecord, environment
from exchange.ort import classification_metrics
from exchange.registry import Registry
from exchange.seeds import derive_seed
from server.aggregation import AggregationInput, aggregate_round, configure_round
from server.progress import ConsoleReporter, Reporter, RoundSummary
from server.replies import ClientInfo, Rejection, Update, check_reply
from server.sampling import sample_clients
from server.settings import Settings
from server.strategies import DP_CLIPPING_MODE, build_strategy
from server.strategy_state import capture_state, restore_state
from simulations.data import load_split
from simulations.scenarios import Scenario, get_scenario

__all__ = ["Federation", "RoundFailed", "initial_model"]


class RoundFailed(FlonnxError):
    """A round could not be aggregated; nothing of it was committed and the run can be resumed."""


def initial_model(scenario: Scenario, seed: int) -> tuple[Definition, dict[str, np.ndarray]]:
    """The scenario's starting definition and weights (seeded PyTorch init, exported to ONNX)."""
    import torch

    from exchange.adapters.torch_native import export_module
    from exchange.zoo import MODELS, build

    torch.manual_seed(derive_seed(seed, "init"))
    module = build(scenario.model)
    example = torch.zeros((2, *MODELS[scenario.model].input_shape))
    return export_module(module, example, metadata={"flonnx.model": scenario.model})


@dataclass
class _Head:
    round: int
    version_id: str
    weights: dict[str, np.ndarray]
    weights_id: str


class Federation:
    """One run of a scenario on a Flower grid, recorded in a registry."""

    def __init__(self, grid: Grid, settings: Settings, reporter: Reporter | None = None) -> None:
        self.grid = grid
        self.settings = settings
        self.reporter = reporter or ConsoleReporter()
        self.scenario = get_scenario(settings.scenario)
        self.registry = Registry(settings.registry)
        self.built = build_strategy(settings.strategy, settings.strategy_config,
                                    settings.strategy_defaults())
        self.strategy, self.strategy_config = self.built.strategy, self.built.config
        split = load_split(self.scenario.dataset, image=self.scenario.image_input)
        self.x_test, self.y_test = split.x_test, split.y_test
        self.server_env = environment()
        self.history: list[RoundSummary] = []
        self._clients: dict[str, ClientInfo] = {}
        self.on_run_created: Callable[[str], None] = lambda run_id: None

    # -- public ---------------------------------------------------------------------------------
    def run(self) -> str:
        """Run all rounds (or continue ``settings.resume``); returns the run id."""
        if self.settings.resume:
            return self._resume(self.settings.resume)
        definition, weights = initial_model(self.scenario, self.settings.seed)
        run_id = self.registry.create_run(self.scenario.name, self.settings.seed, self.settings.to_json())
        self.on_run_created(run_id)
        try:
            self.registry.put_definition(definition)
            metrics = self.evaluate(definition, weights)
            record = VersionRecord(
                kind=VersionKind.INITIAL, round=0, definition_id=definition.id,
                weights_id=self.registry.put_weights(weights), framework="torch",
                metrics=metrics, seed=self.settings.seed, environment=self.server_env,
            )
            (version_id,) = self.registry.commit(run_id, [record], head_round=0, head=record.version_id,
                                                 state_id=self._save_state())
            self.reporter.start(run_id, self.scenario.name, version_id, metrics)
            head = _Head(0, version_id, weights, record.weights_id)
            self._rounds(run_id, definition, head)
        except BaseException:
            self.registry.set_status(run_id, "failed")
            raise
        self.registry.set_status(run_id, "completed")
        self.reporter.finish(run_id, self.history)
        return run_id

    def _resume(self, run_id: str) -> str:
        """Continue ``run_id`` from its last committed round with its saved strategy state."""
        heads = self.registry.heads(run_id)
        if not heads:
            raise FlonnxError(f"run {run_id} has no committed version to resume from")
        last = max(heads)
        if last >= self.settings.rounds:
            raise FlonnxError(
                f"run {run_id} already has {last} rounds; pass a larger total (--rounds)"
            )
        state_id = self.registry.state_at(run_id, last)
        if state_id is None:
            raise FlonnxError(f"run {run_id} saved no strategy state after round {last}")
        restore_state(self.strategy, *self.registry.get_state(state_id))
        record = self.registry.record(heads[last])
        definition = self.registry.get_definition(record.definition_id)
        weights = self.registry.get_weights(record.weights_id)
        self.on_run_created(run_id)
        self.registry.update_config(run_id, self.settings.to_json())
        self.registry.set_status(run_id, "running")
        try:
            self.reporter.start(run_id, self.scenario.name, heads[last], dict(record.metrics),
                                resumed_from=last)
            self._rounds(run_id, definition, _Head(last, heads[last], weights, record.weights_id))
        except BaseException:
            self.registry.set_status(run_id, "failed")
            raise
        self.registry.set_status(run_id, "completed")
        self.reporter.finish(run_id, self.history)
        return run_id

    def _save_state(self) -> str:
        return self.registry.put_state(*capture_state(self.strategy))

    def evaluate(self, definition: Definition, weights: dict[str, np.ndarray]) -> dict[str, float]:
        """Server-side evaluation with ONNX Runtime on the held-out split."""
        return classification_metrics(definition.materialize(weights), self.x_test, self.y_test)

    # -- rounds ---------------------------------------------------------------------------------
    def _rounds(self, run_id: str, definition: Definition, head: _Head) -> None:
        clients = self._clients = self._handshake()
        for rnd in range(head.round + 1, self.settings.rounds + 1):
            started = time.perf_counter()
            head, summary = self._round(run_id, rnd, definition, head, clients)
            summary.seconds = time.perf_counter() - started
            self.history.append(summary)
            self.reporter.round(summary)

    def _handshake(self) -> dict[str, ClientInfo]:
        deadline = time.monotonic() + self.settings.round_timeout
        while len(node_ids := list(self.grid.get_node_ids())) < self.settings.min_available_nodes:
            if time.monotonic() > deadline:
                raise FlonnxError(
                    f"only {len(node_ids)} nodes connected; {self.settings.min_available_nodes} needed"
                )
            time.sleep(0.5)
        hello = ConfigRecord({
            wire.LINEAGE_SCENARIO: self.scenario.name,
            wire.LINEAGE_FRAMEWORKS: ",".join(self.scenario.frameworks),
        })
        messages = [
            Message(RecordDict({wire.HELLO: hello}), dst_node_id=node, message_type=MessageType.QUERY)
            for node in sorted(node_ids)
        ]
        clients: dict[str, ClientInfo] = {}
        for reply in self.grid.send_and_receive(messages, timeout=self.settings.round_timeout):
            if reply.has_error() or wire.HELLO not in reply.content:
                continue
            info = reply.content[wire.HELLO]
            key = str(info[wire.REPLY_CLIENT])
            if key in clients:
                raise FlonnxError(f"two nodes call themselves {key!r}; client keys must be unique")
            clients[key] = ClientInfo(
                node_id=reply.metadata.src_node_id, key=key,
                framework=str(info[wire.REPLY_FRAMEWORK]),
                framework_version=str(info[wire.REPLY_FRAMEWORK_VERSION]),
                num_examples=int(str(info[wire.REPLY_NUM_EXAMPLES])),
            )
        if len(clients) < self.settings.min_available_nodes:
            raise FlonnxError(
                f"{len(clients)} of {len(node_ids)} nodes answered the handshake; "
                f"{self.settings.min_available_nodes} needed"
            )
        return clients

    def _round(
        self, run_id: str, rnd: int, definition: Definition, head: _Head, clients: dict[str, ClientInfo]
    ) -> tuple[_Head, RoundSummary]:
        keys = sample_clients(
            list(clients), round=rnd, seed=self.settings.seed,
            fraction=self.settings.fraction_train, minimum=self.settings.min_train_nodes,
        )
        by_node = {clients[k].node_id: clients[k] for k in keys}
        train_config: dict[str, Any] = dict(self.settings.train)
        if self.built.dp_clipping:
            train_config[DP_CLIPPING_MODE] = self.built.dp_clipping
        configured = configure_round(self.strategy, rnd, self.settings.seed, head.weights,
                                     train_config, sorted(by_node), self.grid)
        seeds = {k: derive_seed(self.settings.seed, rnd, k) for k in keys}
        messages = []
        for message in sorted(configured, key=lambda m: by_node[m.metadata.dst_node_id].key):
            client = by_node[message.metadata.dst_node_id]
            content = RecordDict(dict(message.content.items()))
            content[wire.LINEAGE] = ConfigRecord({
                wire.LINEAGE_RUN: run_id, wire.LINEAGE_ROUND: rnd, wire.LINEAGE_VERSION: head.version_id,
                wire.LINEAGE_DEFINITION_ID: definition.id, wire.LINEAGE_WEIGHTS_ID: head.weights_id,
                wire.LINEAGE_DEFINITION: definition.canonical_bytes, wire.LINEAGE_SEED: seeds[client.key],
                wire.LINEAGE_SCENARIO: self.scenario.name,
                wire.LINEAGE_FRAMEWORKS: ",".join(self.scenario.frameworks),
            })
            messages.append(Message(content, dst_node_id=client.node_id, message_type=MessageType.TRAIN))
        replies = list(self.grid.send_and_receive(messages, timeout=self.settings.round_timeout))
        updates: list[Update] = []
        rejected: list[Rejection] = []
        answered = set()
        for reply in replies:
            sender = by_node.get(reply.metadata.src_node_id)
            if sender is None:
                continue
            answered.add(sender.key)
            checked = check_reply(reply, client=sender, definition=definition,
                                  base_version=head.version_id, seed=seeds[sender.key])
            if isinstance(checked, Update):
                updates.append(checked)
            else:
                rejected.append(checked)
        rejected += [Rejection(k, clients[k].node_id, "no reply before the round timeout")
                     for k in keys if k not in answered]
        updates.sort(key=lambda u: u.client)
        rejected.sort(key=lambda r: r.client)  # replies arrive in completion order
        if len(updates) < self.settings.min_train_nodes:
            reasons = "; ".join(f"{r.client}: {r.reason}" for r in rejected)
            raise RoundFailed(
                f"round {rnd}: {len(updates)} valid update(s), min-train-nodes is "
                f"{self.settings.min_train_nodes}; the round was not committed "
                f"(rejected: {reasons or 'none'})"
            )
        new_weights, train_metrics = aggregate_round(
            self.strategy, rnd, self.settings.seed,
            [AggregationInput(u.client, u.weights, u.num_examples, u.metrics) for u in updates],
            definition, label=self.settings.strategy,
        )
        return self._commit(run_id, rnd, definition, head, updates, rejected, new_weights, len(keys),
                            train_metrics)

    def _commit(
        self, run_id: str, rnd: int, definition: Definition, head: _Head, updates: list[Update],
        rejected: list[Rejection], new_weights: dict[str, np.ndarray], sampled: int,
        train_metrics: dict[str, Any],
    ) -> tuple[_Head, RoundSummary]:
        records = []
        for update in updates:
            self.registry.put_weights(update.weights)
            records.append(VersionRecord(
                kind=VersionKind.CLIENT_UPDATE, round=rnd, definition_id=definition.id,
                weights_id=update.weights_id, parents=(head.version_id,), framework=update.framework,
                framework_version=update.framework_version, client=update.client,
                num_examples=update.num_examples, metrics=update.metrics, seed=update.seed,
                environment=update.environment,
            ))
        for rejection in rejected:
            client = self._clients.get(rejection.client)
            records.append(VersionRecord(
                kind=VersionKind.REJECTED, round=rnd, definition_id=definition.id, weights_id="",
                parents=(head.version_id,), framework=client.framework if client else "",
                framework_version=client.framework_version if client else "",
                client=rejection.client, metrics=rejection.metrics,
                seed=derive_seed(self.settings.seed, rnd, rejection.client), reason=rejection.reason,
            ))
        metrics = self.evaluate(definition, new_weights)
        metrics.update({k: float(v) for k, v in train_metrics.items()
                        if isinstance(v, int | float)})
        aggregate = VersionRecord(
            kind=VersionKind.AGGREGATE, round=rnd, definition_id=definition.id,
            weights_id=self.registry.put_weights(new_weights),
            parents=tuple(r.version_id for r in records if r.kind is VersionKind.CLIENT_UPDATE),
            num_examples=sum(u.num_examples for u in updates),
            metrics=metrics, seed=self.settings.seed, strategy=self.settings.strategy,
            strategy_config=self.strategy_config, environment=self.server_env,
        )
        self.registry.commit(run_id, [*records, aggregate], head_round=rnd, head=aggregate.version_id,
                             state_id=self._save_state())
        summary = RoundSummary(
            round=rnd, total_rounds=self.settings.rounds, sampled=sampled,
            frameworks=[u.framework for u in updates], rejected=rejected, metrics=metrics,
            version_id=aggregate.version_id, seconds=0.0,
        )
        return _Head(rnd, aggregate.version_id, new_weights, aggregate.weights_id), summary

