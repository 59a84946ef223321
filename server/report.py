"""One self-contained HTML report of one or more runs, read from the registry's public API.

The file opens offline: inline CSS, inline SVG drawn by :mod:`flonnx.server._svg`, no script, no
font, no image, and a Content-Security-Policy that forbids any fetch. Several runs share the axes
of every plot, so the strategies of one simulation compare at a glance.

What a run records and what the report draws from it:

* the global model per round: the initial and aggregate records' metrics (ONNX Runtime on the
  server's evaluation data, and ``train-loss``, the clients' weighted mean);
* client training per framework: ``train-loss`` of the client updates (no client reports an
  evaluation metric per round);
* worst / mean / best client per round: the same client metric; the site evaluation of the final
  version when the spec asked for one (its evaluation records, :meth:`Registry.evaluations`; an
  older registry's run annotation ``site_evaluation``);
* participation: accepted updates per framework and rejected replies per round, with reasons;
* time per round: the registry's commit timestamps (one-second resolution), the only timing a
  run records;
* the lineage DAG (:mod:`flonnx.server.lineage_graph`), the spec, strategy, seed and environment.

Every string from the registry (client ids, reasons, framework names, spec values) is untrusted
and escaped by :func:`flonnx.server._svg.esc` where the markup is written. The output has no
timestamp of its own, so the same runs give the same file.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from flonnx.exchange.groups import worst_and_spread
from flonnx.exchange.lineage import VersionKind, VersionRecord, flonnx_version
from flonnx.exchange.registry import SITE_SOURCE, Evaluation, Registry, RunInfo, StoredVersion
from flonnx.exchange.task import HEADLINE_METRIC
from flonnx.server._svg import (
    _COLOURS,
    REJECTED,
    Band,
    Series,
    Stack,
    dot_strip,
    esc,
    extent,
    fmt,
    line_chart,
    palette,
    stacked_bars,
)
from flonnx.server.lineage_graph import LineageNode, draw_lineage

__all__ = ["PLOTS", "RunFacts", "collect_run", "lineage_svg", "render_report", "write_report"]

#: The ``data-plot`` names of the report's plots (a plot whose data a run lacks is a note instead).
PLOTS = ("global-metric", "global-loss", "client-loss", "client-spread", "site-metric", "participation",
         "round-time", "lineage")

#: Metrics where lower is better (the worst client is the highest).
_LOWER_IS_BETTER = ("loss", "mse", "mae", "rmse")
_CLIENT_METRIC = "train-loss"


@dataclass(frozen=True)
class RoundFacts:
    """One committed round of a run."""

    round: int
    aggregate: VersionRecord | None
    updates: list[VersionRecord]
    rejected: list[VersionRecord]
    seconds: float | None  # between this round's commit and the previous one


@dataclass(frozen=True)
class RunFacts:
    """What the report shows of one run."""

    info: RunInfo
    task: str
    strategy: str
    strategy_config: dict[str, str]
    initial: VersionRecord | None
    refusals: list[VersionRecord]  # rejected at the handshake (round 0)
    rounds: list[RoundFacts]
    nodes: list[LineageNode]
    label: str = ""
    colour: str = _COLOURS[0]
    spec: dict[str, Any] = field(default_factory=dict)
    #: the site evaluation of the final version: ``{"sites", "failed", "summary"}``, or None
    site_evaluation: dict[str, Any] | None = None

    @property
    def headline(self) -> str:
        """The task's headline metric (``accuracy``, ``r2``)."""
        return HEADLINE_METRIC.get(self.task, "accuracy")

    def global_metric(self, name: str) -> list[tuple[float, float]]:
        """``(round, value)`` of a metric of the initial and aggregate versions."""
        points = [(0.0, float(self.initial.metrics[name]))] if (
            self.initial is not None and name in self.initial.metrics) else []
        return points + [(float(r.round), float(r.aggregate.metrics[name])) for r in self.rounds
                         if r.aggregate is not None and name in r.aggregate.metrics]


def _time(text: str) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None


