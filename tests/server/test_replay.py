"""``lineage replay``: re-aggregation from the registry matches, and a mismatch names its round."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flonnx.cli import app
from flonnx.exchange.registry import Registry
from flonnx.server.replay import replay_run
from tests.server.conftest import run_local


@pytest.fixture(scope="module")
def fedadam_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    registry = tmp_path_factory.mktemp("replay")
    return registry, run_local(registry, strategy="fedadam", **{"num-server-rounds": 2})


def test_replay_confirms_every_round(fedadam_run: tuple[Path, str]) -> None:
    registry, run_id = fedadam_run

    result = CliRunner().invoke(app, ["lineage", "replay", run_id, "--registry", str(registry)])

    assert result.exit_code == 0, result.output
    assert "round 1: ok" in result.output and "round 2: ok" in result.output


def test_replay_names_the_round_whose_aggregate_differs(
    fedadam_run: tuple[Path, str], tmp_path: Path,
) -> None:
    source, run_id = fedadam_run
    registry = tmp_path / "copy"
    import shutil

    shutil.copytree(source, registry)
    import sqlite3

    with Registry(registry) as reg:
        fresh = reg.state_at(run_id, 0)
    # point round 1's saved state at the fresh (round 0) state: round 2 now starts from wrong moments
    with sqlite3.connect(registry / "registry.db") as db:
        db.execute("UPDATE strategy_states SET state_id=? WHERE run_id=? AND round=1", (fresh, run_id))
    with Registry(registry) as reg:
        report = replay_run(reg, run_id)

    result = CliRunner().invoke(app, ["lineage", "replay", run_id, "--registry", str(registry)])

    assert [(r.round, r.ok) for r in report.rounds] == [(1, False), (2, False)]
    assert "strategy state after the round differs" in report.rounds[0].problem
    assert "recorded weights" in report.rounds[1].problem
    assert result.exit_code == 1 and "differs at round 1" in result.output
