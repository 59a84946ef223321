"""Retention (``[registry] retention = "last:K"``): pruned update blobs, what verify and replay say.

Federations run in-process on a :class:`~tests.server.local_grid.LocalGrid` (3 scikit-learn nodes,
the MLP of the crash trials), never on Ray.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from flonnx.cli import app
from flonnx.exchange.crashpoints import ENV
from flonnx.exchange.hashing import weights_id
from flonnx.exchange.lineage import VersionKind, VersionRecord
from flonnx.exchange.registry import Registry, retention_horizon
from flonnx.exchange.spec import SpecError, load_spec
from flonnx.server.replay import replay_run

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 3
NODES = 3
FEDERATION = {"num-server-rounds": ROUNDS, "frameworks": f"sklearn:{NODES}", "clients": NODES,
              "local-epochs": 1, "seed": 7}


def run_federation(registry: Path, retention: str = "all", compress: bool = False,
                   resume: str = "") -> str:
    """Run (or resume) the small federation into ``registry``; returns the run id."""
    from flonnx.client.app import app as client_app
    from flonnx.server.app import resumed_settings
    from flonnx.server.federation import Federation
    from flonnx.server.progress import Reporter
    from flonnx.server.settings import Settings
    from tests.reliability._coordinator import write_model
    from tests.server.local_grid import LocalGrid

    model = registry.parent / "model.onnx"
    if not model.exists():
        write_model(model)
    settings = Settings.from_run_config({"registry": str(registry), "min-available-nodes": NODES,
                                         "model": str(model), **FEDERATION})
    settings = replace(settings, spec=settings.spec.with_overrides(
        {"registry.retention": retention, "registry.compress": compress}))
    if resume:
        settings = resumed_settings(replace(settings, resume=resume), FEDERATION)
    return Federation(LocalGrid(client_app, NODES, dict(FEDERATION)), settings, Reporter()).run()


def _updates(reg: Registry, run_id: str) -> dict[int, list[str]]:
    """Round -> the weights ids of its client updates."""
    out: dict[int, list[str]] = {}
    for version in reg.versions(run_id):
        if version.record.kind is VersionKind.CLIENT_UPDATE:
            out.setdefault(version.record.round, []).append(version.record.weights_id)
    return out


def _verify(registry: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["lineage", "verify", "--all", "--registry", str(registry)])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """The same seeded federation: kept whole, pruned into the same registry, pruned and compressed."""
    shared = tmp_path_factory.mktemp("shared") / "registry"
    alone = tmp_path_factory.mktemp("alone") / "registry"
    return {"all": (shared, run_federation(shared)),
            "last:1 shared": (shared, run_federation(shared, "last:1")),
            "last:1 compressed": (alone, run_federation(alone, "last:1", compress=True))}


def test_retention_and_compression_change_no_version_id(runs: dict[str, tuple[Path, str]]) -> None:
    ids = {}
    for name, (registry, run_id) in runs.items():
        with Registry(registry, create=False) as reg:
            ids[name] = [v.version_id for v in reg.versions(run_id)]

    assert len(ids["all"]) > 3 * (NODES + 1)
    assert ids["all"] == ids["last:1 shared"] == ids["last:1 compressed"]


def test_updates_older_than_the_kept_rounds_lose_their_blobs_and_keep_their_rows(
    runs: dict[str, tuple[Path, str]],
) -> None:
    registry, run_id = runs["last:1 compressed"]

    with Registry(registry, create=False) as reg:
        updates = _updates(reg, run_id)
        heads = reg.heads(run_id)
        kept = {r: [reg.blobs.exists(w) for w in ids] for r, ids in updates.items()}
        aggregates = [reg.blobs.exists(reg.record(h).weights_id) for h in heads.values()]

    assert sorted(updates) == [1, 2, 3] and all(len(ids) == NODES for ids in updates.values())
    assert kept == {1: [False] * NODES, 2: [False] * NODES, 3: [True] * NODES}
    assert all(aggregates)
    stored = [p.name for p in (registry / "blobs").rglob("*") if p.is_file()]
    assert stored and all(name.endswith(".z") for name in stored)  # every blob written compressed


def test_a_blob_another_run_keeps_is_not_pruned(runs: dict[str, tuple[Path, str]]) -> None:
    registry, pruned_run = runs["last:1 shared"]

    with Registry(registry, create=False) as reg:
        blobs = [w for ids in _updates(reg, pruned_run).values() for w in ids]
        present = [reg.blobs.exists(w) for w in blobs]

    assert len(blobs) == ROUNDS * NODES and all(present)  # the same updates as run "all", which keeps them


@pytest.mark.parametrize("name", ["last:1 shared", "last:1 compressed"])
def test_a_pruned_registry_verifies(runs: dict[str, tuple[Path, str]], name: str) -> None:
    registry, run_id = runs[name]

    with Registry(registry, create=False) as reg:
        checked, problems = reg.verify(run_id)
    code, output = _verify(registry)

    assert problems == [] and checked > 0
    assert code == 0, output


def test_verify_names_a_missing_blob_that_retention_keeps(
    runs: dict[str, tuple[Path, str]], tmp_path: Path,
) -> None:
    source, run_id = runs["last:1 compressed"]
    registry = tmp_path / "registry"
    shutil.copytree(source, registry)
    with Registry(registry, create=False) as reg:
        kept_update = _updates(reg, run_id)[ROUNDS][0]
        first_aggregate = reg.record(reg.heads(run_id)[1]).weights_id
        for blob_id in (kept_update, first_aggregate):
            reg.blobs.delete(blob_id)

    with Registry(registry, create=False) as reg:
        problems = reg.verify(run_id)[1]
    code, output = _verify(registry)

    assert any(kept_update[:12] in p and "missing" in p for p in problems), problems
    assert any(first_aggregate[:12] in p and "missing" in p for p in problems), problems
    assert len(problems) == 2, problems
    assert code != 0 and kept_update[:12] in output


def test_replay_replays_the_kept_rounds_and_names_the_pruned_ones(
    runs: dict[str, tuple[Path, str]],
) -> None:
    registry, run_id = runs["last:1 compressed"]

    with Registry(registry, create=False) as reg:
        report = replay_run(reg, run_id)
    result = CliRunner().invoke(app, ["lineage", "replay", run_id, "--registry", str(registry)])

    assert [(r.round, r.ok, r.pruned) for r in report.rounds] == [
        (1, False, True), (2, False, True), (3, True, False)]
    assert report.ok and report.pruned == [1, 2]
    assert "retention last:1" in report.rounds[0].problem
    assert result.exit_code == 0, result.output
    assert "round 3: ok" in result.output
    assert "not replayed" in result.output and "round(s) 1, 2" in result.output


def test_replay_of_a_run_that_kept_no_update_fails_rather_than_passing_on_nothing(tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    run_id = run_federation(registry, "last:0")

    result = CliRunner().invoke(app, ["lineage", "replay", run_id, "--registry", str(registry)])

    assert result.exit_code == 1, result.output
    assert "nothing replayed" in result.output and "every round" in result.output
    assert _verify(registry)[0] == 0  # what retention let go of is not damage


def test_a_kill_between_commit_and_prune_leaves_extra_blobs_that_the_resume_prunes(
    runs: dict[str, tuple[Path, str]], tmp_path: Path,
) -> None:
    registry = tmp_path / "registry"
    code = (f"from pathlib import Path; from tests.server.test_retention import run_federation; "
            f"run_federation(Path({str(registry)!r}), 'last:1')")
    env = {**os.environ, ENV: "commit.after@3", "PYTHONPATH": str(ROOT)}  # round 2's commit

    killed = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=600)
    with Registry(registry, create=False) as reg:
        run_id = reg.resolve_run()
        left = {r: [reg.blobs.exists(w) for w in ids] for r, ids in _updates(reg, run_id).items()}
    code_after_kill, output = _verify(registry)
    run_federation(registry, "last:1", resume=run_id)
    with Registry(registry, create=False) as reg:
        after = {r: [reg.blobs.exists(w) for w in ids] for r, ids in _updates(reg, run_id).items()}
        heads = reg.heads(run_id)
    reference, reference_run = runs["last:1 compressed"]
    with Registry(reference, create=False) as reg:
        expected = reg.heads(reference_run)

    assert killed.returncode == -9, killed.stderr[-2000:]
    assert left == {1: [True] * NODES, 2: [True] * NODES}  # round 1's prune never happened
    assert code_after_kill == 0, output
    assert after == {1: [False] * NODES, 2: [False] * NODES, 3: [True] * NODES}
    assert heads == expected
    assert _verify(registry)[0] == 0


# -- prune, unit ---------------------------------------------------------------------------------
def _commit_round(reg: Registry, run_id: str, rnd: int, parent: str, definition_id: str,
                  updates: list[dict[str, np.ndarray]], aggregate: dict[str, np.ndarray]) -> str:
    records = [VersionRecord(kind=VersionKind.CLIENT_UPDATE, round=rnd, definition_id=definition_id,
                             weights_id=reg.put_weights(w), parents=(parent,), client=f"c{i}",
                             num_examples=10) for i, w in enumerate(updates)]
    head = VersionRecord(kind=VersionKind.AGGREGATE, round=rnd, definition_id=definition_id,
                         weights_id=reg.put_weights(aggregate),
                         parents=tuple(r.version_id for r in records), strategy="fedavg")
    reg.commit(run_id, [*records, head], head_round=rnd, head=head.version_id,
               state_id=reg.put_state({"momentum": np.zeros(2, np.float32)}, {"round": rnd}))
    return head.version_id


def test_prune_keeps_an_update_blob_that_an_aggregate_or_a_kept_update_shares(tmp_path: Path) -> None:
    from tests.tiny_models import gemm_mlp

    definition, start = gemm_mlp(4, 3, 2)
    moved = [{k: v + np.float32(i) for k, v in start.items()} for i in range(1, 5)]
    with Registry(tmp_path / "registry") as reg:
        reg.put_definition(definition)
        run_id = reg.create_run("unit", 0, {"spec": {"registry": {"retention": "last:1"}}})
        initial = VersionRecord(kind=VersionKind.INITIAL, round=0, definition_id=definition.id,
                                weights_id=reg.put_weights(start))
        reg.commit(run_id, [initial], head_round=0, head=initial.version_id,
                   state_id=reg.put_state({}, {}))
        # round 1: one client, whose update is the aggregate itself; a second update, copied in round 2
        head = _commit_round(reg, run_id, 1, initial.version_id, definition.id, [moved[0]], moved[0])
        assert reg.prune(run_id) == []  # nothing left the window of the last round yet
        head = _commit_round(reg, run_id, 2, head, definition.id, [moved[1], moved[2]], moved[3])
        first_prune = reg.prune(run_id, newest=True)
        _commit_round(reg, run_id, 3, head, definition.id, [moved[2]], moved[2])

        second_prune = reg.prune(run_id)

        present = {i: reg.blobs.exists(weights_id(w)) for i, w in enumerate(moved)}
        problems = reg.verify(run_id)[1]

    assert retention_horizon({"spec": {"registry": {"retention": "last:1"}}}, 3) == 2
    assert first_prune == []  # round 1's only update is round 1's aggregate
    assert second_prune == [weights_id(moved[1])]  # moved[2] is round 3's update and aggregate
    assert present == {0: True, 1: False, 2: True, 3: True}
    assert problems == []


def test_a_run_that_keeps_every_update_prunes_nothing(tmp_path: Path) -> None:
    with Registry(tmp_path / "registry") as reg:
        run_id = reg.create_run("unit", 0, {"spec": {}})

        assert reg.prune(run_id) == []
        assert retention_horizon({"spec": {}}, 9) == 0
        assert retention_horizon({"spec": {"registry": {"retention": "nonsense"}}}, 9) == 0


# -- the setting -----------------------------------------------------------------------------------
def test_a_bad_retention_is_one_line_naming_the_key_and_the_forms() -> None:
    with pytest.raises(SpecError) as caught:
        load_spec("digits-mixed", {"registry.retention": "last:x"})

    message = str(caught.value)
    assert "\n" not in message
    assert "'registry.retention'" in message and "'all' or 'last:K'" in message


def test_simulate_refuses_a_bad_retention_before_it_starts() -> None:
    result = CliRunner().invoke(app, ["simulate", "digits-mixed", "--retention", "keep-some"])

    assert result.exit_code != 0
    assert "registry.retention" in result.output and "last:K" in result.output


def test_the_settings_are_recorded_with_the_spec_and_a_default_spec_keeps_its_id() -> None:
    plain = load_spec("digits-mixed")
    stored = load_spec("digits-mixed", {"registry.retention": "last:02", "registry.compress": "true"})

    assert plain.to_toml_dict().get("registry") is None
    assert plain.id == load_spec("digits-mixed", {"registry.retention": "all"}).id
    assert stored.to_toml_dict()["registry"] == {"retention": "last:2", "compress": True}
    assert stored.canonical()["registry"] == {"retention": "last:2", "compress": True}
