"""The flonnx ``ClientApp`` (``[tool.flwr.app.components] clientapp = "flonnx.client.app:app"``).

Node config keys (a hospital's SuperNode: ``--node-config 'data="/data/a.csv" label="y" ...'``):

- ``client-id``: stable key for sampling and lineage (default ``partition-<id>`` in simulation);
- ``framework``: ``torch``, ``jax`` or ``sklearn`` (in simulation: the spec's seeded assignment);
- ``data`` and optionally ``label``, ``features``, ``categorical``, ``classes``, ``missing``,
  ``min-rows``: the node's own data file (CSV, Parquet or NPZ);
- ``sensitive``: a column of that file whose groups the site evaluation breaks its metrics down by
  (:mod:`flonnx.exchange.groups`: groups under 5 rows are never sent; with a policy, only if its
  ``share`` lists ``group-metrics``); in simulation the spec's ``[data] sensitive``;
- ``policy``: the site's policy file (:mod:`flonnx.exchange.policy`): which definitions, how many
  parameters, which operators, how few rows; checked before any training or evaluation;
- ``audit``: a directory where the node keeps a copy of every reply it sends
  (:mod:`flonnx.client.audit`);
- ``fault`` (with ``fault-seconds``, ``fault-scale``, ``fault-sigma``): a fault or attack to inject,
  one of :data:`flonnx.exchange.spec.FAULTS` (demo and tests of failure handling only,
  :mod:`flonnx.client.faults`);
- in simulation Flower sets ``partition-id``/``num-partitions``, and the node's data is that
  partition of the spec's dataset (:mod:`flonnx.exchange.sources`).

A node whose data is unusable, or whose policy does not allow the round, still answers: with a
one-line refusal (never a cell's value), at the handshake and in every round it is sampled, and the
server records it in the lineage. Every handshake reply states the node's protocol and flonnx
versions; a serving node's also states its environment, which names its flonnx version and its
app bundle (:mod:`flonnx.client.bundle`) and which the server records with each of its updates,
and the ids of the definitions it holds (cached by id: a round sends a definition's bytes only
to a node that lacks it, see :mod:`flonnx.exchange.wire`). docs/site-policy.md lists what leaves
a site.
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
from flonnx.client.mods import dp_clipping_mod, fault_mod
from flonnx.client.trainers import TrainConfig, Trainer, get_trainer
from flonnx.exchange import wire
from flonnx.exchange.definition import Definition
from flonnx.exchange.errors import DataError, FlonnxError, InvalidUpdate, ParityError
from flonnx.exchange.evaluation import evaluate_rows
from flonnx.exchange.hashing import canonical_json, weights_id
from flonnx.exchange.lineage import environment, flonnx_version
from flonnx.exchange.models import input_dims
from flonnx.exchange.npy import decode_tensors
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
    trainer = get_trainer(framework)
    if node_config.get("fault") or (spec is not None and (spec.faults or spec.byzantine)):
        from flonnx.client.faults import fault_of, faulty

        fault = fault_of(node_config, spec)
        return faulty(trainer, fault) if fault else trainer
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


def _sensitive(node_config: Mapping[str, Any], spec: FederationSpec | None) -> str | None:
    """The column a site evaluation breaks its metrics down by: node config ``sensitive``, else the spec's."""
    column = str(node_config.get("sensitive") or "").strip()
    if column:
        return column
    return spec.data.sensitive if spec is not None and spec.data is not None else None


def _group_metrics(groups: np.ndarray, policy: SitePolicy | None, definition: Definition,
                   weights: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray,
                   task: str) -> dict[str, float]:
    """Per-group metrics (``group.VALUE.METRIC``) of the groups with enough rows to be sent.

    A group smaller than ``MIN_SITE_GROUP_ROWS`` or the policy's ``min-rows`` never leaves the node.
    """
    from flonnx.exchange.evaluation import evaluation_outputs
    from flonnx.exchange.groups import MIN_SITE_GROUP_ROWS, group_metrics, metrics_of_groups

    least = max(MIN_SITE_GROUP_ROWS, (policy.min_rows or 0) if policy is not None else 0)
    outputs, kind = evaluation_outputs(definition, weights, x, task)
    return metrics_of_groups(group_metrics(outputs, y, groups, task, kind, min_rows=least))


