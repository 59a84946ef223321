"""Content-addressed blob stores: a local directory, or any file system fsspec reaches.

A blob's name is the SHA-256 of its bytes. Local writes are atomic (temporary file in the same
directory tree, ``fsync``, ``rename``, ``fsync`` of the directory), so a crash at any point leaves
either no blob or the whole blob, never a partial one under its final name. An fsspec store writes a
temporary object and renames it where the file system has a rename; an object store (S3, GCS, Azure)
has none and needs none, since an object appears only once its upload is complete. Neither store
checks a plain blob's content on read: the registry re-hashes every blob it loads against its id.

``put`` hashes the bytes it stores unless its caller passes their id: the registry does so when it
has just computed the id from the same in-memory values (one hash per update on the server). A wrong
id given there would be caught on read, where every blob is re-hashed against its name.

A store opened with ``compress=True`` writes each new blob compressed under ``ab/abcdef….z``
(:data:`COMPRESSED_SUFFIX`): the four byte planes of its content (a 4-byte-word shuffle, which lets
zlib see the slowly varying exponent bytes of float32 data apart from their noisy mantissas), then
zlib (level 1), behind a header :data:`COMPRESSED_MAGIC` + the content's length. The id stays the
SHA-256 of the content, so ids are the same either way, and the name alone says how a blob is stored: a
registry may hold both kinds (runs with and without compression), and a reader needs no setting.
A compressed blob is inflated to at most ``max_bytes`` (its declared length, bounded by zlib's
largest ratio, is checked before anything is inflated) and its SHA-256 is checked on read.
"""

from __future__ import annotations

import os
import secrets
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from flonnx.exchange.crashpoints import crash_point
from flonnx.exchange.errors import RegistryError
from flonnx.exchange.hashing import MAX_WEIGHTS_BYTES, sha256_hex

__all__ = ["COMPRESSED_MAGIC", "COMPRESSED_SUFFIX", "BlobStore", "FsspecBlobStore", "compress",
           "decompress", "open_blobs"]

#: the name suffix of a compressed blob (``ab/abcdef….z``)
COMPRESSED_SUFFIX = ".z"
#: first bytes of a compressed blob: format 1 = 4-byte-plane shuffle, then zlib
COMPRESSED_MAGIC = b"FLZ\x01"
_HEADER = struct.Struct("<4sQ")  # magic, length of the content
#: zlib never inflates more than 1032:1; a header claiming more is a forgery
_MAX_RATIO = 1032

# Object stores: a single upload is all-or-nothing, and a "rename" would be a second full copy.
_WHOLE_OBJECT_WRITES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})


def _check_id(blob_id: str) -> str:
    if len(blob_id) != 64 or any(c not in "0123456789abcdef" for c in blob_id):
        raise RegistryError(f"not a blob id: {blob_id!r}")
    return blob_id


def _planes(data: bytes) -> bytes:
    """The bytes of each 4-byte word by position: all first bytes, all second, …; tail as is."""
    whole = len(data) // 4 * 4
    return np.frombuffer(data, np.uint8, whole).reshape(-1, 4).T.tobytes() + data[whole:]


def _unplanes(data: bytes) -> bytes:
    """The inverse of :func:`_planes`."""
    whole = len(data) // 4 * 4
    return np.frombuffer(data, np.uint8, whole).reshape(4, -1).T.tobytes() + data[whole:]


def compress(data: bytes) -> bytes:
    """The stored form of a compressed blob (see the module)."""
    # level 1: on float32 weights within 1 % of level 6's size, at about three times its speed
    return _HEADER.pack(COMPRESSED_MAGIC, len(data)) + zlib.compress(_planes(data), 1)


def decompress(stored: bytes, blob_id: str, max_bytes: int = MAX_WEIGHTS_BYTES) -> bytes:
    """The content of a compressed blob, checked against its id; never inflates past ``max_bytes``.

    Raises:
        RegistryError: the blob is not in the compressed form, would inflate past the bound, is
            damaged, or its content does not hash to ``blob_id``.
    """
    label = f"compressed blob {blob_id[:12]}"
    if len(stored) < _HEADER.size or stored[:4] != COMPRESSED_MAGIC:
        raise RegistryError(f"{label} is not in flonnx's compressed form (no {COMPRESSED_MAGIC!r} header)")
    _, length = _HEADER.unpack_from(stored)
    body = memoryview(stored)[_HEADER.size:]
    if length > max_bytes or length > _MAX_RATIO * len(body) + 64:
        raise RegistryError(f"{label} declares {length} bytes from {len(body)} compressed; refused "
                            f"(the limit is {max_bytes} bytes, and zlib inflates at most {_MAX_RATIO}:1)")
    inflater = zlib.decompressobj()
    try:
        planes = inflater.decompress(body, length + 1)
    except zlib.error as exc:
        raise RegistryError(f"{label} is damaged: {exc}") from None
    if len(planes) != length or not inflater.eof or inflater.unused_data:
        raise RegistryError(f"{label} is damaged: it does not inflate to exactly its declared {length} bytes")
    data = _unplanes(planes)
    actual = sha256_hex(data)
    if actual != blob_id:
        raise RegistryError(f"{label} is damaged: its content hashes to {actual[:12]}")
    return data


