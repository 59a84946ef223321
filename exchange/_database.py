"""Where a registry's tables live: an SQLAlchemy engine for SQLite or PostgreSQL, and safe URLs.

SQLite (the embedded default) gets WAL, ``synchronous=FULL`` and foreign keys on every connection,
and flonnx issues the ``BEGIN`` itself: ``BEGIN IMMEDIATE`` for a writing transaction (a writer holds
the write lock from its first statement, so two writers queue instead of failing to upgrade a read
lock) and a deferred ``BEGIN`` for readers, which in WAL mode read a committed snapshot and never
wait for a writer. PostgreSQL runs at its default READ COMMITTED: every statement sees only
committed transactions.

A registry opened read-only (:func:`open_engine` ``read_only=True``) that this process cannot write
(an archive, a shared drive, a read-only mount) is opened by SQLite URI, never written and never
given a file: a WAL reader needs the ``-shm`` index, so where one exists (a writer has the registry
open, or the copy kept it) ``mode=ro`` shares it read-only; where none exists and none can be made,
``immutable=1`` reads the database file alone, which then holds every committed round. That file
must not change while it is read: a writer that opens the registry during such a read may make it
fail (a read record that no longer re-hashes to its id, or a "malformed" error); read again. A
``-wal`` file without its index holds rounds ``immutable`` cannot see: that is refused, not shown
incomplete.

A URL may carry a password (``postgresql://user:secret@host/db`` or ``?password=secret``):
:func:`mask_url` hides it, and every message and record that names a location uses the masked form.
"""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from flonnx.exchange.errors import RegistryError

__all__ = ["WRITE", "is_url", "mask_url", "open_engine", "parse_url", "shown"]

#: Execution option of a connection that will write (SQLite: ``BEGIN IMMEDIATE``).
WRITE = "flonnx_write"

_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/@:?#\s]*):[^/?#\s]*@")
_SECRET_QUERY = re.compile(r"(?P<key>[?&](?:password|passwd|pass|secret|token|sslpassword)=)[^&#\s]*",
                           re.IGNORECASE)


def is_url(location: str | Path) -> bool:
    """Whether ``location`` is a URL (``scheme://…``) rather than a directory."""
    return isinstance(location, str) and "://" in location


def mask_url(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    text = _USERINFO.sub(lambda m: f"{m['head']}:***@", text)
    return _SECRET_QUERY.sub(lambda m: f"{m['key']}***", text)


def shown(url: URL) -> str:
    """A database URL as messages show it: password masked."""
    return mask_url(url.render_as_string(hide_password=False))


def _sqlite_pragmas(engine: Engine, *, read_only: bool = False) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # flonnx emits BEGIN itself (see the module)
        if read_only:
            return
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        write = connection.get_execution_options().get(WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def parse_url(url: str) -> URL:
    """The SQLAlchemy URL of a registry database; SQLite and PostgreSQL only."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise RegistryError(f"not a database URL: {mask_url(url)} ({mask_url(str(exc))})") from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise RegistryError(f"a flonnx registry runs on SQLite or PostgreSQL, not "
                            f"{parsed.get_backend_name()!r} ({mask_url(url)})")
    return parsed


def _read_only_uri(database: Path) -> str | None:
    """The SQLite URI of a database this process cannot write (see the module); None if it can."""
    wal, shm = Path(f"{database}-wal"), Path(f"{database}-shm")
    files = (database, database.parent, *(f for f in (wal, shm) if f.exists()))
    if all(os.access(f, os.W_OK) for f in files):
        return None
    target = "file:" + quote(str(database.absolute()))
    if shm.exists():
        return f"{target}?mode=ro"
    if wal.exists() and wal.stat().st_size > 0:
        raise RegistryError(
            f"cannot read {database} read-only: its write-ahead log {wal.name} holds committed rounds "
            f"but its index {shm.name} is missing and cannot be made here; copy the registry "
            "directory somewhere writable and read the copy")
    return f"{target}?immutable=1"


def open_engine(url: URL, *, read_only: bool = False) -> Engine:
    """An engine on a parsed registry URL (:func:`parse_url`); a SQLite file is created on first use.

    ``read_only``: the caller will not write; a SQLite file this process cannot write is then
    opened without writing anything (see the module).
    """
    try:
        if url.get_backend_name() == "sqlite":
            uri = _read_only_uri(Path(str(url.database))) if read_only and url.database else None
            if uri is None:
                engine = create_engine(url, connect_args={"check_same_thread": False})
            else:
                engine = create_engine("sqlite://", creator=lambda: sqlite3.connect(
                    uri, uri=True, check_same_thread=False))
            _sqlite_pragmas(engine, read_only=uri is not None)
            return engine
        # pre-ping: a coordinator idles between rounds, and servers drop idle connections
        return create_engine(url, pool_pre_ping=True)
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        raise RegistryError(
            f"cannot use {shown(url)}: {exc}; a PostgreSQL registry needs "
            "psycopg: pip install 'flonnx[postgresql]'"
        ) from None
