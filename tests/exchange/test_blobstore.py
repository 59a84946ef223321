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
