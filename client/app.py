"""The flonnx ``ClientApp`` (``[tool.flwr.app.components] clientapp = "flonnx.client.app:app"``).

Node config keys (a hospital's SuperNode: ``--node-config 'data="/data/a.csv" label="y" ...'``):

- ``client-id``: stable key for sampling and lineage (default ``partition-<id>`` in simulation);
- ``framework``: ``torch``, ``jax`` or ``sklearn`` (in simulation: the spec's seeded assignment);
- ``data`` and optionally ``label``, ``features``, ``categorical``, ``classes``, ``missing``,
  ``min-rows``: the node's own data file (CSV, Parquet or NPZ);
- ``policy``: the site's policy file (:mod:`flonnx.exchange.policy`): which definitions, how many
  parameters, which operators, how few rows; checked before any training or evaluation;
- ``audit``: a directory where the node keeps a copy of every reply it sends
  (:mod:`flonnx.client.audit`);
- ``fault``: ``raise`` or ``nan`` (demo and tests of failure handling only);
- in simulation Flower sets ``partition-id``/``num-partitions``, and the node's data is that
  partition of the spec's dataset (:mod:`flonnx.exchange.sources`).

A node whose data is unusable, or whose policy does not allow the round, still answers: with a
one-line refusal (never a cell's value), at the handshake and in every round it is sampled, and the
server records it in the lineage. Every handshake reply states the node's protocol and flonnx
versions; every update's environment names its flonnx version and its app bundle
(:mod:`flonnx.client.bundle`). docs/site-policy.md lists what leaves a site.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from flonnx.client.audit import audit_mod
from flonnx.client.bundle import bundle_digest
from flonnx.client.mods import dp_clipping_mod
from flonnx.client.trainers import TrainConfig, Trainer, get_trainer
from flonnx.exchange import wire
from flonnx.exchange.definition import Definition
from flonnx.exchange.errors import DataError, FlonnxError, InvalidUpdate, ParityError
from flonnx.exchange.evaluation import evaluate_rows
from flonnx.exchange.hashing import canonical_json, weights_id
from flonnx.exchange.lineage import environment, flonnx_version
from flonnx.exchange.models import input_dims
from flonnx.exchange.policy import SitePolicy
from flonnx.exchange.preprocess import METADATA_KEY, Preprocessing, local_stats
from flonnx.exchange.seeds import derive_seed
from flonnx.exchange.sources import DataSource, Vocabularies, node_source
from flonnx.exchange.spec import FederationSpec, assign_frameworks, spec_from_run_config

__all__ = ["app", "make_client_app", "prepare_data"]


class _Refusal(FlonnxError):
    """This node declines the round; the reason goes to the server's lineage."""


def _spec(context: Context, spec: FederationSpec | None) -> FederationSpec | None:
    if spec is not None:
        return spec
    if "partition-id" not in context.node_config:
        return None  # a real node: its data and framework come from node config only
    return _spec_of(tuple(sorted((str(k), v) for k, v in context.run_config.items())))


@lru_cache(maxsize=4)
def _spec_of(run_config: tuple[tuple[str, Any], ...]) -> FederationSpec:
    """The run's spec, parsed once per process (a Ray actor serves many nodes, every round)."""
    return spec_from_run_config(dict(run_config))


def _identity(node_config: Mapping[str, Any], spec: FederationSpec | None) -> tuple[str, str]:
    """(client key, framework) from node config; in simulation, the spec's assignment."""
    partition = node_config.get("partition-id")
    key = str(node_config.get("client-id") or f"partition-{partition}")
    framework = node_config.get("framework")
    if not framework:
        if spec is None or partition is None:
            raise _Refusal("node config names no framework: set framework=\"torch\", \"jax\" or "
                           "\"sklearn\"")
        framework = assign_frameworks(spec, int(node_config["num-partitions"]))[int(partition)]
    return key, str(framework)


def _policy(node_config: Mapping[str, Any]) -> SitePolicy | None:
    """The site's policy (node config ``policy``), read afresh for every message; None without one."""
    path = node_config.get("policy")
    return SitePolicy.load(str(path)) if path else None


