"""An in-process stand-in for Flower's Grid: messages go straight to the flonnx ClientApp.

It lets federation tests run rounds in milliseconds instead of paying ~20 s for Ray. Handler
exceptions become error replies, as in Flower's engines.

A :class:`LocalGrid` offers both ``send_and_receive`` (what the federation waits on for a grid that
is not a Flower :class:`~flwr.serverapp.Grid`, and what tests override to watch or disturb an
exchange) and ``push_messages``/``pull_messages``. A :class:`PollingGrid` is a Flower ``Grid``, so
the federation polls it as it polls Flower's own grids, and its replies can arrive in a seeded,
shuffled order, a few per pull.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity

__all__ = ["LocalGrid", "PollingGrid"]


class LocalGrid:
    """``num_nodes`` nodes; node ``i`` has node id ``1000 + i``.

    By default every node is a simulated one (node config ``partition-id=i``,
    ``num-partitions=num_nodes``). ``node_configs`` gives each node its own node config instead,
    as a real SuperNode's ``--node-config`` would (one mapping per node, in node order).
    """

    def __init__(self, client_app: ClientApp, num_nodes: int,
                 run_config: dict[str, Any] | None = None, *,
                 node_configs: Sequence[Mapping[str, Any]] | None = None) -> None:
        if node_configs is not None and len(node_configs) != num_nodes:
            raise ValueError(f"{len(node_configs)} node configs for {num_nodes} nodes")
        # Message() outside a real ServerApp needs a task identity; any fixed one will do.
        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
        self.client_app = client_app
        configs = (
            [dict(c) for c in node_configs] if node_configs is not None
            else [{"partition-id": i, "num-partitions": num_nodes} for i in range(num_nodes)]
        )
        self.contexts = {
            1000 + i: Context(run_id=1, node_id=1000 + i, node_config=config,
                              state=RecordDict(), run_config=dict(run_config or {}))
            for i, config in enumerate(configs)
        }
        self.sent: list[Message] = []
        self._ready: dict[str, Message] = {}  # message id -> its reply, not yet pulled
        self.pulls = 0

    def get_node_ids(self) -> Iterable[int]:
        """Every simulated node."""
        return list(self.contexts)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        """Deliver each message to its node's ClientApp and collect the replies."""
        return [self._deliver(message) for message in messages]

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Deliver each message at once; its reply waits to be pulled under the message's id."""
        ids = []
        for message in messages:
            message.metadata.__dict__["_message_id"] = f"local-{len(self.sent)}"  # as Flower's grids
            self._ready[message.metadata.message_id] = self._deliver(message)
            ids.append(message.metadata.message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """The replies ready for ``message_ids`` (each once), in the order they are ready."""
        self.pulls += 1
        return [self._ready.pop(i) for i in self._arrivals([i for i in message_ids if i in self._ready])]

    def _arrivals(self, ready: list[str]) -> list[str]:
        """Which ready replies one pull returns, in what order: all, in the order sent."""
        return sorted(ready, key=lambda i: int(i.rsplit("-", 1)[1]))

    def _deliver(self, message: Message) -> Message:
        self.sent.append(message)
        context = self.contexts[message.metadata.dst_node_id]
        try:
            return self.client_app(message, context)
        except Exception as exc:  # noqa: BLE001 - an engine turns handler errors into replies
            return Message(Error(code=0, reason=f"{type(exc).__name__}: {exc}"), reply_to=message)


class PollingGrid(LocalGrid, Grid):
    """A LocalGrid that is a Flower ``Grid``: the federation pushes, then pulls every ``pull_interval``.

    With ``arrival_seed``, each pull returns between one and all of the ready replies, shuffled by
    an RNG seeded with it: replies arrive in an order that has nothing to do with the client keys.
    """

    pull_interval = 0.0

    def __init__(self, client_app: ClientApp, num_nodes: int,
                 run_config: dict[str, Any] | None = None, *,
                 node_configs: Sequence[Mapping[str, Any]] | None = None,
                 arrival_seed: int | None = None) -> None:
        super().__init__(client_app, num_nodes, run_config, node_configs=node_configs)
        self._rng = random.Random(arrival_seed) if arrival_seed is not None else None
        self.arrivals: list[str] = []  # message ids, in the order their replies were pulled

    def _arrivals(self, ready: list[str]) -> list[str]:
        ordered = super()._arrivals(ready)
        if self._rng is not None and ordered:
            self._rng.shuffle(ordered)
            ordered = ordered[:self._rng.randint(1, len(ordered))]
        self.arrivals += ordered
        return ordered

    def set_run(self, run: Any) -> None:
        """Not used: there is one run."""

    @property
    def run(self) -> Any:
        """Not used: there is one run."""
        return None

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str,
                       ttl: float | None = None) -> Message:
        """A message as Flower's grids make it."""
        return Message(content, dst_node_id=dst_node_id, message_type=message_type, group_id=group_id,
                       ttl=ttl)
