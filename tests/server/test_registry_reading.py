"""Reading a registry: never from a record that was changed after it was written, and from a copy
that cannot be written.

One real federation (in-process, on a :class:`LocalGrid`) records a two-round run; each test reads a
copy of it. A copy whose stored record of the last aggregate has a forged accuracy must be refused,
naming that version, by every command that reads records (``lineage ls/show``, ``export``,
``nodes``, ``replay``, ``flonnx.history``) and by the resume path, while ``lineage verify`` still
lists every problem. A read-only copy (files 0444, directories 0555) is read without root's power
over file modes (``tests/unprivileged.py``) and must come out byte for byte unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import flonnx
from flonnx.cli import app
from flonnx.exchange.errors import RegistryError
from flonnx.exchange.registry import Registry
from tests.server.conftest import run_local
from tests.unprivileged import without_dac_override

ROUNDS = 2
FORGED_ACCURACY = 0.999


@dataclass(frozen=True)
class Recorded:
    """A registry holding one finished run."""

    registry: Path
    run_id: str
    head: str  # the last round's aggregate


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    registry = tmp_path_factory.mktemp("reading") / "registry"
    run_id = run_local(registry, **{"num-server-rounds": ROUNDS})
    with Registry(registry, create=False) as reg:
        head = reg.heads(run_id)[ROUNDS]
    return Recorded(registry, run_id, head)


def _copy(recorded: Recorded, where: Path) -> Path:
    shutil.copytree(recorded.registry, where)
    return where


def _edit(registry: Path, sql: str, *args: Any) -> None:
    with sqlite3.connect(registry / "registry.db") as db:
        assert db.execute(sql, args).rowcount == 1


def _forge_accuracy(registry: Path, version_id: str) -> None:
    """Change the accuracy in a version's stored record, as a hand edit of the database would."""
    with sqlite3.connect(registry / "registry.db") as db:
        (text,) = db.execute("SELECT record_json FROM versions WHERE version_id=?", (version_id,)).fetchone()
    record = json.loads(text)
    record["metrics"]["accuracy"] = FORGED_ACCURACY
    _edit(registry, "UPDATE versions SET record_json=? WHERE version_id=?",
          json.dumps(record, sort_keys=True, separators=(",", ":")), version_id)


def _edit_config(registry: Path, run_id: str, change: Any) -> None:
    with sqlite3.connect(registry / "registry.db") as db:
        (text,) = db.execute("SELECT config_json FROM runs WHERE run_id=?", (run_id,)).fetchone()
    config = json.loads(text)
    change(config)
    _edit(registry, "UPDATE runs SET config_json=? WHERE run_id=?", json.dumps(config, sort_keys=True),
          run_id)


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def _one_line_error(result: Any) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


# -- reading never trusts a record ----------------------------------------------------------------

@pytest.fixture()
def forged(recorded: Recorded, tmp_path: Path) -> Path:
    registry = _copy(recorded, tmp_path / "forged")
    _forge_accuracy(registry, recorded.head)
    return registry


@pytest.mark.parametrize("command", [
    ["lineage", "ls"], ["lineage", "ls", "--json"], ["lineage", "show", "HEAD"],
    ["export", "HEAD", "-o", "OUT"], ["nodes"], ["nodes", "--json"], ["lineage", "replay"],
])
def test_every_reader_refuses_a_version_whose_stored_record_was_edited(
    command: list[str], recorded: Recorded, forged: Path, tmp_path: Path,
) -> None:
    out = tmp_path / "model.onnx"
    args = [str(out) if a == "OUT" else recorded.head[:16] if a == "HEAD" else a for a in command]

    line = _one_line_error(_cli(*args, "--registry", str(forged)))

    assert line.startswith(f"error: version {recorded.head[:12]} in {forged} does not match its id: "
                           "its stored record re-hashes to ")
    assert str(FORGED_ACCURACY) not in line
    assert not out.exists()


def test_the_python_history_refuses_it_too(recorded: Recorded, forged: Path) -> None:
    with pytest.raises(RegistryError, match=f"version {recorded.head[:12]} .* does not match its id"):
        flonnx.history(recorded.run_id, registry=forged)


def test_resume_refuses_to_continue_from_an_edited_head(recorded: Recorded, forged: Path) -> None:
    with pytest.raises(RegistryError, match=f"version {recorded.head[:12]} .* does not match its id"):
        run_local(forged, resume=recorded.run_id, **{"num-server-rounds": ROUNDS + 1})

    with Registry(forged, create=False) as reg:
        assert max(reg.heads(recorded.run_id)) == ROUNDS


def test_verify_still_lists_every_problem(recorded: Recorded, forged: Path) -> None:
    with Registry(forged, create=False) as reg:
        first = reg.heads(recorded.run_id)[1]
    _forge_accuracy(forged, first)
    _edit_config(forged, recorded.run_id, lambda c: c["spec"].update(seed=7))

    result = _cli("lineage", "verify", "--registry", str(forged))

    assert result.exit_code == 1
    mismatches = [ln for ln in result.output.splitlines() if ln.startswith("mismatch:")]
    assert len(mismatches) == 3, result.output
    for version in (first, recorded.head):
        assert any(f"version {version[:12]} (aggregate" in m and "re-hashes to" in m for m in mismatches)
    assert any(f"run {recorded.run_id}: the spec it runs with differs" in m and "at seed" in m
               for m in mismatches)


