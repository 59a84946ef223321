"""The registry's promises on a tiny one-MatMul definition in SQLite (fast: no torch, no Ray, no server).

``tests/exchange/test_registry.py`` runs the same promises on a torch export; these tests pin what the
registry stores, returns, refuses and what ``verify`` names, for mutation testing (issue #11).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flonnx.exchange.definition import Definition
from flonnx.exchange.errors import LineageError, RegistryError, RunLocked
from flonnx.exchange.lineage import VersionKind, VersionRecord
from flonnx.exchange.registry import (
    Evaluation,
    Registry,
    recorded_key,
    retention_horizon,
    run_record_problems,
    strategy_state_id,
)
from flonnx.exchange.signing import Signer
from tests.tiny_models import matmul_definition

SHM = Path("/dev/shm")


@pytest.fixture()
def tmp(tmp_path: Path) -> Iterator[Path]:
    """A directory in memory where there is one: SQLite's and the blob store's fsyncs cost nothing."""
    if not SHM.is_dir():
        yield tmp_path
        return
    where = Path(tempfile.mkdtemp(prefix="flonnx-registry-", dir=SHM))
    try:
        yield where
    finally:
        shutil.rmtree(where, ignore_errors=True)


RETAIN_ONE = {"spec": {"registry": {"retention": "last:1"}}}


def _definition() -> tuple[Definition, dict[str, np.ndarray]]:
    return matmul_definition()


DEFINITION, WEIGHTS = _definition()


def _w(value: float) -> dict[str, np.ndarray]:
    return {"w": np.full((2, 3), value, np.float32)}


class Run:
    """A registry with one run: round 0 (initial) and ``rounds`` rounds of two updates + aggregate.

    ``offset`` shifts every weight, so that two runs share no version and no blob.
    """

    def __init__(self, root: Path, rounds: int = 1, config: dict[str, Any] | None = None,
                 registry: Registry | None = None, signer: Signer | None = None, offset: float = 0.0) -> None:
        self.registry = registry or Registry(root)
        reg = self.registry
        self.run_id = reg.create_run("tiny", 3, config or {"rounds": rounds})
        reg.put_definition(DEFINITION)
        start = {name: value + np.float32(offset) for name, value in WEIGHTS.items()}
        self.initial = VersionRecord(VersionKind.INITIAL, 0, DEFINITION.id, reg.put_weights(start))
        reg.commit(self.run_id, [self.initial], head_round=0, head=self.initial.version_id, signer=signer)
        self.rounds: dict[int, tuple[VersionRecord, VersionRecord, VersionRecord]] = {}
        head = self.initial
        for rnd in range(1, rounds + 1):
            a = VersionRecord(VersionKind.CLIENT_UPDATE, rnd, DEFINITION.id,
                              reg.put_weights(_w(rnd + offset)), parents=(head.version_id,), client="a",
                              num_examples=3)
            b = VersionRecord(VersionKind.CLIENT_UPDATE, rnd, DEFINITION.id,
                              reg.put_weights(_w(rnd + 0.5 + offset)), parents=(head.version_id,), client="b",
                              num_examples=5)
            agg = VersionRecord(VersionKind.AGGREGATE, rnd, DEFINITION.id, reg.put_weights(_w(-rnd - offset)),
                                parents=(a.version_id, b.version_id), strategy="fedavg")
            reg.commit(self.run_id, [a, b, agg], head_round=rnd, head=agg.version_id, signer=signer)
            self.rounds[rnd] = (a, b, agg)
            head = agg

    @property
    def records(self) -> list[VersionRecord]:
        return [self.initial, *(r for rnd in sorted(self.rounds) for r in self.rounds[rnd])]


def _blob(registry: Registry, blob_id: str) -> Path:
    path = registry.blobs.path(blob_id)
    assert isinstance(path, Path)
    return path


def _sql(registry: Registry, statement: str, *args: object) -> None:
    assert registry.root is not None
    db = sqlite3.connect(registry.root / "registry.db")
    db.execute(statement, args)
    db.commit()
    db.close()


# -- round trip ---------------------------------------------------------------------------------

def test_versions_heads_and_records_round_trip_in_recording_order(tmp: Path) -> None:
    run = Run(tmp / "reg", rounds=2)
    reg = run.registry

    stored = reg.versions(run.run_id)

    assert [s.record for s in stored] == run.records
    assert [s.version_id for s in stored] == [r.version_id for r in run.records]
    assert [s.seq for s in stored] == list(range(7))
    assert {s.run_id for s in stored} == {run.run_id}
    assert reg.heads(run.run_id) == {0: run.initial.version_id, 1: run.rounds[1][2].version_id,
                                     2: run.rounds[2][2].version_id}
    assert reg.record(run.rounds[1][0].version_id) == run.rounds[1][0]
    assert reg.initial_versions(run.run_id) == [stored[0]]
    one = reg.stored_version(run.rounds[2][1].version_id)
    assert (one.run_id, one.record, one.seq) == (run.run_id, run.rounds[2][1], 5)
    assert one.to_dict()["run_id"] == run.run_id and one.to_dict()["version_id"] == one.version_id
    np.testing.assert_array_equal(reg.get_weights(run.rounds[2][2].weights_id)["w"], _w(-2)["w"])
    assert reg.get_definition(DEFINITION.id).id == DEFINITION.id


def test_runs_report_their_last_round_head_status_and_config(tmp: Path) -> None:
    run = Run(tmp / "reg", rounds=2)
    reg = run.registry
    reg.set_status(run.run_id, "completed")
    reg.update_config(run.run_id, {"rounds": 5})
    reg.annotate_run(run.run_id, "site", {"a": 1})

    info = reg.run(run.run_id)

    assert (info.run_id, info.scenario, info.seed, info.status) == (run.run_id, "tiny", 3, "completed")
    assert (info.last_round, info.head) == (2, run.rounds[2][2].version_id)
    assert info.config == {"rounds": 5, "site": {"a": 1}}
    assert reg.runs() == [info]
    with pytest.raises(LineageError, match="no run 'nope'"):
        reg.run("nope")
    with pytest.raises(LineageError, match="no run 'nope'"):
        reg.annotate_run("nope", "k", 1)


def test_a_run_without_heads_has_no_last_round(tmp: Path) -> None:
    reg = Registry(tmp / "reg")
    run_id = reg.create_run("empty", 0, {})

    info = reg.run(run_id)

    assert (info.last_round, info.head, info.status, info.config) == (None, None, "running", {})


def test_a_reopened_registry_reads_the_same_and_a_read_only_one_refuses_writes(tmp: Path) -> None:
    run = Run(tmp / "reg")
    run.registry.close()

    reader = Registry(tmp / "reg", create=False)

    assert [s.record for s in reader.versions(run.run_id)] == run.records
    assert reader.read_only and reader.is_being_written(run.run_id) is False
    with pytest.raises(RegistryError, match="opened read-only: nothing is written"):
        reader.create_run("x", 0, {})
    with pytest.raises(RegistryError, match="opened read-only: nothing is deleted"):
        reader.prune(run.run_id)


def test_opening_nothing_for_reading_says_where(tmp: Path) -> None:
    with pytest.raises(RegistryError, match="no flonnx registry at"):
        Registry(tmp / "none", create=False)
    assert not (tmp / "none").exists()


# -- commit: one transaction, every reference stored ------------------------------------------

def test_a_commit_with_an_unrecorded_parent_records_nothing(tmp: Path) -> None:
    run = Run(tmp / "reg")
    reg = run.registry
    good = VersionRecord(VersionKind.CLIENT_UPDATE, 2, DEFINITION.id, run.initial.weights_id,
                         parents=(run.rounds[1][2].version_id,), client="a")
    chained = VersionRecord(VersionKind.AGGREGATE, 2, DEFINITION.id, run.initial.weights_id,
                            parents=(good.version_id,))  # a parent in the same commit is fine
    orphan = VersionRecord(VersionKind.AGGREGATE, 2, DEFINITION.id, run.initial.weights_id,
                           parents=("f" * 64,))

    with pytest.raises(LineageError, match="parent ffffffffffff of a new version is not recorded"):
        reg.commit(run.run_id, [good, chained, orphan], head_round=2, head=orphan.version_id)

    assert len(reg.versions(run.run_id)) == 4 and 2 not in reg.heads(run.run_id)
    assert reg.commit(run.run_id, [good, chained], head_round=2, head=chained.version_id) == [
        good.version_id, chained.version_id]
    assert [s.seq for s in reg.versions(run.run_id)][-2:] == [4, 5]


def test_a_head_or_state_without_its_round_records_nothing(tmp: Path) -> None:
    run = Run(tmp / "reg")
    reg = run.registry
    extra = VersionRecord(VersionKind.AGGREGATE, 2, DEFINITION.id, run.initial.weights_id,
                          parents=(run.rounds[1][2].version_id,))
    state = reg.put_state(_w(1), {"step": 1})

    with pytest.raises(ValueError, match="head_round is required with head"):
        reg.commit(run.run_id, [extra], head=extra.version_id)
    with pytest.raises(ValueError, match="head_round is required with state_id"):
        reg.commit(run.run_id, [extra], state_id=state)

    assert len(reg.versions(run.run_id)) == 4 and reg.state_at(run.run_id, 2) is None


def test_commit_refuses_blobs_that_are_not_stored(tmp: Path) -> None:
    run = Run(tmp / "reg")
    reg = run.registry
    ghost_weights = VersionRecord(VersionKind.AGGREGATE, 2, DEFINITION.id, "a" * 64)
    ghost_definition = VersionRecord(VersionKind.AGGREGATE, 2, "b" * 64, run.initial.weights_id)

    with pytest.raises(RegistryError, match="blob aaaaaaaaaaaa that is not stored"):
        reg.commit(run.run_id, [ghost_weights])
    with pytest.raises(RegistryError, match="blob bbbbbbbbbbbb that is not stored"):
        reg.commit(run.run_id, [ghost_definition])
    with pytest.raises(RegistryError, match="strategy state blob cccccccccccc is not stored"):
        reg.commit(run.run_id, [], head_round=1, state_id="c" * 64)
    assert len(reg.versions(run.run_id)) == 4


def test_a_rejected_update_without_weights_commits_and_verifies(tmp: Path) -> None:
    run = Run(tmp / "reg")
    reg = run.registry
    rejected = VersionRecord(VersionKind.REJECTED, 2, DEFINITION.id, "",
                             parents=(run.rounds[1][2].version_id,), client="c", reason="nan")

    reg.commit(run.run_id, [rejected])

    assert reg.record(rejected.version_id) == rejected
    assert [v.record for v in reg.initial_versions(run.run_id)] == [run.initial]
    assert reg.verify(run.run_id)[1] == []


def test_a_state_commits_with_its_round_and_reads_back(tmp: Path) -> None:
    run = Run(tmp / "reg")
    reg = run.registry
    arrays = {"m": np.arange(3, dtype=np.float32)}
    state_id = reg.put_state(arrays, {"lr": 0.5})
    other = reg.put_state(arrays, {"lr": 0.25})

    reg.commit(run.run_id, [], head_round=1, state_id=state_id)
    reg.commit(run.run_id, [], head_round=1, state_id=other)  # the round's state is replaced

    assert state_id == strategy_state_id(arrays, {"lr": 0.5}) != other
    assert reg.state_at(run.run_id, 1) == other and reg.state_at(run.run_id, 0) is None
    loaded, state = reg.get_state(state_id)
    np.testing.assert_array_equal(loaded["m"], arrays["m"])
    assert state == {"lr": 0.5}


def test_a_head_commit_replaces_the_round_head(tmp: Path) -> None:
    run = Run(tmp / "reg")
    reg = run.registry

    reg.commit(run.run_id, [], head_round=1, head=run.rounds[1][0].version_id)

    assert reg.heads(run.run_id)[1] == run.rounds[1][0].version_id


# -- prefixes -------------------------------------------------------------------------------------

def test_prefixes_resolve_when_unique_and_are_refused_otherwise(tmp: Path) -> None:
    run = Run(tmp / "reg", rounds=2)
    reg = run.registry
    target = run.rounds[1][1].version_id
    second = reg.create_run("tiny", 4, {})
    _sql(reg, "UPDATE runs SET created_at = '2999-01-01T00:00:00+00:00' WHERE run_id = ?", second)

    assert reg.resolve_version(target[:10].upper()) == target
    assert reg.resolve_version(target) == target
    assert reg.resolve_run(run.run_id[:-1]) == run.run_id
    assert reg.resolve_run(None) == second
    with pytest.raises(LineageError, match="no version matches 'zz'"):
        reg.resolve_version("zz")
    with pytest.raises(LineageError) as ambiguous:
        reg.resolve_version("")
    shown = ", ".join(r.version_id[:16] for r in sorted(run.records, key=lambda r: r.version_id)[:5])
    assert str(ambiguous.value) == f"version prefix '' is ambiguous: {shown}, …"
    with pytest.raises(LineageError, match="no run matches 'x'"):
        reg.resolve_run("x")
    with pytest.raises(LineageError, match=f"^no version 000000000000 in {reg.location}$"):
        reg.record("0" * 64)
    with pytest.raises(LineageError, match=f"no version 000000000000 of run {run.run_id} in "):
        reg.stored_version("0" * 64, run.run_id)
    with pytest.raises(LineageError, match=f"^no version 000000000000 in {reg.location}$"):
        reg.stored_version("0" * 64)


def test_the_newest_run_of_an_empty_registry_is_an_error(tmp: Path) -> None:
    with pytest.raises(LineageError, match="has no runs yet"):
        Registry(tmp / "reg").resolve_run(None)


# -- locks ----------------------------------------------------------------------------------------

def test_a_run_is_locked_by_one_holder_at_a_time(tmp: Path) -> None:
    reg = Registry(tmp / "reg")
    other = Registry(tmp / "reg")

    assert not reg.is_being_written("r1")
    with reg.lock_run("r1"):
        assert reg.is_being_written("r1") and other.is_being_written("r1")
        assert not reg.is_being_written("r2")
        with pytest.raises(RunLocked, match="run r1 is being written"), other.lock_run("r1"):
            pass
        with other.lock_run("r2"):
            pass
    assert not other.is_being_written("r1")
    with other.lock_run("r1"):
        pass


# -- verify ---------------------------------------------------------------------------------------

def test_verify_counts_every_record_and_blob_of_an_intact_run(tmp: Path) -> None:
    run = Run(tmp / "reg", rounds=1)

    checked, problems = run.registry.verify(run.run_id)

    assert problems == []
    assert checked == 4 + 1 + 4  # four records, one definition, four weights blobs
    assert run.registry.verify() == (9, [])
    run.registry.check_intact(run.run_id)


def test_verify_names_a_tampered_record_and_reads_refuse_it(tmp: Path) -> None:
    run = Run(tmp / "reg")
    reg = run.registry
    target = run.rounds[1][0]
    _sql(reg, "UPDATE versions SET record_json = replace(record_json, '\"a\"', '\"z\"') "
              "WHERE version_id = ?", target.version_id)

    problems = reg.verify(run.run_id)[1]

    assert len(problems) == 1
    assert problems[0].startswith(f"version {target.version_id[:12]} (client_update, round 1): "
                                  "record re-hashes to ")
    with pytest.raises(RegistryError, match=f"version {target.version_id[:12]} .* does not match its id"):
        reg.versions(run.run_id)
    with pytest.raises(RegistryError, match="changed after it was written"):
        reg.record(target.version_id)
    with pytest.raises(RegistryError, match=f"run {run.run_id} .* is damaged and cannot be resumed: "
                                            f"version {target.version_id[:12]}"):
        reg.check_intact(run.run_id)


def test_verify_names_a_changed_blob_a_missing_one_and_a_missing_definition(tmp: Path) -> None:
    run = Run(tmp / "reg")
    reg = run.registry
    a, b, _ = run.rounds[1]
    path = _blob(reg, a.weights_id)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    _blob(reg, b.weights_id).unlink()

    problems = reg.verify(run.run_id)[1]

    assert len(problems) == 2
    assert sum(p.startswith(f"version {a.version_id[:12]} (client_update, round 1): weights blob "
                            f"{a.weights_id[:12]} ({path}): content hashes to ") for p in problems) == 1
    assert sum(p.startswith(f"version {b.version_id[:12]} (client_update, round 1): weights blob "
                            f"{b.weights_id[:12]}: blob {b.weights_id[:12]} is missing")
               for p in problems) == 1
    with pytest.raises(LineageError, match=f"weights blob {a.weights_id[:12]} does not match its id"):
        reg.get_weights(a.weights_id)

    _blob(reg, DEFINITION.id).unlink()
    problems = reg.verify(run.run_id)[1]
    assert sum(p.startswith(f"definition blob {DEFINITION.id[:12]}: ") for p in problems) == 1
    more = len(problems) - 1
    with pytest.raises(RegistryError, match=f"cannot be replayed: .* \\(and {more} more\\); `flonnx lineage "
                                            f"verify --run {run.run_id}` lists every problem"):
        reg.check_intact(run.run_id, "replayed")


def test_verify_names_weights_that_do_not_fit_the_definition(tmp: Path) -> None:
    run = Run(tmp / "reg")
    reg = run.registry
    misfit = reg.put_weights({"w": np.ones((3, 3), np.float32)})
    bad = VersionRecord(VersionKind.AGGREGATE, 2, DEFINITION.id, misfit,
                        parents=(run.rounds[1][2].version_id,))
    reg.commit(run.run_id, [bad])

    problems = reg.verify(run.run_id)[1]

    assert len(problems) == 1
    assert problems[0].startswith(f"version {bad.version_id[:12]} (aggregate, round 2): ")
    assert f"): weights blob {misfit[:12]} does not match definition {DEFINITION.id[:12]}: " in problems[0]


def test_verify_names_an_index_column_that_disagrees_and_an_unrecorded_parent(tmp: Path) -> None:
    run = Run(tmp / "reg")
    reg = run.registry
    a, b, agg = run.rounds[1]
    _sql(reg, "UPDATE versions SET round = 7 WHERE version_id = ?", a.version_id)
    _sql(reg, "DELETE FROM versions WHERE version_id = ?", b.version_id)

    problems = reg.verify(run.run_id)[1]

    assert sorted(problems) == sorted([
        f"version {a.version_id[:12]} (client_update, round 7): index columns disagree with the record",
        f"version {agg.version_id[:12]} (aggregate, round 1): parent {b.version_id[:12]} is not recorded"])


def test_verify_names_heads_that_are_not_the_rounds_aggregate(tmp: Path) -> None:
    run = Run(tmp / "reg")
    reg = run.registry
    a = run.rounds[1][0]
    _sql(reg, "UPDATE run_heads SET version_id = ? WHERE round = 1", a.version_id)
    _sql(reg, "INSERT INTO run_heads (run_id, round, version_id) VALUES (?, 2, ?)", run.run_id, "e" * 64)
    _sql(reg, "UPDATE run_heads SET version_id = ? WHERE round = 0", run.rounds[1][2].version_id)

    problems = reg.verify(run.run_id)[1]

    assert problems == [
        f"run {run.run_id} round 0: head {run.rounds[1][2].version_id[:12]} is the aggregate version of "
        "round 1, not the initial version of round 0",
        f"run {run.run_id} round 1: head {a.version_id[:12]} is the client_update version of round 1, "
        "not the aggregate version of round 1",
        f"run {run.run_id} round 2: head eeeeeeeeeeee is not recorded",
    ]


def test_verify_names_a_damaged_strategy_state(tmp: Path) -> None:
    run = Run(tmp / "reg")
    reg = run.registry
    state_id = reg.put_state(_w(1), {"step": 1})
    reg.commit(run.run_id, [], head_round=1, state_id=state_id)
    assert reg.verify(run.run_id) == (10, [])
    _blob(reg, state_id).write_bytes(b"{}")

    problems = reg.verify(run.run_id)[1]

    assert problems == [f"run {run.run_id} round 1: strategy state {state_id[:12]}: strategy state blob "
                        f"{state_id[:12]} does not match its id"]


def _spec_run_config() -> dict[str, Any]:
    """The record of a run a federation spec made: its spec, canonical form and spec id."""
    canonical = {"name": "tiny", "seed": 3, "rounds": 1}
    return {"spec": dict(canonical), "spec_canonical": canonical, "spec_id": sha256_of(canonical)}


def test_a_spec_run_without_a_state_after_a_round_is_named(tmp: Path) -> None:
    config = _spec_run_config()
    run = Run(tmp / "reg", config=config)
    reg = run.registry
    reg.commit(run.run_id, [], head_round=0, state_id=reg.put_state(_w(0), {}))

    problems = reg.verify(run.run_id)[1]

    assert problems == [f"run {run.run_id} round 1: no strategy state is saved after it"]
    assert reg.run(run.run_id).config == config


def test_verify_names_a_changed_run_record_and_reads_refuse_it(tmp: Path) -> None:
    run = Run(tmp / "reg", config=_spec_run_config())
    reg = run.registry
    _sql(reg, "UPDATE runs SET seed = 9")

    problems = reg.verify(run.run_id)[1]

    assert any(p.startswith(f"run {run.run_id}: its name and seed ('tiny', 9)") for p in problems)
    with pytest.raises(RegistryError, match="the run record was changed after it was written"):
        reg.runs()


def test_an_unreadable_run_record_is_an_error_naming_the_run(tmp: Path) -> None:
    reg = Registry(tmp / "reg")
    run_id = reg.create_run("x", 0, {})
    _sql(reg, "UPDATE runs SET config_json = '{'")

    with pytest.raises(RegistryError, match=f"run '{run_id}' .* has an unreadable record"):
        reg.runs()
    _sql(reg, "UPDATE runs SET config_json = '[1]'")
    with pytest.raises(RegistryError, match="has a record that is not an object"):
        reg.run(run_id)


# -- evaluations ----------------------------------------------------------------------------------

def test_evaluations_round_trip_replace_and_refuse_foreign_versions(tmp: Path) -> None:
    run = Run(tmp / "reg")
    reg = run.registry
    agg = run.rounds[1][2].version_id

    first = reg.add_evaluation(run.run_id, agg, "site:b", {"acc": 0.5})
    reg.add_evaluation(run.run_id, agg, "site:a", {"acc": 0.75})
    again = reg.add_evaluation(run.run_id, agg, "site:b", {}, failed_reason="no data")

    found = reg.evaluations(agg)
    assert [(e.source, e.metrics, e.failed_reason) for e in found] == [
        ("site:a", {"acc": 0.75}, None), ("site:b", {}, "no data")]
    assert first != again == found[1].evaluation_id
    assert reg.evaluations(agg, run_id="other") == [] and reg.evaluations(run.initial.version_id) == []
    for stranger in ("other", "1"):  # run ids sorting after and before the run that recorded it
        with pytest.raises(LineageError, match=f"run {stranger} did not record it"):
            reg.add_evaluation(stranger, agg, "site:a", {"acc": 1.0})
    assert reg.verify(run.run_id) == (11, [])


def test_verify_names_a_changed_evaluation_and_reads_refuse_it(tmp: Path) -> None:
    run = Run(tmp / "reg")
    reg = run.registry
    agg = run.rounds[1][2].version_id
    reg.add_evaluation(run.run_id, agg, "site:a", {"acc": 0.75})
    _sql(reg, "UPDATE evaluations SET record_json = replace(record_json, '0.75', '0.95')")

    problems = reg.verify(run.run_id)[1]

    assert len(problems) == 1
    assert problems[0].startswith(f"run {run.run_id} evaluation of version {agg[:12]} by 'site:a': its "
                                  "record re-hashes to ")
    with pytest.raises(RegistryError, match="it was changed after it was written"):
        reg.evaluations(agg)


# -- retention ------------------------------------------------------------------------------------

def test_retention_horizon_keeps_the_last_k_rounds() -> None:
    spec = {"spec": {"registry": {"retention": "last:2"}}}

    assert retention_horizon(spec, 5) == 3
    assert retention_horizon(spec, 1) == 0
    assert retention_horizon(spec, None) == 0
    assert retention_horizon({"spec": {"registry": {"retention": "all"}}}, 5) == 0
    assert retention_horizon({"spec": {"registry": {"retention": "bad"}}}, 5) == 0
    assert retention_horizon({"spec": {"registry": {}}}, 5) == 0
    assert retention_horizon({}, 5) == 0


def test_prune_deletes_let_go_updates_but_keeps_blobs_still_referenced(tmp: Path) -> None:
    run = Run(tmp / "reg", rounds=3, config=RETAIN_ONE)
    reg = run.registry
    a1, b1, _ = run.rounds[1]
    keeper = VersionRecord(VersionKind.AGGREGATE, 3, DEFINITION.id, b1.weights_id,
                           parents=(run.rounds[3][2].version_id,), strategy="x")
    reg.commit(run.run_id, [keeper])  # an aggregate with the bytes of round 1's update b
    a2, b2, _ = run.rounds[2]
    state = reg.put_state(_w(2), {})  # a state whose arrays have the bytes of round 2's update a
    reg.commit(run.run_id, [], head_round=3, state_id=state)

    newest = reg.prune(run.run_id, newest=True)  # round 2 only

    assert newest == [b2.weights_id]
    deleted = reg.prune(run.run_id)
    assert deleted == [a1.weights_id]
    assert not reg.blobs.exists(a1.weights_id) and reg.blobs.exists(b1.weights_id)
    assert all(reg.blobs.exists(r.weights_id) for r in run.rounds[3])
    assert reg.prune(run.run_id) == []
    assert reg.verify(run.run_id)[1] == []


# -- signatures -----------------------------------------------------------------------------------

def _signer(seed: int) -> Signer:
    return Signer(Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32))


def test_a_signed_run_records_each_signature_and_verifies_with_its_key(tmp: Path) -> None:
    signer = _signer(1)
    reg = Registry(tmp / "reg")
    run = Run(tmp / "reg", config={"signing_key": signer.run_record()}, registry=reg, signer=signer)

    assert reg.signing_keys() == {run.run_id: signer.public}
    assert reg.signing_keys(run.run_id) == {run.run_id: signer.public}
    for record in run.records:
        signature = signer.sign(record.version_id)
        assert reg.signatures(record.version_id) == {signer.public.fingerprint: signature}
    assert reg.verify(run.run_id) == (4 + 1 + 4 + 1 + 4, [])  # records, definition, weights, run, signatures
    assert reg.verify(run.run_id, key=signer.public) == (14, [])
    for source in ("site:a", "site:b"):  # 12 items then 4 signatures: a sum, not a bitwise or
        reg.add_evaluation(run.run_id, run.initial.version_id, source, {"acc": 1.0})
    assert reg.verify(run.run_id) == (16, [])


def test_verify_names_every_version_a_run_signed_by_another_key_or_not_at_all(tmp: Path) -> None:
    signer, other = _signer(1), _signer(2)
    reg = Registry(tmp / "reg")
    run = Run(tmp / "reg", config={"signing_key": signer.run_record()}, registry=reg, signer=signer)
    unsigned = Run(tmp / "reg", registry=reg)
    fp, ofp = signer.public.fingerprint[:16], other.public.fingerprint[:16]
    a = run.rounds[1][0]
    _sql(reg, "DELETE FROM version_signatures WHERE version_id = ?", run.initial.version_id)
    _sql(reg, "UPDATE version_signatures SET signature = ? WHERE version_id = ?",
         signer.sign(run.initial.version_id), a.version_id)

    assert reg.verify(run.run_id)[1] == [
        f"run {run.run_id} version {run.initial.version_id[:12]} (initial, round 0): missing signature by "
        f"key {fp}",
        f"run {run.run_id} version {a.version_id[:12]} (client_update, round 1): bad signature: it does not "
        f"verify with key {fp}"]
    assert reg.verify(unsigned.run_id) == (9, [])
    problems = reg.verify(run.run_id, key=other.public)[1]
    assert problems[0] == f"run {run.run_id}: recorded signing key {fp}, not the given key {ofp}"
    assert problems[2] == (f"run {run.run_id} version {a.version_id[:12]} (client_update, round 1): signed "
                           "by "
                           f"another key ({fp}), not by {ofp}")
    assert len(problems) == 5
    assert len(reg.verify(unsigned.run_id, key=other.public)[1]) == 4


def test_a_malformed_recorded_key_is_named_and_left_out(tmp: Path) -> None:
    signer = _signer(1)
    reg = Registry(tmp / "reg")
    table = reg.create_run("t", 0, {"signing_key": "abc"})
    wrong = reg.create_run("t", 0, {"signing_key": {**signer.run_record(), "fingerprint": "f" * 64}})
    empty = reg.create_run("t", 0, {"signing_key": {}})
    _sql(reg, "UPDATE runs SET created_at = '2000-01-01' WHERE run_id = ?", table)  # a bad key first

    assert recorded_key({"signing_key": {"public_key": signer.public.hex}}) == signer.public
    assert recorded_key({}) is None
    assert reg.signing_keys() == {wrong: signer.public}
    problems = reg.verify()[1]
    assert sorted(problems) == sorted([
        f"run {table}: its recorded signing key is not a table",
        f"run {wrong}: its recorded signing key hashes to fingerprint {signer.public.fingerprint[:16]}, "
        "not its "
        f"recorded fingerprint {'f' * 16}",
        f"run {empty}: an Ed25519 public key is 64 hex digits (32 bytes)"])
    with pytest.raises(RegistryError, match=f"run {table}: its recorded signing key is not a table in "):
        reg.run(table)


# -- run records ----------------------------------------------------------------------------------

def _spec_config(**spec: Any) -> dict[str, Any]:
    from flonnx.exchange.hashing import canonical_json, sha256_hex

    canonical = {"name": "tiny", "seed": 3, "rounds": 1, "min-train-nodes": 2,
                 "data": {"source": {"sha256": "0" * 64, "suffix": ".csv"}, "label": "y"}}
    return {"spec": {**canonical, "data": {"source": "train.csv", "label": "y"}, **spec},
            "spec_canonical": canonical, "spec_id": sha256_hex(canonical_json(canonical))}


def test_run_record_problems_name_each_key_the_spec_changed() -> None:
    sid = _spec_config()["spec_id"][:12]
    differs = f"run r: the spec it runs with differs from its recorded spec (spec id {sid}) at "

    assert run_record_problems("r", "tiny", 3, _spec_config()) == []
    assert run_record_problems("r", "tiny", 3, _spec_config(rounds=9, **{"min-train-nodes": 1},
                                                            description="d")) == []
    assert run_record_problems("r", "tiny", 3, _spec_config(seed=4, data={"label": "z", "x": 1})) == [
        differs + "seed, data.label, data.source, data.x"]
    assert run_record_problems("r", "tiny", 3, _spec_config(data={"source": 5, "label": "y"})) == [
        differs + "data.source"]
    hashed = _spec_config()
    hashed["spec_canonical"]["data"]["source"]["size"] = 3  # not only a file's hash and suffix
    hashed["spec_id"] = sha256_of(hashed["spec_canonical"])
    assert run_record_problems("r", "tiny", 3, hashed) == [
        f"run r: the spec it runs with differs from its recorded spec (spec id {hashed['spec_id'][:12]}) "
        "at data.source"]
    assert run_record_problems("r", "tiny", 3, _spec_config(data="x")) == [differs + "data"]
    tabled = _spec_config()
    for key in ("cache", "strategy-config"):  # tables sorting before and after "data"
        tabled["spec_canonical"][key] = {"k": 1}
        tabled["spec"][key] = {"k": 2}
    tabled["spec_id"] = sha256_of(tabled["spec_canonical"])
    assert run_record_problems("r", "tiny", 3, tabled) == [  # only the data table is compared key by key
        f"run r: the spec it runs with differs from its recorded spec (spec id {tabled['spec_id'][:12]}) "
        "at cache, strategy-config"]
    assert run_record_problems("r", "tiny", 3, {**_spec_config(), "spec": None}) == [differs + "spec"]
    missing = _spec_config()
    del missing["spec"]["name"]
    assert run_record_problems("r", "tiny", 3, missing) == [differs + "name"]
    assert run_record_problems("r", "other", 4, _spec_config()) == [
        "run r: its name and seed ('other', 4) are not its recorded spec's ('tiny', 3)"]
    assert run_record_problems("r", "tiny", 3, {"spec_canonical": [1], "spec_id": sha256_of([1])}) == [
        "run r: recorded spec is not a table"]
    assert run_record_problems("r", "tiny", 3, {"spec_canonical": {"a": 1.5e400}})[0].startswith(
        "run r: recorded spec has no canonical form (")
    for wrong in ("0", "f"):  # a spec id below and above the true one
        assert run_record_problems("r", "tiny", 3, {**_spec_config(), "spec_id": wrong * 64}) == [
            f"run r: recorded spec re-hashes to {sid}, not its spec id {wrong * 12}"]
    assert run_record_problems("r", "x", 0, {"signing_key": "k"}) == [
        "run r: its recorded signing key is not a table"]
    assert run_record_problems("r", "x", 0, {**_spec_config(), "signing_key": "k"}) == [
        "run r: its name and seed ('x', 0) are not its recorded spec's ('tiny', 3)",
        "run r: its recorded signing key is not a table"]


def sha256_of(value: Any) -> str:
    from flonnx.exchange.hashing import canonical_json, sha256_hex

    return sha256_hex(canonical_json(value))


# -- opening --------------------------------------------------------------------------------------

def test_a_new_registry_is_made_whole_and_a_reopen_migrates_nothing(tmp: Path) -> None:
    from flonnx.exchange import _schema as schema

    made = Registry(tmp / "reg")

    assert made.migrated == list(range(1, schema.LATEST + 1)) and made.schema_version == schema.LATEST
    assert not made.read_only
    assert [p.name for p in (tmp / "reg").iterdir() if "registry.db" in p.name and "tmp" in p.name] == []
    again = Registry(tmp / "reg", create=False, migrate=True)
    assert again.migrated == [] and not again.read_only
    assert Registry(tmp / "reg", create=False).read_only


def test_of_two_processes_making_one_registry_the_second_opens_the_firsts(
        tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import flonnx.exchange.registry as registry_module

    first: list[Registry] = []
    calls: list[str] = []

    def meanwhile(name: str) -> None:
        calls.append(name)
        if name == "database.before_link" and len(calls) == 1:
            first.append(Registry(tmp / "reg"))  # another process makes it first

    monkeypatch.setattr(registry_module, "crash_point", meanwhile)
    second = Registry(tmp / "reg")

    assert first[0].migrated != [] and second.migrated == []
    run_id = first[0].create_run("x", 0, {})
    assert second.resolve_run(None) == run_id
    assert [p.name for p in (tmp / "reg").iterdir() if p.name.endswith((".tmp", "-wal", "-shm"))
            and p.name.startswith(".")] == []


def test_a_database_url_needs_its_blobs_and_a_file(tmp: Path) -> None:
    url = f"sqlite:///{tmp}/db/registry.db"

    for blobs in (None, ""):
        with pytest.raises(RegistryError, match="is a database URL: say where its blobs live too"):
            Registry(url, blobs=blobs)
    with pytest.raises(RegistryError, match="a SQLite registry needs a file, not sqlite:///:memory:"):
        Registry("sqlite:///:memory:", blobs=tmp / "b")
    missing = f"no flonnx registry at {url} \\(no file {tmp}/db/registry.db\\)"
    with pytest.raises(RegistryError, match=missing):
        Registry(url, blobs=tmp / "b", create=False)
    assert not (tmp / "db").exists()

    reg = Registry(url, blobs=tmp / "b")
    run_id = reg.create_run("x", 0, {})
    with reg.lock_run(run_id):
        assert (tmp / "db" / "locks" / f"{run_id}.lock").exists() and reg.is_being_written(run_id)
    assert reg.root is None and reg.location == url and reg.blobs.put(b"x") == sha256_of_bytes(b"x")
    assert (tmp / "b").is_dir()
    assert Registry(url, blobs=tmp / "b", create=False).runs()[0].run_id == run_id
    assert Registry(url, blobs=tmp / "b").runs()[0].run_id == run_id  # a writer opens it again


def sha256_of_bytes(data: bytes) -> str:
    from flonnx.exchange.hashing import sha256_hex

    return sha256_hex(data)


def test_a_database_without_flonnx_tables_or_of_another_schema_is_refused(tmp: Path) -> None:
    from flonnx.exchange import _schema as schema

    (tmp / "empty").mkdir()
    sqlite3.connect(tmp / "empty" / "registry.db").close()
    with pytest.raises(RegistryError, match="the database has no flonnx tables"):
        Registry(tmp / "empty", create=False)

    reg = Registry(tmp / "reg")
    reg.close()
    _sql(reg, "INSERT INTO flonnx_schema (version, applied_at, description) VALUES (?, 'x', 'x')",
         schema.LATEST + 1)
    for create in (True, False):
        with pytest.raises(RegistryError, match=f"has schema version {schema.LATEST + 1}, newer than"):
            Registry(tmp / "reg", create=create)
    _sql(reg, "DELETE FROM flonnx_schema WHERE version >= ?", schema.LATEST)
    with pytest.raises(RegistryError, match=f"has schema version {schema.LATEST - 1} \\(made by an older "
                                            f"flonnx\\) and this flonnx needs version {schema.LATEST}; .*"
                                            f"`flonnx lineage migrate --registry {tmp}/reg`"):
        Registry(tmp / "reg", create=False)
    url = f"sqlite:///{tmp}/reg/registry.db"
    with pytest.raises(RegistryError, match=f"--registry {url} --blobs …`"):
        Registry(url, blobs=tmp / "reg" / "blobs", create=False)


# -- evaluations ----------------------------------------------------------------------------------

def test_an_evaluation_record_is_canonical_and_a_malformed_one_refused() -> None:
    evaluation = Evaluation("r", "v", "site:a", {"b": 1, "a": 0.5})

    assert evaluation.to_dict() == {"run_id": "r", "version_id": "v", "source": "site:a",
                                     "metrics": {"a": 0.5, "b": 1.0}, "failed_reason": None}
    assert list(evaluation.to_dict()["metrics"]) == ["a", "b"]
    assert Evaluation.from_dict(evaluation.to_dict()) == evaluation
    assert Evaluation.from_dict({**evaluation.to_dict(), "failed_reason": 3}).failed_reason == "3"
    whole = evaluation.to_dict()
    for broken in ({}, {**whole, "metrics": {"a": "x"}}, {**whole, "metrics": 1}):
        with pytest.raises(LineageError, match="malformed evaluation record"):
            Evaluation.from_dict(broken)


def test_verify_names_each_way_an_evaluation_row_can_be_wrong(tmp: Path) -> None:
    run = Run(tmp / "reg")
    reg = run.registry
    other = Run(tmp / "reg", registry=reg)
    agg = run.rounds[1][2].version_id
    reg.add_evaluation(run.run_id, agg, "site:a", {"acc": 0.75})
    reg.add_evaluation(run.run_id, agg, "site:b", {"acc": 0.5})
    reg.add_evaluation(run.run_id, agg, "site:c", {"acc": 0.25})
    spaced = json.dumps(Evaluation(run.run_id, agg, "site:a", {"acc": 0.75}).to_dict(), indent=1)
    _sql(reg, "UPDATE evaluations SET record_json = ?, evaluation_id = ? WHERE source = 'site:a'",
         spaced, sha256_of_bytes(spaced.encode()))
    _sql(reg, "UPDATE evaluations SET record_json = '{', evaluation_id = ? WHERE source = 'site:b'",
         sha256_of_bytes(b"{"))
    _sql(reg, "UPDATE evaluations SET source = 'site:z' WHERE source = 'site:c'")
    label = f"run {run.run_id} evaluation of version {agg[:12]} by"

    problems = reg.verify(run.run_id)[1]

    assert problems[0] == f"{label} 'site:a': its record is not in canonical form"
    assert problems[1].startswith(f"{label} 'site:b': unreadable record (")
    assert problems[2] == f"{label} 'site:z': its row disagrees with its record"
    assert len(problems) == 3
    assert reg.verify(other.run_id)[1] == []



# -- more reads and refusals ----------------------------------------------------------------------

def test_a_snapshot_keeps_reading_what_was_committed_when_it_began(tmp: Path) -> None:
    run = Run(tmp / "reg")
    reg = run.registry
    writer = Registry(tmp / "reg")
    extra = VersionRecord(VersionKind.AGGREGATE, 2, DEFINITION.id, run.initial.weights_id,
                          parents=(run.rounds[1][2].version_id,))

    with reg.snapshot():
        before = reg.heads(run.run_id)
        writer.commit(run.run_id, [extra], head_round=2, head=extra.version_id)
        with reg.snapshot():
            assert reg.heads(run.run_id) == before
            assert len(reg.versions(run.run_id)) == 4
        assert reg.run(run.run_id).last_round == 1

    assert reg.heads(run.run_id)[2] == extra.version_id and reg.run(run.run_id).last_round == 2


def test_a_run_id_is_its_creation_time_and_a_random_suffix(tmp: Path) -> None:
    import re

    reg = Registry(tmp / "reg")
    ids = {reg.create_run("x", 0, {}) for _ in range(3)}

    assert len(ids) == 3 and all(re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", i) for i in ids)
    for info in reg.runs():
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", info.created_at)
        assert info.created_at[:4] + info.created_at[5:7] + info.created_at[8:10] == info.run_id[:8]
    made = Run(tmp / "reg", registry=reg)
    stored = reg.versions(made.run_id)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", stored[0].created_at)


def test_two_runs_of_one_spec_share_versions_each_with_its_own_order(tmp: Path) -> None:
    reg = Registry(tmp / "reg")
    first = Run(tmp / "reg", registry=reg)
    second = Run(tmp / "reg", rounds=2, registry=reg)
    _sql(reg, "UPDATE run_versions SET created_at = '2000-01-01' WHERE run_id = ?", second.run_id)

    assert [s.record for s in reg.versions(second.run_id)] == second.records
    for run in (first, second):  # each run numbers its own versions from 0
        assert [s.seq for s in reg.versions(run.run_id)] == list(range(len(run.records)))
    reg.set_status(max(first.run_id, second.run_id), "completed")
    assert reg.run(min(first.run_id, second.run_id)).status == "running"
    assert reg.stored_version(first.initial.version_id).run_id == second.run_id  # recorded first
    mine = reg.stored_version(first.initial.version_id, first.run_id)
    assert (mine.run_id, mine.seq, mine.created_at != "2000-01-01") == (first.run_id, 0, True)
    assert reg.verify() == (7 + 1 + 7, [])  # each version row and blob once, whichever runs share it


def test_commit_to_an_unknown_run_is_a_registry_error_naming_it(tmp: Path) -> None:
    run = Run(tmp / "reg")
    reg = run.registry

    with pytest.raises(RegistryError, match=f"cannot record versions of run nope in {tmp}/reg: FOREIGN KEY"):
        reg.commit("nope", [run.initial])


def test_stored_blobs_are_checked_against_their_ids_when_read(tmp: Path) -> None:
    reg = Registry(tmp / "reg")
    wrong = "ab" * 32
    reg.blobs.put(DEFINITION.canonical_bytes, blob_id=wrong)
    reg.put_weights(_w(1), weights_id=wrong)  # already stored: nothing written

    assert _blob(reg, wrong).read_bytes() == DEFINITION.canonical_bytes
    rehashed = f"^definition blob abababababab re-hashes to {DEFINITION.id[:12]}$"
    with pytest.raises(LineageError, match=rehashed):
        reg.get_definition(wrong)
    for data, name in ((b"x", "JSONDecodeError"), (b"[1]", "TypeError"), (b"{}", "KeyError")):
        state = reg.blobs.put(data)
        with pytest.raises(LineageError, match=f"strategy state blob {state[:12]} is malformed: {name}: "):
            reg.get_state(state)
    assert reg.put_weights(_w(1)) == reg.put_weights(_w(1), weights_id=reg.put_weights(_w(1)))


def test_blobs_can_live_elsewhere_and_be_written_compressed(tmp: Path) -> None:
    from flonnx.exchange.blobstore import COMPRESSED_SUFFIX

    reg = Registry(tmp / "reg", blobs=tmp / "elsewhere", compress=True)
    blob_id = reg.put_weights(_w(1))

    assert _blob(reg, blob_id).with_name(blob_id + COMPRESSED_SUFFIX).exists()
    assert (tmp / "elsewhere").is_dir() and not (tmp / "reg" / "blobs").exists()
    assert Registry(tmp / "plain", blobs="").blobs.put(b"x") and (tmp / "plain" / "blobs").is_dir()


def test_verify_names_an_unreadable_definition_and_an_evaluation_of_another_runs_version(tmp: Path) -> None:
    run = Run(tmp / "reg")
    reg = run.registry
    garbage = reg.blobs.put(b"not onnx")
    odd = VersionRecord(VersionKind.AGGREGATE, 2, garbage, run.initial.weights_id,
                        parents=(run.rounds[1][2].version_id,))
    reg.commit(run.run_id, [odd])
    stranger = reg.create_run("x", 0, {})
    agg = run.rounds[1][2].version_id
    evaluation = Evaluation(stranger, agg, "site:q", {"acc": 1.0})
    _sql(reg, "INSERT INTO evaluations (run_id, version_id, source, evaluation_id, record_json) "
              "VALUES (?, ?, ?, ?, ?)", stranger, agg, "site:q", evaluation.evaluation_id,
         evaluation.canonical_bytes().decode())

    problems = reg.verify(run.run_id)[1]
    assert len(problems) == 1 and problems[0].startswith(f"definition blob {garbage[:12]}: ")
    assert reg.verify(stranger) == (1, [f"run {stranger} evaluation by 'site:q': version {agg[:12]} is not "
                                        "a version of the run"])


def test_prune_keeps_what_another_run_keeps_and_verify_still_reports_it(tmp: Path) -> None:
    reg = Registry(tmp / "reg")
    pruned = Run(tmp / "reg", rounds=3, config=RETAIN_ONE, registry=reg)
    keeper = Run(tmp / "reg", rounds=3, registry=reg)
    alone = Run(tmp / "reg", rounds=2, registry=reg)
    assert [r.version_id for r in keeper.records] == [r.version_id for r in pruned.records]

    assert reg.prune(pruned.run_id) == [] and reg.prune(keeper.run_id) == []
    assert reg.prune(alone.run_id) == []
    a1 = pruned.rounds[1][0]
    _blob(reg, a1.weights_id).unlink()
    problems = reg.verify(pruned.run_id)[1]
    assert len(problems) == 1 and problems[0].startswith(f"version {a1.version_id[:12]} ")


def test_prune_deletes_nothing_while_a_state_is_unreadable_or_an_orphan_row_shares_a_blob(tmp: Path) -> None:
    run = Run(tmp / "reg", rounds=3, config=RETAIN_ONE)
    reg = run.registry
    a1, b1, _ = run.rounds[1]
    stray = VersionRecord(VersionKind.CLIENT_UPDATE, 1, DEFINITION.id, b1.weights_id,
                          parents=(run.initial.version_id,), client="z")
    reg.commit(run.run_id, [stray])
    _sql(reg, "DELETE FROM run_versions WHERE version_id = ?", stray.version_id)  # recorded by no run
    state = reg.blobs.put(b"{}")
    _sql(reg, "INSERT INTO strategy_states (run_id, round, state_id) VALUES (?, 3, ?)", run.run_id, state)

    assert reg.prune(run.run_id) == []

    _sql(reg, "DELETE FROM strategy_states")
    assert reg.prune(run.run_id) == sorted([a1.weights_id, *(r.weights_id for r in run.rounds[2][:2])])
    assert reg.blobs.exists(b1.weights_id)


def _older(registry: Registry) -> None:
    """Make ``registry`` one made before the newest migration (the evaluations table)."""
    from flonnx.exchange import _schema as schema

    registry.close()
    _sql(registry, "DROP TABLE evaluations")
    _sql(registry, "DELETE FROM flonnx_schema WHERE version = ?", schema.LATEST)


def test_an_older_registry_is_migrated_by_a_writer_and_not_by_a_reader(tmp: Path) -> None:
    from flonnx.exchange import _schema as schema

    run = Run(tmp / "reg")
    _older(run.registry)
    with pytest.raises(RegistryError, match="a read-only open never migrates"):
        Registry(tmp / "reg", create=False)
    writer = Registry(tmp / "reg")
    assert writer.migrated == [schema.LATEST] and writer.schema_version == schema.LATEST
    assert [s.record for s in writer.versions(run.run_id)] == run.records

    _older(writer)
    resumer = Registry(tmp / "reg", create=False, migrate=True)
    assert resumer.migrated == [schema.LATEST] and not resumer.read_only
    assert Registry(tmp / "reg", create=False).migrated == []


def test_a_database_that_is_not_one_is_a_registry_error(tmp: Path) -> None:
    (tmp / "reg").mkdir()
    (tmp / "reg" / "registry.db").write_bytes(b"not a database" * 100)

    refused = f"cannot open registry database {tmp}/reg: file is not a database"
    with pytest.raises(RegistryError, match=refused):
        Registry(tmp / "reg", create=False)


def test_a_run_that_keeps_every_update_loses_no_blob_and_a_pruned_run_keeps_the_rest(tmp: Path) -> None:
    keeps = Run(tmp / "reg", rounds=2)
    reg = keeps.registry
    early = VersionRecord(VersionKind.CLIENT_UPDATE, 0, DEFINITION.id, reg.put_weights(_w(7)), client="e")
    reg.commit(keeps.run_id, [early])
    assert reg.prune(keeps.run_id) == [] and reg.blobs.exists(early.weights_id)

    pruned = Run(tmp / "reg", rounds=3, config=RETAIN_ONE, registry=reg)
    shared = {r.weights_id for r in keeps.records}
    deleted = reg.prune(pruned.run_id)
    assert deleted == [] and all(reg.blobs.exists(b) for b in shared)  # the same blobs: kept by `keeps`
    _blob(reg, pruned.initial.weights_id).unlink()
    problems = reg.verify(pruned.run_id)[1]
    assert len(problems) == 1
    assert problems[0].startswith(f"version {pruned.initial.version_id[:12]} (initial, ")


def test_verify_shows_what_a_changed_blob_hashes_to(tmp: Path) -> None:
    from flonnx.exchange.hashing import sha256_hex

    run = Run(tmp / "reg")
    reg = run.registry
    a = run.rounds[1][0]
    for blob_id in (DEFINITION.id, a.weights_id):
        path = _blob(reg, blob_id)
        path.write_bytes(path.read_bytes() + b"\0")
    definition_hash = sha256_hex(_blob(reg, DEFINITION.id).read_bytes())
    weights_hash = sha256_hex(_blob(reg, a.weights_id).read_bytes())

    problems = reg.verify(run.run_id)[1]

    assert problems == [
        f"definition blob {DEFINITION.id[:12]} ({_blob(reg, DEFINITION.id)}): content hashes to "
        f"{definition_hash[:12]}",
        f"version {a.version_id[:12]} (client_update, round 1): weights blob {a.weights_id[:12]} "
        f"({_blob(reg, a.weights_id)}): content hashes to {weights_hash[:12]}"]


def test_a_trusted_weights_id_stores_the_weights_once(tmp: Path) -> None:
    from flonnx.exchange.hashing import weights_id

    reg = Registry(tmp / "reg")
    known = weights_id(_w(3))

    assert reg.put_weights(_w(3), weights_id=known) == known
    np.testing.assert_array_equal(reg.get_weights(known)["w"], _w(3)["w"])


def test_a_run_record_too_deep_or_with_a_long_id_is_named_in_forty_characters(tmp: Path) -> None:
    reg = Registry(tmp / "reg")
    long_id = "r" * 30 + "0123456789abcdef"
    _sql(reg, "INSERT INTO runs (run_id, created_at, scenario, seed, config_json, status) "
              "VALUES (?, 'now', 'x', 0, ?, 'running')", long_id, "[" * 100_000)

    with pytest.raises(RegistryError) as deep:
        reg.runs()

    assert str(deep.value).startswith(f"run {long_id[:40]!r} in {reg.location} has an unreadable "
                                      "record "
                                      "(RecursionError); `flonnx lineage verify`")


def test_prune_lets_go_of_the_round_just_outside_a_one_round_window(tmp: Path) -> None:
    run = Run(tmp / "reg", rounds=2, config=RETAIN_ONE)

    assert run.registry.prune(run.run_id, newest=True) == sorted(r.weights_id for r in run.rounds[1][:2])
    assert run.registry.verify(run.run_id)[1] == []


@pytest.mark.parametrize("damage", ["missing", b"x", b"[1]", b"{}"])
def test_prune_deletes_nothing_while_any_saved_state_is_unreadable(tmp: Path,
                                                                    damage: str | bytes) -> None:
    run = Run(tmp / "reg", rounds=2, config=RETAIN_ONE)
    reg = run.registry
    state = "d" * 64 if isinstance(damage, str) else reg.blobs.put(damage)
    _sql(reg, "INSERT INTO strategy_states (run_id, round, state_id) VALUES (?, 2, ?)", run.run_id, state)

    assert reg.prune(run.run_id) == []


def test_verify_of_every_run_checks_each_evaluation_against_its_own_run(tmp: Path) -> None:
    run = Run(tmp / "reg")
    reg = run.registry
    reg.add_evaluation(run.run_id, run.rounds[1][2].version_id, "site:a", {"acc": 0.5})

    assert reg.verify() == (4 + 1 + 4 + 1, [])


def test_one_problem_is_named_alone(tmp: Path) -> None:
    run = Run(tmp / "reg")
    reg = run.registry
    _blob(reg, run.rounds[1][2].weights_id).unlink()
    (problem,) = reg.verify(run.run_id)[1]

    with pytest.raises(RegistryError) as refused:
        reg.check_intact(run.run_id)

    assert str(refused.value) == (f"run {run.run_id} in {reg.location} is damaged and cannot be resumed: "
                                  f"{problem}; `flonnx lineage verify --run {run.run_id}` lists every "
                                  "problem")

    _blob(reg, run.rounds[1][1].weights_id).unlink()
    first = reg.verify(run.run_id)[1][0]
    with pytest.raises(RegistryError) as two:
        reg.check_intact(run.run_id)
    assert str(two.value).endswith(f"cannot be resumed: {first} (and 1 more); `flonnx lineage verify --run "
                                   f"{run.run_id}` lists every problem")


def test_verify_of_every_run_checks_signed_runs_after_unsigned_ones(tmp: Path) -> None:
    signer = _signer(1)
    reg = Registry(tmp / "reg")
    unsigned = Run(tmp / "reg", registry=reg)
    signed = Run(tmp / "reg", config={"signing_key": signer.run_record()}, registry=reg, signer=signer)
    _sql(reg, "UPDATE runs SET created_at = '2000-01-01' WHERE run_id = ?", unsigned.run_id)
    _sql(reg, "DELETE FROM version_signatures WHERE version_id = ?", signed.rounds[1][1].version_id)

    assert [info.run_id for info in reg.runs()] == [unsigned.run_id, signed.run_id]
    checked, problems = reg.verify()
    missing = f"missing signature by key {signer.public.fingerprint[:16]}"
    assert [p.split(": ")[1] for p in problems] == [missing]
    assert checked == 4 + 1 + 4 + 1 + 4  # shared records and blobs, the signed run's record, its signatures


def test_verify_goes_on_after_a_record_that_does_not_re_hash(tmp: Path) -> None:
    run = Run(tmp / "reg")
    reg = run.registry
    _sql(reg, "UPDATE versions SET record_json = record_json || ' ' WHERE version_id = ?",
         run.initial.version_id)

    checked, problems = reg.verify(run.run_id)

    assert checked == 4 + 1 + 3 and len(problems) == 1  # the changed record's blob is not checked
    changed = sha256_of_bytes(run.initial.canonical_bytes() + b" ")
    assert problems == [f"version {run.initial.version_id[:12]} (initial, round 0): record re-hashes to "
                        f"{changed[:12]}"]


def test_verify_names_an_unreadable_or_non_canonical_record_and_one_without_weights(tmp: Path) -> None:
    from flonnx.exchange.hashing import sha256_hex

    run = Run(tmp / "reg")
    reg = run.registry
    loose = VersionRecord(VersionKind.AGGREGATE, 5, DEFINITION.id, run.initial.weights_id)
    spaced = json.dumps(loose.to_dict(), indent=1)
    spaced_id, odd_id = sha256_hex(spaced.encode()), sha256_hex(b'{"x": 1}')
    insert = ("INSERT INTO versions (version_id, kind, round, definition_id, weights_id, record_json) "
              "VALUES (?, ?, ?, ?, ?, ?)")
    _sql(reg, insert, spaced_id, "aggregate", 5, DEFINITION.id, run.initial.weights_id, spaced)
    _sql(reg, insert, odd_id, "aggregate", 6, DEFINITION.id, run.initial.weights_id, '{"x": 1}')
    empty = VersionRecord(VersionKind.AGGREGATE, 2, DEFINITION.id, "",
                          parents=(run.rounds[1][2].version_id,))
    reg.commit(run.run_id, [empty])

    checked, problems = reg.verify()

    unreadable = [p for p in problems if p.startswith(f"version {odd_id[:12]} (aggregate, round 6): "
                                                     "unreadable record: ")]
    assert sorted(problems) == sorted([
        f"version {spaced_id[:12]} (aggregate, round 5): record is not in canonical form",
        *unreadable, f"version {empty.version_id[:12]} (aggregate, round 2): has no weights"])
    assert len(unreadable) == 1
    assert checked == 7 + 1 + 4


# -- each id check fails whichever way the wrong id sorts -----------------------------------------
# (a check written ``actual < expected`` would catch half of all changes: every test below has a
# wrong id below and one above the true one)

LOW, HIGH = "0" * 64, "f" * 64


def _reversed_json(value: dict[str, Any]) -> str:
    """``value`` as compact JSON with its keys in reverse order: not canonical, and sorting after it."""
    return json.dumps(dict(sorted(value.items(), reverse=True)), separators=(",", ":"))


def test_blobs_under_a_wrong_id_below_or_above_are_refused_when_read(tmp: Path) -> None:
    from flonnx.exchange.hashing import encode_weights

    reg = Registry(tmp / "reg")
    state = strategy_state_id(_w(1), {})
    reg.put_state(_w(1), {})
    for wrong in (LOW, HIGH):
        reg.blobs.delete(wrong)
        reg.blobs.put(encode_weights(_w(1)), blob_id=wrong)
        with pytest.raises(LineageError, match=f"weights blob {wrong[:12]} does not match its id"):
            reg.get_weights(wrong)
        reg.blobs.delete(wrong)
        reg.blobs.put(DEFINITION.canonical_bytes, blob_id=wrong)
        with pytest.raises(LineageError, match=f"definition blob {wrong[:12]} re-hashes to"):
            reg.get_definition(wrong)
        reg.blobs.delete(wrong)
        reg.blobs.put(reg.blobs.get(state), blob_id=wrong)
        with pytest.raises(LineageError, match=f"strategy state blob {wrong[:12]} does not match its id"):
            reg.get_state(wrong)


def test_verify_names_records_and_blobs_under_wrong_ids_below_and_above(tmp: Path) -> None:
    from flonnx.exchange.hashing import encode_weights

    run = Run(tmp / "reg")
    reg = run.registry
    top = run.rounds[1][2].version_id
    low_w, high_w, low_d, high_d = "1" * 64, "e" * 64, "2" * 64, "d" * 64
    for blob_id in (low_w, high_w):
        reg.blobs.put(encode_weights(_w(9)), blob_id=blob_id)
    for blob_id in (low_d, high_d):
        reg.blobs.put(DEFINITION.canonical_bytes, blob_id=blob_id)
    first = VersionRecord(VersionKind.AGGREGATE, 2, low_d, high_w, parents=(top,))
    second = VersionRecord(VersionKind.AGGREGATE, 3, high_d, low_w, parents=(top,))
    reg.commit(run.run_id, [first, second])
    record = run.rounds[1][0]
    for wrong in (LOW, HIGH):
        _sql(reg, "INSERT INTO versions (version_id, kind, round, definition_id, weights_id, record_json) "
                  "VALUES (?, 'client_update', 1, ?, ?, ?)", wrong, DEFINITION.id, record.weights_id,
             record.canonical_bytes().decode())
        with pytest.raises(RegistryError, match=f"version {wrong[:12]} in .* does not match its id: its "
                                                f"stored record re-hashes to {record.version_id[:12]}, so"):
            reg.record(wrong)

    problems = reg.verify()[1]

    for wrong in (LOW, HIGH):
        assert sum(p.startswith(f"version {wrong[:12]} (client_update, round 1): record re-hashes to ")
                   for p in problems) == 1
    for blob_id in (low_d, high_d):
        assert sum(p.startswith(f"definition blob {blob_id[:12]} (") for p in problems) == 1
    for blob_id, version in ((high_w, first), (low_w, second)):
        assert sum(p.startswith(f"version {version.version_id[:12]} (aggregate, round {version.round}): "
                                f"weights blob {blob_id[:12]} (") for p in problems) == 1
    assert len(problems) == 6


def test_verify_names_non_canonical_records_that_sort_before_or_after_their_canonical_form(tmp: Path) -> None:
    from flonnx.exchange.hashing import sha256_hex

    run = Run(tmp / "reg")
    reg = run.registry
    agg = run.rounds[1][2].version_id
    loose = VersionRecord(VersionKind.AGGREGATE, 5, DEFINITION.id, run.initial.weights_id)
    insert = ("INSERT INTO versions (version_id, kind, round, definition_id, weights_id, record_json) "
              "VALUES (?, 'aggregate', 5, ?, ?, ?)")
    forms = [json.dumps(loose.to_dict(), indent=1), _reversed_json(loose.to_dict())]
    for text in forms:
        _sql(reg, insert, sha256_hex(text.encode()), DEFINITION.id, run.initial.weights_id, text)
    reg.add_evaluation(run.run_id, agg, "site:a", {"acc": 0.5})
    reg.add_evaluation(run.run_id, agg, "site:b", {"acc": 0.5})
    reg.add_evaluation(run.run_id, agg, "site:c", {"acc": 0.5})
    reg.add_evaluation(run.run_id, agg, "site:d", {"acc": 0.5})
    evaluation = Evaluation(run.run_id, agg, "site:a", {"acc": 0.5}).to_dict()
    spaced, backwards = json.dumps(evaluation, indent=1), _reversed_json(evaluation)
    _sql(reg, "UPDATE evaluations SET record_json = ?, evaluation_id = ? WHERE source = 'site:a'",
         spaced, sha256_hex(spaced.encode()))
    _sql(reg, "UPDATE evaluations SET record_json = ?, evaluation_id = ?, source = 'site:b0' "
              "WHERE source = 'site:b'", backwards.replace("site:a", "site:b0"),
         sha256_hex(backwards.replace("site:a", "site:b0").encode()))
    _sql(reg, "UPDATE evaluations SET evaluation_id = ? WHERE source = 'site:c'", LOW)
    _sql(reg, "UPDATE evaluations SET evaluation_id = ? WHERE source = 'site:d'", HIGH)
    label = f"run {run.run_id} evaluation of version {agg[:12]} by"

    problems = reg.verify()[1]

    for text in forms:
        assert (f"version {sha256_hex(text.encode())[:12]} (aggregate, round 5): record is not in canonical "
                "form") in problems
    assert f"{label} 'site:a': its record is not in canonical form" in problems
    assert f"{label} 'site:b0': its record is not in canonical form" in problems
    for source, wrong in (("site:c", LOW), ("site:d", HIGH)):
        actual = Evaluation(run.run_id, agg, source, {"acc": 0.5}).evaluation_id
        assert (f"{label} {source!r}: its record re-hashes to {actual[:12]}, not its id {wrong[:12]}"
                in problems)
    assert len(problems) == 6


def test_rows_that_disagree_with_their_records_either_way_are_named(tmp: Path) -> None:
    run = Run(tmp / "reg")
    reg = run.registry
    a, b, agg = run.rounds[1]
    _sql(reg, "UPDATE versions SET round = 7 WHERE version_id = ?", a.version_id)
    _sql(reg, "UPDATE versions SET round = 0 WHERE version_id = ?", b.version_id)
    for source in ("site:c", "site:x"):
        reg.add_evaluation(run.run_id, agg.version_id, source, {"acc": 0.5})
    _sql(reg, "UPDATE evaluations SET source = 'site:a' WHERE source = 'site:c'")
    _sql(reg, "UPDATE evaluations SET source = 'site:z' WHERE source = 'site:x'")
    label = f"run {run.run_id} evaluation of version {agg.version_id[:12]} by"

    problems = reg.verify(run.run_id)[1]

    assert sorted(problems) == sorted([
        f"version {a.version_id[:12]} (client_update, round 7): index columns disagree with the record",
        f"version {b.version_id[:12]} (client_update, round 0): index columns disagree with the record",
        f"{label} 'site:a': its row disagrees with its record",
        f"{label} 'site:z': its row disagrees with its record"])


def test_recorded_keys_that_differ_either_way_are_named(tmp: Path) -> None:
    one, two = _signer(1), _signer(2)
    reg = Registry(tmp / "reg")
    runs = {signer: reg.create_run("t", 0, {"signing_key": signer.run_record()}) for signer in (one, two)}
    wrong = {fp: reg.create_run("t", 0, {"signing_key": {**one.run_record(), "fingerprint": fp * 64}})
             for fp in ("0", "f")}

    assert run_record_problems("r", "tiny", 3, _spec_config()) == []
    for fp, run_id in wrong.items():
        assert reg.verify(run_id)[1] == [
            f"run {run_id}: its recorded signing key hashes to fingerprint {one.public.fingerprint[:16]}, "
            f"not its recorded fingerprint {fp * 16}"]
    for signer, other in ((one, two), (two, one)):
        assert reg.verify(runs[signer], key=other.public)[1] == [
            f"run {runs[signer]}: recorded signing key {signer.public.fingerprint[:16]}, not the given key "
            f"{other.public.fingerprint[:16]}"]
    for scenario, seed in (("zzz", 3), ("aaa", 3), ("tiny", 2), ("tiny", 4)):
        assert run_record_problems("r", scenario, seed, _spec_config()) == [
            f"run r: its name and seed ({scenario!r}, {seed}) are not its recorded spec's ('tiny', 3)"]


def test_verify_names_a_definition_blob_that_is_a_whole_model_not_its_canonical_form(tmp: Path) -> None:
    run = Run(tmp / "reg")
    reg = run.registry
    whole = reg.blobs.put(DEFINITION.materialize(WEIGHTS).SerializeToString())
    odd = VersionRecord(VersionKind.AGGREGATE, 2, whole, run.initial.weights_id,
                        parents=(run.rounds[1][2].version_id,))
    reg.commit(run.run_id, [odd])

    assert reg.verify(run.run_id)[1] == [f"definition blob {whole[:12]}: not in canonical form"]


def test_a_prefix_of_exactly_two_runs_is_ambiguous(tmp: Path) -> None:
    reg = Registry(tmp / "reg")
    ids = sorted(reg.create_run("x", 0, {}) for _ in range(2))

    with pytest.raises(LineageError) as ambiguous:
        reg.resolve_run(ids[0][:4])

    assert str(ambiguous.value) == f"run prefix {ids[0][:4]!r} is ambiguous: {ids[0][:16]}, {ids[1][:16]}, …"


def test_a_run_record_reads_back_the_same_whatever_order_its_keys_were_given_in(tmp: Path) -> None:
    reg = Registry(tmp / "reg")
    run_id = reg.create_run("x", 0, {"zeta": 1, "alpha": {"b": 2, "a": 1}})
    assert list(reg.run(run_id).config) == ["alpha", "zeta"]

    reg.update_config(run_id, {"zeta": 2, "beta": 1})
    assert list(reg.run(run_id).config) == ["beta", "zeta"]
    reg.annotate_run(run_id, "alpha", 0)
    assert list(reg.run(run_id).config) == ["alpha", "beta", "zeta"]


def test_a_head_that_is_another_runs_version_is_not_recorded(tmp: Path) -> None:
    run = Run(tmp / "reg")
    reg = run.registry
    other = reg.create_run("y", 1, {})
    initial = VersionRecord(VersionKind.INITIAL, 0, DEFINITION.id, reg.put_weights(_w(5)))
    reg.commit(other, [initial], head_round=0, head=initial.version_id)
    later, earlier = sorted([run.run_id, other], reverse=True)
    foreign = initial.version_id if later == run.run_id else run.initial.version_id
    _sql(reg, "UPDATE run_heads SET version_id = ? WHERE run_id = ? AND round = 0", foreign, later)

    assert reg.verify(later)[1] == [f"run {later} round 0: head {foreign[:12]} is not recorded"]
    assert reg.verify(earlier)[1] == []


def test_an_evaluation_of_a_version_only_another_run_recorded_is_refused(tmp: Path) -> None:
    reg = Registry(tmp / "reg")
    mine = Run(tmp / "reg", registry=reg)
    theirs = reg.create_run("y", 1, {})
    initial = VersionRecord(VersionKind.INITIAL, 0, DEFINITION.id, reg.put_weights(_w(5)))
    reg.commit(theirs, [initial])

    pairs = [(mine.run_id, initial.version_id), *((theirs, r.version_id) for r in mine.records)]
    for run_id, foreign in pairs:
        with pytest.raises(LineageError, match=f"run {run_id} did not record it"):
            reg.add_evaluation(run_id, foreign, "site:a", {"acc": 1.0})
    assert reg.evaluations(initial.version_id) == []


def test_a_writing_transaction_holds_the_write_lock_from_its_first_read(
        tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``annotate_run`` reads the record then writes it: another writer waits for it, never slips between."""
    import threading

    reg = Registry(tmp / "reg")
    run_id = reg.create_run("x", 0, {"a": 1})
    other = Registry(tmp / "reg")
    inside, done = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def write_meanwhile() -> None:
        inside.wait(10)
        try:
            other.set_status(run_id, "failed")
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)
        done.set()

    real = reg._run_config

    def reading(run: str, text: str) -> dict[str, Any]:
        inside.set()
        done.wait(0.3)  # a writer that could slip in has written by now
        return real(run, text)

    writer = threading.Thread(target=write_meanwhile)
    writer.start()
    monkeypatch.setattr(reg, "_run_config", reading)
    try:
        reg.annotate_run(run_id, "b", 2)
    finally:
        writer.join(10)
    monkeypatch.undo()

    assert failures == []
    info = reg.run(run_id)
    assert (info.config, info.status) == ({"a": 1, "b": 2}, "failed")


