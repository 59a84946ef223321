"""A real consortium on 127.0.0.1: the commands `flonnx deploy init` wrote, run as written.

Every process is started in its own session (the SuperNode's SuperExec and ClientApp children join
its process group) and stopped by that group's id: SIGTERM, then SIGKILL after a grace period. As a
safety net, processes whose command line names this consortium's folder or ports are stopped too.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

BIN = Path(sys.executable).parent


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (held open together so none repeats)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


class Consortium:
    """The processes of one consortium folder, with its own ``FLWR_HOME``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.doc: dict[str, Any] = json.loads((folder / "consortium.json").read_text())
        self.home = folder / "flwr-home"
        self.home.mkdir(exist_ok=True)
        connection = (folder / "flwr-config.toml").read_text()
        default = f'[superlink]\ndefault = "{self.doc["connection"]}"\n\n'
        (self.home / "config.toml").write_text(default + connection)
        self.env = {**os.environ, "FLWR_HOME": str(self.home),
                    "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
                    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1", "FLWR_TELEMETRY_ENABLED": "0",
                    "FLWR_DISABLE_UPDATE_CHECK": "1"}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []

    @property
    def commands(self) -> Mapping[str, Any]:
        return self.doc["commands"]  # type: ignore[no-any-return]

    def log(self, name: str) -> str:
        path = self.folder / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self, name: str, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        """Start ``argv`` (a command of consortium.json) in its own session, logging to logs/NAME.log."""
        (self.folder / "logs").mkdir(exist_ok=True)
        log = open(self.folder / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
        self._logs.append(log)
        proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                cwd=self.folder, start_new_session=True)
        self.procs[name] = proc
        return proc

    def start_superlink(self) -> None:
        self.start("superlink", self.commands["superlink"])
        _wait_port(int(self.doc["port"]), 60)

    def flwr(self, argv: Sequence[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """A ``flwr`` CLI command against this consortium's SuperLink."""
        return subprocess.run(list(argv), env=self.env, cwd=self.folder, capture_output=True, text=True,
                              timeout=timeout)

    def node_ids(self) -> dict[int, str]:
        """``flwr supernode list --format json``: node id -> status."""
        result = self.flwr([*self.commands["nodes"], "--format", "json"])
        assert result.returncode == 0, result.stdout + result.stderr
        doc = json.loads(result.stdout[result.stdout.index("{"):])
        return {int(n["node-id"] if "node-id" in n else n["node_id"]): str(n.get("status", ""))
                for n in doc.get("nodes", [])}

    def wait_online(self, count: int, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(status == "online" for status in self.node_ids().values()) >= count:
                return
            time.sleep(1)
        raise TimeoutError(f"fewer than {count} SuperNodes online after {timeout:.0f} s: {self.node_ids()}")

    def stop(self, name: str, grace: float = 10) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # children (SuperExec, ClientApp processes) live in the same process group
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def stop_all(self) -> None:
        for name in [n for n in self.procs if n != "superlink"] + ["superlink"]:
            self.stop(name)
        markers = [str(self.folder), *(f":{p}" for p in self.ports())]
        for pid in _pids_mentioning(markers):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for log in self._logs:
            log.close()

    def ports(self) -> list[int]:
        return [int(self.doc["port"]), *(int(n["port"]) for n in self.doc["nodes"])]


def _pids_mentioning(markers: Sequence[str]) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(marker in cmdline for marker in markers):
            pids.append(int(entry.name))
    return pids
