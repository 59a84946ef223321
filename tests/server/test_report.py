"""The HTML report and the lineage graph: drawn with data, escaped, offline, in a real browser.

The registries are real and made in-process (:class:`Federation` on a :class:`LocalGrid`, no Ray):
three strategies as three runs of one federation of three good nodes (torch and scikit-learn) and
one hostile node whose client id and data path carry markup, so every round records its rejection
with that markup in the reason. The browser tests (marker ``browser``) open the report in headless
Chromium (Debian's package; ``make test`` and ``.ci/run`` install it) with every request recorded
and anything but the file itself refused.
"""

from __future__ import annotations

import datetime as dt
import html
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from flonnx.client.app import app as client_app
from flonnx.exchange import registry as registry_module
from flonnx.exchange.lineage import VersionKind, VersionRecord
from flonnx.exchange.registry import Registry
from flonnx.exchange.spec import parse_spec
from flonnx.server._svg import REJECTED
from flonnx.server.federation import Federation
from flonnx.server.progress import Reporter
from flonnx.server.report import PLOTS, collect_run, lineage_svg, render_report, write_report
from flonnx.server.settings import Settings
from tests.browser import DRAWN, chromium_page, open_offline, plots
from tests.server.local_grid import LocalGrid

ROUNDS = 3
STRATEGIES = ("fedavg", "fedmedian", "fedprox")
FEATURES = ("age", "bmi", "chol", "bp")
HOSTILE = "evil<script>window.pwned=1</script></svg><b>x"
SVG = "{http://www.w3.org/2000/svg}"


@dataclass(frozen=True)
class Compared:
    """A registry with one run per strategy of :data:`STRATEGIES`, and the hostile node's facts."""

    registry: Path
    run_ids: list[str]
    hostile_path: str

    def records(self, run_id: str) -> list[VersionRecord]:
        with Registry(self.registry, create=False) as reg:
            return [v.record for v in reg.versions(run_id)]


def _csv(path: Path, seed: int, n: int = 40, label: str = "diagnosis") -> str:
    x = np.random.default_rng(seed).normal(size=(n, len(FEATURES))).round(3)
    rows = "".join(",".join(map(str, [*r, int(r[0] + r[1] > 0)])) + "\n" for r in x)
    path.write_text(",".join((*FEATURES, label)) + "\n" + rows)
    return str(path)


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> Compared:
    folder = tmp_path_factory.mktemp("report")
    hostile_path = str(folder / f"{HOSTILE}.csv")  # does not exist: the node refuses, quoting it
    nodes = [{"client-id": client, "framework": framework, "data": data, "label": "diagnosis"}
             for client, framework, data in (
                 ("site-a", "torch", _csv(folder / "a.csv", 1)),
                 ("site-b", "sklearn", _csv(folder / "b.csv", 2)),
                 ("site-c", "torch", _csv(folder / "c.csv", 3)),
                 (HOSTILE, "sklearn", hostile_path))]
    evaluation = _csv(folder / "evaluation.csv", 4, 30, "label")
    run_ids = []
    for strategy in STRATEGIES:
        spec = parse_spec({"model": "mlp-4-8-2", "task": "binary", "clients": len(nodes),
                           "evaluate": evaluation,
                           "rounds": ROUNDS, "min-train-nodes": 2, "strategy": strategy,
                           "train": {"local-epochs": 1}})
        settings = Settings(spec=spec, registry=str(folder / "registry"), min_available_nodes=len(nodes))
        grid = LocalGrid(client_app, len(nodes), node_configs=nodes)
        run_ids.append(Federation(grid, settings, Reporter()).run())  # type: ignore[arg-type]
    return Compared(folder / "registry", run_ids, hostile_path)


@pytest.fixture(scope="module")
def report_html(compared: Compared, tmp_path_factory: pytest.TempPathFactory) -> Path:
    with Registry(compared.registry, create=False) as reg:
        return write_report(reg, compared.run_ids, tmp_path_factory.mktemp("out") / "report.html")


# -- what is drawn ---------------------------------------------------------------------------------
def test_every_plot_is_drawn_with_one_element_per_data_point(report_html: Path) -> None:
    drawn = plots(report_html.read_text())

    assert {name for name, _, _ in drawn} == set(PLOTS)
    for name, points, body in drawn:
        assert points > 0, name
        assert body.count("data-point=") == points, name


