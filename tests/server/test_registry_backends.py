"""A federation on each registry backend: the same version ids, its run locked while it is written,
and the registry of the previous flonnx (its exact DDL, a real run in it) migrated and verified."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flonnx.exchange.errors import RunLocked
from flonnx.exchange.registry import Registry
from tests.postgres import create_database

CONFIG: dict[str, Any] = {"num-server-rounds": 2, "frameworks": "sklearn:3,torch:3", "local-epochs": 1}

# The DDL of flonnx 0.1's exchange/registry.py, verbatim: registries it made have no version table.
OLD_DDL = """
CREATE TABLE IF NOT EXISTS runs (
    run_id      TEXT PRIMARY KEY,
    created_at  TEXT NOT NULL,
    scenario    TEXT NOT NULL,
    seed        INTEGER NOT NULL,
    config_json TEXT NOT NULL,
    status      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    version_id    TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    round         INTEGER NOT NULL,
    definition_id TEXT NOT NULL,
    weights_id    TEXT NOT NULL,
    record_json   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS run_versions (
    run_id     TEXT NOT NULL REFERENCES runs(run_id),
    version_id TEXT NOT NULL REFERENCES versions(version_id),
    seq        INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (run_id, version_id)
);
CREATE TABLE IF NOT EXISTS run_heads (
    run_id     TEXT NOT NULL REFERENCES runs(run_id),
    round      INTEGER NOT NULL,
    version_id TEXT NOT NULL REFERENCES versions(version_id),
    PRIMARY KEY (run_id, round)
);
CREATE TABLE IF NOT EXISTS strategy_states (
    run_id   TEXT NOT NULL REFERENCES runs(run_id),
    round    INTEGER NOT NULL,
    state_id TEXT NOT NULL,
    PRIMARY KEY (run_id, round)
);
"""
OLD_TABLES = ("runs", "versions", "run_versions", "run_heads", "strategy_states")


def _federation(registry: str, blobs: str = "", **config: Any) -> tuple[str, list[str]]:
    """Run (or resume) a federation in-process (as tests/server/conftest.run_local does).

    Returns the run id and what a second writer got when it tried the run's lock while it ran.
    """
    from dataclasses import replace

    from flonnx.client.app import app as client_app
    from flonnx.exchange.spec import RUN_CONFIG_KEYS
    from flonnx.server.app import resumed_settings
    from flonnx.server.federation import Federation
    from flonnx.server.progress import Reporter
    from flonnx.server.settings import Settings
    from tests.server.local_grid import LocalGrid

    resume = config.pop("resume", "")
    run_config = {"registry": registry, "blobs": blobs, "min-available-nodes": 6, **config}
    settings = Settings.from_run_config(run_config)
    if resume:
        settings = resumed_settings(replace(settings, resume=resume), run_config)
    federation = Federation(LocalGrid(client_app, 6, {k: v for k, v in config.items()
                                                      if k in RUN_CONFIG_KEYS}), settings, Reporter())
    refused: list[str] = []

    def second_writer(run_id: str) -> None:
        with Registry(registry, blobs=blobs or None) as other:
            try:
                with other.lock_run(run_id):
                    refused.append("not refused")
            except RunLocked as exc:
                refused.append(str(exc))

    federation.on_run_created = second_writer
    return federation.run(), refused


@pytest.fixture(scope="module")
def directory_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, list[str]]:
    registry = tmp_path_factory.mktemp("directory") / "runs"
    return registry, *_federation(str(registry), **CONFIG)


@pytest.fixture(scope="module")
def postgres_run(postgres_url: str,
                 tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str, list[str]]:
    # with a password in the URL (the test server trusts local connections): it must not be recorded
    url = create_database(postgres_url).replace("postgres@", "postgres:s3cret-pw@")
    blobs = str(tmp_path_factory.mktemp("pg-blobs"))
    return url, blobs, *_federation(url, blobs, **CONFIG)


def _ids(registry: Registry, run_id: str) -> tuple[dict[int, str], list[str]]:
    return registry.heads(run_id), [v.version_id for v in registry.versions(run_id)]


@pytest.mark.deployment
def test_the_same_federation_gets_the_same_version_ids_on_a_directory_and_on_postgresql(
    directory_run: tuple[Path, str, list[str]], postgres_run: tuple[str, str, str, list[str]],
) -> None:
    directory, dir_run, _ = directory_run
    url, blobs, pg_run, _ = postgres_run

    with Registry(directory, create=False) as embedded, Registry(url, blobs=blobs, create=False) as server:
        embedded_ids, server_ids = _ids(embedded, dir_run), _ids(server, pg_run)
        checks = embedded.verify(dir_run), server.verify(pg_run)
        status = embedded.run(dir_run).status, server.run(pg_run).status

    assert sorted(embedded_ids[0]) == [0, 1, 2] and len(embedded_ids[1]) == 1 + 2 * (6 + 1)
    assert server_ids == embedded_ids  # every round's head, and every version in recording order
    assert [c[1] for c in checks] == [[], []] and checks[0][0] == checks[1][0] > 20
    assert status == ("completed", "completed")


@pytest.mark.parametrize("backend", ["directory", pytest.param("postgresql", marks=pytest.mark.deployment)])
def test_a_run_is_locked_while_its_coordinator_writes_it(backend: str,
                                                         request: pytest.FixtureRequest) -> None:
    fixture = request.getfixturevalue(f"{'directory' if backend == 'directory' else 'postgres'}_run")
    run_id, refused = fixture[-2], fixture[-1]
    registry, blobs = (str(fixture[0]), None) if backend == "directory" else (fixture[0], fixture[1])

    with Registry(registry, blobs=blobs) as after, after.lock_run(run_id):  # free once the run ended
        pass

    assert len(refused) == 1, refused
    assert refused[0].startswith(f"run {run_id} is being written by another process ("), refused


@pytest.mark.parametrize("backend", ["directory", pytest.param("postgresql", marks=pytest.mark.deployment)])
def test_a_resume_of_a_run_another_process_writes_is_refused_before_it_changes_anything(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest,
) -> None:
    if backend == "directory":
        registry, blobs = str(tmp_path / "runs"), ""
    else:
        registry, blobs = create_database(request.getfixturevalue("postgres_url")), str(tmp_path / "blobs")
    from flonnx.server.settings import Settings

    stored = Settings.from_run_config({"registry": registry, "blobs": blobs, **CONFIG}).to_json()
    with Registry(registry, blobs=blobs or None) as holder:
        run_id = holder.create_run("digits-mixed", 0, stored)

        with holder.lock_run(run_id), pytest.raises(RunLocked, match=f"run {run_id} is being written"):
            _federation(registry, blobs, resume=run_id, **CONFIG)
        info = holder.run(run_id)

    assert (info.status, info.last_round) == ("running", None)


@pytest.mark.deployment
def test_the_run_record_masks_the_registry_password(postgres_run: tuple[str, str, str, list[str]]) -> None:
    url, blobs, run_id, _ = postgres_run

    with Registry(url, blobs=blobs, create=False) as registry:
        recorded = registry.run(run_id).config["registry"]

    assert "s3cret-pw" in url
    assert recorded == url.replace("s3cret-pw", "***")


def test_a_registry_of_the_previous_flonnx_opens_migrates_and_verifies(
    directory_run: tuple[Path, str, list[str]], tmp_path: Path,
) -> None:
    from flonnx.cli import app

    source, run_id, _ = directory_run
    old = tmp_path / "old-registry"
    old.mkdir()
    db = sqlite3.connect(old / "registry.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(OLD_DDL)
    db.execute("ATTACH DATABASE ? AS run", (str(source / "registry.db"),))
    for table in OLD_TABLES:  # the real run's rows, as the previous flonnx wrote them
        db.execute(f"INSERT INTO main.{table} SELECT * FROM run.{table}")  # noqa: S608
    db.commit()
    db.execute("DETACH DATABASE run")
    db.close()
    shutil.copytree(source / "blobs", old / "blobs")
    cli = CliRunner()

    refused = cli.invoke(app, ["lineage", "ls", "--registry", str(old)])
    migrate = cli.invoke(app, ["lineage", "migrate", "--registry", str(old)])
    verify = cli.invoke(app, ["lineage", "verify", "--registry", str(old)])
    with Registry(old, create=False) as migrated, Registry(source, create=False) as original:
        assert migrated.runs() == original.runs()
        assert migrated.versions(run_id) == original.versions(run_id)
        assert migrated.heads(run_id) == original.heads(run_id)
        assert migrated.state_at(run_id, 2) == original.state_at(run_id, 2) is not None
        # the previous flonnx kept site evaluations in the run record only (the table came with
        # migration 4): the migrated registry checks everything else the original does
        final = original.heads(run_id)[max(original.heads(run_id))]
        evaluations = len(original.evaluations(final, run_id))
        assert evaluations > 0 and migrated.evaluations(final, run_id) == []
        checked, problems = migrated.verify(run_id)
        assert (checked + evaluations, problems) == original.verify(run_id) == (checked + evaluations, [])

    assert refused.exit_code == 1
    assert "has schema version 0" in refused.output and "flonnx lineage migrate --registry" in refused.output
    assert migrate.exit_code == 0 and "applied migration(s) 1, 2" in migrate.output, migrate.output
    assert verify.exit_code == 0 and "ok" in verify.output, verify.output
