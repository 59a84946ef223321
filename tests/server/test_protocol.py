"""The coordinator refuses, at the handshake, a node that speaks another flonnx protocol (or none).

A real in-process federation of four nodes, each naming its own CSV in node config. Two run the
flonnx ClientApp as it is; the ClientApp of the other two is wrapped so that its handshake replies
state another protocol version, or none at all (an older flonnx). Those two must be recorded as
rejected at the handshake (round 0) with a one-line reason naming both versions, and never be sent
anything after the handshake, while the other two complete every round.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import Context, Message, MessageType

from flonnx.client.app import app as client_app
from flonnx.exchange import wire
from flonnx.exchange.lineage import VersionKind, VersionRecord, flonnx_version
from flonnx.exchange.registry import Registry
from flonnx.exchange.spec import parse_spec
from flonnx.server.federation import Federation
from flonnx.server.progress import Reporter
from flonnx.server.replies import check_protocol
from flonnx.server.settings import Settings
from tests.server.local_grid import LocalGrid

ROUNDS = 2
NEWER, OLDER = "newer-protocol", "no-protocol"
CURRENT = ("current-a", "current-b")


def _write(path: Path, seed: int) -> str:
    x = np.random.default_rng(seed).normal(size=(30, 4)).round(3)
    rows = [",".join([*map(str, r), str(int(r[0] > 0))]) for r in x]
    path.write_text("a,b,c,d,y\n" + "\n".join(rows) + "\n")
    return str(path)


class OtherFlonnx:
    """The flonnx ClientApp, but some nodes' handshake replies speak another protocol."""

    def __init__(self) -> None:
        self.replies: list[tuple[str, Message]] = []

    def __call__(self, message: Message, context: Context) -> Message:
        reply = client_app(message, context)
        client = str(context.node_config["client-id"])
        self.replies.append((client, reply))
        if message.metadata.message_type == MessageType.QUERY:
            hello = reply.content[wire.HELLO]
            if client == NEWER:
                hello[wire.REPLY_PROTOCOL] = wire.PROTOCOL_VERSION + 1
                hello[wire.REPLY_FLONNX] = "9.0.0"
            elif client == OLDER:
                del hello[wire.REPLY_PROTOCOL]
                del hello[wire.REPLY_FLONNX]
        return reply


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("protocol")
    clients = (*CURRENT, NEWER, OLDER)
    nodes = [{"client-id": c, "framework": "torch", "data": _write(folder / f"{c}.csv", i), "label": "y"}
             for i, c in enumerate(clients)]
    spec = parse_spec({"model": "mlp-4-8-2", "task": "binary", "clients": 4, "evaluate": "none",
                       "rounds": ROUNDS, "min-train-nodes": 2})
    settings = Settings(spec=spec, registry=str(folder / "registry"), min_available_nodes=4)
    app = OtherFlonnx()
    grid = LocalGrid(app, 4, node_configs=nodes)  # type: ignore[arg-type]  # any ClientApp-like callable

    run_id = Federation(grid, settings, Reporter()).run()  # type: ignore[arg-type]

    with Registry(folder / "registry") as reg:
        records: list[VersionRecord] = [v.record for v in reg.versions(run_id)]
        status = reg.run(run_id).status
    node_of = {1000 + i: c for i, c in enumerate(clients)}
    return {"records": records, "status": status, "sent": grid.sent, "node_of": node_of,
            "replies": app.replies}


def _rejected(federation: dict[str, Any], client: str) -> dict[int, str]:
    return {r.round: r.reason for r in federation["records"]
            if r.kind is VersionKind.REJECTED and r.client == client}


def test_a_node_of_another_protocol_is_refused_at_the_handshake_naming_both_versions(
    federation: dict[str, Any],
) -> None:
    ours = f"this coordinator speaks protocol {wire.PROTOCOL_VERSION} (flonnx {flonnx_version()})"

    assert _rejected(federation, NEWER) == {
        0: f"node speaks flonnx protocol {wire.PROTOCOL_VERSION + 1} (flonnx 9.0.0); {ours}"}
    assert _rejected(federation, OLDER) == {0: f"node states no flonnx protocol (flonnx unknown); {ours}"}


def test_a_node_of_another_protocol_is_never_sampled_nor_asked_to_evaluate(
    federation: dict[str, Any],
) -> None:
    sent = [(federation["node_of"][m.metadata.dst_node_id], m.metadata.message_type)
            for m in federation["sent"]]

    for client in (NEWER, OLDER):
        assert {t for c, t in sent if c == client} == {MessageType.QUERY}
    for client in CURRENT:
        assert {t for c, t in sent if c == client} == {MessageType.QUERY, MessageType.TRAIN,
                                                       MessageType.EVALUATE}


def test_the_nodes_that_speak_the_protocol_complete_every_round(federation: dict[str, Any]) -> None:
    by_id = {r.version_id: r for r in federation["records"]}
    aggregates = [r for r in federation["records"] if r.kind is VersionKind.AGGREGATE]

    assert federation["status"] == "completed"
    assert [a.round for a in aggregates] == list(range(1, ROUNDS + 1))
    for aggregate in aggregates:
        assert sorted(by_id[p].client for p in aggregate.parents) == list(CURRENT)


def test_the_hello_states_the_coordinator_s_protocol_and_the_node_answers_with_its_own(
    federation: dict[str, Any],
) -> None:
    hellos = [m.content[wire.HELLO] for m in federation["sent"]
              if m.metadata.message_type == MessageType.QUERY]
    answers = [r.content[wire.HELLO] for c, r in federation["replies"] if c in CURRENT
               and wire.HELLO in r.content]

    assert hellos and answers
    assert {(h[wire.HELLO_PROTOCOL], h[wire.HELLO_FLONNX]) for h in hellos} == {
        (wire.PROTOCOL_VERSION, flonnx_version())}
    assert {(a[wire.REPLY_PROTOCOL], a[wire.REPLY_FLONNX]) for a in answers} == {
        (wire.PROTOCOL_VERSION, flonnx_version())}


@pytest.mark.parametrize(("hello", "stated"), [
    ({wire.REPLY_PROTOCOL: True, wire.REPLY_FLONNX: "0.1.0"}, "speaks flonnx protocol True (flonnx 0.1.0)"),
    ({wire.REPLY_PROTOCOL: str(wire.PROTOCOL_VERSION)},
     f"speaks flonnx protocol {wire.PROTOCOL_VERSION} (flonnx unknown)"),
    ({wire.REPLY_PROTOCOL: 0, wire.REPLY_FLONNX: "x\n\x1b[31mred"},
     "speaks flonnx protocol 0 (flonnx x red)"),
])
def test_only_the_same_integer_protocol_is_accepted(hello: dict[str, Any], stated: str) -> None:
    assert check_protocol({wire.REPLY_PROTOCOL: wire.PROTOCOL_VERSION}) is None
    assert check_protocol(hello) == (f"node {stated}; this coordinator speaks protocol "
                                     f"{wire.PROTOCOL_VERSION} (flonnx {flonnx_version()})")