def test_the_global_metric_has_a_point_per_round_and_run(report_html: Path, compared: Compared) -> None:
    (metric,) = [(points, body) for name, points, body in plots(report_html.read_text())
                 if name == "global-metric"]
    points, body = metric

    assert points == len(STRATEGIES) * (ROUNDS + 1)  # the initial version and every aggregate
    for strategy in STRATEGIES:
        assert f"{strategy} · round {ROUNDS}: " in body


def test_the_lineage_draws_every_version_and_marks_each_rejection(report_html: Path,
                                                                  compared: Compared) -> None:
    lineages = [body for name, _, body in plots(report_html.read_text()) if name == "lineage"]

    assert len(lineages) == len(compared.run_ids)
    for run_id, body in zip(compared.run_ids, lineages, strict=True):
        records = compared.records(run_id)
        for kind in VersionKind:
            assert body.count(f'data-kind="{kind.value}"') == sum(r.kind is kind for r in records), kind
        assert sum(r.kind is VersionKind.REJECTED for r in records) == ROUNDS + 1  # handshake + rounds
        crosses = re.findall(r'<path d="M[^"]*" stroke="(#[0-9a-f]+)"[^>]*data-kind="rejected"', body)
        assert crosses == [REJECTED] * (ROUNDS + 1)  # red crosses
        fills = re.findall(r'<circle [^>]*fill="(#[0-9a-f]+)"[^>]*data-kind="client_update"', body)
        by_framework = {(r.framework, fill) for r, fill in zip(
            [r for r in records if r.kind is VersionKind.CLIENT_UPDATE], fills, strict=True)}
        frameworks, colours = {f for f, _ in by_framework}, {c for _, c in by_framework}
        assert len(by_framework) == len(frameworks) == len(colours) == 2  # a colour of its own for each


def test_client_plots_of_the_runs_share_their_axes(report_html: Path) -> None:
    drawn = plots(report_html.read_text())
    for plot in ("client-loss", "client-spread", "participation"):
        ticks = {tuple(re.findall(r'text-anchor="end" fill="#888">([^<]+)<', body))
                 for name, _, body in drawn if name == plot}

        assert len(ticks) == 1, plot  # the same y ticks in every run's plot


def test_participation_counts_the_accepted_and_rejected_replies(compared: Compared) -> None:
    with Registry(compared.registry, create=False) as reg:
        facts = collect_run(reg, compared.run_ids[0])

    assert [(len(r.updates), len(r.rejected)) for r in facts.rounds] == [(3, 1)] * ROUNDS
    assert {u.framework for r in facts.rounds for u in r.updates} == {"torch", "sklearn"}
    assert [r.client for r in facts.refusals] == [HOSTILE]


def test_the_site_evaluation_of_the_final_version_is_shown(report_html: Path) -> None:
    (sites,) = [(points, body) for name, points, body in plots(report_html.read_text())
                if name == "site-metric"]

    assert sites[0] == len(STRATEGIES) * 3  # three good sites per run; the hostile one failed
    assert "site-a: accuracy" in sites[1]


# -- untrusted text --------------------------------------------------------------------------------
def test_a_hostile_client_id_and_reason_are_escaped(report_html: Path, compared: Compared) -> None:
    text = report_html.read_text()

    assert HOSTILE not in text
    assert "<script" not in text.lower()
    assert html.escape(HOSTILE) in text
    assert html.escape(f"data file {compared.hostile_path} does not exist") in text
    assert text.count("<svg ") == text.count("</svg>") == len(plots(text))


def test_control_characters_become_visible_escapes() -> None:
    from flonnx.server._svg import esc

    assert esc("a\x1b[31mb\u202e\ud800<") == "a\\x1b[31mb\\u202e\\ud800&lt;"


# -- the lineage graph alone -----------------------------------------------------------------------
def test_the_lineage_svg_is_a_standalone_document_with_every_version(compared: Compared) -> None:
    with Registry(compared.registry, create=False) as reg:
        svg = lineage_svg(reg, compared.run_ids[0])
    records = compared.records(compared.run_ids[0])

    root = ET.fromstring(svg.encode("utf-8"))  # parses as XML: escaped, no control characters
    drawn = [e for e in root.iter() if "data-point" in e.attrib]
    assert root.tag == f"{SVG}svg"
    assert len(drawn) == int(root.attrib["data-points"]) == len(records)
    titles = [e.findtext(f"{SVG}title") or "" for e in drawn if e.attrib["data-kind"] == "rejected"]
    assert len(titles) == ROUNDS + 1 and all(HOSTILE in t and "does not exist" in t for t in titles)
    assert "href" not in svg


