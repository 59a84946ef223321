"""The model card of a version: one builder, stored in an exported file and shown by the CLI.

:func:`stable_card` collects what a registry records about a version — performance, fairness,
privacy, compute and provenance — as flat ``flonnx.card.SECTION.FACT`` keys with text values. It
reads only the registry, the version's model and the run's evaluation data (per-class metrics,
:mod:`flonnx.exchange.per_class`), so the same version always gives the same card,
byte for byte: ``flonnx export`` writes it into ``metadata_props``, and :func:`card_from_metadata`
reading those back gives exactly what ``flonnx lineage show VERSION --card`` builds.

:func:`measured_card` (``flonnx.measured.*``) times ONNX Runtime on this machine; it differs from
run to run and machine to machine, so it is kept apart and never part of the stable card.

FLOPs are an estimate: 2 × multiply-adds of the Gemm, MatMul and Conv nodes for one example, from
shapes ONNX infers with a batch of 1 (other nodes, e.g. activations, are not counted).
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import onnx

from flonnx.exchange.lineage import VersionKind, VersionRecord
from flonnx.exchange.registry import Registry

__all__ = [
    "CARD_PREFIX", "MEASURED_PREFIX", "SECTIONS", "card_from_metadata", "estimated_flops",
    "example_inputs", "measured_card", "render_markdown", "stable_card",
]

CARD_PREFIX = "flonnx.card."
MEASURED_PREFIX = "flonnx.measured."
#: Section key -> its heading, in card order.
SECTIONS = {"performance": "Performance", "fairness": "Fairness across sites", "privacy": "Privacy",
            "compute": "Compute", "provenance": "Provenance"}
#: Records one fact: ``put(section, fact, value)``.
_Put = Callable[[str, str, str], None]
NOT_EVALUATED = "not evaluated"
NOT_RECORDED = "not recorded"
#: Metrics of the server's (or a site's) evaluation; the rest a version records are training facts.
_EVALUATION_METRICS = ("accuracy", "macro-f1", "roc-auc", "loss", "mse", "mae", "r2")


def _number(value: float) -> str:
    return repr(float(value))


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def stable_card(registry: Registry, version_id: str, model: onnx.ModelProto) -> dict[str, str]:
    """The deterministic card of ``version_id``; ``model`` is its served model (without a card)."""
    stored = registry.stored_version(version_id)
    record = stored.record
    config = dict(registry.run(stored.run_id).config)
    spec = dict(config.get("spec") or {})
    card: dict[str, str] = {}

    def put(section: str, fact: str, value: str) -> None:
        card[f"{CARD_PREFIX}{section}.{fact}"] = value

    _performance(put, record, spec)
    _per_class(put, registry, record, spec)
    _fairness(put, version_id, config)
    _privacy(put, record)
    _compute(put, model)
    _provenance(put, registry, stored.run_id, version_id, record, spec)
    return card


def _performance(put: _Put, record: VersionRecord, spec: Mapping[str, Any]) -> None:
    evaluation = str(spec.get("evaluate", "none"))
    metrics = {k: v for k, v in sorted(record.metrics.items()) if k in _EVALUATION_METRICS}
    if record.kind is VersionKind.CLIENT_UPDATE:
        source = f"client {record.client}'s own training data (recorded by the client)"
    elif evaluation == "none" or not metrics:
        source = NOT_EVALUATED
    else:
        try:
            source = f"hold-out {float(evaluation):g} of the spec's data (server-side, ONNX Runtime)"
        except ValueError:
            source = f"evaluation file {evaluation.rsplit('/', 1)[-1]} (server-side, ONNX Runtime)"
    put("performance", "task", str(spec.get("task", "")))
    put("performance", "evaluated_on", source)
    if source == NOT_EVALUATED:
        put("performance", "metrics", NOT_EVALUATED)
    else:
        for name, value in metrics.items():
            put("performance", f"metric.{name}", _number(value))


def _per_class(put: _Put, registry: Registry, record: VersionRecord, spec: Mapping[str, Any]) -> None:
    """Per-class precision, recall, F1 and support on the run's evaluation data, computed now."""
    from flonnx.exchange.per_class import per_class_metrics, predicted_classes
    from flonnx.exchange.preprocess import METADATA_KEY, Preprocessing
    from flonnx.exchange.sources import evaluation_source
    from flonnx.exchange.spec import spec_from_json
    from flonnx.exchange.task import num_classes

    task = str(spec.get("task", ""))
    if task == "regression":
        put("performance", "per_class", "not applicable (regression)")
        return
    source = evaluation_source(spec_from_json(spec)) if spec else None
    if source is None:
        put("performance", "per_class", NOT_EVALUATED)
        return
    definition = registry.get_definition(record.definition_id)
    vocabularies = None
    if source.schema.categorical:
        vocabularies = Preprocessing.from_json(definition.metadata.get(METADATA_KEY, "{}")).vocabularies
    x, y = source.load(vocabularies)
    predicted = predicted_classes(definition, registry.get_weights(record.weights_id), x, task)
    n = num_classes(definition, task) or int(max(np.max(y, initial=0), np.max(predicted, initial=0))) + 1
    classes = list(spec.get("data", {}).get("classes") or []) if isinstance(spec.get("data"), Mapping) else []
    labels = [str(c) for c in classes] if len(classes) == n else [str(i) for i in range(n)]
    put("performance", "per_class", f"on {source.describe()}: {len(y)} rows (server-side, ONNX Runtime)")
    for metrics in per_class_metrics(y, predicted, labels):
        put("performance", f"class.{metrics.label}", metrics.describe())


