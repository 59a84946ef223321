"""The versioned federation loop around a Flower strategy.

Per round: sample clients by stable key with a seeded RNG; let the inner Flower strategy configure
the round; add the lineage to every message (and the definition's bytes to a node not known to
hold it: nodes cache definitions by id, see :meth:`Federation._send_train`); validate each
reply as it arrives (the reporter's ``progress``) and fold a valid one into the round's
aggregation at once, so no reply is held (:mod:`flonnx.server.aggregation`: the result does not
depend on the arrival order, and everything recorded is in client-key order); evaluate the new
global version with ONNX Runtime on the server's test split; record the updates, the rejections,
the aggregate and the strategy's state in the registry in one transaction; then let go of the blobs
of updates the run's retention no longer keeps (:meth:`Registry.prune`).

A round with fewer than ``min-train-nodes`` valid updates is not committed: the run is marked
``failed`` and :meth:`Federation.run` with ``Settings.resume`` continues it from its last committed
round, with the strategy state restored from the registry. A stop request (Ctrl-C, SIGTERM:
:mod:`flonnx.server.stopping`) likewise leaves the round in progress uncommitted; the run is marked
``interrupted``.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from flonnx.exchange import wire
from flonnx.exchange.definition import Definition
from flonnx.exchange.errors import FlonnxError, InvalidUpdate
from flonnx.exchange.evaluation import evaluate_rows
from flonnx.exchange.hashing import canonical_json, sha256_hex
from flonnx.exchange.lineage import VersionKind, VersionRecord, environment, flonnx_version
from flonnx.exchange.models import StartingModel, input_dims, input_width, load_starting_model, with_metadata
from flonnx.exchange.npy import MAX_NPY_HEADER, decode_npy
from flonnx.exchange.preprocess import METADATA_KEY, LocalStats, Preprocessing, combine_stats
from flonnx.exchange.registry import SITE_SOURCE, Evaluation, Registry, recorded_key
from flonnx.exchange.seeds import derive_seed
from flonnx.exchange.signing import load_signer
from flonnx.exchange.sources import evaluation_source
from flonnx.exchange.task import HEADLINE_METRIC
from flonnx.server.aggregation import AggregationInput, RoundAggregation, configure_round
from flonnx.server.progress import ConsoleReporter, Reporter, RoundProgress, RoundSummary
from flonnx.server.replies import (
    ClientInfo,
    Rejection,
    Update,
    check_protocol,
    check_reply,
    failure_line,
    one_line,
    parse_environment,
)
from flonnx.server.sampling import sample_clients
from flonnx.server.settings import Settings
from flonnx.server.stopping import Interrupted, StopRequest, receive
from flonnx.server.strategies import DP_CLIPPING_MODE, build_strategy, recorded_aggregator
from flonnx.server.strategy_state import capture_state, restore_state

__all__ = ["Federation", "RoundFailed", "initial_model", "site_summary"]

def site_summary(sites: dict[str, dict[str, float]], task: str) -> dict[str, Any]:
    """Worst site, mean and spread (max - min) of the task's headline metric across sites."""
    metric = HEADLINE_METRIC[task]
    values = {k: m[metric] for k, m in sites.items() if metric in m}
    if not values:
        return {"metric": metric}
    worst = min(values, key=lambda k: (values[k], k))
    return {"metric": metric, "worst_site": worst, "worst": values[worst],
            "mean": float(np.mean(list(values.values()))),
            "spread": float(max(values.values()) - min(values.values()))}


class RoundFailed(FlonnxError):
    """A round could not be aggregated; nothing of it was committed and the run can be resumed."""


def initial_model(
    settings: Settings, preprocessing: Preprocessing | None = None, start: StartingModel | None = None
) -> tuple[Definition, dict[str, np.ndarray], dict[str, Any]]:
    """The spec's starting definition and weights (preprocessing in its metadata), and its origin."""
    spec = settings.spec
    if start is None:
        start = load_starting_model(spec.model, seed=spec.seed, input_shape=spec.input_shape)
    metadata = {"flonnx.task": spec.task}
    if preprocessing is not None:
        metadata[METADATA_KEY] = preprocessing.to_json()
    definition, weights = with_metadata(start.model, metadata)
    return definition, weights, start.origin


@dataclass
class _Head:
    round: int
    version_id: str
    weights: dict[str, np.ndarray]
    weights_id: str