# -- time per round --------------------------------------------------------------------------------
def _synthetic(registry: Registry, rounds: int, clients: int, rejected: int = 0, *,
               evaluated: bool = True) -> str:
    """A run of made-up records (no training): ``clients`` updates and ``rejected`` refusals a round."""
    blob = registry.blobs.put(b"stand-in")  # commit only checks that referenced blobs exist
    run_id = registry.create_run("synthetic", 0, {"spec": {"task": "classification", "strategy": "fedavg"}})
    initial = VersionRecord(kind=VersionKind.INITIAL, round=0, definition_id=blob, weights_id=blob,
                            metrics={"accuracy": 0.1, "loss": 2.3} if evaluated else {},
                            environment={"python": "3.11"})
    registry.commit(run_id, [initial], head_round=0, head=initial.version_id)
    head = initial.version_id
    frameworks = ("torch", "jax", "sklearn")

    def evaluation(rnd: int) -> dict[str, float]:
        return {"accuracy": 1 - 1 / (rnd + 1), "loss": 1 / rnd} if evaluated else {}

    for rnd in range(1, rounds + 1):
        updates = [VersionRecord(kind=VersionKind.CLIENT_UPDATE, round=rnd, definition_id=blob,
                                 weights_id=blob,
                                 parents=(head,), client=f"client-{k:03d}", framework=frameworks[k % 3],
                                 num_examples=100, metrics={"train-loss": 1.0 / (rnd + k)},
                                 seed=rnd * 1000 + k)
                   for k in range(clients)]
        refusals = [VersionRecord(kind=VersionKind.REJECTED, round=rnd, definition_id=blob, weights_id="",
                                  parents=(head,), client=f"client-{clients + k:03d}", framework="torch",
                                  reason="no reply before the round timeout") for k in range(rejected)]
        aggregate = VersionRecord(kind=VersionKind.AGGREGATE, round=rnd, definition_id=blob, weights_id=blob,
                                  parents=tuple(u.version_id for u in updates), strategy="fedavg",
                                  metrics={"train-loss": 1 / rnd, **evaluation(rnd)})
        registry.commit(run_id, [*updates, *refusals, aggregate], head_round=rnd, head=aggregate.version_id)
        head = aggregate.version_id
    return run_id