def _fairness(put: _Put, version_id: str, config: Mapping[str, Any]) -> None:
    sites = config.get("site_evaluation")
    if not isinstance(sites, Mapping) or sites.get("version_id") != version_id:
        put("fairness", "sites", NOT_RECORDED + " (the run recorded no site evaluation of this version)")
        return
    put("fairness", "sites", "each site evaluated this version on its own rows (metrics only)")
    for site, metrics in sorted(dict(sites.get("sites", {})).items()):
        put("fairness", f"site.{site}", " ".join(f"{k}={_number(v)}" for k, v in sorted(metrics.items())))
    for site, reason in sorted(dict(sites.get("failed", {})).items()):
        put("fairness", f"failed.{site}", str(reason))
    summary = dict(sites.get("summary", {}))
    if "worst_site" in summary:
        put("fairness", "metric", str(summary["metric"]))
        worst = f"{summary['worst_site']} ({summary['metric']}={_number(summary['worst'])})"
        put("fairness", "worst_site", worst)
        put("fairness", "mean", _number(summary["mean"]))
        put("fairness", "spread", _number(summary["spread"]))


def _privacy(put: _Put, record: VersionRecord) -> None:
    strategy = record.strategy
    if not strategy:
        put("privacy", "differential_privacy", f"not applicable to a {record.kind.value} version")
        return
    if not strategy.startswith("dp-"):
        put("privacy", "differential_privacy", f"no (strategy {strategy})")
        return
    put("privacy", "differential_privacy", f"yes: Flower wrapper {strategy}")
    for key, value in sorted(record.strategy_config.items()):
        put("privacy", f"parameter.{key}", str(value))
    put("privacy", "epsilon", "not accounted")