class Federation:
    """One run of a federation spec on a Flower grid, recorded in a registry."""

    def __init__(self, grid: Grid, settings: Settings, reporter: Reporter | None = None,
                 stop: StopRequest | None = None) -> None:
        self.grid = grid
        #: asked to stop (a signal): the round in progress ends uncommitted, see server/stopping.py
        self.stop = stop or StopRequest()
        self.settings = settings
        self.spec = settings.spec
        self.reporter = reporter or ConsoleReporter()
        self.registry = Registry(settings.registry, blobs=settings.blobs or None,
                                 compress=self.spec.compress)
        #: signs every version at commit (docs/lineage.md#signed-lineage); read before the run starts
        self.signer = load_signer(settings.signing_key) if settings.signing_key else None
        self.built = build_strategy(settings.strategy, settings.strategy_config,
                                    settings.strategy_defaults())
        self.strategy, self.strategy_config = self.built.strategy, self.built.config
        #: how rounds are aggregated; a resumed run keeps the one its last aggregate records
        self.aggregator = self.built.aggregator
        self.eval_source = evaluation_source(self.spec)
        self._eval_cache: tuple[str, tuple[np.ndarray, np.ndarray]] | None = None
        self.server_env = environment()
        self.history: list[RoundSummary] = []
        self._clients: dict[str, ClientInfo] = {}
        self._refused: dict[str, str] = {}
        #: client key -> the definition ids it holds, as far as this coordinator knows (protocol 2)
        self._holds: dict[str, set[str]] = {}
        self.on_run_created: Callable[[str], None] = lambda run_id: None
        self.run_notes: dict[str, Any] = {}  # recorded with the run (e.g. a simulation's partitions)

    # -- public ---------------------------------------------------------------------------------
    def run(self) -> str:
        """Run all rounds (or continue ``settings.resume``); returns the run id.

        The run's lock (:meth:`Registry.lock_run`) is held for as long as this process writes the
        run: a second coordinator (or resume) of the same run is refused, naming it.
        """
        with ExitStack() as held:
            return self._run(held)

    def _run(self, held: ExitStack, run_id: str | None = None) -> str:
        """Start a run, or (``run_id``, its lock held) start again one whose process died first."""
        if self.settings.resume and run_id is None:
            return self._resume(self.settings.resume, held)
        spec = self.spec
        start = load_starting_model(spec.model, seed=spec.seed, input_shape=spec.input_shape)
        start_definition, _, _ = initial_model(self.settings, start=start)
        needs_stats = self._needs_stats(start_definition)
        width = input_width(start_definition.proto)
        clients, stats = self._handshake(start_definition, stats=needs_stats, width=width)
        vocabularies, features = self._vocabularies()
        if vocabularies:  # categorical columns: agree on their values, then encode and count
            clients, stats = self._handshake(start_definition, stats=True, width=width,
                                             vocabularies=vocabularies)
        self._clients = clients
        preprocessing = self._preprocessing(start_definition, stats, features, vocabularies)
        definition, weights, origin = initial_model(self.settings, preprocessing, start)
        canonical = self.spec.canonical()  # hashes the data files: once
        run_config = {
            **self.settings.to_json(), "spec_id": sha256_hex(canonical_json(canonical)),
            "spec_canonical": canonical,
            "model_origin": origin, **self.run_notes,
            **({"signing_key": self.signer.run_record()} if self.signer else {}),
        }
        if run_id is None:
            run_id = self.registry.create_run(self.spec.name, self.settings.seed, run_config)
            held.enter_context(self.registry.lock_run(run_id))
        else:
            self._restart(run_id, run_config)
        self.on_run_created(run_id)
        try:
            self.registry.put_definition(definition)
            metrics = self.evaluate(definition, weights)
            record = VersionRecord(
                kind=VersionKind.INITIAL, round=0, definition_id=definition.id,
                weights_id=self.registry.put_weights(weights), framework=str(origin.get("kind", "")),
                metrics=metrics, seed=self.settings.seed, environment=self.server_env,
            )
            refusals = [self._rejection_record(Rejection(k, 0, reason), 0, definition,
                                               record.version_id)
                        for k, reason in sorted(self._refused.items())]
            self.registry.commit(run_id, [record, *refusals], head_round=0,
                                 head=record.version_id, state_id=self._save_state(),
                                 signer=self.signer)
            self.reporter.start(run_id, self.spec.name, record.version_id, metrics)
            head = _Head(0, record.version_id, weights, record.weights_id)
            head = self._rounds(run_id, definition, head, clients)
            self._evaluate_sites(run_id, definition, head)
        except Interrupted as exc:
            raise self._interrupted(run_id, exc) from None
        except BaseException:
            self.registry.set_status(run_id, "failed")
            raise
        self.registry.set_status(run_id, "completed")
        self.reporter.finish(run_id, self.history)
        return run_id

    def _resume(self, run_id: str, held: ExitStack) -> str:
        """Continue ``run_id`` from its last committed round with its saved strategy state.

        A run that committed nothing (its process died first) is started again under its id; one
        whose process died after its last round's commit is finished (site evaluation, completed).
        A damaged run (:meth:`Registry.check_intact`) is refused before anything is written.
        """
        held.enter_context(self.registry.lock_run(run_id))
        heads = self.registry.heads(run_id)
        if not heads:  # its process died before it committed the initial version: start it again
            return self._run(held, run_id)
        last = max(heads)
        if last >= self.settings.rounds and self.registry.run(run_id).status == "completed":
            raise FlonnxError(
                f"run {run_id} already has {last} rounds; pass a larger total (--rounds)"
            )
        # last == rounds and not completed: its process died after the last commit; finish it
        state_id = self.registry.state_at(run_id, last)
        if state_id is None:
            raise FlonnxError(f"run {run_id} saved no strategy state after round {last}")
        restore_state(self.strategy, *self.registry.get_state(state_id))
        record = self.registry.record(heads[last])
        if record.kind is VersionKind.AGGREGATE:
            self.aggregator = recorded_aggregator(record.strategy_config)[0]
        definition = self.registry.get_definition(record.definition_id)
        weights = self.registry.get_weights(record.weights_id)
        self.on_run_created(run_id)
        stored = self.registry.run(run_id).config
        self.registry.check_intact(run_id)  # the rest of the run too, not only what resume reads
        self.registry.prune(run_id)  # what a crash after a commit left of the run's retention
        self._check_signing_key(run_id, stored)
        before = Settings.from_json(stored)
        changed = {key: [old, new] for key, old, new in (
            ("rounds", before.rounds, self.settings.rounds),
            ("min-train-nodes", before.min_train_nodes, self.settings.min_train_nodes)) if old != new}
        self.registry.update_config(run_id, {  # the settings now, and what each resume changed
            **stored, **self.settings.to_json(),
            "resumes": [*stored.get("resumes", []), {"after_round": last, "changed": changed}]})
        self.registry.set_status(run_id, "running")
        try:
            self.reporter.start(run_id, self.spec.name, heads[last], dict(record.metrics),
                                resumed_from=last)
            clients, _ = self._handshake(definition, stats=False, width=input_width(definition.proto))
            head = self._rounds(run_id, definition,
                                _Head(last, heads[last], weights, record.weights_id), clients)
            self._evaluate_sites(run_id, definition, head)
        except Interrupted as exc:
            raise self._interrupted(run_id, exc) from None
        except BaseException:
            self.registry.set_status(run_id, "failed")
            raise
        self.registry.set_status(run_id, "completed")
        self.reporter.finish(run_id, self.history)
        return run_id

    def _restart(self, run_id: str, run_config: dict[str, Any]) -> None:
        """Take up a run that committed nothing (its process died first) under its own id.

        Its initial version is made again from the same spec, so it gets the same id as if the first
        process had lived; a spec other than the one the run recorded is refused.
        """
        stored = self.registry.run(run_id).config
        if stored.get("spec_id") != run_config["spec_id"]:
            raise FlonnxError(f"run {run_id} recorded spec {str(stored.get('spec_id'))[:12]}, not "
                              f"{run_config['spec_id'][:12]}; it cannot be started again with another spec")
        self._check_signing_key(run_id, stored)
        self.registry.set_status(run_id, "running")

    def _check_signing_key(self, run_id: str, stored: dict[str, Any]) -> None:
        """A resumed run goes on signed by the key it started with, or unsigned if it was."""
        recorded = recorded_key(stored)
        mine = self.signer.public if self.signer else None
        if recorded is None and mine is not None:
            raise FlonnxError(f"run {run_id} is unsigned; resume it without --signing-key")
        if recorded is not None and mine is None:
            raise FlonnxError(f"run {run_id} is signed (key {recorded.fingerprint[:16]}); resume it "
                              "with --signing-key naming that key's private file")
        if recorded is not None and mine is not None and recorded.fingerprint != mine.fingerprint:
            raise FlonnxError(f"run {run_id} is signed by key {recorded.fingerprint[:16]}, not by "
                              f"the given --signing-key ({mine.fingerprint[:16]})")

    def _interrupted(self, run_id: str, exc: Interrupted) -> Interrupted:
        """Mark the run ``interrupted``; the stop, naming the run and its last committed round."""
        self.registry.set_status(run_id, "interrupted")
        return exc.of_run(run_id, max(self.registry.heads(run_id), default=0), self.settings.rounds)

    def _save_state(self) -> str:
        return self.registry.put_state(*capture_state(self.strategy))

    def evaluate(self, definition: Definition, weights: dict[str, np.ndarray]) -> dict[str, float]:
        """Server-side evaluation with ONNX Runtime of the served model (preprocessing included)."""
        if self.eval_source is None:
            return {}
        if self._eval_cache is None or self._eval_cache[0] != definition.id:
            vocabularies = None
            if self.eval_source.schema.categorical:
                pre = Preprocessing.from_json(definition.metadata.get(METADATA_KEY, "{}"))
                vocabularies = pre.vocabularies
            self._eval_cache = (definition.id, self.eval_source.load(vocabularies))
        return evaluate_rows(definition, weights, *self._eval_cache[1], self.spec.task)

    def _needs_stats(self, definition: Definition) -> bool:
        """Statistics are gathered for standardisation or mean imputation of a tabular input.

        (Categorical columns always need them: the agreed vocabularies travel with the statistics.)
        """
        rank2 = len(input_dims(definition.proto) or (0,)) == 1
        imputing = self.spec.data is not None and self.spec.data.missing == "impute-mean"
        return rank2 and (self.spec.standardize or imputing)

    def _preprocessing(
        self, definition: Definition, stats: dict[str, LocalStats], features: list[str],
        vocabularies: dict[str, list[str]],
    ) -> Preprocessing | None:
        if not stats:
            return None
        return combine_stats([stats[k] for k in sorted(stats)], standardize=self.spec.standardize,
                             regression=self.spec.task == "regression", features=features,
                             vocabularies=vocabularies)

    def _vocabularies(self) -> tuple[dict[str, list[str]], list[str]]:
        """The union of the nodes' values per categorical column, and the raw feature order.

        The feature order is the one most nodes reported (ties: the smallest); a node whose
        order differs is refused rather than silently encoded in another order.
        """
        seen: dict[str, set[str]] = {}
        for key in sorted(self._categories):
            for column, values in self._categories[key].items():
                seen.setdefault(column, set()).update(values)
        if not seen:
            return {}, []
        orders: Counter[tuple[str, ...]] = Counter(
            tuple(f) for k, f in self._features.items() if k not in self._refused)
        if not orders:
            return {}, []
        features = list(sorted(orders.items(), key=lambda item: (-item[1], item[0]))[0][0])
        return {column: sorted(values) for column, values in sorted(seen.items())}, features

    # -- rounds ---------------------------------------------------------------------------------
    def _rounds(self, run_id: str, definition: Definition, head: _Head,
                clients: dict[str, ClientInfo]) -> _Head:
        self._clients = clients
        for rnd in range(head.round + 1, self.settings.rounds + 1):
            self.stop.check()
            started = time.perf_counter()
            try:
                head, summary = self._round(run_id, rnd, definition, head, clients)
            finally:
                self.reporter.idle()
            summary.seconds = time.perf_counter() - started
            self.history.append(summary)
            self.reporter.round(summary)
        return head

    def _evaluate_sites(self, run_id: str, definition: Definition, head: _Head) -> None:
        """Each node evaluates the final version on its own rows and sends back metrics only.

        Recorded as evaluation records of the final version (source ``site:KEY``, metrics only;
        a node that cannot evaluate is recorded with its reason), in one transaction, without
        changing the version or its id. The run record keeps the same facts under
        ``site_evaluation`` (client -> metrics, and the worst, mean and spread of the headline
        metric), which older registries have instead of records.
        """
        if not self.spec.evaluate_sites:
            return
        keys = sorted(k for k in self._clients if k not in self._refused)
        lineage: dict[str, Any] = {
            wire.LINEAGE_RUN: run_id, wire.LINEAGE_ROUND: head.round, wire.LINEAGE_VERSION: head.version_id,
            wire.LINEAGE_DEFINITION_ID: definition.id, wire.LINEAGE_WEIGHTS_ID: head.weights_id,
            wire.LINEAGE_DEFINITION: definition.canonical_bytes, wire.LINEAGE_SEED: 0,
        }
        arrays = ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in head.weights.items()})
        by_node = {self._clients[k].node_id: k for k in keys}
        messages = [Message(RecordDict({
            wire.ARRAYS: arrays, wire.LINEAGE: ConfigRecord(lineage),  # type: ignore[arg-type]
            wire.CONFIG: ConfigRecord({wire.CONFIG_TASK: self.spec.task}),
        }), dst_node_id=self._clients[k].node_id, message_type=MessageType.EVALUATE) for k in keys]
        sites: dict[str, dict[str, float]] = {}
        failed: dict[str, str] = {}
        for reply in receive(self.grid, messages, timeout=self.settings.round_timeout, stop=self.stop,
                             while_answering=True):
            key = by_node.get(reply.metadata.src_node_id)
            if key is None:
                continue
            if reply.has_error():
                failed[key] = f"evaluation failed: {failure_line(str(reply.error.reason))}"
            elif wire.REFUSAL in reply.content:
                failed[key] = one_line(str(reply.content[wire.REFUSAL][wire.REFUSAL_REASON]))
            elif wire.METRICS in reply.content.metric_records:
                values = dict(reply.content[wire.METRICS])
                metrics = {str(k): float(v) for k, v in values.items()  # type: ignore[arg-type]
                           if isinstance(v, int | float) and np.isfinite(float(v))}  # type: ignore[arg-type]
                sites[key] = metrics
        sites = dict(sorted(sites.items()))  # not in arrival order: the mean sums in this order
        summary = site_summary(sites, self.spec.task)
        self.registry.add_evaluations(
            [Evaluation(run_id, head.version_id, f"{SITE_SOURCE}{k}", m) for k, m in sorted(sites.items())]
            + [Evaluation(run_id, head.version_id, f"{SITE_SOURCE}{k}", {}, reason)
               for k, reason in sorted(failed.items())])
        self.registry.annotate_run(run_id, "site_evaluation", {
            "version_id": head.version_id, "sites": sites, "failed": failed, "summary": summary})
        self.reporter.sites(sites, failed, summary)

    def _handshake(self, definition: Definition, *, stats: bool, width: int | None = None,
                   vocabularies: dict[str, list[str]] | None = None,
                   ) -> tuple[dict[str, ClientInfo], dict[str, LocalStats]]:
        """Ask every node who it is; gather feature statistics if ``stats``.

        The hello states this coordinator's protocol version and announces ``definition`` (the run's
        model before the federation's preprocessing constants), which a site's policy checks. A
        node that speaks another protocol is recorded as refused and never sampled. A serving
        node's reply states its environment, kept here and recorded with each of its updates (it
        is not resent with every update), and the ids of the definitions it holds: a train
        message names those by id only.

        Nodes with categorical columns report the values they hold; the first handshake cannot
        count their features yet, so a second one sends the agreed ``vocabularies`` back.

        A node whose data is unusable answers with a refusal: it stays in the federation (it may
        be fixed and it is sampled like any other, refusing each round), and its reason is
        recorded with the initial version. So is a node whose data has another number of features
        than ``width`` (the model's, if static): its refusal is known before any round.
        """
        started = time.monotonic()
        noted = False
        needed = self.settings.min_available_nodes
        while len(node_ids := list(self.grid.get_node_ids())) < needed:
            waited = time.monotonic() - started
            if waited > self.settings.round_timeout:
                raise FlonnxError(
                    f"only {len(node_ids)} nodes connected in {waited:.0f} s; {needed} needed "
                    "(min-available-nodes, default: the spec's clients)"
                )
            if waited > 10 and not noted:
                noted = True
                self.reporter.note(
                    f"waiting for {needed} nodes, {len(node_ids)} connected (under flwr run: "
                    f"--federation-config \"num-supernodes={needed}\", or lower min-available-nodes)")
            self.stop.wait(0.5)
            self.stop.check()
        hello = ConfigRecord({wire.HELLO_TASK: self.spec.task, wire.HELLO_STATS: stats,
                              wire.HELLO_VOCABULARIES: json.dumps(vocabularies or {}),
                              wire.HELLO_PROTOCOL: wire.PROTOCOL_VERSION,
                              wire.HELLO_FLONNX: flonnx_version(),
                              wire.HELLO_DEFINITION: definition.canonical_bytes})
        messages = [
            Message(RecordDict({wire.HELLO: hello}), dst_node_id=node, message_type=MessageType.QUERY)
            for node in sorted(node_ids)
        ]
        clients: dict[str, ClientInfo] = {}
        mismatched: set[str] = set()  # answered in another protocol: refused, never sampled
        gathered: dict[str, LocalStats] = {}
        widths: dict[str, int] = {}
        self._refused = {}
        self._holds = {}
        self._categories: dict[str, dict[str, list[str]]] = {}
        self._features: dict[str, list[str]] = {}
        for reply in receive(self.grid, messages, timeout=self.settings.round_timeout, stop=self.stop,
                             while_answering=True):
            if reply.has_error() or wire.HELLO not in reply.content:
                continue
            info = reply.content[wire.HELLO]
            key = str(info.get(wire.REPLY_CLIENT, ""))[:200]
            if not key:
                continue
            if key in clients or key in mismatched:
                raise FlonnxError(f"two nodes call themselves {key!r}; client keys must be unique")
            protocol = check_protocol(info)
            if protocol is not None:
                mismatched.add(key)
                self._refused[key] = protocol
                continue
            refusal = info.get(wire.REFUSAL_REASON)
            clients[key] = ClientInfo(
                node_id=reply.metadata.src_node_id, key=key,
                framework=str(info.get(wire.REPLY_FRAMEWORK, ""))[:100],
                framework_version=str(info.get(wire.REPLY_FRAMEWORK_VERSION, ""))[:100],
                num_examples=_count(info.get(wire.REPLY_NUM_EXAMPLES, 0)),
            )
            if refusal is not None:
                self._refused[key] = f"refused at the handshake: {one_line(str(refusal))}"
                continue
            widths[key] = _count(info.get(wire.REPLY_NUM_FEATURES, 0))
            try:
                categories = _categories(info.get(wire.REPLY_CATEGORIES, "{}"))
                self._features[key] = _names(info.get(wire.REPLY_FEATURES, "[]"))
                clients[key] = replace(clients[key], environment=parse_environment(
                    info.get(wire.REPLY_ENVIRONMENT, "{}")))
                self._holds[key] = set(_names(info.get(wire.REPLY_DEFINITIONS, "[]")))
            except FlonnxError as exc:
                self._refused[key] = f"unusable handshake reply: {exc}"
                continue
            if categories and vocabularies is None:
                self._categories[key] = categories
                continue  # counted in the second handshake, once the vocabularies are agreed
            if width is not None and widths[key] != width:
                # the same words as the node's own refusal in every round (flonnx.client.app.prepare_data)
                self._refused[key] = f"the data has {widths[key]} features but the model expects {width}"
                continue
            if stats and wire.STATS in reply.content.array_records:
                try:
                    # float64 vectors of the node's width: decoded against the bytes present, never
                    # allocating what a forged .npy header claims
                    bound = 8 * max(widths[key], 3) + MAX_NPY_HEADER + 128
                    arrays = {k: decode_npy(v.data, max_bytes=bound)
                              for k, v in list(reply.content.array_records[wire.STATS].items())[:8]}
                    gathered[key] = LocalStats.from_arrays(arrays, widths[key])
                except FlonnxError as exc:
                    self._refused[key] = f"unusable feature statistics: {exc}"
        if len(clients) + len(mismatched) < self.settings.min_available_nodes:
            raise FlonnxError(
                f"{len(clients) + len(mismatched)} of {len(node_ids)} nodes answered the handshake; "
                f"{self.settings.min_available_nodes} needed"
            )
        if gathered:
            common = Counter(widths[k] for k in sorted(gathered)).most_common(1)[0][0]  # ties by key
            for key in [k for k in gathered if widths[k] != common]:
                del gathered[key]
                self._refused[key] = (f"the data has {widths[key]} features but the other nodes "
                                      f"have {common}")
        for key, reason in sorted(self._refused.items()):
            self.reporter.note(f"{key}: {reason}")
        return clients, gathered

    def _round(
        self, run_id: str, rnd: int, definition: Definition, head: _Head, clients: dict[str, ClientInfo]
    ) -> tuple[_Head, RoundSummary]:
        keys = sample_clients(
            list(clients), round=rnd, seed=self.settings.seed,
            fraction=self.settings.fraction_train, minimum=self.settings.min_train_nodes,
        )
        by_node = {clients[k].node_id: clients[k] for k in keys}
        train_config: dict[str, Any] = {**self.settings.train, wire.CONFIG_TASK: self.spec.task}
        if self.built.dp_clipping:
            train_config[DP_CLIPPING_MODE] = self.built.dp_clipping
        configured = configure_round(self.strategy, rnd, self.settings.seed, head.weights,
                                     train_config, sorted(by_node), self.grid)
        seeds = {k: derive_seed(self.settings.seed, rnd, k) for k in keys}
        messages = []
        for message in sorted(configured, key=lambda m: by_node[m.metadata.dst_node_id].key):
            client = by_node[message.metadata.dst_node_id]
            content = RecordDict(dict(message.content.items()))
            lineage: dict[str, Any] = {
                wire.LINEAGE_RUN: run_id, wire.LINEAGE_ROUND: rnd, wire.LINEAGE_VERSION: head.version_id,
                wire.LINEAGE_DEFINITION_ID: definition.id, wire.LINEAGE_WEIGHTS_ID: head.weights_id,
                wire.LINEAGE_SEED: seeds[client.key],
            }
            if definition.id not in self._holds.get(client.key, ()):  # the node's cache: by id
                lineage[wire.LINEAGE_DEFINITION] = definition.canonical_bytes
            content[wire.LINEAGE] = ConfigRecord(lineage)  # type: ignore[arg-type]
            messages.append(Message(content, dst_node_id=client.node_id, message_type=MessageType.TRAIN))
        updates: list[Update] = []
        rejected: list[Rejection] = []
        answered = set()
        aggregation = RoundAggregation(self.strategy, self.aggregator, rnd, self.settings.seed,
                                       definition, updates=len(keys), label=self.settings.strategy)
        started = time.perf_counter()
        # each reply is checked as it arrives and released (streaming: folded and stored) before
        # the next is received; what is recorded is sorted by client key below
        for reply in self._send_train(messages, by_node, definition):
            sender = by_node.get(reply.metadata.src_node_id)
            if sender is None or sender.key in answered:
                continue
            answered.add(sender.key)
            self._check_reply(reply, sender, definition, head, seeds[sender.key], aggregation,
                              updates, rejected)
            del reply
            elapsed = time.perf_counter() - started
            self.reporter.progress(RoundProgress(
                round=rnd, total_rounds=self.settings.rounds, received=len(answered), sampled=len(keys),
                rejected=len(rejected), elapsed_s=elapsed,
                eta_s=elapsed / len(answered) * (len(keys) - len(answered))))
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
        new_weights, train_metrics = aggregation.finish()
        return self._commit(run_id, rnd, definition, head, updates, rejected, new_weights, len(keys),
                            train_metrics, aggregation.recorded_config(self.strategy_config))

    def _check_reply(self, reply: Message, sender: ClientInfo, definition: Definition, head: _Head,
                     seed: int, aggregation: RoundAggregation, updates: list[Update],
                     rejected: list[Rejection]) -> None:
        """Check one train reply; fold an accepted update into ``aggregation`` at once."""
        checked = check_reply(reply, client=sender, definition=definition,
                              base_version=head.version_id, seed=seed)
        if not isinstance(checked, Update):
            rejected.append(checked)
            return
        try:
            aggregation.add(AggregationInput(checked.client, checked.weights,
                                             checked.num_examples, checked.metrics))
        except InvalidUpdate as exc:  # outside the aggregator's declared bounds
            rejected.append(Rejection(checked.client, checked.node_id, str(exc)))
            return
        if aggregation.streaming:  # its share is in the sum; keep only its stored blob
            self.registry.put_weights(checked.weights, weights_id=checked.weights_id)
            checked.weights = {}
            if wire.ARRAYS in reply.content:
                del reply.content[wire.ARRAYS]
        updates.append(checked)

    def _send_train(self, messages: list[Message], by_node: dict[int, ClientInfo],
                    definition: Definition) -> Iterator[Message]:
        """Send a round's train messages; a node that lacks the definition gets it at once.

        A message names the definition by id only when the node said it holds it (its hello
        reply, or an earlier reply of this run). A node that has lost it since (it restarted, or
        evicted it) refuses naming the id: its message goes again, bytes included, in this same
        round - so a restart costs one more exchange with that node, not its update, and the
        round's versions are those it would have had. Once only: a second such refusal (or no
        answer within another ``round-timeout``) is recorded like any other.

        Yields each reply as it arrives (:func:`~flonnx.server.stopping.receive`); those refusals
        are held back, and their messages sent again once the first wait ends.
        """
        timeout = self.settings.round_timeout
        sent = {m.metadata.dst_node_id: m for m in messages}
        again: list[Message] = []
        for reply in receive(self.grid, messages, timeout=timeout, stop=self.stop):
            if _missing_definition(reply) == definition.id and reply.metadata.src_node_id in sent:
                again.append(_with_definition(sent[reply.metadata.src_node_id], definition))
                continue
            self._note_holds(reply, by_node, definition)
            yield reply
        sent.clear()
        for reply in receive(self.grid, again, timeout=timeout, stop=self.stop) if again else ():
            self._note_holds(reply, by_node, definition)
            yield reply

    def _note_holds(self, reply: Message, by_node: dict[int, ClientInfo], definition: Definition) -> None:
        """Whatever answer but a failure or a missing-definition refusal: the node holds it."""
        client = by_node.get(reply.metadata.src_node_id)
        if client is not None and not reply.has_error() and _missing_definition(reply) is None:
            self._holds.setdefault(client.key, set()).add(definition.id)

    def _rejection_record(self, rejection: Rejection, rnd: int, definition: Definition,
                          parent: str) -> VersionRecord:
        client = self._clients.get(rejection.client)
        return VersionRecord(
            kind=VersionKind.REJECTED, round=rnd, definition_id=definition.id, weights_id="",
            parents=(parent,), framework=client.framework if client else "",
            framework_version=client.framework_version if client else "",
            client=rejection.client, metrics=rejection.metrics,
            seed=derive_seed(self.settings.seed, rnd, rejection.client), reason=rejection.reason,
        )

    def _commit(
        self, run_id: str, rnd: int, definition: Definition, head: _Head, updates: list[Update],
        rejected: list[Rejection], new_weights: dict[str, np.ndarray], sampled: int,
        train_metrics: dict[str, Any], strategy_config: dict[str, str],
    ) -> tuple[_Head, RoundSummary]:
        records = []
        for update in updates:
            # checked; a streamed update was stored when it was folded (then this only confirms)
            self.registry.put_weights(update.weights, weights_id=update.weights_id)
            records.append(VersionRecord(
                kind=VersionKind.CLIENT_UPDATE, round=rnd, definition_id=definition.id,
                weights_id=update.weights_id, parents=(head.version_id,), framework=update.framework,
                framework_version=update.framework_version, client=update.client,
                num_examples=update.num_examples, metrics=update.metrics, seed=update.seed,
                environment=update.environment,
            ))
        records += [self._rejection_record(r, rnd, definition, head.version_id) for r in rejected]
        metrics = self.evaluate(definition, new_weights)
        metrics.update({k: float(v) for k, v in train_metrics.items()
                        if isinstance(v, int | float)})
        aggregate = VersionRecord(
            kind=VersionKind.AGGREGATE, round=rnd, definition_id=definition.id,
            weights_id=self.registry.put_weights(new_weights),
            parents=tuple(r.version_id for r in records if r.kind is VersionKind.CLIENT_UPDATE),
            num_examples=sum(u.num_examples for u in updates),
            metrics=metrics, seed=self.settings.seed, strategy=self.settings.strategy,
            strategy_config=strategy_config, environment=self.server_env,
        )
        self.stop.check()  # a round the signal came during is not committed, however far it got
        self.registry.commit(run_id, [*records, aggregate], head_round=rnd, head=aggregate.version_id,
                             state_id=self._save_state(), signer=self.signer)
        self.registry.prune(run_id, newest=True)  # once committed: the round's row references stand
        summary = RoundSummary(
            round=rnd, total_rounds=self.settings.rounds, sampled=sampled,
            frameworks=[u.framework for u in updates], rejected=rejected, metrics=metrics,
            version_id=aggregate.version_id, seconds=0.0,
        )
        return _Head(rnd, aggregate.version_id, new_weights, aggregate.weights_id), summary



