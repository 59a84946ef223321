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
shapes ONNX infers with a batch of 1 (other nodes, e.g. activations, are not counted). So is the
peak activation memory (:func:`peak_activation_bytes`): the most bytes of intermediate tensors alive
at once when the nodes run in graph order, from the same shapes.

Fairness reads the evaluation records of the version (:meth:`Registry.evaluations`: each site's
metrics of the final version), or a registry's older run annotation ``site_evaluation``, and, when
the spec names a ``sensitive`` column, computes per-group metrics on the evaluation data now, as it
does per-class metrics (:mod:`flonnx.exchange.groups`).
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
from flonnx.exchange.registry import SITE_SOURCE, Registry

__all__ = [
    "CARD_PREFIX", "MEASURED_PREFIX", "SECTIONS", "card_from_metadata", "estimated_flops",
    "example_inputs", "measured_card", "peak_activation_bytes", "render_markdown", "stable_card",
]

CARD_PREFIX = "flonnx.card."
MEASURED_PREFIX = "flonnx.measured."
#: Section key -> its heading, in card order.
SECTIONS = {"performance": "Performance", "fairness": "Fairness across sites and groups",
            "privacy": "Privacy", "compute": "Compute", "provenance": "Provenance"}
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
    _fairness(put, registry, stored.run_id, version_id, config)
    _groups(put, registry, record, spec)
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


def _site_evaluation(registry: Registry, run_id: str, version_id: str, config: Mapping[str, Any],
                     ) -> tuple[dict[str, dict[str, float]], dict[str, str]] | None:
    """(site -> metrics, site -> failure) of the run's site evaluation of this version, if any.

    From the version's evaluation records; a registry from before them has the run annotation.
    """
    records = [e for e in registry.evaluations(version_id, run_id) if e.source.startswith(SITE_SOURCE)]
    if records:
        name = len(SITE_SOURCE)
        return ({e.source[name:]: e.metrics for e in records if e.failed_reason is None},
                {e.source[name:]: e.failed_reason for e in records if e.failed_reason is not None})
    annotation = config.get("site_evaluation")
    if isinstance(annotation, Mapping) and annotation.get("version_id") == version_id:
        return ({str(k): {str(n): float(v) for n, v in dict(m).items()}
                 for k, m in dict(annotation.get("sites", {})).items()},
                {str(k): str(v) for k, v in dict(annotation.get("failed", {})).items()})
    return None


def _metrics_line(metrics: Mapping[str, float], support: int | None = None) -> str:
    line = " ".join(f"{k}={_number(v)}" for k, v in sorted(metrics.items()))
    return line if support is None else f"{line} support={support}"


def _fairness(put: _Put, registry: Registry, run_id: str, version_id: str,
              config: Mapping[str, Any]) -> None:
    from flonnx.exchange.groups import groups_from_metrics, worst_and_spread

    evaluation = _site_evaluation(registry, run_id, version_id, config)
    if evaluation is None:
        put("fairness", "sites", NOT_RECORDED + " (the run recorded no site evaluation of this version)")
        return
    sites, failed = evaluation
    put("fairness", "sites", "each site evaluated this version on its own rows (metrics only)")
    own: dict[str, dict[str, float]] = {}
    for site, metrics in sorted(sites.items()):
        own[site], groups = groups_from_metrics(metrics)
        put("fairness", f"site.{site}", _metrics_line(own[site]))
        if groups is None:
            continue
        for group in groups.groups:
            put("fairness", f"site_group.{site}.{group.value}", _metrics_line(group.metrics, group.support))
        if groups.suppressed:
            put("fairness", f"site_groups_suppressed.{site}",
                f"{groups.suppressed} (groups too small to leave the site)")
        if groups.left_out:
            put("fairness", f"site_groups_left_out.{site}", f"{groups.left_out} (beyond the cap)")
    for site, reason in sorted(failed.items()):
        put("fairness", f"failed.{site}", str(reason))
    task = str(dict(config.get("spec") or {}).get("task", "classification"))
    summary = worst_and_spread(own, task if task in ("classification", "binary", "regression")
                               else "classification")
    if "worst" in summary:
        put("fairness", "metric", str(summary["metric"]))
        put("fairness", "worst_site",
            f"{summary['worst']} ({summary['metric']}={_number(summary['worst_value'])})")
        put("fairness", "mean", _number(summary["mean"]))
        put("fairness", "spread", _number(summary["spread"]))


