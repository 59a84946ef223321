"""The Python API reads back what the lineage recorded: per round, per client, per framework."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import flonnx
from flonnx.exchange.errors import FlonnxError
from flonnx.exchange.registry import Registry
from tests.server.conftest import run_local


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    registry = tmp_path_factory.mktemp("api")
    return registry, run_local(registry, spec="digits-faulty", **{"num-server-rounds": 2})


def test_history_holds_the_same_facts_as_lineage_ls(faulty_run: tuple[Path, str]) -> None:
    registry, run_id = faulty_run

    run = flonnx.history(run_id[:10], registry)

    with Registry(registry) as reg:
        listed = json.loads(json.dumps([v.to_dict() for v in reg.versions(run_id)]))
    aggregates = [v for v in listed if v["kind"] == "aggregate"]
    assert run.run_id == run_id and run.status == "completed"
    assert [r.version_id for r in run.rounds] == [v["version_id"] for v in aggregates]
    assert run.metric("accuracy").tolist() == [v["metrics"]["accuracy"] for v in aggregates]
    assert run.final_version == aggregates[-1]["version_id"]
    clients = {(r.round, c.version_id) for r in run.rounds for c in r.clients}
    expected = {(v["round"], v["version_id"]) for v in listed
                if v["kind"] in ("client_update", "rejected") and v["round"] > 0}
    assert clients == expected


def test_history_separates_accepted_updates_from_rejections_with_reasons(
    faulty_run: tuple[Path, str],
) -> None:
    registry, run_id = faulty_run

    first = flonnx.history(run_id, registry).rounds[0]

    rejected = {c.client: c.reason for c in first.clients if not c.accepted}
    assert set(rejected) == {"partition-4", "partition-5"}
    assert "injected failure" in rejected["partition-4"]
    assert "non-finite values" in rejected["partition-5"]
    accepted = [c for c in first.clients if c.accepted]
    counts = {fw: stats["updates"] for fw, stats in first.by_framework.items()}
    assert sum(counts.values()) == len(accepted) == 4
    for framework, stats in first.by_framework.items():
        losses = [c.metrics["train-loss"] for c in accepted if c.framework == framework]
        assert stats["train-loss"] == pytest.approx(float(np.mean(losses)))


def test_spec_from_keywords_validates_like_a_file() -> None:
    spec = flonnx.spec(model="mlp-30-16-2", data="breast-cancer", task="binary", clients=3,
                       frameworks="torch:1,jax:1,sklearn:1", partition="dirichlet:0.5", rounds=2)

    assert (spec.clients, spec.framework_mix, spec.data and spec.data.partition) == (
        3, "torch:1,jax:1,sklearn:1", "dirichlet:0.5")
    with pytest.raises(FlonnxError, match="key 'frameworks': counts sum to 4 but clients is 3"):
        flonnx.spec(model="mlp-30-16-2", data="breast-cancer", clients=3, frameworks="torch:4")
    with pytest.raises(FlonnxError, match="key 'data.partition': 'dirichlet' is not one of"):
        flonnx.load_spec("hospitals", partition="dirichlet")
