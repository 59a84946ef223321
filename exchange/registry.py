"""The model registry: versions, runs and their blobs, in one directory or on a database server.

Layout of a registry directory (default ``./runs``)::

    registry.db        SQLite (WAL): runs, versions, which run made which version, round heads
    blobs/ab/ab…       content-addressed blobs: canonical definitions, weights, strategy states
    locks/RUN.lock     the run locks (:meth:`Registry.lock_run`)

A larger deployment names a database by URL (``postgresql://…``, through SQLAlchemy) and its blobs
separately (``blobs=``: a directory, or an fsspec URL such as ``s3://bucket/flonnx``). The tables are
the same on both (``exchange/_schema.py``, with its numbered migrations); a registry made by an older
flonnx is migrated when it is opened for writing, never by a read-only open (``create=False``).

A strategy state (the aggregation strategy's own memory after a round: optimizer moments, momentum,
clipping norm) is a canonical-JSON blob ``{"arrays_id": …, "state": …}`` whose arrays live in a
weights-encoded blob; ``strategy_states`` maps (run, round) to it, written in the round's transaction.

A version's record is stored as the canonical JSON its id is computed over, so ``verify`` can re-hash
every record and blob. Reading never trusts the database either: every record read (``record``,
``versions`` and what is built on them) is re-hashed against its id, and every run record's spec
against its ``spec_id``, as blobs are against theirs; a record changed after it was written is a
:class:`RegistryError` naming the version or run, never a value shown, exported or resumed from.
``verify`` reads the same rows without stopping at the first problem.

A run started with a signing key (:mod:`flonnx.exchange.signing`) records its public key under
``signing_key`` in its record, and each version's signature is committed in the same transaction as
the version (table ``version_signatures``), never inside what the id hashes.

Blobs are written (atomically) before the transaction that references them; each round's versions
and its new head are committed in one transaction, so a crash leaves either the whole round or none
of it, and a concurrent reader sees either the whole round or none of it.

A run's retention (``[registry] retention`` of its recorded spec, :func:`retention_horizon`) may keep
the client updates' blobs of its last K rounds only. Their rows (ids, records, the hash chain) are
kept; :meth:`Registry.prune`, called after a round's commit, deletes the weights blobs that no
retained row of any run references (an aggregate, a retained update, a definition or strategy
state whose bytes are the same), computed from the database each time: a crash before or during a
prune leaves extra blobs, which the next prune deletes. ``verify`` does not count a blob retention
let go as missing, and still reports every blob retention keeps.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, Table, and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from flonnx.exchange import _schema as schema
from flonnx.exchange._database import WRITE, is_url, mask_url, open_engine, parse_url
from flonnx.exchange._locks import advisory_lock, advisory_lock_held, file_lock, file_lock_held
from flonnx.exchange.blobstore import BlobStore, FsspecBlobStore, fsync_dir, open_blobs
from flonnx.exchange.crashpoints import crash_point
from flonnx.exchange.definition import Definition
from flonnx.exchange.errors import FlonnxError, LineageError, RegistryError
from flonnx.exchange.hashing import canonical_json, decode_weights, encode_weights, sha256_hex
from flonnx.exchange.lineage import VersionKind, VersionRecord
from flonnx.exchange.signing import PublicKey, Signer, SigningError
from flonnx.exchange.spec import parse_retention

__all__ = ["SITE_SOURCE", "Evaluation", "Registry", "RunInfo", "StoredVersion", "mask_url", "recorded_key",
           "retention_horizon", "run_record_problems", "strategy_state_id"]


def _state_document(arrays: Mapping[str, np.ndarray],
                    state: Mapping[str, Any]) -> tuple[bytes, str, bytes]:
    """(encoded arrays, their id, canonical state document) of a strategy state."""
    encoded = encode_weights(arrays)
    arrays_id = sha256_hex(encoded)
    return encoded, arrays_id, canonical_json({"arrays_id": arrays_id, "state": dict(state)})


def strategy_state_id(arrays: Mapping[str, np.ndarray], state: Mapping[str, Any]) -> str:
    """The id :meth:`Registry.put_state` gives a strategy state, computed without storing it."""
    return sha256_hex(_state_document(arrays, state)[2])


#: Spec keys a resume may change after the run recorded its canonical spec (a longer run, fewer
#: required updates); the canonical spec keeps the values the run started with.
_RESUMABLE_SPEC_KEYS = frozenset({"rounds", "min-train-nodes"})


def _agrees(value: Any, canonical: Any) -> bool:
    """A spec value against its canonical form, which holds a file's hash where the spec has its path."""
    if isinstance(canonical, dict) and set(canonical) == {"sha256", "suffix"}:
        return isinstance(value, str)
    return bool(value == canonical)


def _spec_differences(spec: Mapping[str, Any], canonical: Mapping[str, Any]) -> list[str]:
    """The keys where a run's spec as run disagrees with its canonical spec.

    The canonical form has no description; keys a newer flonnx added to ``spec`` when it resumed
    the run are not in it, and not compared.
    """
    differences = []
    for key, value in canonical.items():
        if key in _RESUMABLE_SPEC_KEYS:
            continue
        mine = spec.get(key)
        if key == "data" and isinstance(value, dict) and isinstance(mine, dict):
            differences += [f"data.{k}" for k in sorted(set(value) | set(mine))
                            if k not in value or k not in mine or not _agrees(mine[k], value[k])]
        elif key not in spec or not _agrees(mine, value):
            differences.append(key)
    return differences


def run_record_problems(run_id: str, scenario: str, seed: int, config: Mapping[str, Any]) -> list[str]:
    """What is wrong with a run's record (``[]``: nothing, or it recorded no canonical spec).

    Its canonical spec must re-hash to its ``spec_id``, and the spec it runs with (what resume and
    replay read), its name and its seed must agree with that canonical spec.
    A signed run's ``signing_key`` must be a public key whose fingerprint is the one recorded.
    """
    key_problem = _signing_key_problem(run_id, config)
    if "spec_canonical" not in config:
        return [key_problem] if key_problem else []
    canonical = config["spec_canonical"]
    try:
        actual = sha256_hex(canonical_json(canonical))
    except ValueError as exc:
        return [f"run {run_id}: recorded spec has no canonical form ({exc})"]
    if actual != config.get("spec_id"):
        return [f"run {run_id}: recorded spec re-hashes to {actual[:12]}, not its spec id "
                f"{str(config.get('spec_id'))[:12]}"]
    if not isinstance(canonical, dict):
        return [f"run {run_id}: recorded spec is not a table"]
    problems = []
    spec = config.get("spec")
    differences = (_spec_differences(spec, canonical) if isinstance(spec, dict)
                   else ["spec"])
    if differences:
        problems.append(f"run {run_id}: the spec it runs with differs from its recorded spec "
                        f"(spec id {actual[:12]}) at {', '.join(differences)}")
    if (canonical.get("name"), canonical.get("seed")) != (scenario, seed):
        problems.append(f"run {run_id}: its name and seed ({scenario!r}, {seed}) are not its "
                        f"recorded spec's ({canonical.get('name')!r}, {canonical.get('seed')})")
    return [*problems, *([key_problem] if key_problem else [])]


