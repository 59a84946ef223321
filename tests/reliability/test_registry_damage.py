"""A damaged registry: ``lineage verify`` names each damage, no read returns it, resume refuses it.

One run of the crash trials' federation (``tests/reliability/_coordinator.py``: 4 rounds, FedAvgM,
so every round saved a strategy state) is recorded once; each case damages a copy of it as a disk
fault or a hand edit would: a truncated or altered blob, a missing blob file, an edited row of
``versions``, ``runs``, ``run_heads`` or ``strategy_states``, a deleted strategy state. Then

- ``flonnx lineage verify`` exits 1 and its problems name the damaged id and its kind;
- the read path of that item raises a flonnx error (never returns the damaged value);
- ``flonnx resume`` exits 1 with one line naming the run and the problem, before any engine starts.

(tests/exchange/test_registry.py, tests/server/test_registry_reading.py and
tests/server/test_strategy_state.py check single cases on hand-made registries.)
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flonnx.cli import app
from flonnx.exchange.errors import FlonnxError, LineageError, RegistryError
from flonnx.exchange.lineage import VersionKind
from flonnx.exchange.registry import Registry
from tests.reliability import _coordinator

pytestmark = pytest.mark.reliability

ROUNDS = _coordinator.ROUNDS


@dataclass(frozen=True)
class Recorded:
    """The recorded run and the ids the cases damage."""

    registry: Path
    run_id: str
    head: str                  # the last round's aggregate
    first: str                 # round 1's aggregate
    update: str                # a client update of round 2
    update_weights: str
    head_weights: str
    definition: str
    last_state: str            # the strategy state saved after the last round
    last_state_arrays: str


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    registry = tmp_path_factory.mktemp("damage") / "registry"
    assert _coordinator.main([str(registry)]) == 0
    with Registry(registry, create=False) as reg:
        (info,) = reg.runs()
        heads = reg.heads(info.run_id)
        versions = reg.versions(info.run_id)
        update = next(v for v in versions
                      if v.record.kind is VersionKind.CLIENT_UPDATE and v.record.round == 2)
        head = reg.record(heads[ROUNDS])
        state = reg.state_at(info.run_id, ROUNDS)
        assert state is not None
        arrays_id = json.loads(reg.blobs.get(state))["arrays_id"]
    return Recorded(registry, info.run_id, heads[ROUNDS], heads[1], update.version_id,
                    update.record.weights_id, head.weights_id, head.definition_id, state, arrays_id)


def _blob(registry: Path, blob_id: str) -> Path:
    return registry / "blobs" / blob_id[:2] / blob_id


def _truncate(registry: Path, blob_id: str) -> None:
    path = _blob(registry, blob_id)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip(registry: Path, blob_id: str) -> None:
    path = _blob(registry, blob_id)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _sql(registry: Path, statement: str, *args: Any) -> None:
    with sqlite3.connect(registry / "registry.db") as db:
        assert db.execute(statement, args).rowcount == 1
    db.close()


def _forge_record(registry: Path, version_id: str) -> None:
    with sqlite3.connect(registry / "registry.db") as db:
        (text,) = db.execute("SELECT record_json FROM versions WHERE version_id=?", (version_id,)).fetchone()
    db.close()
    record = json.loads(text)
    record["metrics"]["accuracy"] = 0.999
    _sql(registry, "UPDATE versions SET record_json=? WHERE version_id=?",
         json.dumps(record, sort_keys=True, separators=(",", ":")), version_id)


def _forge_seed(registry: Path, run_id: str) -> None:
    with sqlite3.connect(registry / "registry.db") as db:
        (text,) = db.execute("SELECT config_json FROM runs WHERE run_id=?", (run_id,)).fetchone()
    db.close()
    config = json.loads(text)
    config["spec"]["seed"] = 8
    _sql(registry, "UPDATE runs SET config_json=? WHERE run_id=?", json.dumps(config, sort_keys=True), run_id)


@dataclass(frozen=True)
class Case:
    """One damage: how it is made, what verify must say, what reading it must raise."""

    damage: Callable[[Path, Recorded], None]
    named: Callable[[Recorded], list[str]]     # every one of these in one problem
    read: Callable[[Registry, Recorded], Any]  # must raise ``raises`` (``None``: return True)
    raises: type[FlonnxError] | None


CASES = {
    "truncated weights blob": Case(
        lambda reg, r: _truncate(reg, r.head_weights),
        lambda r: [f"weights blob {r.head_weights[:12]}", "content hashes to",
                   f"version {r.head[:12]} (aggregate, round {ROUNDS})"],
        lambda reg, r: reg.get_weights(r.head_weights), LineageError),
    "altered weights blob": Case(
        lambda reg, r: _flip(reg, r.update_weights),
        lambda r: [f"weights blob {r.update_weights[:12]}", "content hashes to",
                   f"version {r.update[:12]} (client_update, round 2)"],
        lambda reg, r: reg.get_weights(r.update_weights), LineageError),
    "missing weights blob": Case(
        lambda reg, r: _blob(reg, r.update_weights).unlink(),
        lambda r: [f"weights blob {r.update_weights[:12]}", "is missing",
                   f"version {r.update[:12]} (client_update, round 2)"],
        lambda reg, r: reg.get_weights(r.update_weights), RegistryError),
    "truncated definition blob": Case(
        lambda reg, r: _truncate(reg, r.definition),
        lambda r: [f"definition blob {r.definition[:12]}", "content hashes to"],
        lambda reg, r: reg.get_definition(r.definition), FlonnxError),
    "missing definition blob": Case(
        lambda reg, r: _blob(reg, r.definition).unlink(),
        lambda r: [f"definition blob {r.definition[:12]}", "is missing"],
        lambda reg, r: reg.get_definition(r.definition), RegistryError),
    "edited version record": Case(
        lambda reg, r: _forge_record(reg, r.first),
        lambda r: [f"version {r.first[:12]} (aggregate, round 1): record re-hashes to"],
        lambda reg, r: reg.record(r.first), RegistryError),
    "edited version index column": Case(
        lambda reg, r: _sql(reg, "UPDATE versions SET round=? WHERE version_id=?", 3, r.update),
        lambda r: [f"version {r.update[:12]} (client_update, round 3)",
                   "index columns disagree with the record"],
        lambda reg, r: reg.record(r.update).round == 2, None),  # reads use the record, not the column
    "edited run record": Case(
        lambda reg, r: _forge_seed(reg, r.run_id),
        lambda r: [f"run {r.run_id}: the spec it runs with differs", "at seed"],
        lambda reg, r: reg.run(r.run_id), RegistryError),
    "edited head row": Case(
        lambda reg, r: _sql(reg, "UPDATE run_heads SET version_id=? WHERE run_id=? AND round=?",
                            r.update, r.run_id, 2),
        lambda r: [f"run {r.run_id} round 2: head {r.update[:12]} is the client_update version of "
                   "round 2, not the aggregate version of round 2"],
        lambda reg, r: reg.check_intact(r.run_id), RegistryError),
    "altered strategy state blob": Case(
        lambda reg, r: _flip(reg, r.last_state),
        lambda r: [f"run {r.run_id} round {ROUNDS}: strategy state {r.last_state[:12]}",
                   "does not match its id"],
        lambda reg, r: reg.get_state(r.last_state), LineageError),
    "truncated strategy state arrays": Case(
        lambda reg, r: _truncate(reg, r.last_state_arrays),
        lambda r: [f"run {r.run_id} round {ROUNDS}: strategy state {r.last_state[:12]}",
                   f"weights blob {r.last_state_arrays[:12]} does not match its id"],
        lambda reg, r: reg.get_state(r.last_state), LineageError),
    "missing strategy state blob": Case(
        lambda reg, r: _blob(reg, r.last_state).unlink(),
        lambda r: [f"run {r.run_id} round {ROUNDS}: strategy state {r.last_state[:12]}", "is missing"],
        lambda reg, r: reg.get_state(r.last_state), RegistryError),
    "edited strategy state row": Case(
        lambda reg, r: _sql(reg, "UPDATE strategy_states SET state_id=? WHERE run_id=? AND round=?",
                            r.definition, r.run_id, ROUNDS),
        lambda r: [f"run {r.run_id} round {ROUNDS}: strategy state {r.definition[:12]}", "malformed"],
        lambda reg, r: reg.get_state(reg.state_at(r.run_id, ROUNDS)), LineageError),
    "deleted strategy state": Case(
        lambda reg, r: _sql(reg, "DELETE FROM strategy_states WHERE run_id=? AND round=?",
                            r.run_id, ROUNDS - 1),
        lambda r: [f"run {r.run_id} round {ROUNDS - 1}: no strategy state is saved after it"],
        lambda reg, r: reg.check_intact(r.run_id), RegistryError),
}


@pytest.fixture(params=list(CASES))
def damaged(request: pytest.FixtureRequest, recorded: Recorded, tmp_path: Path) -> tuple[Path, Case]:
    registry = tmp_path / "registry"
    shutil.copytree(recorded.registry, registry)
    case = CASES[request.param]
    case.damage(registry, recorded)
    return registry, case


class _EngineStarted(Exception):
    """A resume got past its checks and asked for a simulation."""


@pytest.fixture()
def no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """``flonnx resume`` must refuse before it starts Flower's simulation engine."""
    import flonnx.simulations.runner

    def started(*args: Any, **kwargs: Any) -> None:
        raise _EngineStarted

    monkeypatch.setattr(flonnx.simulations.runner, "simulate", started)