def test_what_the_registry_returns_is_immutable(tmp: Path) -> None:
    import dataclasses

    run = Run(tmp / "reg")
    reg = run.registry
    reg.add_evaluation(run.run_id, run.initial.version_id, "site:a", {"acc": 1.0})
    stored, info = reg.versions(run.run_id)[0], reg.run(run.run_id)
    evaluation = reg.evaluations(run.initial.version_id)[0]

    for value, field in ((stored, "seq"), (info, "status"), (evaluation, "source")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, field, 0)


def test_states_and_signatures_are_read_for_the_exact_run_and_version(tmp: Path) -> None:
    one, two = _signer(1), _signer(2)
    reg = Registry(tmp / "reg")
    versions = {}
    runs = {}
    for signer, value in ((one, 5.0), (two, 6.0)):
        runs[signer] = reg.create_run("x", 0, {"signing_key": signer.run_record()})
        initial = VersionRecord(VersionKind.INITIAL, 0, DEFINITION.id, reg.put_weights(_w(value)))
        reg.put_definition(DEFINITION)
        reg.commit(runs[signer], [initial], head_round=0, head=initial.version_id,
                   state_id=reg.put_state(_w(value), {"v": value}), signer=signer)
        versions[signer] = initial.version_id

    for signer in (one, two):
        assert reg.signatures(versions[signer]) == {signer.public.fingerprint: signer.sign(versions[signer])}
        assert reg.get_state(str(reg.state_at(runs[signer], 0)))[1] == {"v": 5.0 if signer is one else 6.0}
        assert reg.state_at(runs[signer], 1) is None
    later = max(runs.values())
    _sql(reg, "DELETE FROM strategy_states WHERE run_id = ?", later)
    assert reg.state_at(later, 0) is None


