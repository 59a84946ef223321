"""Registry: round trips, one transaction per commit, verification that names the culprit."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from flonnx.exchange.errors import LineageError, RegistryError
from flonnx.exchange.lineage import VersionKind, VersionRecord
from flonnx.exchange.registry import Registry


@pytest.fixture()
def populated(tmp_path: Path, mlp_model):  # type: ignore[no-untyped-def]
    definition, weights = mlp_model
    registry = Registry(tmp_path / "reg")
    run_id = registry.create_run("digits-mixed", 0, {"rounds": 1})
    registry.put_definition(definition)
    initial = VersionRecord(VersionKind.INITIAL, 0, definition.id, registry.put_weights(weights))
    update_weights = {k: v + 1 for k, v in weights.items()}
    update = VersionRecord(
        VersionKind.CLIENT_UPDATE, 1, definition.id, registry.put_weights(update_weights),
        parents=(initial.version_id,), framework="torch", client="partition-0", num_examples=10,
        metrics={"train-loss": 0.5},
    )
    aggregate = VersionRecord(
        VersionKind.AGGREGATE, 1, definition.id, update.weights_id, parents=(update.version_id,),
        strategy="fedavg", metrics={"accuracy": 0.9},
    )
    registry.commit(run_id, [initial], head_round=0, head=initial.version_id)
    registry.commit(run_id, [update, aggregate], head_round=1, head=aggregate.version_id)
    return registry, run_id, (initial, update, aggregate), weights, update_weights


def test_versions_round_trip(populated) -> None:
    registry, run_id, records, weights, _ = populated

    stored = registry.versions(run_id)

    assert [s.record for s in stored] == list(records)
    assert [s.version_id for s in stored] == [r.version_id for r in records]
    loaded = registry.get_weights(records[0].weights_id)
    for name, value in weights.items():
        np.testing.assert_array_equal(loaded[name], value)
    assert registry.heads(run_id) == {0: records[0].version_id, 1: records[2].version_id}


def test_registry_reopens_with_the_same_content(populated) -> None:
    registry, run_id, records, _, _ = populated
    registry.close()

    again = Registry(registry.root, create=False)

    assert [s.version_id for s in again.versions(run_id)] == [r.version_id for r in records]
    assert again.runs()[0].status == "running"


def test_resolves_unique_prefixes_and_refuses_ambiguous_or_unknown(populated) -> None:
    registry, run_id, records, _, _ = populated
    target = records[1].version_id

    assert registry.resolve_version(target[:10]) == target
    assert registry.resolve_run(run_id[:12]) == run_id
    assert registry.resolve_run(None) == run_id
    with pytest.raises(LineageError, match="no version matches 'zz'"):
        registry.resolve_version("zz")
    with pytest.raises(LineageError, match="ambiguous"):
        registry.resolve_version("")


def test_commit_is_all_or_nothing(populated) -> None:
    registry, run_id, records, _, _ = populated
    definition_id = records[0].definition_id
    good = VersionRecord(VersionKind.CLIENT_UPDATE, 2, definition_id, records[0].weights_id,
                         parents=(records[2].version_id,), client="a")
    orphan = VersionRecord(VersionKind.AGGREGATE, 2, definition_id, records[0].weights_id,
                           parents=("f" * 64,))

    with pytest.raises(LineageError, match="parent ffffffffffff"):
        registry.commit(run_id, [good, orphan], head_round=2, head=orphan.version_id)

    assert len(registry.versions(run_id)) == 3
    assert 2 not in registry.heads(run_id)


def test_commit_refuses_records_whose_blobs_are_not_stored(populated) -> None:
    registry, run_id, records, _, _ = populated
    ghost = VersionRecord(VersionKind.AGGREGATE, 2, records[0].definition_id, "a" * 64)

    with pytest.raises(RegistryError, match="blob aaaaaaaaaaaa that is not stored"):
        registry.commit(run_id, [ghost])


def test_verify_passes_on_an_intact_registry(populated) -> None:
    registry, run_id, _, _, _ = populated

    checked, problems = registry.verify(run_id)

    assert problems == []
    assert checked == 3 + 1 + 2  # three records, one definition, two weights blobs


def test_verify_names_a_blob_with_one_changed_byte(populated) -> None:
    registry, run_id, records, _, _ = populated
    path = registry.blobs.path(records[1].weights_id)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))

    _, problems = registry.verify(run_id)

    assert problems and all(records[1].weights_id[:12] in p for p in problems)
    assert any("content hashes to" in p for p in problems)


def test_verify_names_a_tampered_record(populated) -> None:
    registry, run_id, records, _, _ = populated
    db = sqlite3.connect(registry.root / "registry.db")
    db.execute("UPDATE versions SET record_json = replace(record_json, '0.9', '0.99') "
               "WHERE version_id = ?", (records[2].version_id,))
    db.commit()
    db.close()

    _, problems = registry.verify(run_id)

    assert problems == [f"version {records[2].version_id[:12]} (aggregate, round 1): record re-hashes to "
                        f"{problems[0].split('re-hashes to ')[1]}"]


def test_verify_names_a_missing_definition(populated) -> None:
    registry, run_id, records, _, _ = populated
    registry.blobs.path(records[0].definition_id).unlink()

    _, problems = registry.verify(run_id)

    assert any(records[0].definition_id[:12] in p and "missing" in p for p in problems)


def test_blob_writes_leave_no_temporary_files(populated) -> None:
    registry, _, _, _, _ = populated

    assert list((registry.root / "blobs" / ".tmp").iterdir()) == []


def test_opening_a_missing_registry_for_reading_says_where(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="no flonnx registry at"):
        Registry(tmp_path / "nothing", create=False)


def test_put_weights_with_a_known_id_stores_the_same_blob_without_hashing_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    from flonnx.exchange.hashing import encode_weights, weights_id

    weights = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.ones(3, np.float64)}
    known = weights_id(weights)
    registry = Registry(tmp_path / "reg")
    hashed: list[object] = []
    real = hashlib.sha256
    monkeypatch.setattr(hashlib, "sha256", lambda *a, **k: hashed.append(a) or real(*a, **k))

    assert registry.put_weights(weights, weights_id=known) == known
    assert registry.put_weights(weights, weights_id=known) == known  # stored: not even encoded again
    monkeypatch.setattr(hashlib, "sha256", real)

    assert hashed == []
    assert registry.blobs.path(known).read_bytes() == encode_weights(weights)
    loaded = registry.get_weights(known)  # the read re-hashes the blob
    assert weights_id(loaded) == known
    assert registry.put_weights(weights) == known  # without an id: hashed, same blob


def test_a_wrong_trusted_id_is_caught_when_the_blob_is_read(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "reg")
    wrong = "ab" * 32

    registry.put_weights({"w": np.ones(2, np.float32)}, weights_id=wrong)

    with pytest.raises(LineageError, match="does not match its id"):
        registry.get_weights(wrong)
