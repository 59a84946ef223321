"""Content-addressed blob stores: a local directory, or any file system fsspec reaches.

A blob's name is the SHA-256 of its bytes. Local writes are atomic (temporary file in the same
directory tree, ``fsync``, ``rename``, ``fsync`` of the directory), so a crash at any point leaves
either no blob or the whole blob, never a partial one under its final name. An fsspec store writes a
temporary object and renames it where the file system has a rename; an object store (S3, GCS, Azure)
has none and needs none, since an object appears only once its upload is complete. Neither store
checks content on read: the registry re-hashes every blob it loads against its id.

``put`` hashes the bytes it stores unless its caller passes their id: the registry does so when it
has just computed the id from the same in-memory values (one hash per update on the server). A wrong
id given there would be caught on read, where every blob is re-hashed against its name.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from flonnx.exchange.crashpoints import crash_point
from flonnx.exchange.errors import RegistryError
from flonnx.exchange.hashing import sha256_hex

__all__ = ["BlobStore", "FsspecBlobStore", "open_blobs"]

# Object stores: a single upload is all-or-nothing, and a "rename" would be a second full copy.
_WHOLE_OBJECT_WRITES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})


def _check_id(blob_id: str) -> str:
    if len(blob_id) != 64 or any(c not in "0123456789abcdef" for c in blob_id):
        raise RegistryError(f"not a blob id: {blob_id!r}")
    return blob_id


def fsync_dir(path: Path) -> None:
    """Make a rename or creation inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    """Blobs under ``root/ab/abcdef…``; ``root/.tmp`` holds writes in progress.

    ``create=False`` (a reader) makes no directory, so a read-only store opens.
    """

    def __init__(self, root: Path, *, create: bool = True) -> None:
        self.root = root
        self._tmp = root / ".tmp"
        if create:
            self._tmp.mkdir(parents=True, exist_ok=True)

    def path(self, blob_id: str) -> Path:
        """Where the blob ``blob_id`` lives (whether or not it exists)."""
        _check_id(blob_id)
        return self.root / blob_id[:2] / blob_id

    def put(self, data: bytes, blob_id: str | None = None) -> str:
        """Store ``data`` and return its id; storing the same bytes twice is a no-op.

        ``blob_id``, if given, is trusted to be the SHA-256 of ``data`` (a caller that has just
        computed it from the same bytes, in this process) and is not computed again.
        """
        blob_id = sha256_hex(data) if blob_id is None else _check_id(blob_id)
        final = self.path(blob_id)
        if final.exists():
            return blob_id
        crash_point("blob.before_write")
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._tmp / f"{blob_id}.{secrets.token_hex(4)}"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        crash_point("blob.after_tmp_write")
        os.replace(tmp, final)
        fsync_dir(final.parent)
        crash_point("blob.after_write")
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


class FsspecBlobStore:
    """Blobs under ``URL/ab/abcdef…`` on an fsspec file system; ``URL/.tmp`` holds renamed writes."""

    def __init__(self, url: str, shown: str | None = None) -> None:
        try:
            import fsspec
        except ImportError:
            raise RegistryError(f"blob URL {shown or url} needs fsspec: pip install fsspec") from None
        try:
            self.fs: Any
            self.fs, self.root = fsspec.core.url_to_fs(url)
        except (ImportError, ValueError, OSError) as exc:  # a missing driver, a bad URL, a missing library
            raise RegistryError(f"cannot open the blob store {shown or url}: {exc}") from None
        self.root = str(self.root).rstrip("/")
        self.shown = shown or url
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        self.renames = not _WHOLE_OBJECT_WRITES.intersection(protocols)

    def _key(self, blob_id: str) -> str:
        return f"{self.root}/{blob_id[:2]}/{_check_id(blob_id)}"

    def path(self, blob_id: str) -> str:
        """The blob's URL (password masked), for messages."""
        return f"{self.shown.rstrip('/')}/{blob_id[:2]}/{_check_id(blob_id)}"

    def put(self, data: bytes, blob_id: str | None = None) -> str:
        """Store ``data`` and return its id; storing the same bytes twice is a no-op.

        ``blob_id``, if given, is trusted to be the SHA-256 of ``data`` (see :meth:`BlobStore.put`).
        """
        blob_id = sha256_hex(data) if blob_id is None else _check_id(blob_id)
        final = self._key(blob_id)
        if self.fs.exists(final):
            return blob_id
        if not self.renames:
            self.fs.pipe_file(final, data)
            return blob_id
        tmp = f"{self.root}/.tmp/{blob_id}.{secrets.token_hex(4)}"
        self.fs.makedirs(f"{self.root}/.tmp", exist_ok=True)
        self.fs.makedirs(f"{self.root}/{blob_id[:2]}", exist_ok=True)
        self.fs.pipe_file(tmp, data)
        self.fs.mv(tmp, final)
        return blob_id

    def get(self, blob_id: str) -> bytes:
        """The bytes of ``blob_id``; raises :class:`RegistryError` if absent."""
        try:
            return bytes(self.fs.cat_file(self._key(blob_id)))
        except FileNotFoundError:
            raise RegistryError(f"blob {blob_id[:12]} is missing from {self.shown}") from None

    def exists(self, blob_id: str) -> bool:
        """Whether ``blob_id`` is stored."""
        return bool(self.fs.exists(self._key(blob_id)))


def open_blobs(location: str | Path, shown: str | None = None, *,
               create: bool = True) -> BlobStore | FsspecBlobStore:
    """The blob store at a directory, a ``file://`` URL (both: :class:`BlobStore`) or any fsspec URL.

    ``shown`` is how messages name the location (a URL with its password masked); ``create=False``
    opens a local store for reading only.
    """
    text = str(location)
    if "://" not in text:
        return BlobStore(Path(text), create=create)
    if text.startswith("file://"):
        return BlobStore(Path(text.removeprefix("file://")), create=create)
    return FsspecBlobStore(text, shown)