def test_an_edited_run_record_is_refused_naming_the_run(recorded: Recorded, tmp_path: Path) -> None:
    changed_spec = _copy(recorded, tmp_path / "spec")
    _edit_config(changed_spec, recorded.run_id, lambda c: c["spec"]["strategy-config"].update(eta="9"))
    changed_canonical = _copy(recorded, tmp_path / "canonical")
    _edit_config(changed_canonical, recorded.run_id, lambda c: c["spec_canonical"].update(seed=7))

    spec_line = _one_line_error(_cli("runs", "--registry", str(changed_spec)))
    canonical_line = _one_line_error(_cli("lineage", "replay", "--registry", str(changed_canonical)))

    assert spec_line.startswith(f"error: run {recorded.run_id}: the spec it runs with differs from its "
                                "recorded spec")
    assert "at strategy-config" in spec_line
    assert canonical_line.startswith(f"error: run {recorded.run_id}: recorded spec re-hashes to ")
    with pytest.raises(RegistryError, match=f"run {recorded.run_id}: the spec it runs with differs"):
        run_local(changed_spec, resume=recorded.run_id, **{"num-server-rounds": ROUNDS + 1})


def test_a_resumed_run_with_more_rounds_still_reads_and_verifies(recorded: Recorded, tmp_path: Path) -> None:
    registry = _copy(recorded, tmp_path / "resumed")

    run_local(registry, resume=recorded.run_id, **{"num-server-rounds": ROUNDS + 1})

    assert _cli("runs", "--registry", str(registry)).exit_code == 0
    assert _cli("lineage", "ls", "--registry", str(registry)).exit_code == 0
    verified = _cli("lineage", "verify", "--registry", str(registry))
    assert verified.exit_code == 0, verified.output


# -- lineage show has the form the docs give ---------------------------------------------------------

def test_show_prints_a_record_in_the_form_of_ls_json(recorded: Recorded) -> None:
    listed = json.loads(_cli("lineage", "ls", "--json", "--registry", str(recorded.registry)).output)

    shown = _cli("lineage", "show", recorded.head[:10], "--registry", str(recorded.registry))

    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output) == next(v for v in listed if v["version_id"] == recorded.head)
    assert {"run_id", "created_at"} <= set(json.loads(shown.output))


# -- a registry that cannot be written can still be read -------------------------------------------

def _archive(registry: Path) -> None:
    """Fold the write-ahead log into the database, as closing the last connection does."""
    db = sqlite3.connect(registry / "registry.db")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    assert not list(registry.glob("registry.db-*"))


def _freeze(folder: Path) -> None:
    """Files 0444, directories 0555: an archive as it arrives."""
    for path in sorted(folder.rglob("*"), reverse=True):
        path.chmod(0o555 if path.is_dir() else 0o444)
    folder.chmod(0o555)


def _fingerprint(folder: Path) -> dict[str, tuple[int, str]]:
    return {str(p.relative_to(folder)): (stat.S_IMODE(p.stat().st_mode),
                                         hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "")
            for p in sorted(folder.rglob("*"))}


def _read(*args: str) -> subprocess.CompletedProcess[str]:
    """``flonnx ARGS`` as a user meets file modes (root without ``CAP_DAC_OVERRIDE``)."""
    return subprocess.run(without_dac_override([sys.executable, "-m", "flonnx.cli", *args]),
                          capture_output=True, text=True, env={**os.environ, "COLUMNS": "250"},
                          timeout=300)


def test_a_read_only_registry_is_read_and_left_unchanged(recorded: Recorded, tmp_path: Path) -> None:
    registry = _copy(recorded, tmp_path / "archive")
    _archive(registry)
    _freeze(registry)
    before = _fingerprint(registry)
    out = tmp_path / "model.onnx"

    results = {
        " ".join(args[:2]): _read(*args, "--registry", str(registry))
        for args in (["runs"], ["lineage", "ls"], ["lineage", "show", recorded.head[:12]],
                     ["lineage", "verify"], ["lineage", "replay"], ["nodes"],
                     ["export", recorded.head[:12], "-o", str(out)])
    }

    for command, done in results.items():
        assert done.returncode == 0, f"{command}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    assert recorded.run_id in results["runs"].stdout
    assert f'"version_id": "{recorded.head}"' in results["lineage show"].stdout
    assert out.stat().st_size > 0
    assert _fingerprint(registry) == before


def _writer_killed_after_commit(registry: Path) -> str:
    """A process records a run and dies without closing: its rounds are only in the -wal file."""
    code = f"""
import os
from flonnx.exchange.lineage import VersionKind, VersionRecord
from flonnx.exchange.registry import Registry
reg = Registry({str(registry)!r})
run = reg.create_run("in-the-log", 0, {{}})
record = VersionRecord(VersionKind.INITIAL, 0, "", "")
reg.commit(run, [record], head_round=0, head=record.version_id)
print(run, flush=True)
os._exit(0)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_a_read_only_copy_of_a_live_registry_reads_the_rounds_in_its_log(tmp_path: Path) -> None:
    registry = tmp_path / "live"
    run_id = _writer_killed_after_commit(registry)
    assert (registry / "registry.db-wal").stat().st_size > 0 and (registry / "registry.db-shm").exists()
    _freeze(registry)
    before = _fingerprint(registry)

    listed = _read("runs", "--json", "--registry", str(registry))

    assert listed.returncode == 0, listed.stderr
    assert [r["run_id"] for r in json.loads(listed.stdout)] == [run_id]
    assert _fingerprint(registry) == before


def test_a_log_without_its_index_is_refused_rather_than_read_incomplete(tmp_path: Path) -> None:
    registry = tmp_path / "torn"
    _writer_killed_after_commit(registry)
    (registry / "registry.db-shm").unlink()
    _freeze(registry)

    listed = _read("runs", "--registry", str(registry))

    assert listed.returncode == 1 and "Traceback" not in listed.stderr + listed.stdout
    assert "its write-ahead log registry.db-wal holds committed rounds but its index registry.db-shm " \
           "is missing" in " ".join((listed.stdout + listed.stderr).split())