def test_a_run_record_that_is_not_an_object_names_a_long_run_id_in_forty_characters(tmp: Path) -> None:
    reg = Registry(tmp / "reg")
    long_id = "r" * 30 + "0123456789abcdef"
    _sql(reg, "INSERT INTO runs (run_id, created_at, scenario, seed, config_json, status) "
              "VALUES (?, 'now', 'x', 0, '[1]', 'running')", long_id)

    with pytest.raises(RegistryError) as refused:
        reg.run(long_id)

    assert str(refused.value) == f"run {long_id[:40]!r} in {reg.location} has a record that is not an object"


def test_verify_checks_the_states_of_the_runs_it_is_asked_about(tmp: Path) -> None:
    reg = Registry(tmp / "reg")
    first, second = Run(tmp / "reg", registry=reg), Run(tmp / "reg", registry=reg)
    states = {}
    for run, value in ((first, 1.0), (second, 2.0)):
        states[run.run_id] = reg.put_state(_w(value), {"v": value})
        reg.commit(run.run_id, [], head_round=1, state_id=states[run.run_id])
    _blob(reg, states[second.run_id]).write_bytes(b"{}")

    assert reg.verify(first.run_id) == (4 + 1 + 4 + 1, [])
    checked, problems = reg.verify()
    assert checked == 4 + 1 + 4 + 2 and len(problems) == 1
    damaged = states[second.run_id]
    assert problems[0].startswith(f"run {second.run_id} round 1: strategy state {damaged[:12]}: ")


