"""The coordinator killed with SIGKILL, at named points in its write paths and at seeded random times.

Each trial runs the federation of ``tests/reliability/_coordinator.py`` (3 scikit-learn clients, 4
rounds, FedAvgM) in a process of its own, forked from a server that imported everything once, and
kills it: at a named crash point (:mod:`flonnx.exchange.crashpoints`), or from here after a random
delay drawn from a seeded RNG. Then ``flonnx lineage verify --all`` must pass on what the dead process
left, a resume (in a new process) must complete the run, and the run's version after every round must
be the one an uninterrupted run records. A random delay is a fraction of the uninterrupted run's
time; a process that ends before its kill is run again on a fresh registry with half the delay, so
every trial is a kill. docs/reliability.md lists the trials and how to run more:

``FLONNX_CRASH_RANDOM_TRIALS`` (default 6) random-time kills, drawn with ``FLONNX_CRASH_SEED``
(default 2026); the named points always run.
"""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flonnx.cli import app
from flonnx.exchange.crashpoints import CRASH_POINTS, ENV

pytestmark = pytest.mark.reliability

ROOT = Path(__file__).resolve().parents[2]
RANDOM_TRIALS = int(os.environ.get("FLONNX_CRASH_RANDOM_TRIALS", "6"))
SEED = int(os.environ.get("FLONNX_CRASH_SEED", "2026"))

#: Named points and passes (``name@hit``), in the order an uninterrupted run reaches them: blobs 1-4
#: and commit 1 are the initial version's (definition, weights, the strategy state's two blobs),
#: each round then writes 3 updates, the aggregate and the state's two blobs (6 blobs) and commits.
NAMED = (
    "database.before_link@1",   # a new registry's tables made, the database not yet in place
    "blob.before_write@1",      # the run is created, nothing of it stored: no committed version
    "blob.after_tmp_write@2",   # the initial weights fsynced under a temporary name, not renamed
    "blob.after_write@2",       # the initial weights in place, not referenced by any row
    "state.before_write@1",
    "state.after_write@1",      # an orphan strategy state: written, never committed
    "commit.before@1",
    "commit.in_transaction@1",  # every row of the initial version inserted, not committed
    "commit.after@1",           # round 0 committed, round 1 not started
    "blob.before_write@5",      # round 1's first client update
    "blob.after_tmp_write@7",
    "blob.after_write@8",       # round 1's aggregate stored, not committed
    "state.before_write@3",
    "state.after_write@3",
    "commit.in_transaction@3",  # all of round 2 inserted, not committed
    "commit.after@3",           # round 2 committed, round 3 not started
    "blob.after_tmp_write@21",  # round 4's strategy state arrays, not renamed
    "commit.in_transaction@5",  # the last round inserted, not committed
    "commit.after@5",           # every round committed, the run not yet marked completed
    "status.before_write@1",    # the same, one step later
)


@dataclass
class Outcome:
    """What one coordinator process did."""

    returncode: int
    facts: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0  # from its fork to its end
    log: str = ""


class Coordinators:
    """The trial server (``_coordinator.py --serve``): one forked coordinator process per call."""

    def __init__(self, where: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k != ENV}
        self.log = open(where / "server.log", "w")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability._coordinator", "--serve"], cwd=ROOT,
            env={**env, "PYTHONPATH": str(ROOT)}, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.log, text=True)
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert self.lines.get(timeout=300)["step"] == "ready", (where / "server.log").read_text()[-3000:]

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(json.loads(line))

    def run(self, registry: Path, *, resume: bool = False, crash_at: str | None = None,
            kill_after: float | None = None) -> Outcome:
        """One coordinator on ``registry``: killed at ``crash_at``, or after ``kill_after`` seconds."""
        assert self.process.stdin is not None
        name = f"{registry.name}.{'resume' if resume else 'run'}"
        result, log = registry.parent / f"{name}.json", registry.parent / f"{name}.log"
        self.process.stdin.write(json.dumps({"registry": str(registry), "resume": resume,
                                             "crash_at": crash_at, "result": str(result),
                                             "log": str(log)}) + "\n")
        self.process.stdin.flush()
        forked = self.lines.get(timeout=60)
        started = time.monotonic()
        try:
            exited = self.lines.get(timeout=600 if kill_after is None else kill_after)
        except queue.Empty:  # still running at its time: kill it
            os.kill(forked["pid"], signal.SIGKILL)
            exited = self.lines.get(timeout=60)
        seconds = time.monotonic() - started
        facts = json.loads(result.read_text()) if result.exists() else {}
        return Outcome(exited["returncode"], facts, seconds, log.read_text() if log.exists() else "")

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=60)
        self.log.close()


@pytest.fixture(scope="module")
def coordinators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coordinators]:
    server = Coordinators(tmp_path_factory.mktemp("coordinators"))
    yield server
    server.close()


def _verify_cli(registry: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["lineage", "verify", "--all", "--registry", str(registry)])
    return result.exit_code, result.output


@dataclass(frozen=True)
class Reference:
    heads: dict[str, str]
    seconds: float


@pytest.fixture(scope="module")
def reference(coordinators: Coordinators, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """An uninterrupted run: its version after every round, and how long it took."""
    outcome = coordinators.run(tmp_path_factory.mktemp("reference") / "registry")
    assert outcome.returncode == 0, outcome.log[-3000:]
    assert outcome.facts["status"] == "completed"
    return Reference(outcome.facts["heads"], outcome.seconds)


def _after_the_kill(coordinators: Coordinators, registry: Path, reference: Reference) -> None:
    """Verify what the dead process left, resume, compare with the uninterrupted run."""
    if (registry / "registry.db").exists():
        code, output = _verify_cli(registry)
        assert code == 0, output

    resumed = coordinators.run(registry, resume=True)

    assert resumed.returncode == 0, resumed.log[-3000:]
    assert resumed.facts.get("problems", []) == []
    assert resumed.facts["status"] == "completed"
    assert resumed.facts["heads"] == reference.heads  # the same version after every round
    code, output = _verify_cli(registry)
    assert code == 0, output


def test_every_named_crash_point_is_placed_in_a_trial() -> None:
    assert {n.partition("@")[0] for n in NAMED} == set(CRASH_POINTS)


@pytest.mark.parametrize("crash_at", NAMED)
def test_a_coordinator_killed_at_a_crash_point_resumes_to_the_uninterrupted_run(
    crash_at: str, coordinators: Coordinators, reference: Reference, tmp_path: Path,
) -> None:
    killed = coordinators.run(tmp_path / "registry", crash_at=crash_at)

    assert killed.returncode == -signal.SIGKILL, killed.log[-3000:]  # it died there, by SIGKILL
    _after_the_kill(coordinators, tmp_path / "registry", reference)


@pytest.mark.parametrize("trial", range(RANDOM_TRIALS))
def test_a_coordinator_killed_at_a_random_time_resumes_to_the_uninterrupted_run(
    trial: int, coordinators: Coordinators, reference: Reference, tmp_path: Path,
) -> None:
    delay = random.Random(f"{SEED}-{trial}").random() * reference.seconds
    for attempt in range(8):  # a process that ended before its kill is run again, killed sooner
        registry = tmp_path / f"registry-{attempt}"
        killed = coordinators.run(registry, kill_after=delay)
        if killed.returncode == -signal.SIGKILL:
            break
        assert killed.returncode == 0, killed.log[-3000:]
        delay /= 2
    else:
        pytest.fail(f"no kill landed before the run ended (last delay {delay:.3f} s)")

    _after_the_kill(coordinators, registry, reference)