def retention_horizon(config: Mapping[str, Any], last_round: int | None) -> int:
    """The newest round whose client updates a run's retention lets go (0: none), after ``last_round``.

    ``[registry] retention = "last:K"`` in the run's recorded spec keeps the updates of rounds
    ``last_round - K + 1 …``; ``"all"``, none recorded, or a malformed one (reported by
    :func:`run_record_problems`) keeps every update.
    """
    spec = config.get("spec")
    table = spec.get("registry") if isinstance(spec, dict) else None
    try:
        kept = parse_retention(table.get("retention", "all")) if isinstance(table, dict) else None
    except ValueError:
        kept = None
    return 0 if kept is None or last_round is None else max(last_round - kept, 0)


def recorded_key(config: Mapping[str, Any]) -> PublicKey | None:
    """The public key a run's record names (``None``: an unsigned run).

    Raises:
        SigningError: the recorded key is malformed.
    """
    entry = config.get("signing_key")
    if entry is None:
        return None
    if not isinstance(entry, dict):
        raise SigningError("its recorded signing key is not a table")
    return PublicKey.from_hex(str(entry.get("public_key", "")))


def _signing_key_problem(run_id: str, config: Mapping[str, Any]) -> str | None:
    try:
        key = recorded_key(config)
    except SigningError as exc:
        return f"run {run_id}: {exc}"
    if key is not None and config["signing_key"].get("fingerprint") != key.fingerprint:
        return (f"run {run_id}: its recorded signing key hashes to fingerprint {key.fingerprint[:16]}, "
                f"not its recorded fingerprint {str(config['signing_key'].get('fingerprint'))[:16]}")
    return None


def _create_sqlite(url: URL, location: str) -> list[int]:
    """Make a new SQLite registry database whole or not at all; returns the migrations applied.

    The tables are made in a temporary file beside it, which is then hard-linked into place (``link``
    fails where ``rename`` would replace): a process killed meanwhile leaves no half-made database
    (an empty file, which no reader would take for a registry), and of two processes creating the
    same registry at once the second finds the first's. Nothing to do for an existing file or
    another database.
    """
    if url.get_backend_name() != "sqlite" or not url.database:
        return []
    database = Path(str(url.database))
    if database.exists():
        return []
    tmp = database.with_name(f".{database.name}.{secrets.token_hex(4)}.tmp")
    engine = open_engine(URL.create("sqlite", database=str(tmp)))
    try:
        with engine.connect() as connection:
            connection.execution_options(**{WRITE: True})
            with connection.begin():
                applied = schema.upgrade(connection, location)
    finally:
        engine.dispose()
    folding = sqlite3.connect(tmp, isolation_level=None)  # every page in the file, none in its log
    try:
        folding.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        folding.close()
    try:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        crash_point("database.before_link")
        os.link(tmp, database)
    except FileExistsError:
        applied = []  # another process made it first
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
            leftover.unlink(missing_ok=True)
    fsync_dir(database.parent)
    return applied


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _reason(exc: SQLAlchemyError) -> str:
    """The driver's message of a database error, without SQLAlchemy's wrapping, passwords masked."""
    return mask_url(str(getattr(exc, "orig", None) or exc).strip())


@dataclass(frozen=True)
class RunInfo:
    """One run as the registry knows it."""

    run_id: str
    created_at: str
    scenario: str
    seed: int
    config: dict[str, Any]
    status: str
    last_round: int | None
    head: str | None


@dataclass(frozen=True)
class StoredVersion:
    """A version of a run, with the run-level facts the record itself leaves out."""

    run_id: str
    version_id: str
    record: VersionRecord
    seq: int
    created_at: str

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON form (``flonnx lineage ls --json``)."""
        return {"run_id": self.run_id, "version_id": self.version_id,
                "created_at": self.created_at, **self.record.to_dict()}


#: The source of a site's evaluation record: ``site:`` + the site's client key.
SITE_SOURCE = "site:"


@dataclass(frozen=True)
class Evaluation:
    """One evaluation of a version by one source, e.g. ``site:hospital-a`` (metrics only).

    ``failed_reason`` is set (and ``metrics`` empty) when the source could not evaluate. The record
    is stored as canonical JSON and its id is the hash of that JSON, re-checked on every read; it
    names the version it evaluates, but the version's own record and id never change.
    """

    run_id: str
    version_id: str
    source: str
    metrics: dict[str, float]
    failed_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The canonical form (and the documented JSON form)."""
        return {"run_id": self.run_id, "version_id": self.version_id, "source": self.source,
                "metrics": {k: float(v) for k, v in sorted(self.metrics.items())},
                "failed_reason": self.failed_reason}

    def canonical_bytes(self) -> bytes:
        """The stored record, which :attr:`evaluation_id` hashes."""
        return canonical_json(self.to_dict())

    @property
    def evaluation_id(self) -> str:
        """SHA-256 of the canonical record."""
        return sha256_hex(self.canonical_bytes())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Evaluation:
        """The inverse of :meth:`to_dict`; :class:`LineageError` if malformed."""
        try:
            metrics = {str(k): float(v) for k, v in dict(data["metrics"]).items()}
            reason = data["failed_reason"]
            return cls(str(data["run_id"]), str(data["version_id"]), str(data["source"]), metrics,
                       None if reason is None else str(reason))
        except (KeyError, TypeError, ValueError) as exc:
            raise LineageError(f"malformed evaluation record: {exc!r}") from None


