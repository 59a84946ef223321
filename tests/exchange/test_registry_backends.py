"""Registry backends: one schema with numbered migrations on SQLite and PostgreSQL, blobs in a
directory or behind an fsspec URL, and locations whose passwords never show.

The registry of the previous flonnx (the exact DDL it shipped, filled by a real federation) is
migrated in tests/server/test_registry_backends.py.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from sqlalchemy import create_engine, insert
from typer.testing import CliRunner

from flonnx.exchange import _schema as schema
from flonnx.exchange.errors import LineageError, RegistryError
from flonnx.exchange.registry import Registry, mask_url
from tests.exchange.registry_worker import write_rounds


@pytest.fixture(params=["directory", pytest.param("postgresql", marks=pytest.mark.deployment)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str | None]:
    """(registry, blobs): a directory and its own blobs, or a PostgreSQL URL and a blob directory."""
    if request.param == "directory":
        return str(tmp_path / "registry"), None
    return request.getfixturevalue("postgres_db"), str(tmp_path / "blobs")


def _engine_url(registry: str) -> str:
    return registry if "://" in registry else f"sqlite:///{registry}/registry.db"


# -- schema and migrations --------------------------------------------------------------------------
def test_a_new_registry_has_exactly_the_declared_tables_at_the_latest_version(
    database: tuple[str, str | None],
) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with Registry(database[0], blobs=database[1]) as registry:
        opened = (registry.schema_version, registry.migrated)
    engine = create_engine(_engine_url(database[0]))
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), schema.metadata)
        applied = [row.version for row in connection.execute(schema.schema_versions.select())]
    engine.dispose()

    assert opened == (schema.LATEST, list(range(1, schema.LATEST + 1)))
    assert differences == []
    assert applied == list(range(1, schema.LATEST + 1))


def test_a_read_only_open_refuses_an_old_registry_until_a_writer_migrated_it(
    database: tuple[str, str | None], monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry_at, blobs = database
    with monkeypatch.context() as older:  # the code of a flonnx that knew one migration
        older.setattr(schema, "LATEST", 1)
        with Registry(registry_at, blobs=blobs) as old:
            run_id = old.create_run("old", 3, {"rounds": 2})
            write_rounds(old, run_id, 2, 2)
            expected = [v.version_id for v in old.versions(run_id)]
            assert old.migrated == [1]

    with pytest.raises(RegistryError, match=r"has schema version 1 .*a read-only open never migrates: "
                                            r"open it for writing once, e\.g\. `flonnx lineage migrate"):
        Registry(registry_at, blobs=blobs, create=False)
    with Registry(registry_at, blobs=blobs, create=False, migrate=True) as writer:
        migrated = writer.migrated
    with Registry(registry_at, blobs=blobs, create=False) as reader:
        again = reader.migrated
        versions = [v.version_id for v in reader.versions(run_id)]
        checked, problems = reader.verify(run_id)

    assert (migrated, again) == (list(range(2, schema.LATEST + 1)), [])
    assert versions == expected
    assert problems == [] and checked > len(expected)


def test_a_registry_migrated_past_this_flonnx_is_refused_for_reading_and_writing(
    database: tuple[str, str | None],
) -> None:
    Registry(database[0], blobs=database[1]).close()
    engine = create_engine(_engine_url(database[0]))
    with engine.begin() as connection:
        connection.execute(insert(schema.schema_versions).values(
            version=schema.LATEST + 1, applied_at="2099-01-01T00:00:00+00:00", description="future"))
    engine.dispose()

    for create in (True, False):
        with pytest.raises(RegistryError, match=f"schema version {schema.LATEST + 1}, newer than this "
                                                "flonnx knows"):
            Registry(database[0], blobs=database[1], create=create)


@pytest.mark.deployment
def test_an_empty_database_is_no_registry_for_a_read_only_open(postgres_db: str, tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="no flonnx registry at postgresql.*has no flonnx tables"):
        Registry(postgres_db, blobs=tmp_path, create=False)


# -- locations --------------------------------------------------------------------------------------
def test_a_database_url_without_blobs_is_refused() -> None:
    with pytest.raises(RegistryError, match="is a database URL: say where its blobs live too"):
        Registry("postgresql://flonnx@db.example/flonnx")


def test_only_sqlite_and_postgresql_urls_are_registries(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="runs on SQLite or PostgreSQL, not 'mysql'"):
        Registry("mysql://u:pw@db.example/flonnx", blobs=tmp_path)


def test_a_sqlite_url_registry_keeps_its_locks_beside_the_file(tmp_path: Path) -> None:
    with Registry(f"sqlite:///{tmp_path / 'db' / 'reg.sqlite'}", blobs=tmp_path / "b") as registry:
        run_id = registry.create_run("s", 0, {})
        write_rounds(registry, run_id, 1, 2)
        with registry.lock_run(run_id):
            assert (tmp_path / "db" / "locks" / f"{run_id}.lock").exists()
        assert registry.verify(run_id)[1] == []


@pytest.mark.parametrize(("text", "masked"), [
    ("postgresql://flonnx:s3cret@db:5432/reg", "postgresql://flonnx:***@db:5432/reg"),
    ("postgresql+psycopg://u:p@ss@db/reg", "postgresql+psycopg://u:***@db/reg"),
    ("postgresql://u@/reg?host=/tmp&password=s3cret&sslmode=require",
     "postgresql://u@/reg?host=/tmp&password=***&sslmode=require"),
    ("error at s3://key:secret@bucket/x and postgresql://a:b@h/d", "error at s3://key:***@bucket/x and "
                                                                    "postgresql://a:***@h/d"),
    ("runs", "runs"),
    ("postgresql://flonnx@db/reg", "postgresql://flonnx@db/reg"),
])
def test_mask_url_hides_every_password(text: str, masked: str) -> None:
    assert mask_url(text) == masked


def test_a_password_never_shows_in_an_error_or_on_the_command_line(tmp_path: Path) -> None:
    from flonnx.cli import app

    url = "postgresql://flonnx:s3cret-pw@127.0.0.1:1/flonnx"  # nothing listens on port 1

    with pytest.raises(RegistryError) as raised:
        Registry(url, blobs=tmp_path)
    result = CliRunner().invoke(app, ["runs", "--registry", url, "--blobs", str(tmp_path)])

    assert "cannot open registry database postgresql://flonnx:***@127.0.0.1:1/flonnx" in str(raised.value)
    assert "s3cret-pw" not in str(raised.value)
    assert result.exit_code == 1
    assert "flonnx:***@127.0.0.1" in result.output and "s3cret-pw" not in result.output


@pytest.mark.deployment
def test_a_password_never_shows_in_the_registry_location_or_its_messages(
    postgres_db: str, tmp_path: Path,
) -> None:
    # the test server trusts local connections, so any password opens it
    url = postgres_db.replace("postgresql+psycopg://postgres@", "postgresql+psycopg://postgres:s3cret-pw@")

    with Registry(url, blobs=tmp_path) as registry:
        with pytest.raises(LineageError) as raised:
            registry.run("nothing")
        location = registry.location

    assert "s3cret-pw" not in location + str(raised.value)
    assert "postgres:***@" in location


# -- blobs behind fsspec ----------------------------------------------------------------------------
@pytest.fixture()
def fsspec_registry(tmp_path: Path) -> Registry:
    pytest.importorskip("fsspec", reason="blob URLs go through fsspec")
    registry = Registry(tmp_path / "reg", blobs=f"memory://flonnx-{secrets.token_hex(4)}/blobs")
    yield registry  # type: ignore[misc]
    registry.close()


def test_blobs_behind_an_fsspec_url_round_trip_and_verify(fsspec_registry: Registry) -> None:
    run_id = fsspec_registry.create_run("fsspec", 0, {})
    write_rounds(fsspec_registry, run_id, 2, 2)
    store = fsspec_registry.blobs

    checked, problems = fsspec_registry.verify(run_id)

    assert problems == [] and checked > 8
    assert not (fsspec_registry.root / "blobs").exists()  # type: ignore[operator]
    assert store.fs.find(f"{store.root}/.tmp") == []  # type: ignore[union-attr]
    assert len(store.fs.find(store.root)) == 1 + 1 + 2 * 3  # type: ignore[union-attr]


def test_a_changed_fsspec_blob_is_named_by_verify_and_refused_on_read(fsspec_registry: Registry) -> None:
    run_id = fsspec_registry.create_run("fsspec", 0, {})
    write_rounds(fsspec_registry, run_id, 1, 1)
    aggregate = fsspec_registry.record(fsspec_registry.heads(run_id)[1])
    store = fsspec_registry.blobs
    key = f"{store.root}/{aggregate.weights_id[:2]}/{aggregate.weights_id}"  # type: ignore[union-attr]
    data = bytearray(store.fs.cat_file(key))  # type: ignore[union-attr]
    data[-1] ^= 0x01
    store.fs.pipe_file(key, bytes(data))  # type: ignore[union-attr]

    _, problems = fsspec_registry.verify(run_id)

    assert len(problems) == 1 and "content hashes to" in problems[0]
    assert "memory://flonnx-" in problems[0] and aggregate.weights_id[:12] in problems[0]
    with pytest.raises(LineageError, match="does not match its id"):
        fsspec_registry.get_weights(aggregate.weights_id)


def test_a_file_url_for_blobs_is_the_atomic_local_store(tmp_path: Path) -> None:
    with Registry(tmp_path / "reg", blobs=f"file://{tmp_path / 'elsewhere'}") as registry:
        run_id = registry.create_run("file", 0, {})
        write_rounds(registry, run_id, 1, 1)
        stored = sorted(p.name for p in (tmp_path / "elsewhere").rglob("*") if p.is_file())

    assert len(stored) == 1 + 1 + 2
    assert list((tmp_path / "elsewhere" / ".tmp").iterdir()) == []
