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
