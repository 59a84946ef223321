"""Protocol 2: a node caches definitions by id; the environment travels once, at the handshake.

An in-process federation of three nodes (each naming its own CSV). The coordinator sends a
definition's bytes to a node only while it does not know the node holds them; a node that lost its
cache (a restart, simulated by emptying its Flower node state before round 2) refuses naming the
missing id, gets the bytes at once in the same round, and the run's versions are the very ones of
an undisturbed run. The node's environment, stated in its hello reply only, is recorded with each
of its updates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict

from flonnx.client import app as client_module
from flonnx.client.app import app as client_app
from flonnx.exchange import wire
from flonnx.exchange.definition import Definition
from flonnx.exchange.errors import InvalidUpdate
from flonnx.exchange.lineage import VersionKind, VersionRecord
from flonnx.exchange.registry import Registry
from flonnx.exchange.spec import parse_spec
from flonnx.server.federation import Federation
from flonnx.server.progress import Reporter
from flonnx.server.replies import parse_environment
from flonnx.server.settings import Settings
from tests.server.local_grid import LocalGrid

ROUNDS = 3
CLIENTS = ("site-a", "site-b", "site-c")
RESTARTED = "site-b"


def _write(path: Path, seed: int) -> str:
    x = np.random.default_rng(seed).normal(size=(30, 4)).round(3)
    rows = [",".join([*map(str, r), str(int(r[0] > 0))]) for r in x]
    path.write_text("a,b,c,d,y\n" + "\n".join(rows) + "\n")
    return str(path)


class Restarting:
    """The flonnx ClientApp; before round ``restart_round``'s train message ``RESTARTED`` loses its state."""

    def __init__(self, restart_round: int | None) -> None:
        self.restart_round = restart_round
        self.replies: list[tuple[str, Message, Message]] = []  # client, message, reply

    def __call__(self, message: Message, context: Context) -> Message:
        client = str(context.node_config["client-id"])
        if (client == RESTARTED and message.metadata.message_type == MessageType.TRAIN
                and message.content[wire.LINEAGE][wire.LINEAGE_ROUND] == self.restart_round):
            context.state = RecordDict()  # what a restarted SuperNode starts with
            client_module._PARSED.clear()  # and a fresh process
            self.restart_round = None
        reply = client_app(message, context)
        self.replies.append((client, message, reply))
        return reply


def _run(folder: Path, restart_round: int | None) -> dict[str, Any]:
    folder.mkdir()
    nodes = [{"client-id": c, "framework": "torch", "data": _write(folder / f"{c}.csv", i), "label": "y"}
             for i, c in enumerate(CLIENTS)]
    spec = parse_spec({"model": "mlp-4-8-2", "task": "binary", "clients": 3, "evaluate": "none",
                       "rounds": ROUNDS, "min-train-nodes": 3, "seed": 7})
    settings = Settings(spec=spec, registry=str(folder / "registry"), min_available_nodes=3)
    app = Restarting(restart_round)
    grid = LocalGrid(app, 3, node_configs=nodes)  # type: ignore[arg-type]  # a ClientApp-like callable

    run_id = Federation(grid, settings, Reporter()).run()  # type: ignore[arg-type]

    with Registry(folder / "registry") as reg:
        records: list[VersionRecord] = [v.record for v in reg.versions(run_id)]
        status = reg.run(run_id).status
    return {"records": records, "status": status, "replies": app.replies}


@pytest.fixture(scope="module")
def undisturbed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _run(tmp_path_factory.mktemp("cache") / "undisturbed", restart_round=None)


@pytest.fixture(scope="module")
def restarted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _run(tmp_path_factory.mktemp("cache") / "restarted", restart_round=2)


def _trains(run: dict[str, Any], client: str) -> list[tuple[Message, Message]]:
    return [(m, r) for c, m, r in run["replies"]
            if c == client and m.metadata.message_type == MessageType.TRAIN]


def test_every_train_message_names_the_definition_and_carries_its_bytes_at_most_once(
    undisturbed: dict[str, Any],
) -> None:
    for client in CLIENTS:
        lineages = [m.content[wire.LINEAGE] for m, _ in _trains(undisturbed, client)]

        assert len(lineages) == ROUNDS
        assert len({str(lin[wire.LINEAGE_DEFINITION_ID]) for lin in lineages}) == 1
        assert sum(wire.LINEAGE_DEFINITION in lin for lin in lineages) <= 1
        assert all(wire.LINEAGE_DEFINITION not in lin for lin in lineages[1:])