def collect_run(registry: Registry, run_id: str) -> RunFacts:
    """Read one run (in one snapshot of the registry)."""
    with registry.snapshot():
        info = registry.run(run_id)
        versions: list[StoredVersion] = registry.versions(run_id)
        heads = registry.heads(run_id)
        evaluations = registry.evaluations(heads[max(heads)], run_id) if heads else []
    spec = info.config.get("spec") or info.config.get("spec_canonical") or {}
    spec = spec if isinstance(spec, dict) else {}
    by_round: dict[int, list[VersionRecord]] = defaultdict(list)
    when: dict[str, str] = {}
    for v in versions:
        by_round[v.record.round].append(v.record)
        when.setdefault(v.version_id, v.created_at)
    initial = next((v.record for v in versions if v.record.kind is VersionKind.INITIAL), None)
    rounds = []
    for rnd in sorted(r for r in by_round if r > 0):
        records = by_round[rnd]
        head = heads.get(rnd)
        aggregates = [r for r in records if r.kind is VersionKind.AGGREGATE]
        aggregate = next((a for a in aggregates if a.version_id == head),
                         aggregates[-1] if aggregates else None)
        start, end = _time(when.get(heads.get(rnd - 1, ""), "")), _time(when.get(head or "", ""))
        rounds.append(RoundFacts(
            round=rnd, aggregate=aggregate,
            updates=sorted((r for r in records if r.kind is VersionKind.CLIENT_UPDATE),
                           key=lambda r: r.client),
            rejected=sorted((r for r in records if r.kind is VersionKind.REJECTED), key=lambda r: r.client),
            seconds=(end - start).total_seconds() if start and end else None))
    first = next((r.aggregate for r in rounds if r.aggregate is not None), None)
    return RunFacts(
        info=info, task=str(spec.get("task", "classification")),
        strategy=first.strategy if first and first.strategy else str(spec.get("strategy", "")),
        strategy_config=dict(first.strategy_config) if first else
        {str(k): str(v) for k, v in dict(spec.get("strategy-config") or {}).items()},
        initial=initial,
        refusals=sorted((r for r in by_round.get(0, []) if r.kind is VersionKind.REJECTED),
                        key=lambda r: r.client),
        rounds=rounds, nodes=[LineageNode(v.version_id, v.record) for v in versions], spec=spec,
        site_evaluation=_site_evaluation(info, evaluations, str(spec.get("task", "classification"))))


def _site_evaluation(info: RunInfo, evaluations: list[Evaluation], task: str) -> dict[str, Any] | None:
    """The sites' evaluation of the final version from its records, else the run's older annotation."""
    sites = [e for e in evaluations if e.source.startswith(SITE_SOURCE)]
    if not sites:
        annotation = info.config.get("site_evaluation")
        return annotation if isinstance(annotation, dict) else None
    name = len(SITE_SOURCE)
    metrics = {e.source[name:]: e.metrics for e in sites if e.failed_reason is None}
    summary = worst_and_spread(metrics, task if task in HEADLINE_METRIC else "classification")
    if "worst" in summary:
        summary["worst_site"] = summary.pop("worst")
    return {"sites": metrics, "summary": summary,
            "failed": {e.source[name:]: e.failed_reason for e in sites if e.failed_reason is not None}}


def _labelled(runs: list[RunFacts]) -> list[RunFacts]:
    """Give each run a short label that tells it apart from the others, and a colour."""
    facts: list[Callable[[RunFacts], str]] = [
        lambda r: r.info.scenario, lambda r: r.strategy, lambda r: f"seed {r.info.seed}"]
    differing = [f for f in facts if len({f(r) for r in runs}) > 1] or facts[:1]
    labels = [" · ".join(f(r) for f in differing) for r in runs]
    counts = Counter(labels)
    out = []
    for i, (run, label) in enumerate(zip(runs, labels, strict=True)):
        if counts[label] > 1:
            label = f"{label} ({run.info.run_id})"
        out.append(replace(run, label=label, colour=_COLOURS[i % len(_COLOURS)]))
    return out


def _lower_is_better(metric: str) -> bool:
    return any(word in metric for word in _LOWER_IS_BETTER)


def _note(plot: str, text: str) -> str:
    return f'<p class="note" data-plot-missing="{esc(plot)}">{esc(text)}</p>'


def _figure(svg: str, caption: str = "") -> str:
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><div class="scroll">{svg}</div>{cap}</figure>'


