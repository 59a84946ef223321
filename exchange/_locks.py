"""Run locks: one writing process per run, released by the operating system when that process dies.

SQLite registries lock ``locks/RUN.lock`` beside the database with ``flock``: the kernel drops the
lock when its last file descriptor closes, so a killed process leaves no stale lock (and no pid file
to clean up). The lock files stay; they are empty. PostgreSQL registries take a session-level
``pg_try_advisory_lock`` on a connection of their own, held for the lock's lifetime: the server
drops it when that session ends, which it does when the client process dies and its socket closes.

Both locks exclude every other holder, another process or another lock object in this process alike.

A reader asks whether a run has a live writer without taking part (:func:`file_lock_held`,
:func:`advisory_lock_held`): a live holder is never disturbed, and a dead one holds nothing, so a run
still marked ``running`` whose lock is free was left by a process that died.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, text

from flonnx.exchange.errors import RunLocked

__all__ = ["advisory_lock", "advisory_lock_held", "file_lock", "file_lock_held"]

_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,100}")

#: A reader's probe holds a shared lock for two system calls; a writer taking the lock in that
#: instant tries again this often, 10 ms apart, rather than report a writer that is not there.
_ATTEMPTS = 5


def _lock_path(directory: Path, run_id: str) -> Path:
    name = run_id if _SAFE.fullmatch(run_id) else hashlib.sha256(run_id.encode()).hexdigest()
    return directory / f"{name}.lock"


def _locked(run_id: str, where: str) -> RunLocked:
    return RunLocked(f"run {run_id} is being written by another process ({where}); wait for it to "
                     "finish, or stop it, then try again", run_id)


@contextmanager
def file_lock(directory: Path, run_id: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``directory/RUN.lock``; :class:`RunLocked` if taken."""
    directory.mkdir(parents=True, exist_ok=True)
    path = _lock_path(directory, run_id)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        for attempt in range(_ATTEMPTS):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == _ATTEMPTS - 1:
                    raise _locked(run_id, f"lock file {path}") from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def file_lock_held(directory: Path, run_id: str) -> bool:
    """Whether a live process holds the run's lock file; creates and changes nothing.

    It asks for a shared lock without waiting, which a holder's exclusive lock refuses, and drops it
    at once. A lock file this process may not open counts as held: never call a live run dead.
    """
    try:
        fd = os.open(_lock_path(directory, run_id), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def advisory_key(run_id: str) -> int:
    """The signed 64-bit advisory-lock key of a run."""
    digest = hashlib.sha256(f"flonnx run {run_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def advisory_lock_held(engine: Engine, run_id: str) -> bool:
    """Whether a session holds the run's advisory lock, read from ``pg_locks`` (nothing is locked).

    ``pg_locks`` shows a bigint key's high half as ``classid``, its low half as ``objid`` and
    ``objsubid`` 1.
    """
    key = advisory_key(run_id) & 0xFFFF_FFFF_FFFF_FFFF
    with engine.connect() as connection:
        return bool(connection.execute(text(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND classid::bigint = :high AND objid::bigint = :low AND objsubid = 1)"),
            {"high": key >> 32, "low": key & 0xFFFF_FFFF}).scalar())


@contextmanager
def advisory_lock(engine: Engine, run_id: str) -> Iterator[None]:
    """Hold PostgreSQL's session advisory lock of the run on a dedicated connection."""
    key = advisory_key(run_id)
    connection = engine.connect()
    try:
        got = connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar()
        connection.commit()  # hold the session lock, not an open transaction
        if not got:
            raise _locked(run_id, f"PostgreSQL advisory lock {key}")
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            connection.commit()
    except BaseException:
        connection.invalidate()  # never hand a connection that may still hold the lock to the pool
        raise
    finally:
        connection.close()
