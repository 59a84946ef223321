"""Failing clients: excluded and recorded with a reason; too few valid updates fail the round cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest

from flonnx.exchange.lineage import VersionKind
from flonnx.exchange.registry import Registry
from flonnx.server.federation import RoundFailed
from tests.server.conftest import run_local


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    registry = tmp_path_factory.mktemp("faulty")
    return registry, run_local(registry, spec="digits-faulty", **{"num-server-rounds": 2})


def test_failing_and_nan_clients_are_recorded_with_their_reason(faulty: tuple[Path, str]) -> None:
    registry, run_id = faulty
    with Registry(registry) as reg:
        rejected = [v.record for v in reg.versions(run_id) if v.record.kind is VersionKind.REJECTED]

    assert [(r.round, r.client) for r in rejected] == [
        (1, "partition-4"), (1, "partition-5"), (2, "partition-4"), (2, "partition-5")]
    # a fault is injected into a real trainer, which keeps its framework's name in the lineage
    assert {r.framework for r in rejected} <= {"torch", "sklearn"}
    assert "RuntimeError: injected failure" in rejected[0].reason
    assert "non-finite values (NaN or inf)" in rejected[1].reason
    # the NaN crossed the wire and the server's validation rejected it (not a client-side crash)
    assert rejected[1].reason.startswith("update from partition-5 does not match definition")


def test_the_aggregate_is_made_of_the_valid_updates_only(faulty: tuple[Path, str]) -> None:
    registry, run_id = faulty
    with Registry(registry) as reg:
        heads = reg.heads(run_id)
        aggregate = reg.record(heads[2])
        parents = [reg.record(p) for p in aggregate.parents]
        status = reg.run(run_id).status

    assert status == "completed"
    assert sorted(p.client for p in parents) == [f"partition-{i}" for i in range(4)]
    assert {p.kind for p in parents} == {VersionKind.CLIENT_UPDATE}


def test_too_few_valid_updates_fail_the_round_and_leave_the_run_resumable(
    tmp_path: Path, faulty: tuple[Path, str],
) -> None:
    with pytest.raises(RoundFailed, match=r"round 1: 4 valid update\(s\), min-train-nodes is 5"):
        run_local(tmp_path, spec="digits-faulty", **{"num-server-rounds": 2, "min-train-nodes": 5})
    with Registry(tmp_path) as reg:
        (info,) = reg.runs()
        assert (info.status, reg.heads(info.run_id).keys(), reg.verify(info.run_id)[1]) == (
            "failed", {0}, [])

    run_local(tmp_path, spec="digits-faulty", resume=info.run_id,
              **{"num-server-rounds": 2, "min-train-nodes": 4})

    registry, never_failed = faulty
    with Registry(tmp_path) as reg, Registry(registry) as ref:
        assert reg.run(info.run_id).status == "completed"
        assert reg.heads(info.run_id) == ref.heads(never_failed)
        config = reg.run(info.run_id).config
    # the run record says what the resume changed, and the settings it now runs with
    assert config["resumes"] == [{"after_round": 0, "changed": {"min-train-nodes": [5, 4]}}]
    assert config["spec"]["min-train-nodes"] == 4
