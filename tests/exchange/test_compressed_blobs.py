"""Compressed blobs: the id is the content's SHA-256, the name says how it is stored, reads are bounded."""

from __future__ import annotations

import hashlib
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest

from flonnx.exchange.blobstore import (
    COMPRESSED_MAGIC,
    COMPRESSED_SUFFIX,
    BlobStore,
    FsspecBlobStore,
    compress,
    decompress,
)
from flonnx.exchange.errors import RegistryError
from flonnx.exchange.hashing import encode_weights
from flonnx.exchange.registry import Registry


def _weights(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return encode_weights({"w": rng.normal(0, 0.1, (64, 32)).astype(np.float32),
                           "b": np.zeros(32, np.float32)})


@pytest.mark.parametrize("length", range(10))
def test_compression_round_trips_any_length(length: int) -> None:
    data = bytes(range(length))

    assert decompress(compress(data), hashlib.sha256(data).hexdigest()) == data


def test_a_compressed_blob_keeps_the_id_of_its_content_and_says_so_by_its_name(tmp_path: Path) -> None:
    data = _weights()
    store = BlobStore(tmp_path, compress=True)

    blob_id = store.put(data)

    stored = store.path(blob_id).with_name(blob_id + COMPRESSED_SUFFIX)
    assert blob_id == hashlib.sha256(data).hexdigest()
    assert not store.path(blob_id).exists() and stored.read_bytes().startswith(COMPRESSED_MAGIC)
    assert stored.stat().st_size < len(data)
    assert store.get(blob_id) == data and store.exists(blob_id)
    assert BlobStore(tmp_path, create=False).get(blob_id) == data  # a reader needs no setting


def test_plain_and_compressed_blobs_live_in_one_store(tmp_path: Path) -> None:
    plain, packed = BlobStore(tmp_path), BlobStore(tmp_path, compress=True)
    first = plain.put(_weights(1))
    second = packed.put(_weights(2))

    assert packed.put(_weights(1)) == first  # already stored (plain): not written again
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == sorted(
        [first, second + COMPRESSED_SUFFIX])
    assert plain.get(second) == _weights(2) and packed.get(first) == _weights(1)


def test_a_plain_blob_that_looks_compressed_is_read_as_stored(tmp_path: Path) -> None:
    data = compress(b"abc")  # plain content that begins with the compressed header
    store = BlobStore(tmp_path)

    blob_id = store.put(data)

    assert store.get(blob_id) == data


def test_delete_removes_a_blob_either_way_it_is_stored(tmp_path: Path) -> None:
    plain, packed = BlobStore(tmp_path), BlobStore(tmp_path, compress=True)
    ids = [plain.put(b"plain"), packed.put(b"packed")]

    for blob_id in [*ids, "ab" * 32]:
        plain.delete(blob_id)

    assert [plain.exists(i) for i in ids] == [False, False]
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_an_fsspec_store_compresses_reads_and_deletes_the_same_way() -> None:
    pytest.importorskip("fsspec")
    store = FsspecBlobStore("memory://flonnx-compressed-test", compress=True)
    data = _weights(3)

    blob_id = store.put(data)

    assert store.fs.exists(store._key(blob_id) + COMPRESSED_SUFFIX)
    assert not store.fs.exists(store._key(blob_id))
    assert store.get(blob_id) == data and store.exists(blob_id)
    assert FsspecBlobStore("memory://flonnx-compressed-test").get(blob_id) == data
    store.delete(blob_id)
    assert not store.exists(blob_id)


def _bomb(inflated: int) -> bytes:
    """A zlib stream of ``inflated`` zero bytes, built in 1 MiB steps."""
    deflater = zlib.compressobj(9)
    chunk = bytes(1 << 20)
    parts = [deflater.compress(chunk) for _ in range(inflated >> 20)]
    return b"".join([*parts, deflater.flush()])


def test_a_decompression_bomb_is_refused_without_inflating_it(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, max_bytes=1 << 20)
    body = _bomb(256 << 20)
    blob_id = "ab" * 32
    target = store.path(blob_id).with_name(blob_id + COMPRESSED_SUFFIX)
    target.parent.mkdir(parents=True)

    messages = []
    tracemalloc.start()
    for declared in (256 << 20, 1000, 0):  # honest; a lie that it is small; an empty claim
        target.write_bytes(COMPRESSED_MAGIC + declared.to_bytes(8, "little") + body)
        with pytest.raises(RegistryError) as caught:
            store.get(blob_id)
        messages.append(str(caught.value))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    assert len(body) < 1 << 20
    assert "declares 268435456 bytes" in messages[0] and "the limit is 1048576" in messages[0]
    assert all("damaged" in m and "declared" in m for m in messages[1:]), messages
    assert peak < 8 << 20  # never near the 256 MiB it would inflate to


def test_a_header_claiming_more_than_zlib_can_inflate_is_refused() -> None:
    stored = COMPRESSED_MAGIC + (1 << 30).to_bytes(8, "little") + zlib.compress(b"x")

    with pytest.raises(RegistryError, match="zlib inflates at most 1032:1"):
        decompress(stored, "ab" * 32)


def test_a_corrupted_compressed_blob_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, compress=True)
    blob_id = store.put(_weights())
    path = store.path(blob_id).with_name(blob_id + COMPRESSED_SUFFIX)
    stored = bytearray(path.read_bytes())
    stored[len(stored) // 2] ^= 0xFF
    path.write_bytes(bytes(stored))

    with pytest.raises(RegistryError, match=f"compressed blob {blob_id[:12]} is damaged"):
        store.get(blob_id)


def test_a_compressed_blob_whose_content_is_another_is_refused(tmp_path: Path) -> None:
    store = BlobStore(tmp_path, compress=True)
    blob_id = store.put(b"the original")
    store.path(blob_id).with_name(blob_id + COMPRESSED_SUFFIX).write_bytes(compress(b"a substitute"))

    with pytest.raises(RegistryError, match="damaged: its content hashes to"):
        store.get(blob_id)


def test_a_blob_without_the_compressed_header_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="not in flonnx's compressed form"):
        decompress(zlib.compress(b"abc"), "ab" * 32)


def test_verify_names_a_damaged_compressed_weights_blob(tmp_path: Path) -> None:
    from flonnx.exchange.lineage import VersionKind, VersionRecord
    from tests.tiny_models import gemm_mlp

    definition, weights = gemm_mlp(4, 3, 2)
    with Registry(tmp_path / "registry", compress=True) as reg:
        reg.put_definition(definition)
        run_id = reg.create_run("unit", 0, {})
        record = VersionRecord(kind=VersionKind.INITIAL, round=0, definition_id=definition.id,
                               weights_id=reg.put_weights(weights))
        reg.commit(run_id, [record], head_round=0, head=record.version_id)
        assert reg.get_weights(record.weights_id).keys() == weights.keys()
        assert reg.verify(run_id)[1] == []
        path = reg.blobs.path(record.weights_id).with_name(record.weights_id + COMPRESSED_SUFFIX)
        path.write_bytes(path.read_bytes()[:-5])

        problems = reg.verify(run_id)[1]

    assert len(problems) == 1
    assert f"compressed blob {record.weights_id[:12]} is damaged" in problems[0]
