"""Interrupts and concurrent writers, without Ray: a stop commits no part of a round, and readers tell
a live run from one whose process died (tests/e2e/test_interrupt.py sends real signals to real runs).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from flwr.app import Message
from flwr.serverapp import Grid

from flonnx.exchange import wire
from flonnx.exchange.registry import Registry
from flonnx.server.stopping import Interrupted, StopRequest, send_and_receive, stop_on_signals
from tests.server.conftest import run_local
from tests.server.local_grid import LocalGrid

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 2
#: a quick federation: scikit-learn only, one local epoch
QUICK = {"num-server-rounds": ROUNDS, "frameworks": "sklearn:6", "local-epochs": 1}


class _SilentGrid(Grid):
    """A Flower grid whose nodes never answer."""

    def set_run(self, run: Any) -> None: ...
    @property
    def run(self) -> Any: ...
    def create_message(self, *args: Any, **kwargs: Any) -> Any: ...
    def get_node_ids(self) -> Iterable[int]:
        return [1]

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return [f"m{i}" for i, _ in enumerate(messages)]

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return []

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Any:
        raise AssertionError("the federation polls; it never blocks in send_and_receive")


def test_a_stop_request_ends_the_wait_for_replies_at_once() -> None:
    stop = StopRequest()
    threading.Timer(0.3, stop.request, (signal.SIGTERM,)).start()
    started = time.monotonic()

    with pytest.raises(Interrupted) as stopped:
        send_and_receive(_SilentGrid(), [object()], timeout=600, stop=stop)  # type: ignore[list-item]

    assert time.monotonic() - started < 5
    assert (stopped.value.signum, stopped.value.exit_code) == (signal.SIGTERM, 143)


def test_the_first_signal_asks_to_stop_and_a_second_raises_keyboard_interrupt() -> None:
    stop = StopRequest()
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals(stop):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)  # the handler runs in this (the main) thread between two bytecodes
        asked = (stop.requested, stop.signum)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)

    assert asked == (True, signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is before


class _SignalDuringRound(LocalGrid):
    """Asks ``stop`` to stop while the clients train round ``round``, after they replied."""

    def __init__(self, stop: StopRequest, round: int, *args: Any) -> None:  # noqa: A002
        super().__init__(*args)
        self.stop, self.round = stop, round

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        messages = list(messages)
        replies = super().send_and_receive(messages, timeout=timeout)
        if any(m.content[wire.LINEAGE][wire.LINEAGE_ROUND] == self.round
               for m in messages if wire.LINEAGE in m.content):
            self.stop.request(signal.SIGINT)
        return replies


def _interrupted_run(registry: Path, round: int) -> Interrupted:  # noqa: A002
    from flonnx.client.app import app as client_app
    from flonnx.server.federation import Federation
    from flonnx.server.progress import Reporter
    from flonnx.server.settings import Settings

    stop = StopRequest()
    settings = Settings.from_run_config({"registry": str(registry), "min-available-nodes": 6, **QUICK})
    grid = _SignalDuringRound(stop, round, client_app, 6, QUICK)
    with pytest.raises(Interrupted) as stopped:
        Federation(grid, settings, Reporter(), stop).run()
    return stopped.value


def test_a_round_the_signal_came_during_is_not_committed_and_resume_ends_where_an_uninterrupted_run_does(
    tmp_path: Path,
) -> None:
    stopped = _interrupted_run(tmp_path / "stopped", round=2)
    with Registry(tmp_path / "stopped") as reg:
        (info,) = reg.runs()
        after_stop = (info.status, sorted(reg.heads(info.run_id)),
                      sorted({v.record.round for v in reg.versions(info.run_id)}))

    run_local(tmp_path / "stopped", resume=info.run_id, **QUICK)
    never_stopped = run_local(tmp_path / "whole", **QUICK)

    assert (stopped.run_id, stopped.last_round, stopped.rounds, stopped.exit_code) == (
        info.run_id, 1, ROUNDS, 130)
    assert after_stop == ("interrupted", [0, 1], [0, 1])  # nothing of round 2, not even its updates
    with Registry(tmp_path / "stopped") as reg, Registry(tmp_path / "whole") as ref:
        assert reg.run(info.run_id).status == "completed"
        assert reg.heads(info.run_id) == ref.heads(never_stopped)


# -- a live writer and a dead one ---------------------------------------------------------------

def _holder(registry: Path, run_id: str) -> subprocess.Popen[str]:
    """A process that holds the run's lock until killed (tests/exchange/registry_worker.py)."""
    holder = subprocess.Popen([sys.executable, "-m", "tests.exchange.registry_worker", "lock",
                               str(registry), "-", run_id], cwd=ROOT, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


@pytest.fixture(scope="module")
def one_round(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A registry with a one-round run."""
    registry = tmp_path_factory.mktemp("one-round")
    return registry, run_local(registry, **{**QUICK, "num-server-rounds": 1})


def test_runs_shows_running_only_while_a_live_process_writes_the_run(
    tmp_path: Path, one_round: tuple[Path, str], cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    registry, run_id = one_round
    with Registry(registry) as reg:  # as a coordinator left it when it died mid-run
        reg.set_status(run_id, "running")
        lock_files = sorted((registry / "locks").iterdir())
    holder = _holder(registry, run_id)
    try:
        live = json.loads(cli("runs", "--json", "--registry", str(registry)).stdout)
        refused = cli("resume", run_id, "--registry", str(registry), check=False)
    finally:
        holder.kill()
        holder.wait()
    dead = json.loads(cli("runs", "--json", "--registry", str(registry)).stdout)
    table = cli("runs", "--registry", str(registry)).stdout

    assert [(r["run_id"], r["status"], r["live"]) for r in live] == [(run_id, "running", True)]
    assert [(r["run_id"], r["status"], r["live"]) for r in dead] == [(run_id, "stopped", False)]
    assert "stopped (process gone)" in table
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines() == [
        f"error: run {run_id} is being written by another process (lock file "
        f"{registry / 'locks' / (run_id + '.lock')}); wait for it to finish, or stop it, then try again"]
    assert sorted((registry / "locks").iterdir()) == lock_files  # readers create no lock file


def test_a_reader_probing_a_run_lock_creates_nothing_and_finds_a_never_locked_run_free(
    one_round: tuple[Path, str],
) -> None:
    registry, _ = one_round
    with Registry(registry, create=False) as reg:
        free = reg.is_being_written("never-locked")

    assert free is False
    assert not (registry / "locks" / "never-locked.lock").exists()
