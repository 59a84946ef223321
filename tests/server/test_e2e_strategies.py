"""End to end on Flower's Simulation Engine: every strategy, resume, replay, lineage of failures.

Ray costs ~20 s per start, so one simulation runs all strategies (one registry run each), one
``flonnx resume`` continues three of them, and one simulation runs the faulty scenario. Each goes
through the CLI in a subprocess: Ray is started at most once per process.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from flonnx.exchange.lineage import VersionKind
from flonnx.exchange.registry import Registry
from flonnx.exchange.spec import assign_frameworks, load_spec
from flonnx.server.settings import Settings
from flonnx.server.strategies import (
    AGGREGATOR_SCALE_BITS,
    STREAMING,
    build_strategy,
    strategy_names,
)
from tests.server.conftest import run_local
from tests.server.test_strategies import CONFIGS

pytestmark = pytest.mark.e2e
Cli = Callable[..., subprocess.CompletedProcess[str]]
RESUMED = ("fedavg", "fedadam", "fedavgm")
EXTRA = {"fedavgm": {"server-momentum": "0.9"}}


@pytest.fixture(scope="module")
def all_strategies(cli: Cli, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    registry = tmp_path_factory.mktemp("all-strategies")
    args = ["simulate", "digits-mixed", "--rounds", "2", "--registry", str(registry)]
    for name in strategy_names():
        args += ["--strategy", name]
        for key, value in {**CONFIGS.get(name, {}), **EXTRA.get(name, {})}.items():
            args += ["--strategy-config", f"{name}.{key}={value}"]
    cli(*args)
    with Registry(registry) as reg:
        runs = {info.config["spec"]["strategy"]: info.run_id for info in reg.runs()}
    return registry, runs


def test_every_strategy_completes_two_rounds(all_strategies: tuple[Path, dict[str, str]]) -> None:
    registry, runs = all_strategies
    with Registry(registry) as reg:
        done = {name: (reg.run(run).status, reg.run(run).last_round) for name, run in runs.items()}

    assert done == {name: ("completed", 2) for name in strategy_names()}


def test_every_aggregate_records_its_strategy_and_full_config(
    all_strategies: tuple[Path, dict[str, str]],
) -> None:
    registry, runs = all_strategies
    defaults = Settings(min_available_nodes=6).strategy_defaults()
    with Registry(registry) as reg:
        for name, run in runs.items():
            expected = build_strategy(name, {**CONFIGS.get(name, {}), **EXTRA.get(name, {})},
                                      defaults).config
            aggregates = [v.record for v in reg.versions(run) if v.record.kind is VersionKind.AGGREGATE]
            # a streamed round also records the scale it was aggregated at (docs/strategies.md)
            scales = [a.strategy_config.get(AGGREGATOR_SCALE_BITS) for a in aggregates]
            recorded = [{k: v for k, v in a.strategy_config.items() if k != AGGREGATOR_SCALE_BITS}
                        for a in aggregates]
            assert [(a.strategy, c) for a, c in zip(aggregates, recorded, strict=True)] == [
                (name, expected)] * 2
            assert all((s is not None) == (name in STREAMING) for s in scales), (name, scales)


def test_fedprox_rounds_reject_the_sklearn_nodes_with_a_reason(
    all_strategies: tuple[Path, dict[str, str]],
) -> None:
    registry, runs = all_strategies
    with Registry(registry) as reg:
        rejected = [v.record for v in reg.versions(runs["fedprox"])
                    if v.record.kind is VersionKind.REJECTED]

    spec = load_spec("digits-mixed")
    assert spec.clients is not None
    sklearn_nodes = [fw for fw in assign_frameworks(spec, spec.clients) if fw == "sklearn"]
    assert {r.framework for r in rejected} == {"sklearn"} and len(rejected) == 2 * len(sklearn_nodes)
    assert all("cannot add FedProx's proximal term" in r.reason for r in rejected)


def test_lineage_verify_accepts_every_run(cli: Cli, all_strategies: tuple[Path, dict[str, str]]) -> None:
    registry, _ = all_strategies

    out = cli("lineage", "verify", "--all", "--registry", str(registry))

    assert "ok" in out.stdout


def test_resume_to_four_rounds_equals_four_rounds_straight_and_replays(
    cli: Cli, all_strategies: tuple[Path, dict[str, str]], tmp_path: Path,
) -> None:
    registry, runs = all_strategies
    cli("resume", *(runs[n] for n in RESUMED), "--rounds", "4", "--registry", str(registry))
    straight = {n: run_local(tmp_path, strategy=n, **{"num-server-rounds": 4},
                             **{"strategy-config": " ".join(f"{k}={v}" for k, v in
                                                            EXTRA.get(n, {}).items())})
                for n in RESUMED}

    with Registry(registry) as reg, Registry(tmp_path) as ref:
        resumed_heads = {n: reg.heads(runs[n]) for n in RESUMED}
        straight_heads = {n: ref.heads(straight[n]) for n in RESUMED}
    assert resumed_heads == straight_heads
    for name in RESUMED:
        out = cli("lineage", "replay", runs[name], "--registry", str(registry))
        assert out.stdout.count(": ok") == 4 and f"bit for bit with {name}" in out.stdout


def test_resume_refuses_a_run_that_is_already_complete(
    cli: Cli, all_strategies: tuple[Path, dict[str, str]],
) -> None:
    registry, runs = all_strategies

    out = cli("resume", runs["krum"], "--registry", str(registry), check=False)

    assert out.returncode == 1 and "already has 2 of 2 rounds" in out.stderr


def test_faulty_scenario_completes_and_shows_both_failures(cli: Cli, tmp_path: Path) -> None:
    first = cli("simulate", "digits-faulty", "--registry", str(tmp_path))
    cli("simulate", "digits-faulty", "--registry", str(tmp_path / "again"))

    listing = cli("lineage", "ls", "--registry", str(tmp_path))
    records = json.loads(cli("lineage", "ls", "--json", "--registry", str(tmp_path)).stdout)
    rejected = [r for r in records if r["kind"] == "rejected"]
    shown = json.loads(cli("lineage", "show", rejected[1]["version_id"], "--registry",
                           str(tmp_path)).stdout)

    assert [(r["round"], r["client"]) for r in rejected] == [
        (1, "partition-4"), (1, "partition-5"), (2, "partition-4"), (2, "partition-5")]
    assert listing.stdout.count("rejected") == 4 and "RuntimeError" in listing.stdout
    assert "non-finite values" in shown["reason"]
    # one canonical line per failure (no Ray traceback, pids or addresses): reproducible ids
    assert rejected[0]["reason"] == ("client failed: RuntimeError: injected failure: this node "
                                     "crashes in every round (fault=raise)")
    again = json.loads(cli("lineage", "ls", "--json", "--registry", str(tmp_path / "again")).stdout)
    assert [r["version_id"] for r in records] == [r["version_id"] for r in again]
    assert [r["round"] for r in records if r["kind"] == "aggregate"] == [1, 2]
    # the terminal: one line per refusal, no traceback (Flower logs each client failure with two)
    printed = (first.stdout + first.stderr).splitlines()
    assert not [line for line in printed if "Traceback" in line or "ERROR" in line]
    assert sum("rejected partition-4: client failed: RuntimeError" in line for line in printed) == 2
    assert len(printed) < 60, "\n".join(printed)