def _refuse(msg: Message, reason: str, metrics: Mapping[str, float] | None = None) -> Message:
    content = RecordDict({wire.REFUSAL: ConfigRecord({wire.REFUSAL_REASON: reason[:2000]})})
    if metrics:
        content[wire.METRICS] = MetricRecord({k: _finite(v) for k, v in metrics.items()})
    return Message(content, reply_to=msg)


class _MissingDefinition(FlonnxError):
    """A message names a definition id this node does not hold and brings no bytes for it."""

    def __init__(self, definition_id: str) -> None:
        super().__init__(f"this node does not hold definition {definition_id[:12]}; send its bytes")
        self.definition_id = definition_id


#: How many definitions a node keeps (a run uses one; a resumed or changed model adds one).
DEFINITION_CACHE = 4
_CACHE = "flonnx.definitions"  # the node state's record: definition id -> canonical bytes
_CACHE_ORDER = "order"  # in that record: the ids, oldest first (not a hex id, so never a clash)
#: Definitions this process parsed from verified cache entries, by id (parsing is the cost).
_PARSED: dict[str, Definition] = {}


def _cache(context: Context) -> ConfigRecord:
    if _CACHE not in context.state.config_records:
        context.state[_CACHE] = ConfigRecord({_CACHE_ORDER: []})
    return context.state.config_records[_CACHE]


def _remember(context: Context, definition: Definition) -> None:
    """Keep a verified definition (its id is the hash of the bytes kept) in the node's cache."""
    cache = _cache(context)
    order = [str(i) for i in cache.get(_CACHE_ORDER, []) if i != definition.id]  # type: ignore[union-attr]
    order.append(definition.id)
    for old in order[:-DEFINITION_CACHE]:
        cache.pop(old, None)
    cache[definition.id] = definition.canonical_bytes
    cache[_CACHE_ORDER] = order[-DEFINITION_CACHE:]
    if len(_PARSED) >= 4 * DEFINITION_CACHE:  # one process may serve many simulated nodes
        _PARSED.clear()
    _PARSED[definition.id] = definition


def _cached_ids(context: Context) -> list[str]:
    """The definition ids this node holds, oldest first."""
    return [str(i) for i in _cache(context).get(_CACHE_ORDER, [])]  # type: ignore[union-attr]


def _cached(context: Context, definition_id: str) -> Definition | None:
    """The node's cached definition ``definition_id``, or None."""
    if definition_id not in _cached_ids(context):
        return None
    if definition_id in _PARSED:
        return _PARSED[definition_id]
    data = _cache(context).get(definition_id)
    if not isinstance(data, bytes):
        return None
    definition = Definition.from_bytes(data)
    if definition.id != definition_id:  # a damaged node state: act as if it were not held
        return None
    _PARSED[definition_id] = definition
    return definition


def _definition(lineage: ConfigRecord, context: Context) -> Definition:
    """The message's definition: its bytes checked against the announced id, or the cached one.

    Raises:
        _MissingDefinition: the message brings no bytes and this node does not hold the id.
    """
    announced = str(lineage[wire.LINEAGE_DEFINITION_ID])
    data = lineage.get(wire.LINEAGE_DEFINITION)
    if not isinstance(data, bytes):
        cached = _cached(context, announced)
        if cached is None:
            raise _MissingDefinition(announced)
        return cached
    definition = _PARSED.get(announced)
    if definition is None or definition.canonical_bytes != data:
        definition = Definition.from_bytes(data)
    if definition.id != announced:
        raise InvalidUpdate(
            f"received definition hashes to {definition.id[:12]}, the server announced "
            f"{announced[:12]}"
        )
    _remember(context, definition)
    return definition


