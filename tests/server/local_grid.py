"""An in-process stand-in for Flower's Grid: messages go straight to the flonnx ClientApp.

It lets federation tests run rounds in milliseconds instead of paying ~20 s for Ray. Handler
exceptions become error replies, as in Flower's engines.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.supercore.task_identity import TaskIdentity

__all__ = ["LocalGrid"]


class LocalGrid:
    """``num_nodes`` simulated nodes (partition ``i`` has node id ``1000 + i``)."""

    def __init__(self, client_app: ClientApp, num_nodes: int,
                 run_config: dict[str, Any] | None = None) -> None:
        # Message() outside a real ServerApp needs a task identity; any fixed one will do.
        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
        self.client_app = client_app
        self.contexts = {
            1000 + i: Context(run_id=1, node_id=1000 + i,
                              node_config={"partition-id": i, "num-partitions": num_nodes},
                              state=RecordDict(), run_config=dict(run_config or {}))
            for i in range(num_nodes)
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
