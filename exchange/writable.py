"""Whether a run may write where its registry lives: checked before a simulation engine starts.

A writer (``simulate``, ``resume``, the ServerApp) creates the registry directory, its SQLite database
with the WAL files beside it, ``blobs/`` and ``locks/``. :func:`check_registry_writable` tries that
now, in this process, and raises one :class:`~flonnx.exchange.errors.RegistryError` naming the path
and the reason (a file where a directory belongs, permission denied, a read-only file system) instead
of a traceback from deep inside the first round. A directory is probed by creating (and at once
removing) a temporary file in it, so what the kernel would refuse is what is reported, whatever the
user's privileges, ACLs or mount options. A PostgreSQL server and an fsspec blob store are not
probed: they say for themselves, when the run opens them, whether it may write.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from flonnx.exchange._database import is_url, parse_url
from flonnx.exchange.errors import RegistryError

__all__ = ["check_registry_writable"]


def check_registry_writable(location: str | Path, blobs: str | Path | None = None) -> None:
    """Raise :class:`RegistryError` unless a run can create or update the registry at ``location``.

    Args:
        location: A registry directory, or a database URL (``sqlite:///…``, ``postgresql://…``).
        blobs: Where the blobs live, if not ``location/blobs``: a directory or an fsspec URL.
    """
    if is_url(location):
        url = parse_url(str(location))
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            database = Path(str(url.database))
            _check_directory(database.parent, "the registry database's directory")
            _check_database(database)
            _check_directory(database.parent / "locks", "the registry's locks")
    else:
        root = Path(location)
        _check_directory(root, "the registry", hint="; name a directory (or a database URL)")
        _check_database(root / "registry.db")
        _check_directory(root / "locks", "the registry's locks")
        if blobs is None or str(blobs) == "":
            _check_directory(root / "blobs", "the registry's blobs")
    if blobs is not None and str(blobs) != "":
        text = str(blobs)
        if "://" not in text or text.startswith("file://"):
            _check_directory(Path(text.removeprefix("file://")), "the registry's blobs")


def _check_directory(path: Path, what: str, hint: str = "") -> None:
    """``path`` is a writable directory, or can be made one (its nearest existing ancestor is)."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():  # a dangling link: mkdir would fail on it
            raise RegistryError(f"{what} {path} cannot be created: {existing} is a broken symbolic link")
        existing = existing.parent
    if not existing.is_dir():
        if existing == path:
            raise RegistryError(f"{what} {path} is a file, not a directory{hint}")
        raise RegistryError(f"{what} {path} cannot be created: {existing} is a file, not a directory")
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".flonnx-probe-"):
            pass
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        where = "" if existing == path else f" (it would be created in {existing})"
        raise RegistryError(f"cannot write {what} at {path}{where}: {reason}") from None


def _check_database(database: Path) -> None:
    """An existing database file (and its WAL files) can be opened for writing."""
    for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
        if path.is_dir():
            raise RegistryError(f"the registry database {path} is a directory, not a file")
        if path.exists() and not os.access(path, os.W_OK):
            raise RegistryError(f"cannot write the registry database {path}: permission denied")
