"""Signed lineage in the registry: keys, signatures committed with their versions, and the migration.

Federations signed end to end (ids, ``lineage verify``, ``verify-model``) are in
tests/server/test_signed_lineage.py.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, select

from flonnx.exchange import _schema as schema
from flonnx.exchange.errors import LineageError
from flonnx.exchange.lineage import VersionKind, VersionRecord
from flonnx.exchange.registry import Registry
from flonnx.exchange.signing import (
    PublicKey,
    SigningError,
    load_public_key,
    load_signer,
    write_key_pair,
)
from tests.exchange.registry_worker import tiny_definition, write_rounds


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return write_key_pair(tmp_path_factory.mktemp("keys"))


def test_keygen_writes_a_private_key_only_its_owner_reads_and_both_public_forms(
    keys: tuple[Path, Path, Path],
) -> None:
    private, public, raw = keys

    signer = load_signer(private)

    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert load_public_key(public) == load_public_key(raw) == signer.public
    assert signer.public.fingerprint == signer.run_record()["fingerprint"] != signer.public.hex
    with pytest.raises(SigningError, match="exists; not replaced"):
        write_key_pair(private.parent)


def test_a_signature_verifies_for_its_version_id_and_key_only(
    keys: tuple[Path, Path, Path], tmp_path: Path,
) -> None:
    signer, other = load_signer(keys[0]), load_signer(write_key_pair(tmp_path)[0])
    version_id, another = "ab" * 32, "cd" * 32

    signature = signer.sign(version_id)

    assert signer.public.verifies(version_id, signature)
    assert not signer.public.verifies(another, signature)
    assert not other.public.verifies(version_id, signature)
    assert not signer.public.verifies(version_id, signature[:-2] + ("00" if signature[-2:] != "00" else "01"))
    assert not signer.public.verifies(version_id, "not hex")


def test_a_public_key_file_of_another_kind_is_refused_with_its_name(tmp_path: Path) -> None:
    bad = tmp_path / "key.pub"
    bad.write_text("hello")

    with pytest.raises(SigningError, match=r"key\.pub is neither a PEM public key nor 64 hex digits"):
        load_public_key(bad)
    with pytest.raises(SigningError, match="is not an unencrypted PEM private key"):
        load_signer(bad)
    with pytest.raises(SigningError, match="64 hex digits"):
        PublicKey.from_hex("ab" * 31)


def test_commit_writes_each_signature_with_its_version_and_none_when_the_commit_fails(
    keys: tuple[Path, Path, Path], tmp_path: Path,
) -> None:
    signer = load_signer(keys[0])
    definition, weights = tiny_definition()
    with Registry(tmp_path / "reg") as registry:
        run_id = registry.create_run("s", 0, {"signing_key": signer.run_record()})
        registry.put_definition(definition)
        initial = VersionRecord(VersionKind.INITIAL, 0, definition.id, registry.put_weights(weights))
        orphan = VersionRecord(VersionKind.AGGREGATE, 1, definition.id, initial.weights_id,
                               parents=("ef" * 32,))

        registry.commit(run_id, [initial], head_round=0, head=initial.version_id, signer=signer)
        with pytest.raises(LineageError, match="is not recorded"):
            registry.commit(run_id, [orphan], signer=signer)

        assert registry.signatures(initial.version_id) == {
            signer.public.fingerprint: signer.sign(initial.version_id)}
        assert registry.signatures(orphan.version_id) == {}
        assert registry.verify(run_id) == (5, [])  # record, definition, weights, run, signature


def test_an_unsigned_run_verifies_without_a_key_and_names_each_version_with_one(
    keys: tuple[Path, Path, Path], tmp_path: Path,
) -> None:
    key = load_public_key(keys[1])
    with Registry(tmp_path / "reg") as registry:
        run_id = registry.create_run("s", 0, {})
        write_rounds(registry, run_id, 1, 2)
        ids = [v.version_id for v in registry.versions(run_id)]

        unkeyed = registry.verify(run_id)
        keyed = registry.verify(run_id, key)

    assert unkeyed[1] == []
    assert keyed[1] == [f"run {run_id} version {i[:12]} ({kind}, round {rnd}): missing signature by key "
                        f"{key.fingerprint[:16]}"
                        for i, (kind, rnd) in zip(ids, [("initial", 0), ("client_update", 1),
                                                        ("client_update", 1), ("aggregate", 1)],
                                                  strict=True)]


def test_a_run_record_whose_key_fingerprint_was_changed_is_named(
    keys: tuple[Path, Path, Path], tmp_path: Path,
) -> None:
    record = load_signer(keys[0]).run_record()
    with Registry(tmp_path / "reg") as registry:
        run_id = registry.create_run("s", 0, {"signing_key": {**record, "fingerprint": "00" * 32}})

        problems = registry.verify(run_id)[1]

    assert problems == [f"run {run_id}: its recorded signing key hashes to fingerprint "
                        f"{record['fingerprint'][:16]}, not its recorded fingerprint 0000000000000000"]


def test_migration_3_adds_the_signature_table_to_a_registry_of_version_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    with monkeypatch.context() as older:  # the code of a flonnx that knew two migrations
        older.setattr(schema, "LATEST", 2)
        with Registry(tmp_path / "reg") as old:
            run_id = old.create_run("old", 3, {})
            write_rounds(old, run_id, 1, 2)
    engine = create_engine(f"sqlite:///{tmp_path / 'reg' / 'registry.db'}")
    with engine.connect() as connection:
        before = inspect(connection).has_table("version_signatures")
    engine.dispose()

    with Registry(tmp_path / "reg", create=False, migrate=True) as registry:
        migrated, problems = registry.migrated, registry.verify(run_id)[1]
    engine = create_engine(f"sqlite:///{tmp_path / 'reg' / 'registry.db'}")
    with engine.connect() as connection:
        after = inspect(connection).has_table("version_signatures")
        described = connection.execute(select(schema.schema_versions.c.description).where(
            schema.schema_versions.c.version == 3)).scalar_one()
    engine.dispose()

    assert (before, after, migrated, problems) == (False, True, list(range(3, schema.LATEST + 1)), [])
    assert described.startswith("Signatures of version ids")