# -- sections --------------------------------------------------------------------------------------
def _global(runs: list[RunFacts], x_domain: tuple[float, float]) -> str:
    headlines = sorted({r.headline for r in runs})
    metric = headlines[0] if len(headlines) == 1 else "headline metric"
    series = [Series(r.label + ("" if len(headlines) == 1 else f" ({r.headline})"), r.colour,
                     r.global_metric(r.headline)) for r in runs]
    parts = ['<h2>Global model</h2><div class="grid">']
    if any(s.points for s in series):
        parts.append(_figure(line_chart(
            "global-metric", f"{metric} of the global model per round", series, x_label="round",
            y_label=metric, x_domain=x_domain, width=490),
            f"{metric} of the initial version (round 0) and each round's aggregate, measured with ONNX "
            "Runtime on the server's evaluation data."))
    else:
        parts.append(_note("global-metric", f"no {metric} recorded: the spec has no evaluation data "
                                            "(evaluate = none), so the global model was not evaluated."))
    losses = []
    for r in runs:
        losses.append(Series(f"{r.label} · evaluation loss", r.colour, r.global_metric("loss")))
        losses.append(Series(f"{r.label} · clients' train-loss", r.colour, r.global_metric("train-loss"),
                             dashed=True))
    losses = [s for s in losses if s.points]
    if losses:
        parts.append(_figure(line_chart("global-loss", "loss per round", losses, x_label="round",
                                        y_label="loss", x_domain=x_domain, width=490),
                             "Solid: the global model's loss on the evaluation data. Dashed: the "
                             "clients' training loss, weighted by their examples, as aggregated."))
    else:
        parts.append(_note("global-loss", "no loss recorded."))
    parts.append("</div>")
    parts.append(_metrics_table(runs))
    return "".join(parts)


