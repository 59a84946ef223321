"""The registry's tables, and the numbered migrations that bring any registry to them.

``flonnx_schema`` lists the migrations applied to a database (one row each); the registry's schema
version is the highest. A registry of flonnx 0.1 (SQLite, no ``flonnx_schema``) is version 0; an
empty database has no version. :func:`upgrade` applies the missing migrations in the caller's
writing transaction, so a crash leaves the old schema or the new one, never a mix (SQLite and
PostgreSQL both run DDL inside transactions); two processes upgrading at once queue on the write lock
(SQLite) or on an advisory transaction lock (PostgreSQL), and the second finds nothing left to do.

A migration is a function over alembic's :class:`~alembic.operations.Operations`, written out in full
rather than derived from the tables below, so that it keeps meaning what it meant when it shipped.
``tests/exchange/test_registry_schema.py`` checks that migrating an empty database yields exactly
these tables.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
    insert,
    inspect,
    select,
    text,
)

from flonnx.exchange.errors import RegistryError

if TYPE_CHECKING:
    from alembic.operations import Operations

__all__ = ["LATEST", "MIGRATIONS", "current_version", "metadata", "newer_than_code", "upgrade"]

#: A run seed is any int64; INTEGER is already 64-bit in SQLite, and this keeps flonnx 0.1's DDL.
_SEED = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

runs = Table(
    "runs", metadata,
    Column("run_id", Text, primary_key=True),
    Column("created_at", Text, nullable=False),
    Column("scenario", Text, nullable=False),
    Column("seed", _SEED, nullable=False),
    Column("config_json", Text, nullable=False),
    Column("status", Text, nullable=False),
)
versions = Table(
    "versions", metadata,
    Column("version_id", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("round", Integer, nullable=False),
    Column("definition_id", Text, nullable=False),
    Column("weights_id", Text, nullable=False),
    Column("record_json", Text, nullable=False),
)
run_versions = Table(
    "run_versions", metadata,
    Column("run_id", Text, ForeignKey("runs.run_id"), nullable=False),
    Column("version_id", Text, ForeignKey("versions.version_id"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("created_at", Text, nullable=False),
    PrimaryKeyConstraint("run_id", "version_id"),
    Index("ix_run_versions_run_seq", "run_id", "seq"),
)
run_heads = Table(
    "run_heads", metadata,
    Column("run_id", Text, ForeignKey("runs.run_id"), nullable=False),
    Column("round", Integer, nullable=False),
    Column("version_id", Text, ForeignKey("versions.version_id"), nullable=False),
    PrimaryKeyConstraint("run_id", "round"),
)
strategy_states = Table(
    "strategy_states", metadata,
    Column("run_id", Text, ForeignKey("runs.run_id"), nullable=False),
    Column("round", Integer, nullable=False),
    Column("state_id", Text, nullable=False),
    PrimaryKeyConstraint("run_id", "round"),
)
version_signatures = Table(
    "version_signatures", metadata,
    Column("version_id", Text, ForeignKey("versions.version_id"), nullable=False),
    Column("key_fingerprint", Text, nullable=False),
    Column("signature", Text, nullable=False),
    PrimaryKeyConstraint("version_id", "key_fingerprint"),
)
evaluations = Table(
    "evaluations", metadata,
    Column("run_id", Text, ForeignKey("runs.run_id"), nullable=False),
    Column("version_id", Text, ForeignKey("versions.version_id"), nullable=False),
    Column("source", Text, nullable=False),
    Column("evaluation_id", Text, nullable=False),
    Column("record_json", Text, nullable=False),
    PrimaryKeyConstraint("run_id", "version_id", "source"),
    Index("ix_evaluations_version", "version_id"),
)
schema_versions = Table(
    "flonnx_schema", metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", Text, nullable=False),
    Column("description", Text, nullable=False),
)


# -- migrations ---------------------------------------------------------------------------------
def _tables_of_flonnx_0_1(op: Operations) -> None:
    """The five tables; a flonnx 0.1 registry has them already, which this step adopts."""
    op.create_table(
        "runs",
        Column("run_id", Text, primary_key=True),
        Column("created_at", Text, nullable=False),
        Column("scenario", Text, nullable=False),
        Column("seed", BigInteger().with_variant(Integer(), "sqlite"), nullable=False),
        Column("config_json", Text, nullable=False),
        Column("status", Text, nullable=False),
        if_not_exists=True,
    )
    op.create_table(
        "versions",
        Column("version_id", Text, primary_key=True),
        Column("kind", Text, nullable=False),
        Column("round", Integer, nullable=False),
        Column("definition_id", Text, nullable=False),
        Column("weights_id", Text, nullable=False),
        Column("record_json", Text, nullable=False),
        if_not_exists=True,
    )
    op.create_table(
        "run_versions",
        Column("run_id", Text, ForeignKey("runs.run_id"), nullable=False),
        Column("version_id", Text, ForeignKey("versions.version_id"), nullable=False),
        Column("seq", Integer, nullable=False),
        Column("created_at", Text, nullable=False),
        PrimaryKeyConstraint("run_id", "version_id"),
        if_not_exists=True,
    )
    op.create_table(
        "run_heads",
        Column("run_id", Text, ForeignKey("runs.run_id"), nullable=False),
        Column("round", Integer, nullable=False),
        Column("version_id", Text, ForeignKey("versions.version_id"), nullable=False),
        PrimaryKeyConstraint("run_id", "round"),
        if_not_exists=True,
    )
    op.create_table(
        "strategy_states",
        Column("run_id", Text, ForeignKey("runs.run_id"), nullable=False),
        Column("round", Integer, nullable=False),
        Column("state_id", Text, nullable=False),
        PrimaryKeyConstraint("run_id", "round"),
        if_not_exists=True,
    )


def _run_versions_by_seq(op: Operations) -> None:
    """Index a run's versions by recording order: ``versions()`` and each commit's next ``seq``."""
    op.create_index("ix_run_versions_run_seq", "run_versions", ["run_id", "seq"])


def _version_signatures(op: Operations) -> None:
    """Signatures of version ids beside the records (signed lineage), one per version and key."""
    op.create_table(
        "version_signatures",
        Column("version_id", Text, ForeignKey("versions.version_id"), nullable=False),
        Column("key_fingerprint", Text, nullable=False),
        Column("signature", Text, nullable=False),
        PrimaryKeyConstraint("version_id", "key_fingerprint"),
    )


def _evaluations(op: Operations) -> None:
    """Evaluation records of versions (e.g. each site's metrics of a run's final version)."""
    op.create_table(
        "evaluations",
        Column("run_id", Text, ForeignKey("runs.run_id"), nullable=False),
        Column("version_id", Text, ForeignKey("versions.version_id"), nullable=False),
        Column("source", Text, nullable=False),
        Column("evaluation_id", Text, nullable=False),
        Column("record_json", Text, nullable=False),
        PrimaryKeyConstraint("run_id", "version_id", "source"),
    )
    op.create_index("ix_evaluations_version", "evaluations", ["version_id"])


#: Migration ``i + 1`` is ``MIGRATIONS[i]``; append, never edit a shipped one.
MIGRATIONS: tuple[Callable[[Operations], None], ...] = (
    _tables_of_flonnx_0_1, _run_versions_by_seq, _version_signatures, _evaluations)
LATEST = len(MIGRATIONS)

# Any fixed number: the key of the PostgreSQL transaction lock that queues concurrent upgrades.
_UPGRADE_LOCK = 0x666C6F6E6E78


def current_version(connection: Connection) -> int | None:
    """The schema version of the database; 0 for a flonnx 0.1 registry, None when it has no registry."""
    inspector = inspect(connection)
    if inspector.has_table(schema_versions.name):
        return int(connection.execute(select(func.max(schema_versions.c.version))).scalar() or 0)
    return 0 if inspector.has_table("runs") else None


def upgrade(connection: Connection, location: str, target: int | None = None) -> list[int]:
    """Apply the migrations up to ``target`` (default: all) in the caller's writing transaction.

    Returns the numbers of the migrations applied.
    """
    target = LATEST if target is None else target
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _UPGRADE_LOCK})
    current = current_version(connection) or 0
    if current > LATEST:
        raise newer_than_code(location, current)
    if current >= target:
        return []
    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext

    op = Operations(MigrationContext.configure(connection))
    op.create_table(
        schema_versions.name,
        Column("version", Integer, primary_key=True, autoincrement=False),
        Column("applied_at", Text, nullable=False),
        Column("description", Text, nullable=False),
        if_not_exists=True,
    )
    applied = []
    for number in range(current + 1, target + 1):
        step = MIGRATIONS[number - 1]
        step(op)
        connection.execute(insert(schema_versions).values(
            version=number, applied_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            description=(step.__doc__ or step.__name__).strip().splitlines()[0]))
        applied.append(number)
    return applied


def newer_than_code(location: str, version: int) -> RegistryError:
    """The error for a registry a newer flonnx has migrated past what this one knows."""
    return RegistryError(f"the registry {location} has schema version {version}, newer than this "
                         f"flonnx knows ({LATEST}): upgrade flonnx to open it")