def _groups(put: _Put, registry: Registry, record: VersionRecord, spec: Mapping[str, Any]) -> None:
    """Per-group metrics on the run's evaluation data for the spec's sensitive column, computed now."""
    from flonnx.exchange.errors import DataError
    from flonnx.exchange.evaluation import evaluation_outputs
    from flonnx.exchange.groups import MAX_GROUPS, group_key, group_metrics, worst_and_spread
    from flonnx.exchange.preprocess import METADATA_KEY, Preprocessing
    from flonnx.exchange.sources import evaluation_source
    from flonnx.exchange.spec import spec_from_json

    data = spec.get("data")
    column = data.get("sensitive") if isinstance(data, Mapping) else None
    if not column:
        put("fairness", "groups", NOT_RECORDED + " (the spec names no sensitive column)")
        return
    source = evaluation_source(spec_from_json(spec))
    if source is None:
        put("fairness", "groups", f"by column {column}: {NOT_EVALUATED}")
        return
    definition = registry.get_definition(record.definition_id)
    vocabularies = None
    if source.schema.categorical:
        vocabularies = Preprocessing.from_json(definition.metadata.get(METADATA_KEY, "{}")).vocabularies
    try:
        groups = source.groups(str(column))
    except DataError as exc:  # e.g. an evaluation file without the column: the card still builds
        put("fairness", "groups", f"by column {column}: {NOT_EVALUATED} ({exc})")
        return
    x, y = source.load(vocabularies)
    task = str(spec.get("task", "classification"))
    outputs, kind = evaluation_outputs(definition, registry.get_weights(record.weights_id), x, task)
    report = group_metrics(outputs, y, groups, task, kind)
    put("fairness", "groups", f"by column {column} on {source.describe()}: {len(y)} rows, "
        f"{len(report.groups)} groups (server-side, ONNX Runtime; at most {MAX_GROUPS}, the largest)")
    for group in report.groups:
        put("fairness", f"group.{group_key(group.value)}", _metrics_line(group.metrics, group.support))
    if report.left_out:
        put("fairness", "groups_left_out", f"{report.left_out} (smaller groups beyond the cap)")
    summary = worst_and_spread({g.value: g.metrics for g in report.groups}, task)
    if "worst" in summary:
        put("fairness", "group_metric", str(summary["metric"]))
        put("fairness", "worst_group",
            f"{group_key(summary['worst'])} ({summary['metric']}={_number(summary['worst_value'])})")
        put("fairness", "group_spread", _number(summary["spread"]))


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


