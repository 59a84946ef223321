"""`flwr run .` runs the same app: a spec named in run config gives the same versions as `flonnx simulate`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flonnx.exchange.registry import Registry

ROOT = Path(__file__).resolve().parents[2]
FLWR = Path(sys.executable).parent / "flwr"

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pids_mentioning(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmdline and int(entry.name) != os.getpid():
                pids.append(int(entry.name))
    return pids


@pytest.mark.skipif(not FLWR.exists(), reason="flwr CLI is not installed next to this Python")
def test_flwr_run_of_a_spec_gives_the_versions_flonnx_simulate_gave(
    tmp_path: Path, hospitals_run: dict[str, Any],
) -> None:
    home, work = tmp_path / "flwr-home", tmp_path / "work"
    work.mkdir()
    ports = {"FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(_free_port()),
             "FLWR_LOCAL_CONTROL_API_PORT": str(_free_port())}
    env = {**os.environ, **ports, "FLWR_HOME": str(home), "PYTHONPATH": str(ROOT),
           "PATH": f"{FLWR.parent}{os.pathsep}{os.environ['PATH']}"}
    registry = work / "runs"
    try:
        result = subprocess.run(
            [str(FLWR), "run", str(ROOT), "--stream", "--run-config",
             # declared keys (pyproject.toml) other than spec, at the spec's own values
             f'spec="hospitals" seed=0 min-train-nodes=2 registry="{registry}"',
             "--federation-config", "num-supernodes=5"],
            cwd=work, env=env, capture_output=True, text=True, timeout=420,
        )
    finally:
        # flwr starts a detached local SuperLink (and SuperExec); stop what this test started.
        for pid in _pids_mentioning(str(home)) + _pids_mentioning(ports["FLWR_LOCAL_CONTROL_API_PORT"]):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "round 10/10 · replies 5/5 (jax 2, sklearn 1, torch 2)" in output
    with Registry(registry, create=False) as reg:
        (run,) = reg.runs()
        assert run.status == "completed" and run.last_round == 10
        assert reg.verify(run.run_id)[1] == []
        ids = [(v.record.round, v.record.kind.value, v.version_id) for v in reg.versions(run.run_id)]
    expected = [(v["round"], v["kind"], v["version_id"]) for v in hospitals_run["versions"]]
    assert ids == expected
