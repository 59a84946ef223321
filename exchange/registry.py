"""The model registry: versions, runs and their blobs, in one directory.

Layout of a registry directory (default ``./runs``)::

    registry.db        SQLite (WAL): runs, versions, which run made which version, round heads
    blobs/ab/ab…       content-addressed blobs: canonical definitions, weights, strategy states

A strategy state (the aggregation strategy's own memory after a round: optimizer moments, momentum,
clipping norm) is a canonical-JSON blob ``{"arrays_id": …, "state": …}`` whose arrays live in a
weights-encoded blob; ``strategy_states`` maps (run, round) to it, written in the round's transaction.

A version's record is stored as the canonical JSON its id is computed over, so ``verify`` can re-hash
every record and blob. Blobs are written (atomically) before the transaction that references them;
each round's versions and its new head are committed in one transaction, so a crash leaves either the
whole round or none of it.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flonnx.exchange.blobstore import BlobStore
from flonnx.exchange.definition import Definition
from flonnx.exchange.errors import FlonnxError, LineageError, RegistryError
from flonnx.exchange.hashing import canonical_json, decode_weights, encode_weights, sha256_hex
from flonnx.exchange.lineage import VersionKind, VersionRecord

__all__ = ["Registry", "RunInfo", "StoredVersion", "strategy_state_id"]

_SCHEMA = """
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


