"""The registry's promises on a tiny one-MatMul definition in SQLite (fast: no torch, no Ray, no server).

``tests/exchange/test_registry.py`` runs the same promises on a torch export; these tests pin what the
registry stores, returns, refuses and what ``verify`` names, for mutation testing (issue #11).
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper

from flonnx.exchange.definition import Definition
from flonnx.exchange.errors import LineageError, RegistryError, RunLocked
from flonnx.exchange.lineage import VersionKind, VersionRecord
from flonnx.exchange.registry import Registry, retention_horizon, strategy_state_id

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
    w = helper.make_tensor("w", TensorProto.FLOAT, [2, 3], [1.0, -2.0, 0.5, 3.0, 0.25, -1.0])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 3])], initializer=[w])
    return Definition.from_model(helper.make_model(graph))


DEFINITION, WEIGHTS = _definition()


def _w(value: float) -> dict[str, np.ndarray]:
    return {"w": np.full((2, 3), value, np.float32)}


class Run:
    """A registry with one run: round 0 (initial) and ``rounds`` rounds of two updates + aggregate."""

    def __init__(self, root: Path, rounds: int = 1, config: dict[str, Any] | None = None,
                 registry: Registry | None = None) -> None:
        self.registry = registry or Registry(root)
        reg = self.registry
        self.run_id = reg.create_run("tiny", 3, config or {"rounds": rounds})
        reg.put_definition(DEFINITION)
        self.initial = VersionRecord(VersionKind.INITIAL, 0, DEFINITION.id, reg.put_weights(WEIGHTS))
        reg.commit(self.run_id, [self.initial], head_round=0, head=self.initial.version_id)
        self.rounds: dict[int, tuple[VersionRecord, VersionRecord, VersionRecord]] = {}
        head = self.initial
        for rnd in range(1, rounds + 1):
            a = VersionRecord(VersionKind.CLIENT_UPDATE, rnd, DEFINITION.id, reg.put_weights(_w(rnd)),
                              parents=(head.version_id,), client="a", num_examples=3)
            b = VersionRecord(VersionKind.CLIENT_UPDATE, rnd, DEFINITION.id,
                              reg.put_weights(_w(rnd + 0.5)), parents=(head.version_id,), client="b",
                              num_examples=5)
            agg = VersionRecord(VersionKind.AGGREGATE, rnd, DEFINITION.id, reg.put_weights(_w(-rnd)),
                                parents=(a.version_id, b.version_id), strategy="fedavg")
            reg.commit(self.run_id, [a, b, agg], head_round=rnd, head=agg.version_id)
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
    with pytest.raises(LineageError, match=r"version prefix '' is ambiguous: (\w{16}, ){4}\w{16}, …"):
        reg.resolve_version("")
    with pytest.raises(LineageError, match="no run matches 'x'"):
        reg.resolve_run("x")
    with pytest.raises(LineageError, match="no version 0000000000"):
        reg.record("0" * 64)
    with pytest.raises(LineageError, match=f"no version 000000000000 of run {run.run_id}"):
        reg.stored_version("0" * 64, run.run_id)


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
    with pytest.raises(RegistryError, match=f"more\\); `flonnx lineage verify --run {run.run_id}`"):
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
    assert misfit[:12] in problems[0]


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


def test_a_spec_run_without_a_state_after_a_round_is_named(tmp: Path) -> None:
    from flonnx.exchange.hashing import canonical_json, sha256_hex

    canonical = {"name": "tiny", "seed": 3, "rounds": 1}
    config = {"spec": {"name": "tiny", "seed": 3, "rounds": 1}, "spec_canonical": canonical,
              "spec_id": sha256_hex(canonical_json(canonical))}
    run = Run(tmp / "reg", config=config)
    reg = run.registry
    reg.commit(run.run_id, [], head_round=0, state_id=reg.put_state(_w(0), {}))

    problems = reg.verify(run.run_id)[1]

    assert problems == [f"run {run.run_id} round 1: no strategy state is saved after it"]
    assert reg.run(run.run_id).config == config


def test_verify_names_a_changed_run_record_and_reads_refuse_it(tmp: Path) -> None:
    from flonnx.exchange.hashing import canonical_json, sha256_hex

    canonical = {"name": "tiny", "seed": 3, "rounds": 1}
    config = {"spec": dict(canonical), "spec_canonical": canonical,
              "spec_id": sha256_hex(canonical_json(canonical))}
    run = Run(tmp / "reg", config=config)
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
    with pytest.raises(LineageError, match="run other did not record it"):
        reg.add_evaluation("other", agg, "site:a", {"acc": 1.0})
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