def _shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    """Static shapes of every value with a batch of 1 (initializers included)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for value in probe.graph.input:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1
    inferred = onnx.shape_inference.infer_shapes(probe)
    shapes = {t.name: list(t.dims) for t in inferred.graph.initializer}
    for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = [d.dim_value for d in dims]
    return shapes


def estimated_flops(model: onnx.ModelProto) -> int | None:
    """2 × multiply-adds of Gemm/MatMul/Conv for one example (``None`` if a shape is unknown)."""
    shapes = _shapes(model)
    total = 0
    for node in model.graph.node:
        if node.op_type not in ("Gemm", "MatMul", "Conv"):
            continue
        out, first = shapes.get(node.output[0]), shapes.get(node.input[0])
        if out is None or first is None:
            return None
        if node.op_type == "Conv":
            weight = shapes.get(node.input[1])
            if weight is None:
                return None
            reduce = math.prod(weight[1:])  # input channels per group × kernel
        else:
            trans_a = any(a.name == "transA" and a.i for a in node.attribute)
            reduce = first[-2] if trans_a else first[-1]
        total += 2 * math.prod(out) * reduce
    return total


def _compute(put: _Put, model: onnx.ModelProto) -> None:
    weights = [onnx.numpy_helper.to_array(t) for t in model.graph.initializer]
    put("compute", "parameters", str(sum(int(np.size(w)) for w in weights)))
    put("compute", "weight_bytes", str(sum(int(w.nbytes) for w in weights)))
    put("compute", "model_bytes", str(len(model.SerializeToString(deterministic=True))))
    flops = estimated_flops(model)
    put("compute", "flops_per_example",
        "unknown (a shape could not be inferred)" if flops is None
        else f"{flops} (estimate: 2 x multiply-adds of Gemm/MatMul/Conv)")


def _contributions(registry: Registry, run_id: str, version_id: str) -> tuple[list[str], Counter[str],
                                                                               Counter[str]]:
    """The aggregate chain back to the initial version, and client updates by framework and site."""
    by_id = {v.version_id: v.record for v in registry.versions(run_id)}
    chain: list[str] = []
    frameworks: Counter[str] = Counter()
    sites: Counter[str] = Counter()
    current: str | None = version_id
    while current is not None and current in by_id:
        record = by_id[current]
        chain.append(current)
        if record.kind is VersionKind.INITIAL or not record.parents:
            break
        if record.kind is VersionKind.CLIENT_UPDATE:
            frameworks[record.framework] += 1
            sites[record.client] += 1
            current = record.parents[0]
            continue
        updates = [by_id[p] for p in record.parents if p in by_id]
        for update in updates:
            if update.kind is VersionKind.CLIENT_UPDATE:
                frameworks[update.framework] += 1
                sites[update.client] += 1
        current = next((u.parents[0] for u in updates if u.parents), None)
    return chain, frameworks, sites


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{k} x{n}" for k, n in sorted(counter.items())) or "none"


def _provenance(put: _Put, registry: Registry, run_id: str, version_id: str, record: VersionRecord,
                spec: Mapping[str, Any]) -> None:
    chain, frameworks, sites = _contributions(registry, run_id, version_id)
    put("provenance", "version_id", version_id)
    put("provenance", "kind", record.kind.value)
    put("provenance", "definition_id", record.definition_id)
    put("provenance", "weights_id", record.weights_id)
    put("provenance", "round", f"{record.round} of {spec.get('rounds', '?')} planned")
    put("provenance", "spec", str(spec.get("name", "")))
    put("provenance", "strategy", record.strategy or str(spec.get("strategy", "")))
    put("provenance", "strategy_config", _json(dict(record.strategy_config)))
    put("provenance", "seed", str(record.seed))
    put("provenance", "frameworks", _counts(frameworks))
    put("provenance", "sites", _counts(sites))
    put("provenance", "environment", _json(dict(record.environment)))
    put("provenance", "lineage_chain", " <- ".join(chain))


def measured_card(model: onnx.ModelProto, example: Mapping[str, np.ndarray], *, runs: int = 50,
                  batch: int = 256) -> dict[str, str]:
    """ONNX Runtime latency (median of ``runs`` single-example runs) and throughput, on this machine.

    ``example`` holds one example per input (batch dimension 1); throughput runs ``batch`` copies.
    """
    import platform

    from flonnx.exchange.ort import session

    sess = session(model)
    times = []
    for _ in range(runs + 5):
        started = time.perf_counter()
        sess.run(None, dict(example))
        times.append(time.perf_counter() - started)
    latency = statistics.median(times[5:])  # the first runs warm the session up
    many = {k: np.repeat(v, batch, axis=0) for k, v in example.items()}
    started = time.perf_counter()
    for _ in range(5):
        sess.run(None, many)
    rate = 5 * batch / (time.perf_counter() - started)
    return {f"{MEASURED_PREFIX}latency_ms": f"{latency * 1e3:.4g} (median of {runs} runs, batch 1)",
            f"{MEASURED_PREFIX}throughput": f"{rate:.4g} examples/s (batch {batch})",
            f"{MEASURED_PREFIX}machine": f"{platform.system()}-{platform.machine()}, 1 intra-op thread"}


def example_inputs(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """One example (batch 1) for each data input of ``model``: zeros, or an empty string."""
    initializers = {t.name for t in model.graph.initializer}
    out: dict[str, np.ndarray] = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else 1 for d in tensor.shape.dim]
        if tensor.elem_type == onnx.TensorProto.STRING:
            out[value.name] = np.full(shape, "", dtype=object)
        else:
            out[value.name] = np.zeros(shape, onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type))
    return out


def card_from_metadata(props: Iterable[onnx.StringStringEntryProto]) -> dict[str, str]:
    """The stable card stored in a file's ``metadata_props``, in stored order."""
    return {p.key: p.value for p in props if p.key.startswith(CARD_PREFIX)}


def render_markdown(card: Mapping[str, str], measured: Mapping[str, str] | None = None,
                    derived: Mapping[str, str] | None = None) -> str:
    """The card as Markdown: one section per heading, facts as a list; measured facts apart.

    ``derived`` (``flonnx.derived.*`` of a derived file, e.g. int8) adds the file's own record.
    """
    lines = [f"# Model card: version {card.get(CARD_PREFIX + 'provenance.version_id', '?')}", ""]
    for section, heading in SECTIONS.items():
        lines += [f"## {heading}", ""]
        prefix = f"{CARD_PREFIX}{section}."
        lines += [f"- {k[len(prefix):]}: {v}" for k, v in card.items() if k.startswith(prefix)]
        lines.append("")
    lines += ["## Measured on this machine", ""]
    if measured:
        lines += [f"- {k[len(MEASURED_PREFIX):]}: {v}" for k, v in measured.items()]
    else:
        lines.append("- not measured (these figures depend on the machine; `flonnx export` measures them)")
    if derived:
        lines += ["", "## This file is derived", ""]
        lines += [f"- {k.split('.', 2)[-1]}: {v}" for k, v in derived.items()]
    return "\n".join(lines) + "\n"
