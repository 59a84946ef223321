"""Fixtures for server tests: in-process federations on a :class:`LocalGrid`, and the flonnx CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_local(registry: Path, **config: Any) -> str:
    """Run (or resume) a federation in-process on a LocalGrid; returns the run id."""
    from flonnx.client.app import app as client_app
    from flonnx.exchange.spec import RUN_CONFIG_KEYS
    from flonnx.server.federation import Federation
    from flonnx.server.progress import Reporter
    from flonnx.server.settings import Settings
    from tests.server.local_grid import LocalGrid

    resume = config.pop("resume", "")
    settings = Settings.from_run_config({"registry": str(registry), "min-available-nodes": 6, **config})
    if resume:
        from flonnx.server.app import resumed_settings

        settings = resumed_settings(replace(settings, resume=resume), config)
    client_config = {k: v for k, v in config.items() if k in RUN_CONFIG_KEYS or k == "spec"}
    return Federation(LocalGrid(client_app, 6, client_config), settings, Reporter()).run()


def flonnx_cli(flwr_home: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """A runner of ``python -m flonnx.cli`` in a subprocess (Ray gets a fresh process each time)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FLWR_HOME": str(flwr_home), "COLUMNS": "250",
           "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1", "FLWR_TELEMETRY_ENABLED": "0",
           "FLWR_DISABLE_UPDATE_CHECK": "1"}

    def run(*args: str, check: bool = True, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "flonnx.cli", *args], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=900)
        if check and done.returncode != 0:
            raise AssertionError(f"flonnx {' '.join(args)} exited {done.returncode}:\n"
                                 f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done

    return run


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., subprocess.CompletedProcess[str]]:
    """The flonnx CLI with a project-local FLWR_HOME."""
    return flonnx_cli(tmp_path_factory.mktemp("flwr-home"))
