"""Where a registry's tables live: an SQLAlchemy engine for SQLite or PostgreSQL, and safe URLs.

SQLite (the embedded default) gets WAL, ``synchronous=FULL`` and foreign keys on every connection,
and flonnx issues the ``BEGIN`` itself: ``BEGIN IMMEDIATE`` for a writing transaction (a writer holds
the write lock from its first statement, so two writers queue instead of failing to upgrade a read
lock) and a deferred ``BEGIN`` for readers, which in WAL mode read a committed snapshot and never
wait for a writer. PostgreSQL runs at its default READ COMMITTED: every statement sees only
committed transactions.

A URL may carry a password (``postgresql://user:secret@host/db`` or ``?password=secret``):
:func:`mask_url` hides it, and every message and record that names a location uses the masked form.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

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


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # flonnx emits BEGIN itself (see the module)
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


def open_engine(url: URL) -> Engine:
    """An engine on a parsed registry URL (:func:`parse_url`); a SQLite file is created on first use."""
    try:
        if url.get_backend_name() == "sqlite":
            engine = create_engine(url, connect_args={"check_same_thread": False})
            _sqlite_pragmas(engine)
            return engine
        # pre-ping: a coordinator idles between rounds, and servers drop idle connections
        return create_engine(url, pool_pre_ping=True)
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        raise RegistryError(
            f"cannot use {shown(url)}: {exc}; a PostgreSQL registry needs "
            "psycopg: pip install 'flonnx[postgresql]'"
        ) from None
