"""Simulations shared by several end-to-end test modules (Ray costs ~20 s per start)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.server.conftest import flonnx_cli

ROOT = Path(__file__).resolve().parents[2]


#: ``python -m flonnx.cli ARGS`` in a subprocess (a fresh Ray per simulation), Flower's home here.
flonnx = flonnx_cli(ROOT / ".flwr-home")


def simulated(registry: Path, *args: str, cwd: Path = ROOT) -> dict[str, Any]:
    """Run ``flonnx simulate ARGS`` into ``registry``; its output, versions and run record."""
    from flonnx.exchange.registry import Registry

    sim = flonnx("simulate", *args, "--registry", str(registry), cwd=cwd)
    versions = json.loads(flonnx("lineage", "ls", "--json", "--registry", str(registry)).stdout)
    with Registry(registry, create=False) as reg:
        run = reg.runs()[-1]
    return {"registry": registry, "stdout": sim.stdout, "versions": versions, "run": run}


@pytest.fixture(scope="session")
def hospitals_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``flonnx simulate hospitals`` (seed 0), shared by the preset and ``flwr run`` tests."""
    return simulated(tmp_path_factory.mktemp("hospitals"), "hospitals")


#: The strategies ``strategies_run`` compares, in the order of its runs, and its rounds.
COMPARED_STRATEGIES = ("fedavg", "fedprox", "fedmedian")
COMPARED_ROUNDS = 2
COMPARED_PROXIMAL_MU = 0.1


@pytest.fixture(scope="session")
def strategies_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``flonnx simulate digits-mixed`` for three strategies (one Ray start), ``--report`` at the end.

    Two rounds, not the preset's five: the report tests need every plot drawn, not accuracy. FedProx
    gets ``proximal-mu=0.1`` (Flower's default 0 would repeat FedAvg's numbers exactly), which the two
    scikit-learn nodes refuse each round: a real run with rejected replies. Adds ``run_ids`` (one run
    per strategy, in :data:`COMPARED_STRATEGIES` order) and ``report``.
    """
    from flonnx.exchange.registry import Registry

    folder = tmp_path_factory.mktemp("strategies")
    report = folder / "compare.html"
    strategies = [arg for name in COMPARED_STRATEGIES for arg in ("--strategy", name)]
    run = simulated(folder / "runs", "digits-mixed", *strategies, "--strategy-config",
                    f"fedprox.proximal-mu={COMPARED_PROXIMAL_MU}", "--rounds", str(COMPARED_ROUNDS),
                    "--report", str(report))
    with Registry(run["registry"], create=False) as reg:
        run_ids = [info.run_id for info in reg.runs()]
    return {**run, "run_ids": run_ids, "report": report}