def test_each_run_numbers_its_versions_from_zero_whatever_runs_sort_before_it(tmp: Path) -> None:
    reg = Registry(tmp / "reg")
    low, high = sorted(reg.create_run("x", 0, {}) for _ in range(2))
    reg.put_definition(DEFINITION)
    for run_id, value in ((low, 1.0), (high, 2.0)):
        initial = VersionRecord(VersionKind.INITIAL, 0, DEFINITION.id, reg.put_weights(_w(value)))
        reg.commit(run_id, [initial])

    assert [s.seq for s in reg.versions(low)] == [s.seq for s in reg.versions(high)] == [0]


def test_reads_and_writes_by_id_touch_that_run_and_version_only(tmp: Path) -> None:
    reg = Registry(tmp / "reg")
    first, second = Run(tmp / "reg", registry=reg), Run(tmp / "reg", registry=reg)
    low, high = sorted([first.run_id, second.run_id])
    _sql(reg, "UPDATE run_versions SET created_at = '2000-01-01' WHERE run_id = ?", high)
    versions = sorted(r.version_id for r in first.records)
    for version_id in versions:
        reg.add_evaluation(low, version_id, "site:a", {"acc": 0.5})

    reg.annotate_run(high, "note", 1)

    assert "note" not in reg.run(low).config and reg.run(high).config["note"] == 1
    assert reg.stored_version(versions[0], low).run_id == low
    assert reg.stored_version(versions[0], high).run_id == high
    for version_id in versions:
        assert [e.version_id for e in reg.evaluations(version_id)] == [version_id]