def _enforce(policy: SitePolicy | None, definition: Definition | None = None,
             rows: int | None = None) -> None:
    """Refuse (before any training or evaluation) what the site's policy does not allow."""
    reason = policy.check(definition, rows) if policy is not None else None
    if reason is not None:
        raise _Refusal(reason)


def _row_count(source: DataSource) -> int:
    """The node's rows, without the federation's vocabularies (unknown at the first handshake)."""
    empty = tuple((column, ()) for column in source.schema.categorical) or None
    return len(source.load(empty)[1])


def _bundle(node_config: Mapping[str, Any]) -> str:
    """The app bundle digest a real node records; ``""`` for a simulated node (``partition-id``).

    Simulated nodes all run the coordinator's own bundle, if any: recording it would make the
    version ids of ``flwr run`` differ from those of ``flonnx simulate`` for the same spec and seed.
    """
    return "" if "partition-id" in node_config else bundle_digest()


def _trainer(node_config: Mapping[str, Any], spec: FederationSpec | None, framework: str) -> Trainer:
    fault = node_config.get("fault")
    if fault is None and spec is not None and "partition-id" in node_config:
        fault = dict(spec.faults).get(int(node_config["partition-id"]))
    trainer = get_trainer(framework)
    if fault:
        from flonnx.client.faults import faulty

        return faulty(trainer, str(fault))
    return trainer


_RUNNABLE: set[str] = set()


def _runnable(definition: Definition) -> None:
    """Refuse a received definition ONNX Runtime cannot run (never convert it here)."""
    if definition.id not in _RUNNABLE:
        from flonnx.exchange.upgrade import refuse_old_opset

        refuse_old_opset(definition)
        _RUNNABLE.add(definition.id)


