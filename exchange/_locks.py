"""Run locks: one writing process per run, released by the operating system when that process dies.

SQLite registries lock ``locks/RUN.lock`` beside the database with ``flock``: the kernel drops the
lock when its last file descriptor closes, so a killed process leaves no stale lock (and no pid file
to clean up). The lock files stay; they are empty. PostgreSQL registries take a session-level
``pg_try_advisory_lock`` on a connection of their own, held for the lock's lifetime: the server
drops it when that session ends, which it does when the client process dies and its socket closes.

Both locks exclude every other holder, another process or another lock object in this process alike.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, text

from flonnx.exchange.errors import RunLocked

__all__ = ["advisory_lock", "file_lock"]

_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,100}")


def _locked(run_id: str, where: str) -> RunLocked:
    return RunLocked(f"run {run_id} is being written by another process ({where}); wait for it to "
                     "finish, or stop it, then try again", run_id)


@contextmanager
def file_lock(directory: Path, run_id: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``directory/RUN.lock``; :class:`RunLocked` if taken."""
    name = run_id if _SAFE.fullmatch(run_id) else hashlib.sha256(run_id.encode()).hexdigest()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _locked(run_id, f"lock file {path}") from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def advisory_key(run_id: str) -> int:
    """The signed 64-bit advisory-lock key of a run."""
    digest = hashlib.sha256(f"flonnx run {run_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


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