def test_every_read_by_run_id_sees_that_run_only_whichever_way_the_other_sorts(tmp: Path) -> None:
    reg = Registry(tmp / "reg")
    short, long = Run(tmp / "reg", registry=reg), Run(tmp / "reg", rounds=2, registry=reg)
    for run in (short, long):
        reg.add_evaluation(run.run_id, run.initial.version_id, f"site:{len(run.rounds)}", {"acc": 1.0})
        reg.commit(run.run_id, [], head_round=0, state_id=reg.put_state(_w(len(run.rounds)), {}))

    for run in (short, long):
        rounds = len(run.rounds)
        reg.update_config(run.run_id, {"rounds": rounds})
        assert [s.record for s in reg.versions(run.run_id)] == run.records
        assert sorted(reg.heads(run.run_id)) == list(range(rounds + 1))
        assert reg.run(run.run_id).last_round == rounds
        assert [e.source for e in reg.evaluations(run.initial.version_id, run.run_id)] == [f"site:{rounds}"]
        # records and their blobs, the definition, the state, the evaluation
        assert reg.verify(run.run_id) == (2 * (3 * rounds + 1) + 1 + 1 + 1, [])
        assert reg.state_at(run.run_id, 1) is None
    assert [reg.run(run.run_id).config for run in (short, long)] == [{"rounds": 1}, {"rounds": 2}]


