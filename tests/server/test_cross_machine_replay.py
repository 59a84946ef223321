"""A registry recorded on another machine replays bit for bit here (issue #11, reproducibility).

``tests/fixtures/replay-registry`` was recorded once (``python -m tests.fixtures.make_replay_fixture``)
and is committed; its records name the CPU and SIMD it was recorded on. Replaying re-aggregates
every round from the recorded updates with the aggregator the run recorded (integer fixed-point for
weighted means, then FedAdam's elementwise server step) and compares weights ids: aggregation must
not depend on the CPU, the BLAS or the order replies arrive in. CI runs this on whatever machine it
gets; a failure there means aggregation stopped being bit-exact across machines.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from flonnx.exchange.lineage import VersionKind
from flonnx.exchange.registry import Registry
from flonnx.server.replay import replay_run
from tests.fixtures.make_replay_fixture import FIXTURE


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("recorded") / "registry"
    shutil.copytree(FIXTURE, copy)
    return copy


def test_every_recorded_round_replays_to_the_recorded_aggregate(recorded: Path) -> None:
    with Registry(recorded, create=False) as registry:
        runs = registry.runs()
        strategies = set()
        for run in runs:
            aggregates = [v for v in registry.versions(run.run_id) if v.record.kind is VersionKind.AGGREGATE]
            assert len(aggregates) == 3
            report = replay_run(registry, run.run_id)
            strategies.add(report.strategy)
            assert [(r.round, r.ok, r.problem) for r in report.rounds] == [(1, True, ""), (2, True, ""),
                                                                          (3, True, "")]
            recorded_ids = {v.record.round: v.record.weights_id for v in aggregates}
            assert {r.round: r.weights_id for r in report.rounds} == recorded_ids
            machine = {v.record.environment.get("cpu-simd") for v in aggregates}
            assert machine and all(machine), "the fixture records the SIMD it was aggregated with"
    assert strategies == {"fedavg", "fedadam"}


def test_the_fixture_is_verified_as_recorded(recorded: Path) -> None:
    with Registry(recorded, create=False) as registry:
        checked, problems = registry.verify()
    assert problems == [] and checked > 0
