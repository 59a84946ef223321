"""The content-addressed blob store: names are SHA-256 of the bytes, writes are atomic, ids are checked."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from flonnx.exchange.blobstore import BlobStore, FsspecBlobStore, open_blobs
from flonnx.exchange.errors import RegistryError


def test_a_blob_is_stored_under_its_sha256_in_a_two_character_fan_out(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    data = b"weights \x00\x01\x02"
    blob_id = store.put(data)
    assert blob_id == hashlib.sha256(data).hexdigest()
    assert store.path(blob_id) == tmp_path / "blobs" / blob_id[:2] / blob_id
    assert store.path(blob_id).read_bytes() == data
    assert store.get(blob_id) == data and store.exists(blob_id)
    assert list((tmp_path / "blobs" / ".tmp").iterdir()) == []  # nothing left half-written


def test_storing_the_same_bytes_twice_keeps_one_file(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    first = store.put(b"abc")
    before = store.path(first).stat().st_mtime_ns
    assert store.put(b"abc") == first
    assert store.path(first).stat().st_mtime_ns == before
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [first]


def test_a_given_id_is_used_and_is_checked_for_form(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    data = b"xyz"
    blob_id = hashlib.sha256(data).hexdigest()
    assert store.put(data, blob_id) == blob_id and store.get(blob_id) == data
    for bad in ["", blob_id[:63], blob_id + "0", blob_id.upper(), "g" * 64, "../" + blob_id[3:]]:
        with pytest.raises(RegistryError, match="not a blob id"):
            store.put(data, bad)
        with pytest.raises(RegistryError, match="not a blob id"):
            store.get(bad)


def test_a_missing_blob_is_a_registry_error_naming_it(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    missing = "ab" * 32
    assert not store.exists(missing)
    with pytest.raises(RegistryError, match=f"blob {missing[:12]} is missing"):
        store.get(missing)


def test_a_reader_creates_no_directory(tmp_path: Path) -> None:
    BlobStore(tmp_path / "absent", create=False)
    assert not (tmp_path / "absent").exists()
    open_blobs(tmp_path / "absent2", create=False)
    assert not (tmp_path / "absent2").exists()


def test_open_blobs_picks_the_store_by_location(tmp_path: Path) -> None:
    assert isinstance(open_blobs(tmp_path / "a"), BlobStore)
    local = open_blobs(f"file://{tmp_path / 'b'}")
    assert isinstance(local, BlobStore) and local.root == tmp_path / "b"
    assert isinstance(open_blobs("memory://flonnx-test-open"), FsspecBlobStore)


def test_an_fsspec_store_renames_into_place_and_reads_back() -> None:
    store = FsspecBlobStore("memory://flonnx-test-rename", shown="memory://shown")
    assert store.renames
    blob_id = store.put(b"hello")
    assert blob_id == hashlib.sha256(b"hello").hexdigest()
    assert store.get(blob_id) == b"hello" and store.exists(blob_id)
    assert store.fs.ls(f"{store.root}/.tmp") == []
    assert store.path(blob_id) == f"memory://shown/{blob_id[:2]}/{blob_id}"
    with pytest.raises(RegistryError, match="is missing from memory://shown"):
        store.get("cd" * 32)


def test_an_object_store_writes_the_final_object_directly() -> None:
    store = FsspecBlobStore("memory://flonnx-test-object")
    store.renames = False  # what an s3/gs/az URL sets
    blob_id = store.put(b"object")
    assert store.get(blob_id) == b"object"
    assert not store.fs.exists(f"{store.root}/.tmp")


def test_a_store_reopens_and_blobs_share_a_fan_out_directory(tmp_path: Path) -> None:
    """Two blobs whose ids start alike land in one directory; a registry reopens its store."""
    BlobStore(tmp_path)
    store = BlobStore(tmp_path)
    by_prefix: dict[str, bytes] = {}
    n = 0
    while True:  # two payloads whose ids share their first two hex digits
        data = f"payload-{n}".encode()
        prefix = hashlib.sha256(data).hexdigest()[:2]
        if prefix in by_prefix:
            break
        by_prefix[prefix] = data
        n += 1
    first, second = store.put(by_prefix[prefix]), store.put(data)
    assert first[:2] == second[:2] and store.get(first) == by_prefix[prefix] and store.get(second) == data


def test_open_blobs_creates_a_writable_store_by_default(tmp_path: Path) -> None:
    store = open_blobs(tmp_path / "new" / "blobs")
    assert store.get(store.put(b"first")) == b"first"


def test_an_fsspec_store_uses_the_same_fan_out_and_names_missing_blobs() -> None:
    store = FsspecBlobStore("memory://flonnx-test-layout")
    ids = [store.put(f"blob-{i}".encode()) for i in range(40)]  # some share a fan-out directory
    for blob_id in ids:
        assert store.fs.exists(f"{store.root}/{blob_id[:2]}/{blob_id}")
    missing = "ef" * 32
    with pytest.raises(RegistryError, match=f"blob {missing[:12]} is missing from memory://flonnx-test-layout"):
        store.get(missing)


def test_an_object_store_protocol_is_recognised_among_a_file_systems_aliases() -> None:
    """s3fs and friends declare their protocol as a tuple of aliases: any of them means no rename."""
    import fsspec
    from fsspec.implementations.memory import MemoryFileSystem

    class AliasedObjectStore(MemoryFileSystem):
        protocol = ("flonnx-test-objects", "s3")

    fsspec.register_implementation("flonnx-test-objects", AliasedObjectStore, clobber=True)
    assert not FsspecBlobStore("flonnx-test-objects://bucket").renames
    assert FsspecBlobStore("memory://flonnx-test-aliases").renames


@pytest.mark.parametrize("error", [ImportError("install a driver"), OSError("no JVM"), ValueError("bad URL")])
def test_a_blob_url_the_machine_cannot_open_is_one_registry_error_naming_it(error: Exception) -> None:
    """A missing driver (s3 without s3fs) raises ImportError, hdfs without a JVM OSError, ..."""
    import fsspec
    from fsspec.implementations.memory import MemoryFileSystem

    class Unopenable(MemoryFileSystem):
        protocol = ("flonnx-test-unopenable",)

        def __init__(self, *args: object, **kwargs: object) -> None:
            raise error

    fsspec.register_implementation("flonnx-test-unopenable", Unopenable, clobber=True)
    url = "flonnx-test-unopenable://bucket/blobs"
    with pytest.raises(RegistryError, match=f"cannot open the blob store {url}: {error}"):
        open_blobs(url)
    with pytest.raises(RegistryError, match="cannot open the blob store memory://shown"):
        FsspecBlobStore(url, shown="memory://shown")
    with pytest.raises(RegistryError, match="cannot open the blob store nosuchprotocol://x"):
        open_blobs("nosuchprotocol://x")


def test_without_fsspec_a_blob_url_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "fsspec", None)
    with pytest.raises(RegistryError, match="blob URL memory://x needs fsspec: pip install fsspec"):
        open_blobs("memory://x")


def test_an_fsspec_store_on_a_file_system_with_directories_makes_its_fan_out(tmp_path: Path) -> None:
    """Unlike the memory file system, a local (or sftp, hdfs) one needs each directory to exist."""
    store = FsspecBlobStore(f"file://{tmp_path / 'fs-blobs'}")
    assert store.renames
    ids = [store.put(f"blob-{i}".encode()) for i in range(20)]
    for blob_id in ids:
        assert (tmp_path / "fs-blobs" / blob_id[:2] / blob_id).read_bytes() == store.get(blob_id)
    assert list((tmp_path / "fs-blobs" / ".tmp").iterdir()) == []
