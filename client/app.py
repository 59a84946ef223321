"""The flonnx ``ClientApp`` (``[tool.flwr.app.components] clientapp = "client.app:app"``).

Node config keys: ``client-id`` (stable key; default ``partition-<id>``), ``framework`` (default: the
scenario's mix by partition), ``partition-id``/``num-partitions`` (set by the simulation engine).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from client.mods import dp_clipping_mod
from client.trainers import TrainConfig, get_trainer
from exchange import wire
from exchange.definition import Definition
from exchange.errors import InvalidUpdate, ParityError
from exchange.hashing import canonical_json, weights_id
from exchange.lineage import environment
from simulations.data import client_partition, load_split
from simulations.scenarios import framework_for, get_scenario

__all__ = ["app"]

app = ClientApp()


def _identity(node_config: Mapping[str, Any], frameworks: str) -> tuple[str, str]:
    """(client key, framework) from node config, falling back to the scenario's mix."""
    partition = node_config.get("partition-id")
    key = str(node_config.get("client-id") or f"partition-{partition}")
    framework = node_config.get("framework")
    if not framework:
        framework = framework_for(
            frameworks.split(","), int(partition), int(node_config["num-partitions"])  # type: ignore[arg-type]
        )
    return key, str(framework)


def _local_data(node_config: Mapping[str, Any], scenario_name: str) -> tuple[np.ndarray, np.ndarray]:
    scenario = get_scenario(scenario_name)
    split = load_split(scenario.dataset, image=scenario.image_input)
    return client_partition(split, int(node_config["partition-id"]), int(node_config["num-partitions"]))


def _finite(value: float) -> float:
    """MetricRecords carry finite floats; an unbounded difference is reported as float max."""
    return value if np.isfinite(value) else float(np.finfo(np.float64).max)


@app.query()
def hello(msg: Message, context: Context) -> Message:
    """Handshake: who this node is and what it trains with."""
    request = msg.content[wire.HELLO]
    key, framework = _identity(context.node_config, str(request[wire.LINEAGE_FRAMEWORKS]))
    _, y = _local_data(context.node_config, str(request[wire.LINEAGE_SCENARIO]))
    trainer = get_trainer(framework)
    reply = ConfigRecord({
        wire.REPLY_CLIENT: key, wire.REPLY_FRAMEWORK: framework,
        wire.REPLY_FRAMEWORK_VERSION: trainer.version(), wire.REPLY_NUM_EXAMPLES: len(y),
    })
    return Message(RecordDict({wire.HELLO: reply}), reply_to=msg)


@app.train(mods=[dp_clipping_mod])  # per handler: on the ClientApp it would also catch queries
def train(msg: Message, context: Context) -> Message:
    """Verify the definition and weights ids, train in this node's framework, reply with lineage."""
    lineage = msg.content[wire.LINEAGE]
    definition = Definition.from_bytes(bytes(lineage[wire.LINEAGE_DEFINITION]))  # type: ignore[arg-type]
    if definition.id != lineage[wire.LINEAGE_DEFINITION_ID]:
        raise InvalidUpdate(
            f"received definition hashes to {definition.id[:12]}, the server announced "
            f"{str(lineage[wire.LINEAGE_DEFINITION_ID])[:12]}"
        )
    weights = {name: array.numpy() for name, array in msg.content.array_records[wire.ARRAYS].items()}
    definition.validate(weights, source="global weights from the server")
    if weights_id(weights) != lineage[wire.LINEAGE_WEIGHTS_ID]:
        raise InvalidUpdate("received weights do not hash to the announced weights id")
    key, framework = _identity(context.node_config, str(lineage[wire.LINEAGE_FRAMEWORKS]))
    x, y = _local_data(context.node_config, str(lineage[wire.LINEAGE_SCENARIO]))
    seed = int(str(lineage[wire.LINEAGE_SEED]))
    trainer = get_trainer(framework)
    try:
        result = trainer.train(
            definition, weights, x, y, TrainConfig.from_config(dict(msg.content[wire.CONFIG]), seed)
        )
    except ParityError as exc:
        # The parity gate: never train a graph this framework does not compute like ONNX Runtime.
        refusal = RecordDict({
            wire.REFUSAL: ConfigRecord({wire.REFUSAL_REASON: str(exc)}),
            wire.METRICS: MetricRecord({"parity-max-abs": _finite(exc.max_abs),
                                        "parity-max-rel": _finite(exc.max_rel)}),
        })
        return Message(refusal, reply_to=msg)
    # Structure only: values are judged by the server, which records a rejected update with its
    # reason (a diverged client's NaNs are a finding for the lineage, not a crash here).
    definition.validate(result.weights, source=f"{framework} trainer output", finite=False)
    reply_lineage = ConfigRecord({
        wire.REPLY_BASE_VERSION: str(lineage[wire.LINEAGE_VERSION]), wire.REPLY_CLIENT: key,
        wire.REPLY_FRAMEWORK: framework, wire.REPLY_FRAMEWORK_VERSION: trainer.version(),
        wire.REPLY_WEIGHTS_ID: weights_id(result.weights), wire.REPLY_SEED: seed,
        wire.REPLY_ENVIRONMENT: canonical_json(environment()).decode("utf-8"),
    })
    metrics = MetricRecord({wire.REPLY_NUM_EXAMPLES: result.num_examples, **result.metrics})
    content = RecordDict({
        wire.ARRAYS: ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in result.weights.items()}),
        wire.METRICS: metrics, wire.LINEAGE: reply_lineage,
    })
    return Message(content, reply_to=msg)