def _metrics_table(runs: list[RunFacts]) -> str:
    names = sorted({k for r in runs for rf in r.rounds if rf.aggregate for k in rf.aggregate.metrics})
    rows = []
    for r in runs:
        final = next((rf.aggregate for rf in reversed(r.rounds) if rf.aggregate), None)
        cells = "".join(f"<td>{esc(fmt(final.metrics[k])) if final and k in final.metrics else ''}</td>"
                        for k in names)
        rows.append(f'<tr><th scope="row"><span class="swatch" style="background:{r.colour}"></span>'
                    f"{esc(r.label)}</th><td>{len(r.rounds)}</td>{cells}</tr>")
    head = "".join(f"<th>{esc(k)}</th>" for k in names)
    return (f"<table><caption>final aggregate of each run</caption><thead><tr><th>run</th><th>rounds</th>"
            f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _client_values(r: RunFacts, metric: str) -> dict[int, list[tuple[str, str, float]]]:
    """Per round: (client, framework, value) of the client updates that report ``metric``."""
    return {rf.round: [(u.client, u.framework or "?", float(u.metrics[metric])) for u in rf.updates
                       if metric in u.metrics and math.isfinite(u.metrics[metric])] for rf in r.rounds}


def _clients(runs: list[RunFacts], x_domain: tuple[float, float]) -> str:
    parts = ["<h2>Clients</h2>"]
    values = {r.info.run_id: _client_values(r, _CLIENT_METRIC) for r in runs}
    everything = [v for per in values.values() for rows in per.values() for _, _, v in rows]
    if not everything:
        return "".join(parts + [_note("client-loss", f"no client update reports {_CLIENT_METRIC}."),
                                _note("client-spread", f"no client update reports {_CLIENT_METRIC}.")])
    y_domain = extent(everything)
    colours = palette([fw for per in values.values() for rows in per.values() for _, fw, _ in rows])
    heading = f"{_CLIENT_METRIC} per framework" + ("" if len(runs) > 1 else "; worst, mean and best client")
    parts.append(f"<h3>{esc(heading)}</h3><div class=\"grid\">")
    for r in runs:
        per = values[r.info.run_id]
        series = []
        for framework, colour in colours.items():
            points, tips = [], []
            for rnd, rows in sorted(per.items()):
                mine = [(c, v) for c, fw, v in rows if fw == framework]
                if mine:
                    points.append((float(rnd), sum(v for _, v in mine) / len(mine)))
                    tips.append(f"{len(mine)} client(s): " + ", ".join(f"{c} {fmt(v)}" for c, v in mine[:8])
                                + (" …" if len(mine) > 8 else ""))
            if points:
                series.append(Series(framework, colour, points, tips))
        parts.append(_figure(line_chart(
            "client-loss", f"{r.label}: {_CLIENT_METRIC} per framework", series, x_label="round",
            y_label=_CLIENT_METRIC, x_domain=x_domain, y_domain=y_domain, width=490,
            attrs={"data-run": r.info.run_id}), f"{r.label}: mean over the framework's clients"))
    if len(runs) > 1:  # one run: its two plots side by side; several: each kind of plot in a row
        parts.append("</div>")
        parts.append(f"<h3>Worst, mean and best client ({esc(_CLIENT_METRIC)})</h3><div class=\"grid\">")
    worst_first = _lower_is_better(_CLIENT_METRIC)
    for r in runs:
        worst, mean, best, w_tips, b_tips = [], [], [], [], []
        for rnd, rows in sorted(values[r.info.run_id].items()):
            if not rows:
                continue
            ordered = sorted(rows, key=lambda t: (t[2], t[0]), reverse=worst_first)
            x = float(rnd)
            worst.append((x, ordered[0][2]))
            best.append((x, ordered[-1][2]))
            mean.append((x, sum(v for _, _, v in rows) / len(rows)))
            w_tips.append(f"worst: {ordered[0][0]} ({ordered[0][1]})")
            b_tips.append(f"best: {ordered[-1][0]} ({ordered[-1][1]})")
        series = [Series("worst client", REJECTED, worst, w_tips, dashed=True),
                  Series("mean", r.colour, mean), Series("best client", "#009e73", best, b_tips, dashed=True)]
        parts.append(_figure(line_chart(
            "client-spread", f"{r.label}: worst, mean and best client", series, x_label="round",
            y_label=_CLIENT_METRIC, x_domain=x_domain, y_domain=y_domain, width=490,
            bands=[Band(r.colour, best, worst)], attrs={"data-run": r.info.run_id}),
            f"{r.label}: the spread of the clients' {_CLIENT_METRIC} in each round"))
    parts.append("</div>")
    parts.append(_sites(runs))
    return "".join(parts)


def _sites(runs: list[RunFacts]) -> str:
    rows, failures = [], []
    metric = runs[0].headline
    for r in runs:
        evaluation = r.site_evaluation
        if not isinstance(evaluation, dict):
            continue
        sites = evaluation.get("sites") or {}
        summary = evaluation.get("summary") or {}
        metric = str(summary.get("metric", r.headline))
        worst = summary.get("worst_site")
        dots = [(float(m[metric]), f"{site}: {metric} {fmt(float(m[metric]))}"
                 + (" (worst)" if site == worst else ""), site == worst)
                for site, m in sorted(sites.items()) if isinstance(m, dict) and metric in m]
        if dots:
            rows.append((r.label, dots))
        for site, reason in sorted((evaluation.get("failed") or {}).items()):
            failures.append(f"<tr><td>{esc(r.label)}</td><td>{esc(site)}</td><td>{esc(reason)}</td></tr>")
    parts = [f"<h3>Each site's {esc(metric)} of the final model</h3>"]
    if rows:
        parts.append(_figure(dot_strip("site-metric",
                                       f"{metric} of the final version on each site's own data",
                                       rows, x_label=metric),
                             "Each dot is a site evaluating the run's final version on its own rows "
                             "(metrics only leave the site); the worst site is red."))
    else:
        parts.append(_note("site-metric", "no site evaluation recorded (the spec's evaluate-sites is off, "
                                          "or the runs predate it)."))
    if failures:
        parts.append("<table><caption>sites that did not evaluate</caption><thead><tr><th>run</th>"
                     f"<th>site</th><th>reason</th></tr></thead><tbody>{''.join(failures)}</tbody></table>")
    return "".join(parts)


def _participation(runs: list[RunFacts], x_domain: tuple[float, float]) -> str:
    parts = ["<h2>Participation and rejections</h2><div class=\"grid\">"]
    frameworks = palette([u.framework or "?" for r in runs for rf in r.rounds for u in rf.updates])
    y_max = max([len(rf.updates) + len(rf.rejected) for r in runs for rf in r.rounds] + [1])
    for r in runs:
        stacks = [Stack(f"accepted · {fw}", colour,
                        {rf.round: float(sum(1 for u in rf.updates if (u.framework or "?") == fw))
                         for rf in r.rounds}) for fw, colour in frameworks.items()]
        stacks.append(Stack("rejected", REJECTED, {rf.round: float(len(rf.rejected)) for rf in r.rounds}))
        parts.append(_figure(stacked_bars(
            "participation", f"{r.label}: replies per round", stacks, x_label="round", y_label="replies",
            x_domain=(max(x_domain[0], 1), x_domain[1]), y_max=y_max, width=490,
            attrs={"data-run": r.info.run_id}),
            f"{r.label}: accepted updates per framework and rejected replies"))
    parts.append("</div>")
    rows = []
    for r in runs:
        grouped: dict[tuple[str, str, str], list[int]] = defaultdict(list)
        for record in [*r.refusals, *(x for rf in r.rounds for x in rf.rejected)]:
            grouped[(record.client, record.framework, record.reason)].append(record.round)
        for (client, framework, reason), rounds in sorted(grouped.items()):
            rows.append(f'<tr class="rejection"><td>{esc(r.label)}</td><td>{esc(client)}</td>'
                        f"<td>{esc(framework)}</td><td>{esc(_ranges(rounds))}</td>"
                        f'<td class="reason">{esc(reason)}</td></tr>')
    if rows:
        parts.append("<table><caption>rejected replies (round 0: refused at the handshake)</caption><thead>"
                     "<tr><th>run</th><th>client</th><th>framework</th><th>rounds</th><th>reason</th></tr>"
                     f"</thead><tbody>{''.join(rows)}</tbody></table>")
    else:
        parts.append('<p class="note">no reply was rejected.</p>')
    return "".join(parts)


def _ranges(rounds: Sequence[int]) -> str:
    """``1-3, 5`` for rounds 1, 2, 3, 5."""
    values = sorted(set(rounds))
    spans: list[list[int]] = []
    for value in values:
        if spans and value == spans[-1][1] + 1:
            spans[-1][1] = value
        else:
            spans.append([value, value])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def _timing(runs: list[RunFacts], x_domain: tuple[float, float]) -> str:
    series = [Series(r.label, r.colour, [(float(rf.round), rf.seconds) for rf in r.rounds
                                          if rf.seconds is not None]) for r in runs]
    parts = ["<h2>Time per round</h2>"]
    if not any(s.points for s in series):
        return "".join(parts + [_note("round-time", "no commit times recorded: the time per round is "
                                                    "unknown.")])
    top = max(y for s in series for _, y in s.points)
    parts.append(_figure(line_chart("round-time", "seconds per round", series, x_label="round",
                                    y_label="seconds", x_domain=(max(x_domain[0], 1), x_domain[1]),
                                    y_domain=(0.0, top * 1.1 or 1.0), width=490),
                         "Seconds between a round's commit and the previous one, from the registry's "
                         "timestamps (one-second resolution): training, validation, aggregation and "
                         "evaluation. A resumed run's pause counts in its first resumed round."))
    return "".join(parts)


def _lineage(runs: list[RunFacts]) -> str:
    parts = ["<h2>Lineage</h2>"]
    for r in runs:
        parts.append(f"<h3>{esc(r.label)}</h3>")
        parts.append(_figure(draw_lineage(r.nodes, title=f"lineage of run {r.info.run_id}",
                                          attrs={"data-run": r.info.run_id}),
                             "Each round's client updates (framework colours) come from the previous "
                             "global version and go into the round's aggregate; red crosses are "
                             "rejected replies (hover for the reason)."))
    return "".join(parts)


def _details(runs: list[RunFacts]) -> str:
    parts = ["<h2>Runs</h2>"]
    for r in runs:
        info = r.info
        env = dict(r.initial.environment) if r.initial else {}
        latest = {u.client: u for rf in r.rounds for u in rf.updates}
        clients: Counter[tuple[str, ...]] = Counter(
            (u.framework, u.framework_version, u.environment.get("python", ""),
             u.environment.get("platform", ""), u.environment.get("flonnx", "")) for u in latest.values())
        facts = [("run", info.run_id), ("created", info.created_at), ("spec", info.scenario),
                 ("spec id", str(info.config.get("spec_id", ""))), ("status", info.status),
                 ("rounds", str(len(r.rounds))), ("seed", str(info.seed)), ("task", r.task),
                 ("strategy", r.strategy),
                 ("strategy config", " ".join(f"{k}={v}" for k, v in sorted(r.strategy_config.items()))
                  or "(defaults)"),
                 ("model", str(r.spec.get("model", ""))), ("model origin", _origin(info.config)),
                 ("final version", info.head or "")]
        rows = "".join(f'<tr><th scope="row">{esc(k)}</th><td>{esc(v)}</td></tr>' for k, v in facts if v)
        env_rows = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in sorted(env.items()))
        client_rows = "".join(
            "<tr>" + "".join(f"<td>{esc(v)}</td>" for v in key) + f"<td>{n}</td></tr>"
            for key, n in sorted(clients.items()))
        spec = json.dumps(r.spec, indent=2, sort_keys=True, default=str)
        parts.append(
            f'<section class="run" data-run="{esc(info.run_id)}"><h3><span class="swatch" '
            f'style="background:{r.colour}"></span>{esc(r.label)}</h3>'
            f"<table>{rows}</table>"
            f"<table><caption>server environment</caption><tbody>{env_rows}</tbody></table>"
            "<table><caption>client updates' environments (distinct clients)</caption><thead><tr>"
            "<th>framework</th><th>version</th><th>python</th><th>platform</th><th>flonnx</th>"
            "<th>clients</th>"
            f"</tr></thead><tbody>{client_rows}</tbody></table>"
            f"<details><summary>spec as recorded</summary><pre>{esc(spec)}</pre></details></section>")
    return "".join(parts)