def _gemm_operand(node: onnx.NodeProto, shapes: dict[str, list[int]],
                  sizes: dict[str, int]) -> tuple[list[int], list[int]] | None:
    """A Gemm's A and output shapes when A's shape was computed at run time (a flatten before a head).

    A holds as many elements as the tensor it was reshaped from (``sizes``) and its reduced
    dimension is fixed by B, so ``A = [size / K, K]`` and the output ``[size / K, N]``.
    """
    size, weight = sizes.get(node.input[0]), shapes.get(node.input[1])
    if size is None or weight is None or len(weight) != 2:
        return None
    trans_a = any(a.name == "transA" and a.i for a in node.attribute)
    trans_b = any(a.name == "transB" and a.i for a in node.attribute)
    k, n = (weight[1], weight[0]) if trans_b else (weight[0], weight[1])
    if k <= 0 or size % k:
        return None
    first = [k, size // k] if trans_a else [size // k, k]
    return first, [size // k, n]


def estimated_flops(model: onnx.ModelProto) -> int | None:
    """2 × multiply-adds of Gemm/MatMul/Conv for one example (``None`` if a shape is unknown)."""
    shapes = _shapes(model)
    # elements of each value: a reshaping node's output holds its input's, whatever shape it has
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    for node in model.graph.node:
        if node.op_type in _SAME_SIZE and node.input and node.input[0] in sizes:
            sizes.setdefault(node.output[0], sizes[node.input[0]])
    total = 0
    for node in model.graph.node:
        if node.op_type not in ("Gemm", "MatMul", "Conv"):
            continue
        out, first = shapes.get(node.output[0]), shapes.get(node.input[0])
        if node.op_type == "Gemm" and first is None:
            derived = _gemm_operand(node, shapes, sizes)
            if derived is not None:
                first, out = derived
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


#: Ops whose first output holds exactly the elements of their first input.
_SAME_SIZE = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"})


def peak_activation_bytes(model: onnx.ModelProto) -> tuple[int, bool] | None:
    """Estimated peak bytes of live tensors for one example; ``None`` if a shape is unknown.

    The nodes run in graph order (ONNX's is topological) with shapes inferred for a batch of 1. The
    graph's data inputs are live from the start; a node's outputs are allocated when it runs, while
    its inputs are still live; a tensor is freed after its last consumer (an unused output at once;
    graph outputs never). Initializers and ``Constant`` outputs are weights, not counted; neither
    are subgraphs. A reshaping node's output whose shape inference left a dimension open (a shape
    computed at run time) has its input's size. The second value is whether text tensors were left
    out (no fixed size).
    """
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for value in [*probe.graph.input, *probe.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1
    inferred = onnx.shape_inference.infer_shapes(probe).graph
    weights = {t.name for t in inferred.initializer}
    weights |= {o for n in inferred.node if n.op_type == "Constant" for o in n.output}
    text = False
    sizes: dict[str, int] = {}
    types: dict[str, int] = {}
    for value in [*inferred.input, *inferred.value_info, *inferred.output]:
        tensor = value.type.tensor_type
        types[value.name] = tensor.elem_type
        if value.name in weights or not all(d.HasField("dim_value") for d in tensor.shape.dim):
            continue
        if tensor.elem_type == onnx.TensorProto.STRING:
            text, sizes[value.name] = True, 0
            continue
        item = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)).itemsize
        sizes[value.name] = item * math.prod(d.dim_value for d in tensor.shape.dim)
    for node in inferred.node:
        out, source = node.output[0] if node.output else "", node.input[0] if node.input else ""
        if (node.op_type in _SAME_SIZE and out not in sizes and source in sizes
                and types.get(out) == types.get(source)):
            sizes[out] = sizes[source]
    last_use: dict[str, int] = {}
    for index, node in enumerate(inferred.node):
        for name in node.input:
            if name:
                last_use[name] = index
    kept = {o.name for o in inferred.output}
    live = {v.name for v in inferred.input if v.name not in weights}
    if any(name not in sizes for name in live):
        return None
    current = peak = sum(sizes[name] for name in live)
    for index, node in enumerate(inferred.node):
        if node.op_type == "Constant":
            continue
        for name in node.output:
            if not name:
                continue
            if name not in sizes:
                return None
            live.add(name)
            current += sizes[name]
        peak = max(peak, current)
        for name in [*node.input, *node.output]:
            if name in live and name not in kept and last_use.get(name, -1) <= index:
                live.discard(name)
                current -= sizes[name]
    return peak, text


def _compute(put: _Put, model: onnx.ModelProto) -> None:
    weights = [onnx.numpy_helper.to_array(t) for t in model.graph.initializer]
    put("compute", "parameters", str(sum(int(np.size(w)) for w in weights)))
    put("compute", "weight_bytes", str(sum(int(w.nbytes) for w in weights)))
    put("compute", "model_bytes", str(len(model.SerializeToString(deterministic=True))))
    flops = estimated_flops(model)
    put("compute", "flops_per_example",
        "unknown (a shape could not be inferred)" if flops is None
        else f"{flops} (estimate: 2 x multiply-adds of Gemm/MatMul/Conv)")
    peak = peak_activation_bytes(model)
    put("compute", "peak_activation_bytes",
        "unknown (a shape could not be inferred)" if peak is None
        else f"{peak[0]} (estimated, from shapes, batch 1; ONNX Runtime's arena may differ"
             + ("; text tensors not counted)" if peak[1] else ")"))


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