def _received(
    msg: Message, context: Context | None = None
) -> tuple[Definition, dict[str, np.ndarray], ConfigRecord]:
    """The round's definition and weights, each checked against the id the server announced.

    With the node's ``context`` a message may name a definition the node holds instead of carrying
    it (protocol 2), and a definition it carries is cached; without, it must carry the bytes.

    Raises:
        _MissingDefinition: the message names a definition this node does not hold.
    """
    lineage = msg.content.config_records[wire.LINEAGE]
    definition = _definition(lineage, context or Context(0, 0, {}, RecordDict(), {}))
    _runnable(definition)
    weights = decode_tensors(msg.content.array_records[wire.ARRAYS], definition,
                             source="the server's message")
    definition.validate(weights, source="global weights from the server")
    if weights_id(weights) != lineage[wire.LINEAGE_WEIGHTS_ID]:
        raise InvalidUpdate("received weights do not hash to the announced weights id")
    return definition, weights, lineage


def _missing(msg: Message, exc: _MissingDefinition) -> Message:
    """The typed refusal of a message whose definition this node lacks: it names the id."""
    reply = _refuse(msg, str(exc))
    reply.content.config_records[wire.REFUSAL][wire.REFUSAL_MISSING_DEFINITION] = exc.definition_id
    return reply


def _announced(request: Mapping[str, Any]) -> Definition | None:
    """The definition the coordinator announces in the handshake (None from an older one)."""
    data = request.get(wire.HELLO_DEFINITION)
    if not isinstance(data, bytes):
        return None
    try:
        return Definition.from_bytes(data)
    except FlonnxError as exc:
        raise _Refusal(f"the coordinator's definition is unreadable: {exc}") from exc


def _introduction(context: Context, request: Mapping[str, Any]) -> dict[str, str]:
    """What a serving node states once, in its hello reply: its environment and cached definitions.

    The announced definition is cached first (its id is the hash of its bytes, so what is kept is
    verified): the first round then names it by id only.
    """
    try:
        announced = _announced(request)
    except _Refusal:  # unreadable: the first round brings the bytes (or the policy refused it)
        announced = None
    if announced is not None:
        _remember(context, announced)
    return {
        wire.REPLY_ENVIRONMENT: canonical_json(
            {**environment(), "bundle": _bundle(context.node_config)}).decode("utf-8"),
        wire.REPLY_DEFINITIONS: json.dumps(_cached_ids(context)),
    }


def make_client_app(spec: FederationSpec | None = None) -> ClientApp:
    """A ClientApp; ``spec`` (in-process simulation) replaces the one named in run config."""
    # the audit mod wraps every handler and its mods, so it logs exactly the reply that is sent
    # the fault mod (tests and demos: node config ``fault``) sits inside it, so the log shows a fault
    client_app = ClientApp(mods=[audit_mod, fault_mod(lambda context: _spec(context, spec))])
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
                    **_introduction(context, request),
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
            **_introduction(context, request),
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
            source = node_source(context.node_config, run_spec, task)
            x, y = _load(source, definition)
            _enforce(policy, rows=len(y))
            metrics = evaluate_rows(definition, weights, x, y, task)
            column = _sensitive(context.node_config, run_spec)
            if column is not None and (policy is None or policy.allows("group-metrics")):
                metrics.update(_group_metrics(source.groups(column), policy, definition, weights,
                                              x, y, task))
        except FlonnxError as exc:
            return _refuse(msg, str(exc))
        return Message(RecordDict({wire.METRICS: MetricRecord(
            {wire.REPLY_NUM_EXAMPLES: len(y), **{k: _finite(v) for k, v in metrics.items()}})}),
            reply_to=msg)

    @client_app.train(mods=[dp_clipping_mod])  # per handler: on the ClientApp it would also catch queries
    def train(msg: Message, context: Context) -> Message:
        """Verify the definition and weights ids, train in this node's framework, reply with lineage.

        The definition comes from the message or, if it names one by id only, from the node's
        cache; a node that lacks it refuses naming the id, and the coordinator resends the bytes.
        """
        try:
            definition, weights, lineage = _received(msg, context)
        except _MissingDefinition as exc:
            return _missing(msg, exc)
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
            wire.REPLY_SEED: config.seed,  # the environment went once, in the hello reply
        })
        metrics = MetricRecord({wire.REPLY_NUM_EXAMPLES: result.num_examples, **result.metrics})
        content = RecordDict({
            wire.ARRAYS: ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in result.weights.items()}),
            wire.METRICS: metrics, wire.LINEAGE: reply_lineage,
        })
        return Message(content, reply_to=msg)

    return client_app


app = make_client_app()