def fsync_dir(path: Path) -> None:
    """Make a rename or creation inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    """Blobs under ``root/ab/abcdef…`` (compressed: ``….z``); ``root/.tmp`` holds writes in progress.

    ``create=False`` (a reader) makes no directory, so a read-only store opens. ``compress=True``
    stores new blobs compressed (see the module); ``max_bytes`` bounds what a compressed blob may
    inflate to.
    """

    def __init__(self, root: Path, *, create: bool = True, compress: bool = False,
                 max_bytes: int = MAX_WEIGHTS_BYTES) -> None:
        self.root = root
        self.compress = compress
        self.max_bytes = max_bytes
        self._tmp = root / ".tmp"
        if create:
            self._tmp.mkdir(parents=True, exist_ok=True)

    def path(self, blob_id: str) -> Path:
        """Where the blob ``blob_id`` lives uncompressed (whether or not it exists)."""
        _check_id(blob_id)
        return self.root / blob_id[:2] / blob_id

    def _compressed(self, blob_id: str) -> Path:
        return self.path(blob_id).with_name(blob_id + COMPRESSED_SUFFIX)

    def put(self, data: bytes, blob_id: str | None = None) -> str:
        """Store ``data`` and return its id; storing the same bytes twice is a no-op.

        ``blob_id``, if given, is trusted to be the SHA-256 of ``data`` (a caller that has just
        computed it from the same bytes, in this process) and is not computed again.
        """
        blob_id = sha256_hex(data) if blob_id is None else _check_id(blob_id)
        if self.exists(blob_id):
            return blob_id
        final = self._compressed(blob_id) if self.compress else self.path(blob_id)
        stored = compress(data) if self.compress else data
        crash_point("blob.before_write")
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._tmp / f"{blob_id}.{secrets.token_hex(4)}"
        with open(tmp, "wb") as fh:
            fh.write(stored)
            fh.flush()
            os.fsync(fh.fileno())
        crash_point("blob.after_tmp_write")
        os.replace(tmp, final)
        fsync_dir(final.parent)
        crash_point("blob.after_write")
        return blob_id

    def get(self, blob_id: str) -> bytes:
        """The bytes of ``blob_id`` (a compressed one inflated and checked); RegistryError if absent."""
        try:
            return self.path(blob_id).read_bytes()
        except FileNotFoundError:
            pass
        try:
            stored = self._compressed(blob_id).read_bytes()
        except FileNotFoundError:
            raise RegistryError(f"blob {blob_id[:12]} is missing from {self.root}") from None
        return decompress(stored, blob_id, self.max_bytes)

    def exists(self, blob_id: str) -> bool:
        """Whether ``blob_id`` is stored (either way)."""
        return self.path(blob_id).exists() or self._compressed(blob_id).exists()

    def delete(self, blob_id: str) -> None:
        """Remove ``blob_id`` (either way it is stored); nothing to do if it is absent."""
        for path in (self.path(blob_id), self._compressed(blob_id)):
            path.unlink(missing_ok=True)
        if self.path(blob_id).parent.exists():
            fsync_dir(self.path(blob_id).parent)


class FsspecBlobStore:
    """Blobs under ``URL/ab/abcdef…`` (compressed: ``….z``) on an fsspec file system.

    ``URL/.tmp`` holds renamed writes; ``compress`` and ``max_bytes`` as for :class:`BlobStore`.
    """

    def __init__(self, url: str, shown: str | None = None, *, compress: bool = False,
                 max_bytes: int = MAX_WEIGHTS_BYTES) -> None:
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
        self.compress = compress
        self.max_bytes = max_bytes
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
        if self.exists(blob_id):
            return blob_id
        final = self._key(blob_id) + (COMPRESSED_SUFFIX if self.compress else "")
        stored = compress(data) if self.compress else data
        if not self.renames:
            self.fs.pipe_file(final, stored)
            return blob_id
        tmp = f"{self.root}/.tmp/{blob_id}.{secrets.token_hex(4)}"
        self.fs.makedirs(f"{self.root}/.tmp", exist_ok=True)
        self.fs.makedirs(f"{self.root}/{blob_id[:2]}", exist_ok=True)
        self.fs.pipe_file(tmp, stored)
        self.fs.mv(tmp, final)
        return blob_id

    def get(self, blob_id: str) -> bytes:
        """The bytes of ``blob_id`` (a compressed one inflated and checked); RegistryError if absent."""
        try:
            return bytes(self.fs.cat_file(self._key(blob_id)))
        except FileNotFoundError:
            pass
        try:
            stored = bytes(self.fs.cat_file(self._key(blob_id) + COMPRESSED_SUFFIX))
        except FileNotFoundError:
            raise RegistryError(f"blob {blob_id[:12]} is missing from {self.shown}") from None
        return decompress(stored, blob_id, self.max_bytes)

    def exists(self, blob_id: str) -> bool:
        """Whether ``blob_id`` is stored (either way)."""
        key = self._key(blob_id)
        return bool(self.fs.exists(key) or self.fs.exists(key + COMPRESSED_SUFFIX))

    def delete(self, blob_id: str) -> None:
        """Remove ``blob_id`` (either way it is stored); nothing to do if it is absent."""
        for key in (self._key(blob_id), self._key(blob_id) + COMPRESSED_SUFFIX):
            if self.fs.exists(key):
                self.fs.rm_file(key)


def open_blobs(location: str | Path, shown: str | None = None, *, create: bool = True,
               compress: bool = False) -> BlobStore | FsspecBlobStore:
    """The blob store at a directory, a ``file://`` URL (both: :class:`BlobStore`) or any fsspec URL.

    ``shown`` is how messages name the location (a URL with its password masked); ``create=False``
    opens a local store for reading only; ``compress`` stores new blobs compressed.
    """
    text = str(location)
    if "://" not in text:
        return BlobStore(Path(text), create=create, compress=compress)
    if text.startswith("file://"):
        return BlobStore(Path(text.removeprefix("file://")), create=create, compress=compress)
    return FsspecBlobStore(text, shown, compress=compress)