def prepare_data(
    definition: Definition, task: str, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The node's rows as the model takes them: preprocessed, reshaped, labels checked."""
    dims = input_dims(definition.proto)
    expected = math.prod(dims) if dims is not None else None
    # before preprocessing, so the refusal names the model, as the server's handshake check does
    if expected is not None and x.shape[1] != expected:
        raise DataError(f"the data has {x.shape[1]} features but the model expects {expected}")
    if METADATA_KEY in definition.metadata:
        pre = Preprocessing.from_json(definition.metadata[METADATA_KEY])
        x = pre.apply(x)
        if task == "regression":
            y = pre.apply_target(y)
    elif np.isnan(x).any():
        raise DataError("the data has missing values and the federation has no imputation")
    if dims is not None:
        x = x.reshape((len(x), *dims))
    if task != "regression":
        from flonnx.exchange.task import task_output

        classes = 2 if task == "binary" else task_output(definition, task).width  # type: ignore[attr-defined]
        bad = np.flatnonzero((y < 0) | (y >= classes))
        if bad.size:
            raise DataError(f"label column: {bad.size} label(s) outside the model's {classes} classes "
                            f"0..{classes - 1} (first at row {int(bad[0]) + 1})")
    return np.ascontiguousarray(x, np.float32), y


def _vocabularies(text: str) -> Vocabularies:
    """The agreed categorical values the server sent (JSON ``{column: [values]}``)."""
    try:
        data = json.loads(text or "{}")
        return tuple((str(c), tuple(str(v) for v in data[c])) for c in sorted(data))
    except (ValueError, TypeError, AttributeError) as exc:
        raise DataError(f"the server's vocabularies are not readable: {exc}") from exc


def _load(source: DataSource, definition: Definition) -> tuple[np.ndarray, np.ndarray]:
    """The node's rows, categorical columns encoded with the definition's vocabularies."""
    vocabularies = None
    if source.schema.categorical:
        if METADATA_KEY not in definition.metadata:
            raise DataError("the data has categorical columns but the federation agreed no "
                            "vocabularies for them")
        vocabularies = Preprocessing.from_json(definition.metadata[METADATA_KEY]).vocabularies
    return source.load(vocabularies)


def _finite(value: float) -> float:
    """MetricRecords carry finite floats; an unbounded difference is reported as float max."""
    return value if np.isfinite(value) else float(np.finfo(np.float64).max)


def _refuse(msg: Message, reason: str, metrics: Mapping[str, float] | None = None) -> Message:
    content = RecordDict({wire.REFUSAL: ConfigRecord({wire.REFUSAL_REASON: reason[:2000]})})
    if metrics:
        content[wire.METRICS] = MetricRecord({k: _finite(v) for k, v in metrics.items()})
    return Message(content, reply_to=msg)


def _received(msg: Message) -> tuple[Definition, dict[str, np.ndarray], ConfigRecord]:
    """The round's definition and weights, each checked against the id the server announced."""
    lineage = msg.content.config_records[wire.LINEAGE]
    definition = Definition.from_bytes(bytes(lineage[wire.LINEAGE_DEFINITION]))  # type: ignore[arg-type]
    if definition.id != lineage[wire.LINEAGE_DEFINITION_ID]:
        raise InvalidUpdate(
            f"received definition hashes to {definition.id[:12]}, the server announced "
            f"{str(lineage[wire.LINEAGE_DEFINITION_ID])[:12]}"
        )
    _runnable(definition)
    weights = {name: array.numpy() for name, array in msg.content.array_records[wire.ARRAYS].items()}
    definition.validate(weights, source="global weights from the server")
    if weights_id(weights) != lineage[wire.LINEAGE_WEIGHTS_ID]:
        raise InvalidUpdate("received weights do not hash to the announced weights id")
    return definition, weights, lineage


def _announced(request: Mapping[str, Any]) -> Definition | None:
    """The definition the coordinator announces in the handshake (None from an older one)."""
    data = request.get(wire.HELLO_DEFINITION)
    if not isinstance(data, bytes):
        return None
    try:
        return Definition.from_bytes(data)
    except FlonnxError as exc:
        raise _Refusal(f"the coordinator's definition is unreadable: {exc}") from exc


def make_client_app(spec: FederationSpec | None = None) -> ClientApp:
    """A ClientApp; ``spec`` (in-process simulation) replaces the one named in run config."""
    # the audit mod wraps every handler and its mods, so it logs exactly the reply that is sent
    client_app = ClientApp(mods=[audit_mod])
    versions: dict[str, int | str] = {wire.REPLY_PROTOCOL: wire.PROTOCOL_VERSION,
                                      wire.REPLY_FLONNX: flonnx_version()}

    @client_app.query()
    def hello(msg: Message, context: Context) -> Message:
        """Handshake: who this node is, what it trains with, its data's statistics (or why not)."""
        request = msg.content[wire.HELLO]
        task = str(request[wire.HELLO_TASK])
        try:
            policy = _policy(context.node_config)
            if policy is not None:
                _enforce(policy, _announced(request))
            run_spec = _spec(context, spec)
            key, framework = _identity(context.node_config, run_spec)
            trainer = _trainer(context.node_config, run_spec, framework)
            source = node_source(context.node_config, run_spec, task)
            if policy is not None and policy.min_rows is not None:
                _enforce(policy, rows=_row_count(source))
            categories = source.categories()
            vocabularies = _vocabularies(str(request.get(wire.HELLO_VOCABULARIES, "{}")))
            if categories and not vocabularies:
                # first handshake: report the values; the server answers with the agreed ones
                return Message(RecordDict({wire.HELLO: ConfigRecord({
                    **versions, wire.REPLY_CLIENT: key, wire.REPLY_FRAMEWORK: framework,
                    wire.REPLY_FRAMEWORK_VERSION: trainer.version(),
                    wire.REPLY_CATEGORIES: json.dumps(categories),
                    wire.REPLY_FEATURES: json.dumps(source.features()),
                })}), reply_to=msg)
            x, y = source.load(vocabularies if source.schema.categorical else None)
        except FlonnxError as exc:
            key = str(context.node_config.get("client-id")
                      or f"partition-{context.node_config.get('partition-id')}")
            reply = ConfigRecord({**versions, wire.REPLY_CLIENT: key,
                                  wire.REFUSAL_REASON: str(exc)[:2000],
                                  wire.REPLY_FRAMEWORK: str(context.node_config.get("framework", ""))})
            return Message(RecordDict({wire.HELLO: reply}), reply_to=msg)
        content = RecordDict({wire.HELLO: ConfigRecord({
            **versions, wire.REPLY_CLIENT: key, wire.REPLY_FRAMEWORK: framework,
            wire.REPLY_FRAMEWORK_VERSION: trainer.version(), wire.REPLY_NUM_EXAMPLES: len(y),
            wire.REPLY_NUM_FEATURES: int(x.shape[1]),
            wire.REPLY_FEATURES: json.dumps(source.features()),
        })})
        if bool(request.get(wire.HELLO_STATS, False)):
            stats = local_stats(x, y if task == "regression" else None)
            content[wire.STATS] = ArrayRecord({k: Array(v) for k, v in stats.arrays().items()})
        return Message(content, reply_to=msg)

    @client_app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        """Evaluate the received version on this node's own rows; only metrics leave the node."""
        definition, weights, _ = _received(msg)
        task = str(msg.content[wire.CONFIG].get(wire.CONFIG_TASK, "classification"))
        run_spec = _spec(context, spec)
        try:
            policy = _policy(context.node_config)
            _enforce(policy, definition)
            x, y = _load(node_source(context.node_config, run_spec, task), definition)
            _enforce(policy, rows=len(y))
            metrics = evaluate_rows(definition, weights, x, y, task)
        except FlonnxError as exc:
            return _refuse(msg, str(exc))
        return Message(RecordDict({wire.METRICS: MetricRecord(
            {wire.REPLY_NUM_EXAMPLES: len(y), **{k: _finite(v) for k, v in metrics.items()}})}),
            reply_to=msg)

    @client_app.train(mods=[dp_clipping_mod])  # per handler: on the ClientApp it would also catch queries
    def train(msg: Message, context: Context) -> Message:
        """Verify the definition and weights ids, train in this node's framework, reply with lineage."""
        definition, weights, lineage = _received(msg)
        config = TrainConfig.from_config(dict(msg.content[wire.CONFIG]),
                                         int(str(lineage[wire.LINEAGE_SEED])))
        task = str(msg.content[wire.CONFIG].get(wire.CONFIG_TASK, "classification"))
        clipping = msg.content[wire.CONFIG].get(wire.CONFIG_DP_CLIPPING) is not None
        run_spec = _spec(context, spec)
        try:
            policy = _policy(context.node_config)
            _enforce(policy, definition)
            key, framework = _identity(context.node_config, run_spec)
            if run_spec is not None and run_spec.dropout > 0 and "partition-id" in context.node_config:
                draw = np.random.default_rng(derive_seed(config.seed, "dropout")).random()
                if draw < run_spec.dropout:
                    raise _Refusal(f"dropped out (simulated device dropout, p={run_spec.dropout})")
            trainer = _trainer(context.node_config, run_spec, framework)
            x, y = _load(node_source(context.node_config, run_spec, task), definition)
            _enforce(policy, rows=len(y))
            x, y = prepare_data(definition, task, x, y)
            result = trainer.train(definition, weights, x, y, config)
        except ParityError as exc:
            # The parity gate: never train a graph this framework does not compute like ONNX Runtime.
            return _refuse(msg, str(exc), {"parity-max-abs": exc.max_abs, "parity-max-rel": exc.max_rel})
        except FlonnxError as exc:
            return _refuse(msg, str(exc))
        # Structure only: values are judged by the server, which records a rejected update with its
        # reason (a diverged client's NaNs are a finding for the lineage, not a crash here).
        definition.validate(result.weights, source=f"{framework} trainer output", finite=False)
        reply_lineage = ConfigRecord({
            wire.REPLY_BASE_VERSION: str(lineage[wire.LINEAGE_VERSION]), wire.REPLY_CLIENT: key,
            wire.REPLY_FRAMEWORK: framework, wire.REPLY_FRAMEWORK_VERSION: trainer.version(),
            # under client-side clipping, dp_clipping_mod replaces the weights and hashes what it
            # sends: hashing the unclipped ones here too would be a second hash of every update
            wire.REPLY_WEIGHTS_ID: "" if clipping else weights_id(result.weights),
            wire.REPLY_SEED: config.seed,
            wire.REPLY_ENVIRONMENT: canonical_json(
                {**environment(), "bundle": _bundle(context.node_config)}).decode("utf-8"),
        })
        metrics = MetricRecord({wire.REPLY_NUM_EXAMPLES: result.num_examples, **result.metrics})
        content = RecordDict({
            wire.ARRAYS: ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in result.weights.items()}),
            wire.METRICS: metrics, wire.LINEAGE: reply_lineage,
        })
        return Message(content, reply_to=msg)

    return client_app


app = make_client_app()