def test_verify_names_each_damage_by_id_and_kind(damaged: tuple[Path, Case], recorded: Recorded) -> None:
    registry, case = damaged

    result = CliRunner().invoke(app, ["lineage", "verify", "--registry", str(registry)])

    assert result.exit_code == 1, result.output
    problems = [line for line in result.output.splitlines() if line.startswith("mismatch: ")]
    assert any(all(part in p for part in case.named(recorded)) for p in problems), problems


def test_no_read_returns_damaged_data(damaged: tuple[Path, Case], recorded: Recorded) -> None:
    registry, case = damaged

    with Registry(registry, create=False) as reg:
        if case.raises is None:
            assert case.read(reg, recorded) is True
        else:
            with pytest.raises(case.raises):
                case.read(reg, recorded)


def test_resume_refuses_a_damaged_run_in_one_line_before_any_engine_starts(
    damaged: tuple[Path, Case], recorded: Recorded, no_engine: None,
) -> None:
    registry, case = damaged

    result = CliRunner().invoke(app, ["resume", recorded.run_id, "--rounds", str(ROUNDS + 1),
                                      "--registry", str(registry)])

    assert result.exit_code == 1, (result.output, result.exception)
    assert "Traceback" not in result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"error: run {recorded.run_id}")
    assert all(part in line for part in case.named(recorded)[:1]), line


def test_resume_of_the_intact_run_gets_past_the_checks(
    recorded: Recorded, tmp_path: Path, no_engine: None,
) -> None:
    registry = tmp_path / "registry"
    shutil.copytree(recorded.registry, registry)

    result = CliRunner().invoke(app, ["resume", recorded.run_id, "--rounds", str(ROUNDS + 1),
                                      "--registry", str(registry)])

    assert isinstance(result.exception, _EngineStarted), result.output


def test_the_library_resume_refuses_damage_it_would_not_otherwise_read(
    recorded: Recorded, tmp_path: Path,
) -> None:
    registry = tmp_path / "registry"
    shutil.copytree(recorded.registry, registry)
    _truncate(registry, recorded.update_weights)  # round 2's update: resume never loads it

    with pytest.raises(RegistryError, match=f"run {recorded.run_id} .* is damaged and cannot be "
                                            f"resumed: .*weights blob {recorded.update_weights[:12]}"):
        _coordinator.resume_in_process(registry, recorded.run_id, rounds=ROUNDS + 1)

    with Registry(registry, create=False) as reg:
        assert max(reg.heads(recorded.run_id)) == ROUNDS