def _state_document(arrays: Mapping[str, np.ndarray], state: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """(encoded arrays, canonical state document) of a strategy state."""
    encoded = encode_weights(arrays)
    return encoded, canonical_json({"arrays_id": sha256_hex(encoded), "state": dict(state)})


def strategy_state_id(arrays: Mapping[str, np.ndarray], state: Mapping[str, Any]) -> str:
    """The id :meth:`Registry.put_state` gives a strategy state, computed without storing it."""
    return sha256_hex(_state_document(arrays, state)[1])


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


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


class Registry:
    """A registry directory: SQLite index + content-addressed blob store."""

    def __init__(self, root: str | Path, *, create: bool = True) -> None:
        self.root = Path(root)
        db = self.root / "registry.db"
        if not create and not db.exists():
            raise RegistryError(
                f"no flonnx registry at {self.root} (expected {db}); run a simulation first or pass "
                "--registry"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        self.blobs = BlobStore(self.root / "blobs")
        try:
            self._db = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise RegistryError(f"cannot open registry database {db}: {exc}") from exc

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

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

    def put_weights(self, weights: Mapping[str, np.ndarray]) -> str:
        """Store weights in their canonical encoding; returns the weights id."""
        return self.blobs.put(encode_weights(weights))

    def get_weights(self, weights_id: str) -> dict[str, np.ndarray]:
        """Load stored weights and check their id."""
        data = self.blobs.get(weights_id)
        if sha256_hex(data) != weights_id:
            raise LineageError(f"weights blob {weights_id[:12]} does not match its id")
        return decode_weights(data)

    def put_state(self, arrays: Mapping[str, np.ndarray], state: Mapping[str, Any]) -> str:
        """Store a strategy state (named arrays + a JSON-able description); returns its id."""
        encoded, document = _state_document(arrays, state)
        self.blobs.put(encoded)
        return self.blobs.put(document)

    def get_state(self, state_id: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Load a strategy state stored by :meth:`put_state`, checking both blobs' ids."""
        data = self.blobs.get(state_id)
        if sha256_hex(data) != state_id:
            raise LineageError(f"strategy state blob {state_id[:12]} does not match its id")
        try:
            document = json.loads(data)
            arrays_id, state = str(document["arrays_id"]), dict(document["state"])
        except (ValueError, KeyError, TypeError) as exc:
            raise LineageError(f"strategy state blob {state_id[:12]} is malformed: {exc!r}") from exc
        return self.get_weights(arrays_id), state

    def state_at(self, run_id: str, round: int) -> str | None:  # noqa: A002
        """The id of the strategy state a run saved after ``round``, if any."""
        row = self._db.execute(
            "SELECT state_id FROM strategy_states WHERE run_id=? AND round=?", (run_id, round)
        ).fetchone()
        return None if row is None else str(row[0])

    # -- runs -----------------------------------------------------------------------------------
    def create_run(self, scenario: str, seed: int, config: Mapping[str, Any]) -> str:
        """Register a new run and return its id (time-ordered, unique)."""
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
        run_id = f"{stamp}-{secrets.token_hex(3)}"
        with self._transaction() as db:
            db.execute(
                "INSERT INTO runs VALUES (?,?,?,?,?,?)",
                (run_id, _now(), scenario, seed, json.dumps(dict(config), sort_keys=True), "running"),
            )
        return run_id

    def set_status(self, run_id: str, status: str) -> None:
        """Mark a run ``running``, ``completed`` or ``failed``."""
        with self._transaction() as db:
            db.execute("UPDATE runs SET status=? WHERE run_id=?", (status, run_id))

    def update_config(self, run_id: str, config: Mapping[str, Any]) -> None:
        """Replace a run's recorded configuration (e.g. a longer ``rounds`` on resume)."""
        with self._transaction() as db:
            db.execute("UPDATE runs SET config_json=? WHERE run_id=?",
                       (json.dumps(dict(config), sort_keys=True), run_id))

    def annotate_run(self, run_id: str, key: str, value: Any) -> None:
        """Add one JSON-ready fact to a run's recorded configuration (e.g. its site evaluation)."""
        with self._transaction() as db:
            row = db.execute("SELECT config_json FROM runs WHERE run_id=?", (run_id,)).fetchone()
            if row is None:
                raise LineageError(f"no run {run_id!r} in {self.root}")
            config = {**json.loads(row[0]), key: value}
            db.execute("UPDATE runs SET config_json=? WHERE run_id=?",
                       (json.dumps(config, sort_keys=True), run_id))

    def runs(self) -> list[RunInfo]:
        """Every run, oldest first."""
        rows = self._db.execute(
            "SELECT r.run_id, r.created_at, r.scenario, r.seed, r.config_json, r.status, "
            "h.round, h.version_id FROM runs r LEFT JOIN run_heads h ON h.run_id = r.run_id "
            "AND h.round = (SELECT MAX(round) FROM run_heads WHERE run_id = r.run_id) "
            "ORDER BY r.created_at, r.run_id"
        ).fetchall()
        return [RunInfo(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[6], r[7]) for r in rows]

    def run(self, run_id: str) -> RunInfo:
        """One run by exact id."""
        for info in self.runs():
            if info.run_id == run_id:
                return info
        raise LineageError(f"no run {run_id!r} in {self.root}")

    def resolve_run(self, prefix: str | None = None) -> str:
        """A run id from a unique prefix; with ``None``, the newest run."""
        if prefix is None:
            row = self._db.execute(
                "SELECT run_id FROM runs ORDER BY created_at DESC, run_id DESC LIMIT 1"
            ).fetchone()
            if row is None:
                raise LineageError(f"the registry {self.root} has no runs yet")
            return str(row[0])
        return self._resolve("runs", "run_id", prefix, "run")

    def _resolve(self, table: str, column: str, prefix: str, what: str) -> str:
        rows = self._db.execute(
            f"SELECT {column} FROM {table} WHERE substr({column}, 1, ?) = ? LIMIT 6",  # noqa: S608
            (len(prefix), prefix),
        ).fetchall()
        if not rows:
            raise LineageError(f"no {what} matches {prefix!r} in {self.root}")
        if len(rows) > 1:
            shown = ", ".join(r[0][:16] for r in rows[:5])
            raise LineageError(f"{what} prefix {prefix!r} is ambiguous: {shown}, …")
        return str(rows[0][0])

    # -- versions -------------------------------------------------------------------------------
    def resolve_version(self, prefix: str) -> str:
        """A version id from a unique prefix (as with git)."""
        return self._resolve("versions", "version_id", prefix.lower(), "version")

    def record(self, version_id: str) -> VersionRecord:
        """The lineage record of a version (exact id)."""
        row = self._db.execute(
            "SELECT record_json FROM versions WHERE version_id=?", (version_id,)
        ).fetchone()
        if row is None:
            raise LineageError(f"no version {version_id[:12]} in {self.root}")
        return VersionRecord.from_dict(json.loads(row[0]))

    def commit(
        self,
        run_id: str,
        records: Sequence[VersionRecord],
        *,
        head_round: int | None = None,
        head: str | None = None,
        state_id: str | None = None,
    ) -> list[str]:
        """Record versions of a run (and optionally the run's new head) in one transaction.

        ``state_id`` (from :meth:`put_state`) is the strategy state after ``head_round``, saved in
        the same transaction. Every referenced blob and parent must already be stored. Returns the
        version ids.
        """
        if state_id is not None and not self.blobs.exists(state_id):
            raise RegistryError(f"strategy state blob {state_id[:12]} is not stored")
        ids = [r.version_id for r in records]
        for record in records:
            for blob in (record.definition_id, record.weights_id):
                if blob and not self.blobs.exists(blob):
                    raise RegistryError(f"version references blob {blob[:12]} that is not stored")
        now = _now()
        with self._transaction() as db:
            (seq,) = db.execute(
                "SELECT COALESCE(MAX(seq), -1) + 1 FROM run_versions WHERE run_id=?", (run_id,)
            ).fetchone()
            known = set(ids)
            for record, version_id in zip(records, ids, strict=True):
                for parent in record.parents:
                    if parent not in known and not db.execute(
                        "SELECT 1 FROM versions WHERE version_id=?", (parent,)
                    ).fetchone():
                        raise LineageError(f"parent {parent[:12]} of a new version is not recorded")
                db.execute(
                    "INSERT OR IGNORE INTO versions VALUES (?,?,?,?,?,?)",
                    (version_id, record.kind.value, record.round, record.definition_id,
                     record.weights_id, record.canonical_bytes().decode("utf-8")),
                )
                db.execute(
                    "INSERT OR IGNORE INTO run_versions VALUES (?,?,?,?)",
                    (run_id, version_id, seq, now),
                )
                seq += 1
            if head is not None:
                if head_round is None:
                    raise ValueError("head_round is required with head")
                db.execute(
                    "INSERT OR REPLACE INTO run_heads VALUES (?,?,?)", (run_id, head_round, head)
                )
            if state_id is not None:
                if head_round is None:
                    raise ValueError("head_round is required with state_id")
                db.execute("INSERT OR REPLACE INTO strategy_states VALUES (?,?,?)",
                           (run_id, head_round, state_id))
        return ids

    def versions(self, run_id: str) -> list[StoredVersion]:
        """Every version a run recorded, in recording order."""
        rows = self._db.execute(
            "SELECT rv.version_id, v.record_json, rv.seq, rv.created_at FROM run_versions rv "
            "JOIN versions v ON v.version_id = rv.version_id WHERE rv.run_id=? ORDER BY rv.seq",
            (run_id,),
        ).fetchall()
        return [
            StoredVersion(run_id, r[0], VersionRecord.from_dict(json.loads(r[1])), r[2], r[3])
            for r in rows
        ]

    def heads(self, run_id: str) -> dict[int, str]:
        """The global version after each committed round (round 0 = initial)."""
        rows = self._db.execute(
            "SELECT round, version_id FROM run_heads WHERE run_id=? ORDER BY round", (run_id,)
        ).fetchall()
        return {int(r[0]): str(r[1]) for r in rows}

    # -- verification ---------------------------------------------------------------------------
    def verify(self, run_id: str | None = None) -> tuple[int, list[str]]:
        """Re-hash every record and blob (of one run, or all); returns (items checked, problems)."""
        if run_id is None:
            rows = self._db.execute(
                "SELECT version_id, kind, round, definition_id, weights_id, record_json FROM versions"
            ).fetchall()
        else:
            rows = self._db.execute(
                "SELECT v.version_id, v.kind, v.round, v.definition_id, v.weights_id, v.record_json "
                "FROM versions v JOIN run_versions rv ON rv.version_id = v.version_id "
                "WHERE rv.run_id=?",
                (run_id,),
            ).fetchall()
        problems: list[str] = []
        checked = 0
        all_ids = {r[0] for r in self._db.execute("SELECT version_id FROM versions")}
        definitions: dict[str, Definition | None] = {}
        weights_ok: dict[str, str | None] = {}
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
            if weights_id not in weights_ok:
                checked += 1
                weights_ok[weights_id] = self._check_weights(weights_id, definition)
            if weights_ok[weights_id]:
                problems.append(f"{label}: {weights_ok[weights_id]}")
        if run_id is not None:
            for rnd, head in self.heads(run_id).items():
                if head not in all_ids:
                    problems.append(f"run {run_id} round {rnd}: head {head[:12]} is not recorded")
        checked += self._verify_states(run_id, problems)
        checked += self._verify_specs(run_id, problems)
        return checked, problems

    def _verify_specs(self, run_id: str | None, problems: list[str]) -> int:
        """Re-hash every run's recorded canonical spec against its recorded spec id."""
        checked = 0
        for info in self.runs():
            if run_id is not None and info.run_id != run_id:
                continue
            if "spec_canonical" not in info.config:
                continue
            checked += 1
            actual = sha256_hex(canonical_json(info.config["spec_canonical"]))
            if actual != info.config.get("spec_id"):
                problems.append(f"run {info.run_id}: recorded spec re-hashes to {actual[:12]}, "
                                f"not its spec id {str(info.config.get('spec_id'))[:12]}")
        return checked

    def _verify_states(self, run_id: str | None, problems: list[str]) -> int:
        """Re-hash every saved strategy state (and its arrays) of one run or all runs."""
        rows = self._db.execute(
            "SELECT run_id, round, state_id FROM strategy_states WHERE ? IS NULL OR run_id=? "
            "ORDER BY run_id, round", (run_id, run_id),
        ).fetchall()
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
