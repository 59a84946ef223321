"""A content-addressed blob store on the local file system.

A blob's name is the SHA-256 of its bytes. Writes are atomic (temporary file in the same directory
tree, ``fsync``, ``rename``, ``fsync`` of the directory), so a crash at any point leaves either no blob
or the whole blob, never a partial one under its final name.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from flonnx.exchange.errors import RegistryError
from flonnx.exchange.hashing import sha256_hex

__all__ = ["BlobStore"]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    """Blobs under ``root/ab/abcdef…``; ``root/.tmp`` holds writes in progress."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._tmp = root / ".tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)

    def path(self, blob_id: str) -> Path:
        """Where the blob ``blob_id`` lives (whether or not it exists)."""
        if len(blob_id) != 64 or any(c not in "0123456789abcdef" for c in blob_id):
            raise RegistryError(f"not a blob id: {blob_id!r}")
        return self.root / blob_id[:2] / blob_id

    def put(self, data: bytes) -> str:
        """Store ``data`` and return its id; storing the same bytes twice is a no-op."""
        blob_id = sha256_hex(data)
        final = self.path(blob_id)
        if final.exists():
            return blob_id
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._tmp / f"{blob_id}.{secrets.token_hex(4)}"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        _fsync_dir(final.parent)
        return blob_id

    def get(self, blob_id: str) -> bytes:
        """The bytes of ``blob_id``; raises :class:`RegistryError` if absent."""
        path = self.path(blob_id)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise RegistryError(f"blob {blob_id[:12]} is missing from {self.root}") from None

    def exists(self, blob_id: str) -> bool:
        """Whether ``blob_id`` is stored."""
        return self.path(blob_id).exists()
