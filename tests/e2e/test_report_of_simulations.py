"""Reports of real Flower Simulation Engine runs, rendered in headless Chromium with the network refused.

The acceptance of issue #9: for ``digits-mixed``, ``hospitals`` and a comparison of three strategies,
``flonnx report`` writes a file that renders with every plot drawn. The simulations are the
session's (``tests/e2e/conftest.py``): ``hospitals_run`` (shared with the preset tests) and
``strategies_run`` (digits-mixed under fedavg, fedprox with proximal-mu 0.1, which the scikit-learn
nodes refuse, and fedmedian, in one Ray start, whose report ``flonnx simulate --report`` wrote); its
fedavg run is the digits-mixed report's run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flonnx.exchange.registry import Registry
from flonnx.server.report import PLOTS
from tests.browser import DRAWN, chromium_page, open_offline, plots
from tests.e2e.conftest import COMPARED_ROUNDS, COMPARED_STRATEGIES

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

#: In the page: the stroke of every line and the tooltip of every point of the global-metric plot.
_GLOBAL_SERIES = """() => {
  const svg = document.querySelector('svg[data-plot="global-metric"]');
  return {strokes: [...svg.querySelectorAll('polyline')].map(p => p.getAttribute('stroke')),
          titles: [...svg.querySelectorAll('[data-point] > title')].map(t => t.textContent)};
}"""


#: In the page: the rejected replies marked in each run's lineage graph.
_REJECTED = """() => [...document.querySelectorAll('svg[data-plot="lineage"]')].map(
  s => s.querySelectorAll('[data-point][data-kind="rejected"]').length)"""


@pytest.fixture(scope="module")
def page() -> Iterator[Any]:
    yield from chromium_page()


def _report(registry: Path, run_ids: list[str], out: Path) -> Path:
    """``flonnx report RUN… -o out``."""
    from flonnx.cli import app

    result = CliRunner().invoke(app, ["report", *run_ids, "-o", str(out), "--registry", str(registry)])
    assert result.exit_code == 0, result.output
    return out


def _versions(registry: Path, run_id: str) -> int:
    with Registry(registry, create=False) as reg:
        return len(reg.versions(run_id))


def _rendered(page: Any, path: Path, screenshot: Path) -> list[dict[str, Any]]:
    """Open ``path`` offline; assert every plot is drawn with its points and nothing was fetched."""
    refused, errors = open_offline(page, path)
    drawn: list[dict[str, Any]] = page.evaluate(DRAWN)
    page.screenshot(path=str(screenshot), full_page=True)

    assert refused == []
    assert errors == []
    assert {d["plot"] for d in drawn} == set(PLOTS)
    for d in drawn:
        assert d["points"] > 0 and d["drawn"] == d["points"], d
        assert d["width"] > 100 and d["height"] > 50, d
    assert len(drawn) == len(plots(path.read_text()))  # the browser drew every svg of the file
    assert screenshot.stat().st_size > 50_000
    return drawn


def _one(drawn: list[dict[str, Any]], plot: str) -> dict[str, Any]:
    (found,) = [d for d in drawn if d["plot"] == plot]
    return found


def test_the_digits_mixed_report_renders_in_chromium_with_every_plot_and_the_lineage(
        strategies_run: dict[str, Any], page: Any, tmp_path: Path) -> None:
    registry, run_id = strategies_run["registry"], strategies_run["run_ids"][0]  # fedavg, the preset's own

    drawn = _rendered(page, _report(registry, [run_id], tmp_path / "digits.html"), tmp_path / "digits.png")

    assert _one(drawn, "lineage")["drawn"] == _versions(registry, run_id) == 1 + COMPARED_ROUNDS * (6 + 1)
    assert _one(drawn, "global-metric")["drawn"] == COMPARED_ROUNDS + 1  # the initial version and aggregates
    assert _one(drawn, "site-metric")["drawn"] == 6  # the final version at each of the six sites


def test_the_hospitals_report_renders_in_chromium_with_every_plot_and_the_lineage(
        hospitals_run: dict[str, Any], page: Any, tmp_path: Path) -> None:
    registry, run_id = hospitals_run["registry"], hospitals_run["run"].run_id
    rounds = hospitals_run["run"].last_round

    drawn = _rendered(page, _report(registry, [run_id], tmp_path / "hospitals.html"),
                      tmp_path / "hospitals.png")

    assert rounds == 10
    assert _one(drawn, "lineage")["drawn"] == _versions(registry, run_id) >= 1 + rounds * (1 + 2)
    assert _one(drawn, "global-metric")["drawn"] == rounds + 1
    assert _one(drawn, "site-metric")["drawn"] == 5  # five hospitals


def test_the_comparison_simulate_wrote_draws_three_strategies_on_shared_axes(
        strategies_run: dict[str, Any], page: Any, tmp_path: Path) -> None:
    path, registry, run_ids = strategies_run["report"], strategies_run["registry"], strategies_run["run_ids"]

    drawn = _rendered(page, path, tmp_path / "compare.png")
    series = page.evaluate(_GLOBAL_SERIES)
    crosses = page.evaluate(_REJECTED)
    reasons = page.eval_on_selector_all("td.reason", "cells => cells.map(c => c.textContent)")

    assert len(run_ids) == len(COMPARED_STRATEGIES)
    lineages = [d["drawn"] for d in drawn if d["plot"] == "lineage"]
    assert lineages == [_versions(registry, r) for r in run_ids]  # one lineage graph per run
    assert len(series["strokes"]) == len(set(series["strokes"])) == len(COMPARED_STRATEGIES)
    values = []
    for strategy in COMPARED_STRATEGIES:  # one line of its own colour per strategy, on the one plot
        points = [t.split(": ", 1)[1] for t in series["titles"] if t.startswith(f"{strategy} · round ")]
        assert len(points) == COMPARED_ROUNDS + 1, strategy
        values.append(tuple(points))
    assert len(set(values)) == len(COMPARED_STRATEGIES)  # three lines apart, none hidden under another
    assert crosses == [0, 2 * COMPARED_ROUNDS, 0]  # fedprox: both sklearn nodes refuse every round
    assert any("cannot add FedProx's proximal term" in r for r in reasons)
    text = path.read_text()
    for plot in ("client-loss", "client-spread", "participation"):  # per-run plots: the same y axis
        ticks = [tuple(re.findall(r'text-anchor="end" fill="#888">([^<]+)<', body))
                 for name, _, body in plots(text) if name == plot]
        assert len(ticks) == len(COMPARED_STRATEGIES) and len(set(ticks)) == 1 and ticks[0], plot