def test_empty_runs_sorting_first_and_last_see_nothing_of_the_others(tmp: Path) -> None:
    run = Run(tmp / "reg", rounds=2)
    reg = run.registry
    reg.add_evaluation(run.run_id, run.initial.version_id, "site:a", {"acc": 1.0})
    reg.commit(run.run_id, [], head_round=0, state_id=reg.put_state(_w(0), {}))
    for empty in ("0", "z"):
        _sql(reg, "INSERT INTO runs (run_id, created_at, scenario, seed, config_json, status) "
                  "VALUES (?, 'now', 'x', 0, '{}', 'running')", empty)

    for empty in ("0", "z"):
        assert reg.heads(empty) == {} and reg.versions(empty) == []
        info = reg.run(empty)
        assert (info.last_round, info.head) == (None, None)
        assert reg.verify(empty) == (0, []) and reg.state_at(empty, 0) is None
        assert reg.evaluations(run.initial.version_id, empty) == []
        assert reg.signing_keys(empty) == {empty: None}


# -- pass 6: two runs whose ids sort either way, blobs shared across kinds, nested folders ---------

@pytest.fixture()
def ordered_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run ids sort in the order the runs are made: their random suffix counts up instead."""
    import itertools

    import flonnx.exchange.registry as registry_module

    count = itertools.count(1)
    monkeypatch.setattr(registry_module.secrets, "token_hex",
                        lambda nbytes=32: f"{next(count):0{2 * nbytes}x}")


@pytest.mark.parametrize("longer_first", [True, False])
def test_each_run_reports_its_own_last_round_whichever_sorts_first(
        tmp: Path, ordered_ids: None, longer_first: bool) -> None:
    reg = Registry(tmp / "reg")
    lengths = (2, 1) if longer_first else (1, 2)
    runs = [Run(tmp / "reg", rounds=n, registry=reg, offset=10 * i) for i, n in enumerate(lengths)]
    assert sorted(r.run_id for r in runs) == [r.run_id for r in runs]

    for run, n in zip(runs, lengths, strict=True):
        info = reg.run(run.run_id)
        assert (info.last_round, info.head) == (n, run.rounds[n][2].version_id)
    assert [(i.run_id, i.last_round) for i in reg.runs()] == [(r.run_id, n) for r, n in zip(runs, lengths,
                                                                                              strict=True)]


@pytest.mark.parametrize("damaged", [0, 1])
def test_verify_checks_each_spec_runs_heads_and_states_against_its_own_rows(
        tmp: Path, ordered_ids: None, damaged: int) -> None:
    reg = Registry(tmp / "reg")
    runs = [Run(tmp / "reg", config=_spec_run_config(), registry=reg, offset=10 * i) for i in range(2)]
    for i, run in enumerate(runs):
        for rnd in (0, 1):
            reg.commit(run.run_id, [], head_round=rnd, state_id=reg.put_state(_w(10 * i + rnd), {}))
    for run in runs:  # the head of round 0 is the run's only initial version, whatever it sorts like
        assert reg.verify(run.run_id)[1] == []
    bad, good = runs[damaged], runs[1 - damaged]
    foreign = good.rounds[1][2].version_id

    _sql(reg, "DELETE FROM strategy_states WHERE run_id = ? AND round = 1", bad.run_id)
    _sql(reg, "UPDATE run_heads SET version_id = ? WHERE run_id = ? AND round = 1", foreign, bad.run_id)

    assert reg.verify(bad.run_id)[1] == [f"run {bad.run_id} round 1: head {foreign[:12]} is not recorded",
                                         f"run {bad.run_id} round 1: no strategy state is saved after it"]
    assert reg.verify(good.run_id)[1] == []


def test_status_config_and_notes_change_the_named_run_only_whichever_was_written_first(tmp: Path) -> None:
    reg = Registry(tmp / "reg")
    for run_id in ("z", "0"):  # written in the order opposite to their ids'
        _sql(reg, "INSERT INTO runs (run_id, created_at, scenario, seed, config_json, status) "
                  "VALUES (?, 'now', 'x', 0, ?, 'running')", run_id, json.dumps({"who": run_id}))

    for run_id, other in (("0", "z"), ("z", "0")):
        before = reg.run(other)
        reg.annotate_run(run_id, "note", run_id)
        assert reg.run(run_id).config == {"who": run_id, "note": run_id}
        reg.set_status(run_id, "failed")
        assert reg.run(run_id).status == "failed"
        reg.update_config(run_id, {"who": run_id, "rounds": 2})
        assert reg.run(run_id).config == {"who": run_id, "rounds": 2}
        assert reg.run(other) == before


@pytest.mark.parametrize("target", [0, 1])
def test_prune_of_one_run_deletes_that_runs_let_go_updates_only(tmp: Path, ordered_ids: None,
                                                                target: int) -> None:
    reg = Registry(tmp / "reg")
    runs = [Run(tmp / "reg", rounds=3, config=RETAIN_ONE, registry=reg, offset=10 * i) for i in range(2)]
    mine, theirs = runs[target], runs[1 - target]

    assert reg.prune(mine.run_id) == sorted(r.weights_id for rnd in (1, 2) for r in mine.rounds[rnd][:2])
    assert all(reg.blobs.exists(r.weights_id) for r in theirs.records)


@pytest.mark.parametrize("kept", [LOW, HIGH])
def test_prune_is_not_stopped_by_a_version_another_run_keeps_whichever_way_its_id_sorts(
        tmp: Path, kept: str) -> None:
    run = Run(tmp / "reg", rounds=3, config=RETAIN_ONE)
    reg = run.registry
    keeps = reg.create_run("k", 0, {})  # keeps every update; its one version shares no blob with them
    record = VersionRecord(VersionKind.INITIAL, 0, DEFINITION.id, run.initial.weights_id)
    _sql(reg, "INSERT INTO versions (version_id, kind, round, definition_id, weights_id, record_json) "
              "VALUES (?, 'initial', 0, ?, ?, ?)", kept, DEFINITION.id, run.initial.weights_id,
         record.canonical_bytes().decode())
    _sql(reg, "INSERT INTO run_versions (run_id, version_id, seq, created_at) VALUES (?, ?, 0, 'now')",
         keeps, kept)

    assert reg.prune(run.run_id) == sorted(r.weights_id for rnd in (1, 2) for r in run.rounds[rnd][:2])
    assert reg.verify(run.run_id)[1] == []  # what the run let go is no loss, whoever else recorded what


def test_prune_keeps_an_update_blob_that_an_aggregate_or_the_initial_version_also_holds(tmp: Path) -> None:
    run = Run(tmp / "reg", rounds=0, config=RETAIN_ONE)
    reg = run.registry
    head = run.initial
    updates = []
    for rnd in (1, 2, 3):
        # round 1: client b sends the initial weights back, and the aggregate equals client a's update
        a = VersionRecord(VersionKind.CLIENT_UPDATE, rnd, DEFINITION.id, reg.put_weights(_w(rnd)),
                          parents=(head.version_id,), client="a")
        b = VersionRecord(VersionKind.CLIENT_UPDATE, rnd, DEFINITION.id,
                          run.initial.weights_id if rnd == 1 else reg.put_weights(_w(rnd + 0.5)),
                          parents=(head.version_id,), client="b")
        agg = VersionRecord(VersionKind.AGGREGATE, rnd, DEFINITION.id,
                            a.weights_id if rnd == 1 else reg.put_weights(_w(-rnd)),
                            parents=(a.version_id, b.version_id))
        reg.commit(run.run_id, [a, b, agg], head_round=rnd, head=agg.version_id)
        updates.append((a, b))
        head = agg

    assert reg.prune(run.run_id) == sorted(r.weights_id for r in updates[1])
    assert reg.blobs.exists(updates[0][0].weights_id) and reg.blobs.exists(run.initial.weights_id)
    assert reg.verify(run.run_id)[1] == []


def test_a_parent_missing_below_every_recorded_id_is_refused(tmp: Path) -> None:
    run = Run(tmp / "reg")
    orphan = VersionRecord(VersionKind.AGGREGATE, 2, DEFINITION.id, run.initial.weights_id, parents=(LOW,))

    with pytest.raises(LineageError, match="parent 000000000000 of a new version is not recorded"):
        run.registry.commit(run.run_id, [orphan])


def test_a_stored_version_carries_the_time_its_run_recorded_it(tmp: Path) -> None:
    run = Run(tmp / "reg", rounds=2)
    reg = run.registry
    _sql(reg, "UPDATE run_versions SET created_at = '2001-02-03T04:05:06' WHERE seq = 4")

    for stored in reg.versions(run.run_id):
        assert reg.stored_version(stored.version_id, run.run_id) == stored
    assert reg.versions(run.run_id)[4].created_at == "2001-02-03T04:05:06"


def test_verify_goes_on_after_a_version_without_weights(tmp: Path) -> None:
    run = Run(tmp / "reg")
    reg = run.registry
    rejected = VersionRecord(VersionKind.REJECTED, 2, DEFINITION.id, "",
                             parents=(run.rounds[1][2].version_id,), client="c", reason="nan")
    later = VersionRecord(VersionKind.CLIENT_UPDATE, 2, DEFINITION.id, reg.put_weights(_w(7)),
                          parents=(run.rounds[1][2].version_id,), client="d")
    reg.commit(run.run_id, [rejected])
    reg.commit(run.run_id, [later])
    _blob(reg, later.weights_id).unlink()

    problems = reg.verify(run.run_id)[1]

    assert len(problems) == 1 and problems[0].startswith(f"version {later.version_id[:12]} ")


def test_an_evaluation_refused_names_the_version_in_twelve_characters(tmp: Path) -> None:
    reg = Registry(tmp / "reg")
    run = Run(tmp / "reg", registry=reg)
    other = reg.create_run("y", 1, {})
    version = run.initial.version_id

    with pytest.raises(LineageError) as refused:
        reg.add_evaluation(other, version, "site:a", {"acc": 1.0})

    assert str(refused.value) == (f"cannot record an evaluation of version {version[:12]}: run {other} "
                                  "did not record it")


def test_a_run_record_changed_twice_is_refused_naming_the_first_problem(tmp: Path) -> None:
    run = Run(tmp / "reg", config=_spec_run_config())
    reg = run.registry
    changed = {**_spec_run_config(), "signing_key": "k"}
    _sql(reg, "UPDATE runs SET seed = 9, config_json = ?", json.dumps(changed))
    problems = run_record_problems(run.run_id, "tiny", 9, changed)
    assert len(problems) == 2

    with pytest.raises(RegistryError) as refused:
        reg.run(run.run_id)

    assert str(refused.value).startswith(f"{problems[0]} in {reg.location}: the run record was changed")


def test_a_spec_read_back_from_json_is_compared_key_by_key_in_its_data_table() -> None:
    config = json.loads(json.dumps(_spec_config(data={"source": "train.csv", "label": "z"})))

    assert run_record_problems("r", "tiny", 3, config) == [
        f"run r: the spec it runs with differs from its recorded spec (spec id {config['spec_id'][:12]}) "
        "at data.label"]


def test_a_sqlite_url_registry_is_made_whole_like_a_directory_one(tmp: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import flonnx.exchange.registry as registry_module

    calls: list[str] = []
    monkeypatch.setattr(registry_module, "crash_point", calls.append)

    Registry(f"sqlite:///{tmp}/db/registry.db", blobs=tmp / "b")

    assert calls == ["database.before_link"]


def test_registries_two_folders_below_a_missing_one_are_made(tmp: Path) -> None:
    url = f"sqlite:///{tmp}/u/v/w/registry.db"

    for reg in (Registry(tmp / "d" / "e" / "f"), Registry(url, blobs=tmp / "b" / "c" / "d")):
        run_id = reg.create_run("x", 0, {})
        assert reg.resolve_run(None) == run_id
    assert (tmp / "d" / "e" / "f" / "registry.db").is_file()
    assert (tmp / "u" / "v" / "w" / "registry.db").is_file()


def test_verify_names_a_lost_aggregate_or_later_damage_of_a_pruned_run(tmp: Path) -> None:
    run = Run(tmp / "reg", rounds=3, config=RETAIN_ONE)
    reg = run.registry
    assert len(reg.prune(run.run_id)) == 4
    aggregate, damaged = run.rounds[1][2], run.rounds[3][0]
    _blob(reg, aggregate.weights_id).unlink()  # an aggregate is kept whatever the retention
    _blob(reg, damaged.weights_id).write_bytes(b"x")  # recorded after the pruned updates

    problems = reg.verify(run.run_id)[1]

    assert [p[:20] for p in problems] == [f"version {aggregate.version_id[:12]}",
                                          f"version {damaged.version_id[:12]}"]


def test_a_signed_run_of_one_version_verifies(tmp: Path) -> None:
    signer = _signer(1)
    run = Run(tmp / "reg", rounds=0, config={"signing_key": signer.run_record()}, signer=signer)

    assert run.registry.verify(run.run_id, key=signer.public) == (1 + 1 + 1 + 1 + 1, [])


def test_a_canonical_value_with_a_hash_but_no_suffix_is_not_a_file() -> None:
    config = _spec_config()
    config["spec_canonical"]["data"]["source"] = {"sha256": "0" * 64}
    config["spec_id"] = sha256_of(config["spec_canonical"])

    assert run_record_problems("r", "tiny", 3, config) == [
        f"run r: the spec it runs with differs from its recorded spec (spec id {config['spec_id'][:12]}) "
        "at data.source"]


def test_verify_names_non_canonical_definition_blobs_whose_ids_sort_below_and_above(tmp: Path) -> None:
    run = Run(tmp / "reg")
    reg = run.registry
    whole: dict[bool, str] = {}  # whole models (not canonical) by whether their id sorts below
    for value in range(64):
        data = DEFINITION.materialize(_w(value)).SerializeToString()
        whole.setdefault(sha256_of_bytes(data) < DEFINITION.id, reg.blobs.put(data))
        if len(whole) == 2:
            break
    for blob in whole.values():
        reg.commit(run.run_id, [VersionRecord(VersionKind.AGGREGATE, 2, blob, run.initial.weights_id,
                                              parents=(run.rounds[1][2].version_id,))])

    assert sorted(reg.verify(run.run_id)[1]) == sorted(
        f"definition blob {blob[:12]}: not in canonical form" for blob in whole.values())