def _origin(config: dict[str, Any]) -> str:
    """``kind: zoo, name: digits-mlp`` from the run's recorded model origin."""
    origin = config.get("model_origin")
    if isinstance(origin, dict):
        return ", ".join(f"{k}: {v}" for k, v in sorted(origin.items()))
    return "" if origin is None else str(origin)


_CSS = "".join((
    "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;color:#222;margin:0 auto;",
    "max-width:1060px;padding:16px 24px 48px}",
    "h1{font-size:22px;margin:8px 0}",
    "h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}",
    "h3{font-size:15px;margin:18px 0 6px}",
    "figure{margin:8px 0 16px}figcaption{color:#666;font-size:12px}",
    ".scroll{overflow-x:auto;max-width:100%}",
    ".grid{display:flex;flex-wrap:wrap;gap:0 16px}.grid figure{max-width:490px}",
    "table{border-collapse:collapse;margin:8px 0 12px;font-size:13px}",
    "caption{text-align:left;color:#666;font-size:12px;padding-bottom:2px}",
    "th,td{border-bottom:1px solid #eee;padding:3px 10px 3px 0;text-align:left;vertical-align:top}",
    "td.reason{max-width:520px;overflow-wrap:anywhere}",
    ".note{color:#8a5a00;background:#fff8e6;padding:6px 10px;border-radius:4px}",
    "footer .note{background:none;color:#888}",
    ".swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px}",
    "pre{background:#f6f6f6;padding:8px;overflow-x:auto;font-size:12px}",
))


