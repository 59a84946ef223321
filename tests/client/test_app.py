"""The ClientApp's train handler and the server's reply check, wired together without Ray."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from flonnx.client.app import app as client_app
from flonnx.exchange import wire
from flonnx.exchange.definition import Definition
from flonnx.exchange.errors import InvalidUpdate
from flonnx.exchange.hashing import weights_id
from flonnx.server.replies import ClientInfo, Rejection, Update, check_reply

SEED = 11


@pytest.fixture(autouse=True)
def _flower_identity():  # type: ignore[no-untyped-def]
    # Messages need a run id; outside a Flower run nobody sets one (internal API, test only).
    previous = TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = previous


def _train_message(definition: Definition, weights: dict[str, np.ndarray], *,
                   definition_bytes: bytes | None = None) -> Message:
    lineage = ConfigRecord({
        wire.LINEAGE_RUN: "run", wire.LINEAGE_ROUND: 1, wire.LINEAGE_VERSION: "v" * 64,
        wire.LINEAGE_DEFINITION_ID: definition.id, wire.LINEAGE_WEIGHTS_ID: weights_id(weights),
        wire.LINEAGE_DEFINITION: definition_bytes or definition.canonical_bytes,
        wire.LINEAGE_SEED: SEED,
    })
    content = RecordDict({
        wire.ARRAYS: ArrayRecord({k: Array(v) for k, v in weights.items()}),
        wire.CONFIG: ConfigRecord({"local-epochs": 1}),
        wire.LINEAGE: lineage,
    })
    return Message(content, dst_node_id=7, message_type="train")


def _context(partition: int, framework: str = "torch", **node_config: object) -> Context:
    config = {"partition-id": partition, "num-partitions": 6, "framework": framework, **node_config}
    return Context(run_id=1, node_id=7, node_config=config,  # type: ignore[arg-type]
                   state=RecordDict(), run_config={})


def _info(partition: int, framework: str) -> ClientInfo:
    return ClientInfo(node_id=7, key=f"partition-{partition}", framework=framework,
                      framework_version="x", num_examples=1)


@pytest.mark.parametrize(("partition", "framework"), [(0, "torch"), (2, "jax"), (4, "sklearn")])
def test_a_trained_reply_passes_the_server_check(partition, framework, mlp_model) -> None:
    definition, weights = mlp_model

    reply = client_app(_train_message(definition, weights), _context(partition, framework))

    checked = check_reply(reply, client=_info(partition, framework), definition=definition,
                          base_version="v" * 64, seed=SEED)
    assert isinstance(checked, Update), checked
    assert checked.framework == framework
    assert checked.weights_id != weights_id(weights)


def test_client_refuses_a_definition_that_does_not_match_its_announced_id(mlp_model) -> None:
    definition, weights = mlp_model
    other = definition.materialize(weights)
    other.graph.node[0].name = "renamed"
    tampered, _ = Definition.from_model(other)

    with pytest.raises(InvalidUpdate, match="received definition hashes to"):
        client_app(_train_message(definition, weights, definition_bytes=tampered.canonical_bytes),
                   _context(0))


def test_parity_refusal_reaches_the_server_with_the_measured_difference(mlp_model) -> None:
    definition, weights = mlp_model
    model = definition.materialize(weights)
    next(n for n in model.graph.node if n.op_type == "Relu").op_type = "Sigmoid"
    altered, _ = Definition.from_model(model)  # still names the zoo MLP, which applies ReLU

    reply = client_app(_train_message(altered, weights), _context(0))

    checked = check_reply(reply, client=_info(0, "torch"), definition=altered, base_version="v" * 64,
                          seed=SEED)
    assert isinstance(checked, Rejection)
    assert "client refused to train: torch does not reproduce ONNX Runtime" in checked.reason
    assert checked.metrics["parity-max-abs"] > 1e-3


def test_server_rejects_a_reply_whose_weights_do_not_hash_to_the_reported_id(mlp_model) -> None:
    definition, weights = mlp_model
    reply = client_app(_train_message(definition, weights), _context(0))
    reply.content[wire.LINEAGE][wire.REPLY_WEIGHTS_ID] = "0" * 64

    checked = check_reply(reply, client=_info(0, "torch"), definition=definition, base_version="v" * 64,
                          seed=SEED)

    assert isinstance(checked, Rejection)
    assert "but the client reported 000000000000" in checked.reason


@pytest.mark.parametrize(("value", "reason"), [
    (float("nan"), "metric 'train-loss' is not a finite number (nan)"),
    (float("inf"), "metric 'train-loss' is not a finite number (inf)"),
    ([1.0, 2.0], "metric 'train-loss' is a list, not a number"),
])
def test_server_rejects_a_reply_whose_metrics_are_not_finite_numbers(mlp_model, value, reason) -> None:
    definition, weights = mlp_model
    reply = client_app(_train_message(definition, weights), _context(0))
    reply.content[wire.METRICS]["train-loss"] = value

    checked = check_reply(reply, client=_info(0, "torch"), definition=definition, base_version="v" * 64,
                          seed=SEED)

    assert isinstance(checked, Rejection)
    assert checked.reason == reason
