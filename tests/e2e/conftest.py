"""Simulations shared by several end-to-end test modules (Ray costs ~20 s per start)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def flonnx(*args: str, cwd: Path = ROOT, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``python -m flonnx.cli ARGS`` in a subprocess (a fresh Ray per simulation)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "250"}
    result = subprocess.run([sys.executable, "-m", "flonnx.cli", *args], capture_output=True, text=True,
                            env=env, cwd=cwd, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"flonnx {' '.join(args)} failed:\n{result.stdout[-4000:]}\n"
                             f"{result.stderr[-4000:]}")
    return result


def simulated(registry: Path, *args: str, cwd: Path = ROOT) -> dict[str, Any]:
    """Run ``flonnx simulate ARGS`` into ``registry``; its output, versions and run record."""
    from exchange.registry import Registry

    sim = flonnx("simulate", *args, "--registry", str(registry), cwd=cwd)
    versions = json.loads(flonnx("lineage", "ls", "--json", "--registry", str(registry)).stdout)
    with Registry(registry, create=False) as reg:
        run = reg.runs()[-1]
    return {"registry": registry, "stdout": sim.stdout, "versions": versions, "run": run}


@pytest.fixture(scope="session")
def hospitals_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``flonnx simulate hospitals`` (seed 0), shared by the preset and ``flwr run`` tests."""
    return simulated(tmp_path_factory.mktemp("hospitals"), "hospitals")