def test_time_per_round_is_the_time_between_round_commits(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    moments = iter(start + dt.timedelta(seconds=s) for s in (0, 0, 7, 19))  # created, round 0, 1, 2
    monkeypatch.setattr(registry_module, "_now", lambda: next(moments).isoformat(timespec="seconds"))
    with Registry(tmp_path / "registry") as reg:
        run_id = _synthetic(reg, rounds=2, clients=2)
        facts = collect_run(reg, run_id)

    assert [r.seconds for r in facts.rounds] == [7.0, 12.0]
    (timing,) = [body for name, _, body in plots(render_report([facts])) if name == "round-time"]
    assert "round 1: 7<" in timing and "round 2: 12<" in timing


def test_a_run_without_evaluation_says_so_instead_of_drawing(tmp_path: Path) -> None:
    with Registry(tmp_path / "registry") as reg:
        run_id = _synthetic(reg, rounds=2, clients=2, evaluated=False)
        text = render_report([collect_run(reg, run_id)])

    assert 'data-plot-missing="global-metric"' in text
    assert 'data-plot-missing="site-metric"' in text
    assert 'data-plot="global-metric"' not in text
    assert 'data-plot="global-loss"' in text  # the clients' train-loss is still known


# -- scale -----------------------------------------------------------------------------------------
def test_a_run_of_100_rounds_and_20_clients_renders_small_and_fast(tmp_path: Path) -> None:
    with Registry(tmp_path / "registry") as reg:
        run_id = _synthetic(reg, rounds=100, clients=20, rejected=2)
        started = time.perf_counter()
        path = write_report(reg, [run_id], tmp_path / "report.html")
        svg = lineage_svg(reg, run_id)
        seconds = time.perf_counter() - started

    lineage = [p for p in plots(path.read_text()) if p[0] == "lineage"][0]
    assert lineage[1] == 1 + 100 * 23
    assert len(svg.encode()) < 1_500_000 and path.stat().st_size < 2_000_000
    assert seconds < 20  # measured: well under a second (docs/report.md)
    width = float(re.search(r'width="([\d.]+)"', svg).group(1))  # type: ignore[union-attr]
    assert width < 3000


# -- the command line ------------------------------------------------------------------------------
def test_flonnx_report_and_lineage_graph_write_their_files(compared: Compared, tmp_path: Path) -> None:
    from flonnx.cli import app

    runner = CliRunner()
    prefixes = [r[:-2] if i else r for i, r in enumerate(compared.run_ids)]
    report = runner.invoke(app, ["report", *prefixes, "-o", str(tmp_path / "r.html"),
                                 "--registry", str(compared.registry)])
    graph = runner.invoke(app, ["lineage", "graph", compared.run_ids[1][:-1], "-o", str(tmp_path / "g.svg"),
                                "--registry", str(compared.registry)])
    missing = runner.invoke(app, ["report", "no-such-run", "--registry", str(compared.registry)])

    assert report.exit_code == 0, report.output
    assert "3 run(s)" in report.output
    assert len([p for p in plots((tmp_path / "r.html").read_text()) if p[0] == "lineage"]) == 3
    assert graph.exit_code == 0, graph.output
    assert ET.parse(tmp_path / "g.svg").getroot().attrib["data-plot"] == "lineage"
    assert missing.exit_code == 1 and "no run matches 'no-such-run'" in missing.output


def test_simulate_with_report_writes_it_after_the_runs(compared: Compared, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from flonnx.cli import app
    from flonnx.simulations import runner

    def simulated(spec: Any, **kwargs: Any) -> list[str]:  # stands in for Ray: the runs exist already
        return compared.run_ids

    monkeypatch.setattr(runner, "simulate", simulated)
    result = CliRunner().invoke(app, ["simulate", "digits-mixed", "--rounds", "1", "--registry",
                                      str(compared.registry), "--report", str(tmp_path / "sim.html")])

    assert result.exit_code == 0, result.output
    assert len([p for p in plots((tmp_path / "sim.html").read_text()) if p[0] == "lineage"]) == 3


# -- in a real browser -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def page() -> Iterator[Any]:
    yield from chromium_page()


@pytest.mark.browser
def test_the_report_renders_in_chromium_with_every_plot_drawn_and_nothing_fetched(
        page: Any, report_html: Path, tmp_path: Path) -> None:
    refused, errors = open_offline(page, report_html)
    drawn = page.evaluate(DRAWN)
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)

    assert refused == []
    assert errors == []
    assert {d["plot"] for d in drawn} == set(PLOTS)
    for d in drawn:
        assert d["points"] > 0 and d["drawn"] == d["points"], d
        assert d["width"] > 100 and d["height"] > 50, d
    assert (tmp_path / "report.png").stat().st_size > 50_000


@pytest.mark.browser
def test_hostile_text_renders_as_text_in_chromium(page: Any, report_html: Path, compared: Compared) -> None:
    open_offline(page, report_html)

    reasons = page.eval_on_selector_all("td.reason", "cells => cells.map(c => c.textContent)")
    assert page.evaluate("document.querySelectorAll('script').length") == 0
    assert page.evaluate("window.pwned") is None
    assert f"client refused to train: data file {compared.hostile_path} does not exist" in reasons
    assert f"refused at the handshake: data file {compared.hostile_path} does not exist" in reasons
    assert HOSTILE in page.eval_on_selector_all("tr.rejection td", "cells => cells.map(c => c.textContent)")
    assert page.evaluate("document.querySelectorAll('svg[data-plot] b').length") == 0
    assert len(page.evaluate(DRAWN)) == len(plots(report_html.read_text()))


@pytest.mark.browser
def test_the_lineage_svg_opens_alone_in_chromium(page: Any, compared: Compared, tmp_path: Path) -> None:
    with Registry(compared.registry, create=False) as reg:
        path = tmp_path / "lineage.svg"
        path.write_text(lineage_svg(reg, compared.run_ids[0]), encoding="utf-8")

    refused, errors = open_offline(page, path)
    drawn = page.evaluate(DRAWN)

    assert refused == [] and errors == []
    versions = len(compared.records(compared.run_ids[0]))
    assert [(d["plot"], d["drawn"]) for d in drawn] == [("lineage", versions)]
