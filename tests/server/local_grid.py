"""An in-process stand-in for Flower's Grid: messages go straight to the flonnx ClientApp.

It lets federation tests run rounds in milliseconds instead of paying ~20 s for Ray. Handler
exceptions become error replies, as in Flower's engines.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.supercore.task_identity import TaskIdentity

__all__ = ["LocalGrid"]


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

    def get_node_ids(self) -> Iterable[int]:
        """Every simulated node."""
        return list(self.contexts)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        """Deliver each message to its node's ClientApp and collect the replies."""
        replies = []
        for message in messages:
            self.sent.append(message)
            context = self.contexts[message.metadata.dst_node_id]
            try:
                reply = self.client_app(message, context)
            except Exception as exc:  # noqa: BLE001 - an engine turns handler errors into replies
                reply = Message(Error(code=0, reason=f"{type(exc).__name__}: {exc}"), reply_to=message)
            replies.append(reply)
        return replies