def test_a_restarted_node_refuses_naming_the_missing_id_and_gets_the_bytes_in_the_same_round(
    restarted: dict[str, Any],
) -> None:
    trains = _trains(restarted, RESTARTED)
    round_2 = [(m, r) for m, r in trains if m.content[wire.LINEAGE][wire.LINEAGE_ROUND] == 2]
    (first, refusal), (again, update) = round_2
    definition_id = str(first.content[wire.LINEAGE][wire.LINEAGE_DEFINITION_ID])

    assert wire.LINEAGE_DEFINITION not in first.content[wire.LINEAGE]
    assert refusal.content[wire.REFUSAL][wire.REFUSAL_MISSING_DEFINITION] == definition_id
    sent = again.content[wire.LINEAGE][wire.LINEAGE_DEFINITION]
    assert isinstance(sent, bytes) and Definition.from_bytes(sent).id == definition_id
    assert wire.REFUSAL not in update.content
    assert [r.round for r in restarted["records"] if r.kind is VersionKind.CLIENT_UPDATE
            and r.client == RESTARTED] == list(range(1, ROUNDS + 1))
    later = [m for m, _ in trains if m.content[wire.LINEAGE][wire.LINEAGE_ROUND] == 3]
    assert [wire.LINEAGE_DEFINITION in m.content[wire.LINEAGE] for m in later] == [False]


def test_a_restart_changes_no_version_and_records_no_rejection(
    undisturbed: dict[str, Any], restarted: dict[str, Any],
) -> None:
    assert restarted["status"] == undisturbed["status"] == "completed"
    assert [r.version_id for r in restarted["records"]] == [r.version_id for r in undisturbed["records"]]
    assert not [r for r in restarted["records"] if r.kind is VersionKind.REJECTED]


def test_the_environment_travels_in_the_hello_reply_and_is_recorded_with_every_update(
    undisturbed: dict[str, Any],
) -> None:
    stated = {c: parse_environment(r.content[wire.HELLO][wire.REPLY_ENVIRONMENT])
              for c, m, r in undisturbed["replies"] if m.metadata.message_type == MessageType.QUERY}
    updates = [r for r in undisturbed["records"] if r.kind is VersionKind.CLIENT_UPDATE]

    assert set(stated) == set(CLIENTS) and all("flonnx" in e for e in stated.values())
    assert len(updates) == ROUNDS * len(CLIENTS)
    assert all(dict(u.environment) == stated[u.client] for u in updates)
    for client in CLIENTS:
        assert all(wire.REPLY_ENVIRONMENT not in r.content[wire.LINEAGE]
                   for _, r in _trains(undisturbed, client))


def test_the_hello_reply_lists_the_announced_definition_as_held(undisturbed: dict[str, Any]) -> None:
    for _, message, reply in undisturbed["replies"]:
        if message.metadata.message_type == MessageType.QUERY:
            announced = Definition.from_bytes(bytes(message.content[wire.HELLO][wire.HELLO_DEFINITION]))  # type: ignore[arg-type]

            assert json.loads(str(reply.content[wire.HELLO][wire.REPLY_DEFINITIONS])) == [announced.id]


# -- the node's cache, directly -------------------------------------------------------------------

def _model(hidden: int) -> tuple[Definition, dict[str, np.ndarray]]:
    from flonnx.exchange.models import load_starting_model

    return Definition.from_model(load_starting_model(f"mlp-4-{hidden}-2", seed=0, input_shape=None).model)


def _definitions(count: int) -> list[Definition]:
    return [_model(8 + i)[0] for i in range(count)]


def test_the_node_keeps_at_most_a_few_definitions_the_newest_ones() -> None:
    context = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})
    definitions = _definitions(client_module.DEFINITION_CACHE + 2)

    for definition in definitions:
        client_module._remember(context, definition)

    kept = [d.id for d in definitions[-client_module.DEFINITION_CACHE:]]
    assert client_module._cached_ids(context) == kept
    assert client_module._cached(context, definitions[0].id) is None
    assert client_module._cached(context, kept[0]) is not None


def test_a_node_refuses_bytes_that_do_not_hash_to_the_announced_id() -> None:
    context = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})
    one, other = _definitions(2)
    lineage = ConfigRecord({wire.LINEAGE_DEFINITION_ID: one.id,
                            wire.LINEAGE_DEFINITION: other.canonical_bytes})

    with pytest.raises(InvalidUpdate, match="hashes to"):
        client_module._definition(lineage, context)
    assert client_module._cached_ids(context) == []


def test_a_node_without_the_definition_answers_a_typed_refusal_naming_it() -> None:
    from flonnx.exchange.hashing import weights_id

    definition, weights = _model(8)
    LocalGrid(client_app, 1)  # sets the task identity Message() needs
    message = Message(RecordDict({
        wire.ARRAYS: ArrayRecord({k: Array(v) for k, v in weights.items()}),
        wire.CONFIG: ConfigRecord({"local-epochs": 1}),
        wire.LINEAGE: ConfigRecord({
            wire.LINEAGE_RUN: "run", wire.LINEAGE_ROUND: 1, wire.LINEAGE_VERSION: "v" * 64,
            wire.LINEAGE_DEFINITION_ID: definition.id, wire.LINEAGE_WEIGHTS_ID: weights_id(weights),
            wire.LINEAGE_SEED: 1}),
    }), dst_node_id=7, message_type=MessageType.TRAIN)
    context = Context(run_id=1, node_id=7, node_config={"framework": "torch"}, state=RecordDict(),
                      run_config={})

    reply = client_app(message, context)

    assert reply.content[wire.REFUSAL][wire.REFUSAL_MISSING_DEFINITION] == definition.id
    assert wire.ARRAYS not in reply.content