class Registry:
    """A registry: runs and versions in a database, blobs in a content-addressed store.

    ``Registry(DIR)`` is the embedded default: ``DIR/registry.db`` (SQLite) and ``DIR/blobs``.
    ``Registry(URL, blobs=DIR_OR_URL)`` keeps the tables in the database at ``URL`` (SQLAlchemy form:
    ``postgresql://user@host/db``, ``sqlite:////abs/path.db``) and the blobs at a directory or an
    fsspec URL; a URL registry without ``blobs`` is an error. ``blobs`` may also move a directory
    registry's blobs elsewhere.

    ``create=False`` opens an existing registry read-only: nothing is created and nothing migrated,
    and a registry this process cannot write (a read-only copy or mount) opens too
    (``exchange/_database.py`` says how). A registry an older flonnx made is refused with the command
    that upgrades it, unless ``migrate=True`` (what a writer that needs an existing registry, such as
    a resume, passes; it opens for writing). ``compress=True`` writes new blobs compressed
    (``exchange/blobstore.py``); blobs are read whichever way they were written.
    """

    def __init__(self, root: str | Path, *, create: bool = True, blobs: str | Path | None = None,
                 migrate: bool | None = None, compress: bool = False) -> None:
        self.root: Path | None
        #: opened for reading only: every write is refused
        self.read_only = not create and not migrate
        if is_url(root):
            url = parse_url(str(root))
            self.location = mask_url(str(root))
            if blobs is None or str(blobs) == "":
                raise RegistryError(
                    f"the registry {self.location} is a database URL: say where its blobs live too "
                    "(blobs= a directory or an fsspec URL; --blobs on the command line)")
            self.root = None
            if url.get_backend_name() == "sqlite":
                if url.database in (None, "", ":memory:"):
                    raise RegistryError(f"a SQLite registry needs a file, not {self.location}")
                database = Path(str(url.database))
                if not create and not database.exists():
                    raise RegistryError(f"no flonnx registry at {self.location} (no file {database})")
                if create:
                    database.parent.mkdir(parents=True, exist_ok=True)
                self._lock_dir: Path | None = database.parent / "locks"
            else:
                self._lock_dir = None
            blob_location: str | Path = blobs
        else:
            self.root = Path(root)
            self.location = str(self.root)
            database = self.root / "registry.db"
            if not create and not database.exists():
                raise RegistryError(
                    f"no flonnx registry at {self.root} (expected {database}); run a simulation first "
                    "or pass --registry"
                )
            if create:
                self.root.mkdir(parents=True, exist_ok=True)
            self._lock_dir = self.root / "locks"
            url = URL.create("sqlite", database=str(database))
            blob_location = self.root / "blobs" if blobs is None or str(blobs) == "" else blobs
        self.blobs: BlobStore | FsspecBlobStore = open_blobs(
            blob_location, mask_url(str(blob_location)), create=not self.read_only, compress=compress)
        self._state_arrays: dict[str, str] = {}  # state id -> its arrays' blob id (content-addressed)
        made = _create_sqlite(url, self.location) if create and not self.read_only else []
        self._engine: Engine = open_engine(url, read_only=self.read_only)
        self._pinned = threading.local()
        #: the migrations this open applied (``[]``: the registry was current)
        self.migrated: list[int] = made
        try:
            self.schema_version = self._open_schema(create, create if migrate is None else migrate)
        except SQLAlchemyError as exc:
            self._engine.dispose()
            raise RegistryError(f"cannot open registry database {self.location}: {_reason(exc)}") from None
        except BaseException:
            self._engine.dispose()
            raise

    def _open_schema(self, create: bool, migrate: bool) -> int:
        with self._engine.connect() as connection:
            version = schema.current_version(connection)
        if version == schema.LATEST:
            return version
        if version is not None and version > schema.LATEST:
            raise schema.newer_than_code(self.location, version)
        if version is None and not create:
            raise RegistryError(f"no flonnx registry at {self.location} (the database has no flonnx "
                                "tables); run a simulation first or pass --registry")
        if version is not None and not migrate:
            blobs = "" if self.root is not None else " --blobs …"
            raise RegistryError(
                f"the registry {self.location} has schema version {version} (made by an older "
                f"flonnx) and this flonnx needs version {schema.LATEST}; a read-only open never "
                "migrates: open it for writing once, e.g. `flonnx lineage migrate --registry "
                f"{self.location}{blobs}`")
        with self._transaction() as db:
            self.migrated = schema.upgrade(db, self.location)
        return schema.LATEST

    def close(self) -> None:
        """Close the database connections."""
        self._engine.dispose()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """One writing transaction: committed when the block ends, rolled back if it raises."""
        if self.read_only:
            raise RegistryError(f"the registry {self.location} was opened read-only: nothing is written")
        with self._engine.connect() as connection:
            connection.execution_options(**{WRITE: True})
            with connection.begin():
                yield connection

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        pinned: Connection | None = getattr(self._pinned, "connection", None)
        if pinned is not None:
            yield pinned
            return
        with self._engine.connect() as connection:
            yield connection

    def _rows(self, statement: Any) -> list[Any]:
        with self._reading() as db:
            return list(db.execute(statement).all())

    def _first(self, statement: Any) -> Any:
        with self._reading() as db:
            return db.execute(statement).first()

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Every read in the block (this thread) sees one committed state of the registry.

        Each method reads committed rounds only anyway; a snapshot makes several calls agree with
        each other, e.g. ``heads()`` and ``versions()`` while another process commits rounds.
        """
        if getattr(self._pinned, "connection", None) is not None:
            yield
            return
        with self._engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                connection.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with connection.begin():  # SQLite (WAL): the snapshot is fixed by the first read
                self._pinned.connection = connection
                try:
                    yield
                finally:
                    self._pinned.connection = None

    def _insert(self, table: Table) -> Any:
        """INSERT with the dialect's ON CONFLICT clauses."""
        dialect = postgresql if self._engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(table)

    # -- locks ----------------------------------------------------------------------------------
    def lock_run(self, run_id: str) -> AbstractContextManager[None]:
        """Hold the run's lock for the block: one process writes a run at a time.

        Raises :class:`~flonnx.exchange.errors.RunLocked` at once, naming the run, when another
        live process (or another lock in this one) holds it. The lock is released when the block
        ends or the holding process dies, however it dies.
        """
        if self._lock_dir is not None:
            return file_lock(self._lock_dir, run_id)
        return advisory_lock(self._engine, run_id)

    def is_being_written(self, run_id: str) -> bool:
        """Whether a live process holds the run's lock now; asks without taking it (read-only too).

        A run still marked ``running`` that no process is writing was left by one that died.
        """
        if self._lock_dir is not None:
            return file_lock_held(self._lock_dir, run_id)
        return advisory_lock_held(self._engine, run_id)

    # -- blobs ----------------------------------------------------------------------------------
    def put_definition(self, definition: Definition) -> str:
        """Store a definition's canonical bytes; returns its id."""
        blob_id = self.blobs.put(definition.canonical_bytes)
        assert blob_id == definition.id  # the canonical bytes are what the id hashes
        return blob_id

    def get_definition(self, definition_id: str) -> Definition:
        """Load a stored definition and check its id."""
        definition = Definition.from_bytes(self.blobs.get(definition_id))
        if definition.id != definition_id:
            raise LineageError(
                f"definition blob {definition_id[:12]} re-hashes to {definition.id[:12]}"
            )
        return definition

    def put_weights(self, weights: Mapping[str, np.ndarray], weights_id: str | None = None) -> str:
        """Store weights in their canonical encoding; returns the weights id.

        ``weights_id``, if given, must be :func:`~flonnx.exchange.hashing.weights_id` of these very
        arrays, computed by the caller in this process (the server checks each reply's id, then stores
        it): it is trusted, so the update is hashed once, not again here, and its encoding is not even
        built if the blob is already stored. Nothing read is trusted this way: :meth:`get_weights` and
        every other read path re-hash each blob they load against its id.
        """
        if weights_id is None:
            return self.blobs.put(encode_weights(weights))
        if self.blobs.exists(weights_id):
            return weights_id
        return self.blobs.put(encode_weights(weights), blob_id=weights_id)

    def get_weights(self, weights_id: str) -> dict[str, np.ndarray]:
        """Load stored weights and check their id."""
        data = self.blobs.get(weights_id)
        if sha256_hex(data) != weights_id:
            raise LineageError(f"weights blob {weights_id[:12]} does not match its id")
        return decode_weights(data)

    def put_state(self, arrays: Mapping[str, np.ndarray], state: Mapping[str, Any]) -> str:
        """Store a strategy state (named arrays + a JSON-able description); returns its id."""
        encoded, arrays_id, document = _state_document(arrays, state)
        crash_point("state.before_write")
        self.blobs.put(encoded, blob_id=arrays_id)
        state_id = self.blobs.put(document)
        crash_point("state.after_write")
        return state_id

    def get_state(self, state_id: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Load a strategy state stored by :meth:`put_state`, checking both blobs' ids."""
        data = self.blobs.get(state_id)
        if sha256_hex(data) != state_id:
            raise LineageError(f"strategy state blob {state_id[:12]} does not match its id")
        try:
            document = json.loads(data)
            arrays_id, state = str(document["arrays_id"]), dict(document["state"])
        except (ValueError, KeyError, TypeError) as exc:
            raise LineageError(f"strategy state blob {state_id[:12]} is malformed: "
                               f"{type(exc).__name__}: {str(exc)[:200]}") from exc
        return self.get_weights(arrays_id), state

    def state_at(self, run_id: str, round: int) -> str | None:  # noqa: A002
        """The id of the strategy state a run saved after ``round``, if any."""
        states = schema.strategy_states
        row = self._first(select(states.c.state_id).where(states.c.run_id == run_id,
                                                           states.c.round == round))
        return None if row is None else str(row[0])

    # -- runs -----------------------------------------------------------------------------------
    def create_run(self, scenario: str, seed: int, config: Mapping[str, Any]) -> str:
        """Register a new run and return its id (time-ordered, unique)."""
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
        run_id = f"{stamp}-{secrets.token_hex(3)}"
        with self._transaction() as db:
            db.execute(schema.runs.insert().values(
                run_id=run_id, created_at=_now(), scenario=scenario, seed=seed,
                config_json=json.dumps(dict(config), sort_keys=True), status="running",
            ))
        return run_id

    def set_status(self, run_id: str, status: str) -> None:
        """Mark a run ``running``, ``completed``, ``failed`` or ``interrupted`` (stopped by a signal)."""
        crash_point("status.before_write")
        with self._transaction() as db:
            db.execute(update(schema.runs).where(schema.runs.c.run_id == run_id).values(status=status))

    def update_config(self, run_id: str, config: Mapping[str, Any]) -> None:
        """Replace a run's recorded configuration (e.g. a longer ``rounds`` on resume)."""
        with self._transaction() as db:
            db.execute(update(schema.runs).where(schema.runs.c.run_id == run_id).values(
                config_json=json.dumps(dict(config), sort_keys=True)))

    def annotate_run(self, run_id: str, key: str, value: Any) -> None:
        """Add one JSON-ready fact to a run's recorded configuration (e.g. its site evaluation)."""
        runs = schema.runs
        with self._transaction() as db:
            row = db.execute(
                select(runs.c.config_json).where(runs.c.run_id == run_id).with_for_update()
            ).first()
            if row is None:
                raise LineageError(f"no run {run_id!r} in {self.location}")
            config = {**self._run_config(run_id, row[0]), key: value}
            db.execute(update(runs).where(runs.c.run_id == run_id).values(
                config_json=json.dumps(config, sort_keys=True)))

    def runs(self) -> list[RunInfo]:
        """Every run, oldest first, each checked (:func:`run_record_problems`)."""
        return [self._checked_run(info) for info in self._run_rows()]

    def run(self, run_id: str) -> RunInfo:
        """One run by exact id, checked (:func:`run_record_problems`)."""
        for info in self._run_rows(run_id):
            return self._checked_run(info)
        raise LineageError(f"no run {run_id!r} in {self.location}")

    def _run_rows(self, run_id: str | None = None) -> list[RunInfo]:
        """Runs as stored, unchecked (``verify`` reports on them; readers use :meth:`runs`)."""
        r, h = schema.runs, schema.run_heads
        later = h.alias("later")
        last = select(func.max(later.c.round)).where(later.c.run_id == r.c.run_id).scalar_subquery()
        query = (select(r.c.run_id, r.c.created_at, r.c.scenario, r.c.seed, r.c.config_json, r.c.status,
                        h.c.round, h.c.version_id)
                 .select_from(r.outerjoin(h, and_(h.c.run_id == r.c.run_id, h.c.round == last))))
        if run_id is not None:
            query = query.where(r.c.run_id == run_id)
        rows = self._rows(query.order_by(r.c.created_at, r.c.run_id))
        return [RunInfo(r[0], r[1], r[2], r[3], self._run_config(r[0], r[4]), r[5], r[6], r[7])
                for r in rows]

    def _run_config(self, run_id: str, text: str) -> dict[str, Any]:
        """A run row's config, read back (untrusted: a damaged row is a clear error, not a crash)."""
        try:
            config = json.loads(text)
        except (ValueError, TypeError, RecursionError) as exc:
            raise RegistryError(f"run {str(run_id)[:40]!r} in {self.location} has an unreadable record "
                                f"({type(exc).__name__}); `flonnx lineage verify` lists every problem"
                                ) from None
        if not isinstance(config, dict):
            raise RegistryError(f"run {str(run_id)[:40]!r} in {self.location} has a record that is not "
                                "an object")
        return config

    def _checked_run(self, info: RunInfo) -> RunInfo:
        problems = run_record_problems(info.run_id, info.scenario, info.seed, info.config)
        if problems:
            raise RegistryError(f"{problems[0]} in {self.location}: the run record was changed after "
                                "it was written (`flonnx lineage verify` lists every problem)")
        return info

    def resolve_run(self, prefix: str | None = None) -> str:
        """A run id from a unique prefix; with ``None``, the newest run."""
        if prefix is None:
            runs = schema.runs
            row = self._first(
                select(runs.c.run_id).order_by(runs.c.created_at.desc(), runs.c.run_id.desc()).limit(1)
            )
            if row is None:
                raise LineageError(f"the registry {self.location} has no runs yet")
            return str(row[0])
        return self._resolve(schema.runs, "run_id", prefix, "run")

    def _resolve(self, table: Table, column: str, prefix: str, what: str) -> str:
        col = table.c[column]
        rows = self._rows(
            select(col).where(func.substr(col, 1, len(prefix)) == prefix).order_by(col).limit(6)
        )
        if not rows:
            raise LineageError(f"no {what} matches {prefix!r} in {self.location}")
        if len(rows) > 1:
            shown = ", ".join(r[0][:16] for r in rows[:5])
            raise LineageError(f"{what} prefix {prefix!r} is ambiguous: {shown}, …")
        return str(rows[0][0])

    # -- versions -------------------------------------------------------------------------------
    def resolve_version(self, prefix: str) -> str:
        """A version id from a unique prefix (as with git)."""
        return self._resolve(schema.versions, "version_id", prefix.lower(), "version")

    def record(self, version_id: str) -> VersionRecord:
        """The lineage record of a version (exact id)."""
        versions = schema.versions
        row = self._first(select(versions.c.record_json).where(versions.c.version_id == version_id))
        if row is None:
            raise LineageError(f"no version {version_id[:12]} in {self.location}")
        return self._checked_record(version_id, row[0])

    def _checked_record(self, version_id: str, record_json: str) -> VersionRecord:
        """A stored record, once it re-hashes to its version id (the module says why)."""
        actual = sha256_hex(record_json.encode("utf-8"))
        if actual != version_id:
            raise RegistryError(
                f"version {version_id[:12]} in {self.location} does not match its id: its stored "
                f"record re-hashes to {actual[:12]}, so it was changed after it was written "
                "(`flonnx lineage verify` lists every problem)")
        return VersionRecord.from_dict(json.loads(record_json))

    def stored_version(self, version_id: str, run_id: str | None = None) -> StoredVersion:
        """A version (exact id) as a run recorded it: run ``run_id``, or the first run that did.

        Two runs of the same spec and seed record the same versions; each keeps its own time.
        """
        v, rv = schema.versions, schema.run_versions
        query = (select(rv.c.run_id, v.c.record_json, rv.c.seq, rv.c.created_at)
                 .join(v, v.c.version_id == rv.c.version_id).where(rv.c.version_id == version_id))
        if run_id is not None:
            query = query.where(rv.c.run_id == run_id)
        row = self._first(query.order_by(rv.c.created_at, rv.c.run_id).limit(1))
        if row is None:
            where = "" if run_id is None else f" of run {run_id}"
            raise LineageError(f"no version {version_id[:12]}{where} in {self.location}")
        return StoredVersion(str(row[0]), version_id, self._checked_record(version_id, row[1]),
                             int(row[2]), str(row[3]))

    def commit(
        self,
        run_id: str,
        records: Sequence[VersionRecord],
        *,
        head_round: int | None = None,
        head: str | None = None,
        state_id: str | None = None,
        signer: Signer | None = None,
    ) -> list[str]:
        """Record versions of a run (and optionally the run's new head) in one transaction.

        ``state_id`` (from :meth:`put_state`) is the strategy state after ``head_round``, saved in
        the same transaction; so is each version's signature by ``signer``. Every referenced blob
        and parent must already be stored. Returns the version ids.
        """
        if state_id is not None and not self.blobs.exists(state_id):
            raise RegistryError(f"strategy state blob {state_id[:12]} is not stored")
        ids = [r.version_id for r in records]
        for record in records:
            for blob in (record.definition_id, record.weights_id):
                if blob and not self.blobs.exists(blob):
                    raise RegistryError(f"version references blob {blob[:12]} that is not stored")
        now = _now()
        v, rv = schema.versions, schema.run_versions
        crash_point("commit.before")
        try:
            with self._transaction() as db:
                seq = db.execute(
                    select(func.coalesce(func.max(rv.c.seq), -1) + 1).where(rv.c.run_id == run_id)
                ).scalar_one()
                known = set(ids)
                for record, version_id in zip(records, ids, strict=True):
                    for parent in record.parents:
                        if parent not in known and db.execute(
                            select(v.c.version_id).where(v.c.version_id == parent)
                        ).first() is None:
                            raise LineageError(f"parent {parent[:12]} of a new version is not recorded")
                    db.execute(self._insert(v).values(
                        version_id=version_id, kind=record.kind.value, round=record.round,
                        definition_id=record.definition_id, weights_id=record.weights_id,
                        record_json=record.canonical_bytes().decode("utf-8"),
                    ).on_conflict_do_nothing())
                    db.execute(self._insert(rv).values(
                        run_id=run_id, version_id=version_id, seq=seq, created_at=now,
                    ).on_conflict_do_nothing())
                    if signer is not None:
                        db.execute(self._insert(schema.version_signatures).values(
                            version_id=version_id, key_fingerprint=signer.public.fingerprint,
                            signature=signer.sign(version_id),
                        ).on_conflict_do_nothing())
                    seq += 1
                if head is not None:
                    if head_round is None:
                        raise ValueError("head_round is required with head")
                    db.execute(self._insert(schema.run_heads).values(
                        run_id=run_id, round=head_round, version_id=head,
                    ).on_conflict_do_update(index_elements=["run_id", "round"], set_={"version_id": head}))
                if state_id is not None:
                    if head_round is None:
                        raise ValueError("head_round is required with state_id")
                    db.execute(self._insert(schema.strategy_states).values(
                        run_id=run_id, round=head_round, state_id=state_id,
                    ).on_conflict_do_update(index_elements=["run_id", "round"],
                                            set_={"state_id": state_id}))
                crash_point("commit.in_transaction")
        except IntegrityError as exc:
            raise RegistryError(f"cannot record versions of run {run_id} in {self.location}: "
                                f"{_reason(exc)}") from None
        crash_point("commit.after")
        return ids

    # -- retention ------------------------------------------------------------------------------
    def prune(self, run_id: str, *, newest: bool = False) -> list[str]:
        """Delete the blobs of the run's client updates its retention lets go; returns their ids.

        Only blobs that no retained row of any run references are deleted (see the module), so a
        registry that verified before verifies after. ``newest``: look only at the round that has
        just left the kept window (what a coordinator does after each round's commit), not at
        every older round (what a resume does, to finish a prune a crash cut short).
        """
        if self.read_only:
            raise RegistryError(f"the registry {self.location} was opened read-only: nothing is deleted")
        horizons = self._horizons()
        horizon = horizons.get(run_id, 0)
        if horizon == 0:
            return []
        v, rv = schema.versions, schema.run_versions
        rounds = v.c.round == horizon if newest else v.c.round <= horizon
        rows = self._rows(select(v.c.weights_id).join(rv, rv.c.version_id == v.c.version_id).where(
            rv.c.run_id == run_id, v.c.kind == VersionKind.CLIENT_UPDATE.value, rounds).distinct())
        present = {str(r[0]) for r in rows if r[0] and self.blobs.exists(r[0])}
        doomed = sorted(present - self._referenced(present, horizons)) if present else []
        for blob_id in doomed:
            self.blobs.delete(blob_id)
        return doomed

    def _horizons(self) -> dict[str, int]:
        """Each run's :func:`retention_horizon` (runs that keep every update left out)."""
        horizons = {info.run_id: retention_horizon(info.config, info.last_round) for info in self._run_rows()}
        return {run: horizon for run, horizon in horizons.items() if horizon > 0}

    def _referenced(self, blob_ids: set[str], horizons: Mapping[str, int]) -> set[str]:
        """Those of ``blob_ids`` a retained row references (all of them if a state is unreadable).

        A retained row: a version whose blob its runs keep, a definition, a strategy state and the
        state's arrays.
        """
        v, rv, states = schema.versions, schema.run_versions, schema.strategy_states
        rows = self._rows(
            select(rv.c.run_id, v.c.kind, v.c.round, v.c.weights_id, v.c.definition_id)
            .select_from(v.outerjoin(rv, rv.c.version_id == v.c.version_id))
            .where(or_(v.c.weights_id.in_(blob_ids), v.c.definition_id.in_(blob_ids))))
        referenced = set()
        for run, kind, rnd, weights, definition in rows:
            referenced.add(definition)
            if kind != VersionKind.CLIENT_UPDATE.value or run is None or rnd > horizons.get(run, 0):
                referenced.add(weights)
        for (state_id,) in self._rows(select(states.c.state_id).distinct()):
            if state_id not in self._state_arrays:
                try:
                    self._state_arrays[state_id] = str(json.loads(self.blobs.get(state_id))["arrays_id"])
                except (FlonnxError, ValueError, KeyError, TypeError):
                    return blob_ids  # damaged (verify says so): delete nothing
            referenced |= {state_id, self._state_arrays[state_id]}
        return referenced & blob_ids

    def _let_go(self, horizons: Mapping[str, int]) -> set[str]:
        """Client updates whose blobs every run that recorded them lets go (a missing one is no loss)."""
        v, rv = schema.versions, schema.run_versions
        let_go: set[str] = set()
        kept: set[str] = set()
        for run, version_id, rnd in self._rows(
                select(rv.c.run_id, v.c.version_id, v.c.round).join(v, v.c.version_id == rv.c.version_id)
                .where(v.c.kind == VersionKind.CLIENT_UPDATE.value)):
            (let_go if rnd <= horizons.get(run, 0) else kept).add(version_id)
        return let_go - kept

    def versions(self, run_id: str) -> list[StoredVersion]:
        """Every version a run recorded, in recording order."""
        v, rv = schema.versions, schema.run_versions
        rows = self._rows(
            select(rv.c.version_id, v.c.record_json, rv.c.seq, rv.c.created_at)
            .join(v, v.c.version_id == rv.c.version_id)
            .where(rv.c.run_id == run_id).order_by(rv.c.seq)
        )
        return [StoredVersion(run_id, r[0], self._checked_record(r[0], r[1]), r[2], r[3]) for r in rows]

    def heads(self, run_id: str) -> dict[int, str]:
        """The global version after each committed round (round 0 = initial)."""
        h = schema.run_heads
        rows = self._rows(select(h.c.round, h.c.version_id).where(h.c.run_id == run_id).order_by(h.c.round))
        return {int(r[0]): str(r[1]) for r in rows}

    def signing_keys(self, run_id: str | None = None) -> dict[str, PublicKey | None]:
        """The public key each run (one, or all) recorded; ``None`` for an unsigned run.

        A run whose recorded key is malformed is left out (``verify`` names it).
        """
        keys: dict[str, PublicKey | None] = {}
        for info in self._run_rows(run_id):
            try:
                keys[info.run_id] = recorded_key(info.config)
            except SigningError:
                continue
        return keys

    def signatures(self, version_id: str) -> dict[str, str]:
        """The signatures of a version (exact id): key fingerprint -> signature (hex)."""
        s = schema.version_signatures
        rows = self._rows(select(s.c.key_fingerprint, s.c.signature).where(s.c.version_id == version_id))
        return {str(r[0]): str(r[1]) for r in rows}

    # -- evaluation records ---------------------------------------------------------------------
    def add_evaluations(self, evaluations: Sequence[Evaluation]) -> list[str]:
        """Record evaluations of versions in one transaction; returns their ids.

        Each names a version its run recorded; a source that evaluates the same version of the same
        run again replaces its earlier record.
        """
        e, rv = schema.evaluations, schema.run_versions
        try:
            with self._transaction() as db:
                for evaluation in evaluations:
                    if db.execute(select(rv.c.version_id).where(
                            rv.c.run_id == evaluation.run_id,
                            rv.c.version_id == evaluation.version_id)).first() is None:
                        raise LineageError(f"cannot record an evaluation of version "
                                           f"{evaluation.version_id[:12]}: run {evaluation.run_id} "
                                           "did not record it")
                    values = {"evaluation_id": evaluation.evaluation_id,
                              "record_json": evaluation.canonical_bytes().decode("utf-8")}
                    db.execute(self._insert(e).values(
                        run_id=evaluation.run_id, version_id=evaluation.version_id,
                        source=evaluation.source, **values,
                    ).on_conflict_do_update(index_elements=["run_id", "version_id", "source"],
                                            set_=values))
        except IntegrityError as exc:
            raise RegistryError(f"cannot record evaluations in {self.location}: {_reason(exc)}") from None
        return [evaluation.evaluation_id for evaluation in evaluations]

    def add_evaluation(self, run_id: str, version_id: str, source: str, metrics: Mapping[str, float],
                       failed_reason: str | None = None) -> str:
        """Record one evaluation (:meth:`add_evaluations`); returns its id."""
        return self.add_evaluations([Evaluation(run_id, version_id, source, dict(metrics),
                                                failed_reason)])[0]

    def evaluations(self, version_id: str, run_id: str | None = None) -> list[Evaluation]:
        """The evaluations of a version (exact id; of one run, or of every run), by run and source.

        Each record is re-hashed against its id and checked against its row, as versions are.
        """
        e = schema.evaluations
        query = select(e.c.run_id, e.c.version_id, e.c.source, e.c.evaluation_id, e.c.record_json).where(
            e.c.version_id == version_id)
        if run_id is not None:
            query = query.where(e.c.run_id == run_id)
        out = []
        for row in self._rows(query.order_by(e.c.run_id, e.c.source)):
            evaluation, problem = self._read_evaluation(*row)
            if evaluation is None:
                raise RegistryError(f"{problem} in {self.location}: it was changed after it was written "
                                    "(`flonnx lineage verify` lists every problem)")
            out.append(evaluation)
        return out

    @staticmethod
    def _read_evaluation(run_id: str, version_id: str, source: str, evaluation_id: str,
                         record_json: str) -> tuple[Evaluation | None, str]:
        """A stored evaluation once it re-hashes to its id and agrees with its row, else the problem."""
        label = f"run {run_id} evaluation of version {version_id[:12]} by {source!r}"
        actual = sha256_hex(record_json.encode("utf-8"))
        if actual != evaluation_id:
            return None, f"{label}: its record re-hashes to {actual[:12]}, not its id {evaluation_id[:12]}"
        try:
            evaluation = Evaluation.from_dict(json.loads(record_json))
        except (LineageError, ValueError) as exc:
            return None, f"{label}: unreadable record ({exc})"
        if evaluation.canonical_bytes().decode("utf-8") != record_json:
            return None, f"{label}: its record is not in canonical form"
        if (evaluation.run_id, evaluation.version_id, evaluation.source) != (run_id, version_id, source):
            return None, f"{label}: its row disagrees with its record"
        return evaluation, ""

    def _verify_evaluations(self, run_id: str | None, problems: list[str]) -> int:
        """Re-hash every evaluation record; each must name a version its run recorded."""
        e, rv = schema.evaluations, schema.run_versions
        query = select(e.c.run_id, e.c.version_id, e.c.source, e.c.evaluation_id, e.c.record_json)
        if run_id is not None:
            query = query.where(e.c.run_id == run_id)
        rows = self._rows(query.order_by(e.c.run_id, e.c.version_id, e.c.source))
        runs_query = select(rv.c.run_id, rv.c.version_id)
        if run_id is not None:
            runs_query = runs_query.where(rv.c.run_id == run_id)
        recorded = {(str(r[0]), str(r[1])) for r in self._rows(runs_query)}
        for row in rows:
            evaluation, problem = self._read_evaluation(*row)
            if evaluation is None:
                problems.append(problem)
            elif (evaluation.run_id, evaluation.version_id) not in recorded:
                problems.append(f"run {evaluation.run_id} evaluation by {evaluation.source!r}: version "
                                f"{evaluation.version_id[:12]} is not a version of the run")
        return len(rows)

    # -- verification ---------------------------------------------------------------------------
    def verify(self, run_id: str | None = None, key: PublicKey | None = None) -> tuple[int, list[str]]:
        """Re-hash every record and blob (of one run, or all); returns (items checked, problems).

        Every version of a signed run must carry a good signature by ``key``, or, without ``key``,
        by the key the run recorded; with ``key``, every run must be signed by it.
        The database is read in one snapshot, so a run being written meanwhile is checked as of
        its last committed round.
        """
        with self.snapshot():
            checked, problems = self._verify(run_id)
            return checked + self._verify_signatures(run_id, key, problems), problems

    def check_intact(self, run_id: str, doing: str = "resumed") -> None:
        """Refuse a damaged run: :class:`RegistryError` naming the first problem :meth:`verify` finds.

        What a resume calls before it writes anything: a run is continued only from a registry
        that verifies, so nothing damaged is carried into new rounds.
        """
        problems = self.verify(run_id)[1]
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise RegistryError(
                f"run {run_id} in {self.location} is damaged and cannot be {doing}: {problems[0]}"
                f"{more}; `flonnx lineage verify --run {run_id}` lists every problem")

    def _verify_signatures(self, run_id: str | None, key: PublicKey | None, problems: list[str]) -> int:
        """Check each version's signature of one run or all runs, naming every version that fails."""
        v, rv, s = schema.versions, schema.run_versions, schema.version_signatures
        checked = 0
        for info in self._run_rows(run_id):
            try:
                recorded = recorded_key(info.config)
            except SigningError:
                recorded = None  # reported by the run record's check
            expected = key or recorded
            if expected is None:
                continue
            run = info.run_id
            if key is not None and recorded is not None and recorded.fingerprint != key.fingerprint:
                problems.append(f"run {run}: recorded signing key {recorded.fingerprint[:16]}, not the "
                                f"given key {key.fingerprint[:16]}")
            signed: dict[str, dict[str, str]] = {}
            for version_id, fingerprint, signature in self._rows(
                select(s.c.version_id, s.c.key_fingerprint, s.c.signature)
                .join(rv, rv.c.version_id == s.c.version_id).where(rv.c.run_id == run)
            ):
                signed.setdefault(version_id, {})[fingerprint] = signature
            rows = self._rows(select(rv.c.version_id, v.c.kind, v.c.round)
                              .join(v, v.c.version_id == rv.c.version_id)
                              .where(rv.c.run_id == run).order_by(rv.c.seq))
            for version_id, kind, rnd in rows:
                checked += 1
                label = f"run {run} version {version_id[:12]} ({kind}, round {rnd})"
                by_key = signed.get(version_id, {})
                signature = by_key.get(expected.fingerprint)
                if signature is None and by_key:
                    others = ", ".join(f[:16] for f in sorted(by_key))
                    problems.append(f"{label}: signed by another key ({others}), not by "
                                    f"{expected.fingerprint[:16]}")
                elif signature is None:
                    problems.append(f"{label}: missing signature by key {expected.fingerprint[:16]}")
                elif not expected.verifies(version_id, signature):
                    problems.append(f"{label}: bad signature: it does not verify with key "
                                    f"{expected.fingerprint[:16]}")
        return checked

    def _verify(self, run_id: str | None) -> tuple[int, list[str]]:
        v, rv = schema.versions, schema.run_versions
        columns = (v.c.version_id, v.c.kind, v.c.round, v.c.definition_id, v.c.weights_id,
                   v.c.record_json)
        if run_id is None:
            rows = self._rows(select(*columns))
        else:
            rows = self._rows(select(*columns).join(rv, rv.c.version_id == v.c.version_id)
                              .where(rv.c.run_id == run_id))
        problems: list[str] = []
        checked = 0
        all_ids = {r[0] for r in self._rows(select(v.c.version_id))}
        definitions: dict[str, Definition | None] = {}
        weights_ok: dict[str, str | None] = {}
        let_go = self._let_go(self._horizons())
        for version_id, kind, rnd, definition_id, weights_id, record_json in rows:
            label = f"version {version_id[:12]} ({kind}, round {rnd})"
            checked += 1
            actual = sha256_hex(record_json.encode("utf-8"))
            if actual != version_id:
                problems.append(f"{label}: record re-hashes to {actual[:12]}")
                continue
            try:
                record = VersionRecord.from_dict(json.loads(record_json))
            except (FlonnxError, json.JSONDecodeError) as exc:
                problems.append(f"{label}: unreadable record: {exc}")
                continue
            if record.canonical_bytes().decode("utf-8") != record_json:
                problems.append(f"{label}: record is not in canonical form")
            if (record.kind.value, record.round, record.definition_id, record.weights_id) != (
                kind, rnd, definition_id, weights_id
            ):
                problems.append(f"{label}: index columns disagree with the record")
            for parent in record.parents:
                if parent not in all_ids:
                    problems.append(f"{label}: parent {parent[:12]} is not recorded")
            if definition_id not in definitions:
                checked += 1
                definitions[definition_id] = self._check_definition(definition_id, problems)
            definition = definitions[definition_id]
            if not weights_id:
                if record.kind is not VersionKind.REJECTED:
                    problems.append(f"{label}: has no weights")
                continue
            if version_id in let_go and not self.blobs.exists(weights_id):
                continue  # pruned: its run's retention keeps the row, not the blob
            if weights_id not in weights_ok:
                checked += 1
                weights_ok[weights_id] = self._check_weights(weights_id, definition)
            if weights_ok[weights_id]:
                problems.append(f"{label}: {weights_ok[weights_id]}")
        self._verify_heads(run_id, problems)
        checked += self._verify_states(run_id, problems)
        checked += self._verify_specs(run_id, problems)
        checked += self._verify_evaluations(run_id, problems)
        return checked, problems

    def _verify_specs(self, run_id: str | None, problems: list[str]) -> int:
        """Check every run record (:func:`run_record_problems`), reporting each problem."""
        checked = 0
        for info in self._run_rows(run_id):
            if "spec_canonical" not in info.config and "signing_key" not in info.config:
                continue
            checked += 1
            problems += run_record_problems(info.run_id, info.scenario, info.seed, info.config)
        return checked

    def _verify_heads(self, run_id: str | None, problems: list[str]) -> None:
        """Check each round's head of one run or all runs, and that a strategy state follows it.

        A head is a version the run recorded, of its round, the initial version for round 0 and an
        aggregate after. A run a federation made (its record holds its spec) saved a strategy state
        in the transaction of every head, so a head without one is a deleted row.
        """
        v, rv, states = schema.versions, schema.run_versions, schema.strategy_states
        for info in self._run_rows(run_id):
            run = info.run_id
            mine = {str(r[0]): (str(r[1]), int(r[2])) for r in self._rows(
                select(v.c.version_id, v.c.kind, v.c.round).join(rv, rv.c.version_id == v.c.version_id)
                .where(rv.c.run_id == run))}
            saved = {int(r[0]) for r in self._rows(select(states.c.round).where(states.c.run_id == run))}
            for rnd, head in self.heads(run).items():
                expected = (VersionKind.INITIAL if rnd == 0 else VersionKind.AGGREGATE).value
                if head not in mine:
                    problems.append(f"run {run} round {rnd}: head {head[:12]} is not recorded")
                elif mine[head] != (expected, rnd):
                    problems.append(f"run {run} round {rnd}: head {head[:12]} is the {mine[head][0]} "
                                    f"version of round {mine[head][1]}, not the {expected} version "
                                    f"of round {rnd}")
                if "spec_canonical" in info.config and rnd not in saved:
                    problems.append(f"run {run} round {rnd}: no strategy state is saved after it")

    def _verify_states(self, run_id: str | None, problems: list[str]) -> int:
        """Re-hash every saved strategy state (and its arrays) of one run or all runs."""
        states = schema.strategy_states
        query = select(states.c.run_id, states.c.round, states.c.state_id)
        if run_id is not None:
            query = query.where(states.c.run_id == run_id)
        rows = self._rows(query.order_by(states.c.run_id, states.c.round))
        for run, rnd, state_id in rows:
            try:
                self.get_state(state_id)
            except FlonnxError as exc:
                problems.append(f"run {run} round {rnd}: strategy state {state_id[:12]}: {exc}")
        return len(rows)

    def _check_definition(self, definition_id: str, problems: list[str]) -> Definition | None:
        try:
            data = self.blobs.get(definition_id)
        except RegistryError as exc:
            problems.append(f"definition blob {definition_id[:12]}: {exc}")
            return None
        actual = sha256_hex(data)
        if actual != definition_id:
            problems.append(
                f"definition blob {definition_id[:12]} ({self.blobs.path(definition_id)}): "
                f"content hashes to {actual[:12]}"
            )
            return None
        try:
            definition = Definition.from_bytes(data)
        except FlonnxError as exc:
            problems.append(f"definition blob {definition_id[:12]}: {exc}")
            return None
        if definition.id != definition_id:
            problems.append(f"definition blob {definition_id[:12]}: not in canonical form")
        return definition

    def _check_weights(self, weights_id: str, definition: Definition | None) -> str | None:
        try:
            data = self.blobs.get(weights_id)
        except RegistryError as exc:
            return f"weights blob {weights_id[:12]}: {exc}"
        actual = sha256_hex(data)
        if actual != weights_id:
            return (f"weights blob {weights_id[:12]} ({self.blobs.path(weights_id)}): content "
                    f"hashes to {actual[:12]}")
        try:
            weights = decode_weights(data)
            if definition is not None:
                definition.validate(weights, source=f"weights blob {weights_id[:12]}")
        except FlonnxError as exc:
            return str(exc)
        return None

    # -- convenience ----------------------------------------------------------------------------
    def initial_versions(self, run_id: str) -> list[StoredVersion]:
        """The run's initial version(s)."""
        return [v for v in self.versions(run_id) if v.record.kind is VersionKind.INITIAL]