def render_report(runs: Sequence[RunFacts]) -> str:
    """The report's HTML for runs read by :func:`collect_run`."""
    if not runs:
        raise ValueError("a report needs at least one run")
    labelled = _labelled(list(runs))
    last = max([rf.round for r in labelled for rf in r.rounds] + [1])
    x_domain = (0.0, float(last))
    title = "flonnx report: " + ", ".join(r.label for r in labelled)
    summary = "".join(
        f'<tr><th scope="row"><span class="swatch" style="background:{r.colour}"></span>{esc(r.label)}</th>'
        f"<td>{esc(r.info.run_id)}</td><td>{esc(r.info.scenario)}</td><td>{esc(r.strategy)}</td>"
        f"<td>{r.info.seed}</td><td>{esc(r.info.status)}</td><td>{len(r.rounds)}</td>"
        f"<td>{esc(_final(r))}</td></tr>" for r in labelled)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src "
        "'unsafe-inline'\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{esc(title)}</h1>"
        "<table><thead><tr><th>run</th><th>id</th><th>spec</th><th>strategy</th><th>seed</th><th>status</th>"
        f"<th>rounds</th><th>final</th></tr></thead><tbody>{summary}</tbody></table>"
        + _global(labelled, x_domain) + _clients(labelled, x_domain) + _participation(labelled, x_domain)
        + _timing(labelled, x_domain) + _lineage(labelled) + _details(labelled)
        + f'<footer><p class="note">written by flonnx '
          f"{esc(flonnx_version())} from the registry's records; every plot is inline SVG and the file "
          "fetches nothing.</p></footer></body></html>\n")


def _final(r: RunFacts) -> str:
    final = next((rf.aggregate for rf in reversed(r.rounds) if rf.aggregate), None)
    if final is None or r.headline not in final.metrics:
        return ""
    return f"{r.headline} {fmt(final.metrics[r.headline])}"


def write_report(registry: Registry, run_ids: Sequence[str], path: str | Path) -> Path:
    """Write the report of ``run_ids`` (exact ids) to ``path``; returns the path."""
    html = render_report([collect_run(registry, run_id) for run_id in run_ids])
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(html, encoding="utf-8")
    return target


def lineage_svg(registry: Registry, run_id: str) -> str:
    """The version DAG of one run as a standalone SVG document."""
    nodes = [LineageNode(v.version_id, v.record) for v in registry.versions(run_id)]
    return draw_lineage(nodes, title=f"lineage of run {run_id}", standalone=True)
