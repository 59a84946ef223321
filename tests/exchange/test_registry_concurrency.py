"""Two processes on one registry: a run's lock keeps a second writer off, readers see whole rounds.

Every test runs on the embedded SQLite registry and on PostgreSQL (a throwaway server,
tests/postgres.py) with a blob directory.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from flonnx.exchange.errors import RunLocked
from flonnx.exchange.lineage import VersionKind
from flonnx.exchange.registry import Registry

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture(params=["directory", pytest.param("postgresql", marks=pytest.mark.deployment)])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(registry, blobs) as the worker takes them: a directory and "-", or a URL and a directory."""
    if request.param == "directory":
        return str(tmp_path / "registry"), "-"
    return request.getfixturevalue("postgres_db"), str(tmp_path / "blobs")


def _open(location: tuple[str, str]) -> Registry:
    registry, blobs = location
    return Registry(registry, blobs=None if blobs == "-" else blobs)


def _worker(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tests.exchange.registry_worker", *args], cwd=ROOT,
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _line(process: subprocess.Popen[str], timeout: float = 60) -> str:
    """The next line the process prints, waiting at most ``timeout`` seconds."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    if not ready:
        process.kill()
        raise AssertionError(f"no output within {timeout} s")
    line = process.stdout.readline()
    if not line:
        raise AssertionError(f"the worker exited ({process.wait()}): {process.stderr.read()[-2000:]}")
    return line.strip()


def _try_lock(location: tuple[str, str], run_id: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tests.exchange.registry_worker", "try-lock",
                           *location, run_id], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=120)


def test_a_second_process_is_refused_the_run_until_the_holder_is_killed(location: tuple[str, str]) -> None:
    with _open(location) as registry:
        run_id = registry.create_run("locks", 0, {})
        holder = _worker("lock", *location, run_id)
        try:
            assert _line(holder) == "locked"

            refused = _try_lock(location, run_id)
            with pytest.raises(RunLocked, match=f"run {run_id} is being written by another process"):
                with registry.lock_run(run_id):
                    pass
            with registry.lock_run("another-run"):  # other runs stay free
                pass

            holder.send_signal(signal.SIGKILL)
            assert holder.wait(timeout=30) == -signal.SIGKILL
        finally:
            holder.kill()
            holder.wait()
        after = _try_lock(location, run_id)
        deadline = time.monotonic() + 30  # PostgreSQL ends the dead client's session on its own time
        while after.returncode == 3 and time.monotonic() < deadline:
            time.sleep(0.5)
            after = _try_lock(location, run_id)

    assert (refused.returncode, refused.stdout.split(":")[0]) == (3, "refused"), refused.stderr
    assert f"run {run_id} is being written by another process" in refused.stdout
    assert (after.returncode, after.stdout.strip()) == (0, "locked"), after.stdout + after.stderr


def test_a_run_lock_is_exclusive_in_one_process_and_free_again_after_its_block(
    location: tuple[str, str],
) -> None:
    with _open(location) as registry, _open(location) as other:
        with registry.lock_run("r1"):
            with pytest.raises(RunLocked) as refused:
                with other.lock_run("r1"):
                    pass
        with other.lock_run("r1"):
            pass

    assert refused.value.run_id == "r1"


def test_a_reader_tells_a_live_writer_from_a_dead_one_without_disturbing_it(
    location: tuple[str, str],
) -> None:
    with _open(location) as registry:
        run_id = registry.create_run("live", 0, {})
        never_locked = registry.is_being_written(run_id)
        holder = _worker("lock", *location, run_id)
        try:
            assert _line(holder) == "locked"
            live = registry.is_being_written(run_id)
            still_refused = _try_lock(location, run_id)  # the probe neither took nor freed the lock
            holder.send_signal(signal.SIGKILL)
            holder.wait(timeout=30)
        finally:
            holder.kill()
            holder.wait()
        deadline = time.monotonic() + 30  # PostgreSQL ends the dead client's session on its own time
        while (dead := registry.is_being_written(run_id)) and time.monotonic() < deadline:
            time.sleep(0.5)

    assert (never_locked, live, still_refused.returncode, dead) == (False, True, 3, False)


ROUNDS, CLIENTS = 40, 3


def _complete_rounds(versions: list, heads: dict[int, str]) -> set[int]:  # type: ignore[type-arg]
    """The rounds a read saw, asserting each one whole: all updates, the aggregate, and its head."""
    by_round: dict[int, list] = defaultdict(list)  # type: ignore[type-arg]
    for v in versions:
        by_round[v.record.round].append(v)
    for rnd, members in by_round.items():
        if rnd == 0:
            assert [m.record.kind for m in members] == [VersionKind.INITIAL]
            continue
        kinds = sorted(m.record.kind.value for m in members)
        assert kinds == ["aggregate"] + ["client_update"] * CLIENTS, f"round {rnd} half-seen: {kinds}"
    for rnd, head in heads.items():
        assert rnd in by_round, f"head of round {rnd} seen without its versions"
        assert head in {m.version_id for m in by_round[rnd]}
    return set(by_round)


def test_readers_never_see_a_half_written_round(location: tuple[str, str]) -> None:
    with _open(location) as registry:
        run_id = registry.create_run("readers", 0, {})
        writer = _worker("write", *location, run_id, str(ROUNDS), str(CLIENTS))
        seen: set[int] = set()
        reads = 0
        try:
            while writer.poll() is None or reads == 0:
                heads = registry.heads(run_id)  # heads first: the versions read next are no older
                versions = registry.versions(run_id)
                rounds = _complete_rounds(versions, {})
                assert set(heads) <= rounds, f"heads {sorted(heads)} ahead of versions {sorted(rounds)}"
                _complete_rounds(versions, heads)
                with registry.snapshot():  # one snapshot: heads and versions agree exactly
                    heads = registry.heads(run_id)
                    rounds = _complete_rounds(registry.versions(run_id), heads)
                assert set(heads) == rounds
                seen.add(len(rounds))
                reads += 1
        finally:
            writer.kill()
            _, errors = writer.communicate(timeout=60)
        final = registry.heads(run_id)

    assert writer.returncode == 0, errors[-2000:]
    assert sorted(final) == list(range(ROUNDS + 1))
    # the reader really ran while rounds were being committed, not only before or after
    assert len([n for n in seen if 0 < n < ROUNDS + 1]) >= 3, (reads, sorted(seen))