def _missing_definition(reply: Message) -> str | None:
    """The definition id a node refused a message for lacking (protocol 2), or None."""
    if reply.has_error() or wire.REFUSAL not in reply.content.config_records:
        return None
    missing = reply.content.config_records[wire.REFUSAL].get(wire.REFUSAL_MISSING_DEFINITION)
    return str(missing) if missing is not None else None


def _with_definition(message: Message, definition: Definition) -> Message:
    """A new message with ``message``'s content, its lineage carrying the definition's bytes."""
    content = RecordDict(dict(message.content.items()))
    lineage = ConfigRecord(dict(message.content.config_records[wire.LINEAGE]))
    lineage[wire.LINEAGE_DEFINITION] = definition.canonical_bytes
    content[wire.LINEAGE] = lineage
    return Message(content, dst_node_id=message.metadata.dst_node_id,
                   message_type=message.metadata.message_type)


#: bounds on what a node reports at the handshake (docs/reliability.md, "Size limits")
MAX_CATEGORY_COLUMNS = 1000
MAX_CATEGORY_VALUES = 10_000  # values of one categorical column
MAX_HELLO_NAME = 200  # characters of a column name, a categorical value, a feature name, a definition id
MAX_FEATURE_NAMES = 100_000


def _categories(text: object) -> dict[str, list[str]]:
    """A node's categorical values (untrusted JSON): bounded in size and type."""
    data = wire.loads_field(text, "the categories")
    if not isinstance(data, dict) or len(data) > MAX_CATEGORY_COLUMNS or not all(
            isinstance(v, list) and len(v) <= MAX_CATEGORY_VALUES
            and all(isinstance(x, str) and len(x) <= MAX_HELLO_NAME for x in v) for v in data.values()):
        raise FlonnxError(f"categories must map at most {MAX_CATEGORY_COLUMNS} columns to lists of "
                          "short strings")
    return {str(k)[:MAX_HELLO_NAME]: list(v) for k, v in data.items()}


def _names(text: object) -> list[str]:
    """A node's feature column names (untrusted JSON list of short strings)."""
    data = wire.loads_field(text, "the feature names")
    if not isinstance(data, list) or len(data) > MAX_FEATURE_NAMES or not all(
            isinstance(x, str) and len(x) <= MAX_HELLO_NAME for x in data):
        raise FlonnxError("feature names must be a list of short strings")
    return data


def _count(value: object) -> int:
    """A non-negative count from a node's reply (untrusted); anything else counts as 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
