"""Mistakes in what a run asks for are one line and exit 1, before the simulation engine starts.

Flower's simulation engine is replaced by a tripwire (``engine``): a check that ran too late, or not at
all, would reach it. Registries are made by hand (one run, no rounds), so nothing here trains.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flonnx.cli import app
from flonnx.exchange.lineage import VersionKind, VersionRecord
from flonnx.exchange.registry import Registry
from flonnx.exchange.spec import parse_spec
from flonnx.server.settings import Settings
from tests.tiny_models import gemm_mlp


class EngineStarted(Exception):
    """The simulation engine was about to start."""


@pytest.fixture()
def engine(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The run-config overrides of every simulation that was about to start (it never does)."""
    import flonnx.simulations.runner as runner

    calls: list[dict[str, Any]] = []

    def tripwire(spec: Any, *, overrides: dict[str, Any] | None = None, **kwargs: Any) -> list[str]:
        calls.append(dict(overrides or {}))
        raise EngineStarted

    monkeypatch.setattr(runner, "simulate", tripwire)
    return calls


def _flonnx(*args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit | EngineStarted):
        raise result.exception
    return result.exit_code, result.output.strip().splitlines()


def _refused(*args: str) -> str:
    """The one line ``flonnx ARGS`` printed, checking that it exited 1 without a traceback."""
    code, lines = _flonnx(*args)
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def _registry_with_run(root: Path, strategy: str = "fedavg", *, rounds: int = 1) -> tuple[str, str]:
    """A registry with one run of a 6-client spec and ``rounds`` committed rounds: (run id, head)."""
    spec = parse_spec({"model": "digits-mlp", "clients": 6, "rounds": 5}, source="test")
    settings = Settings(spec=spec.for_strategy(strategy, {}), registry=str(root), min_available_nodes=6)
    definition, weights = gemm_mlp(4, 8, 2)
    with Registry(root) as reg:
        run_id = reg.create_run(spec.name, 0, settings.to_json())
        reg.put_definition(definition)
        head = VersionRecord(kind=VersionKind.INITIAL, round=0, definition_id=definition.id,
                             weights_id=reg.put_weights(weights))
        reg.commit(run_id, [head], head_round=0, head=head.version_id, state_id=reg.put_state({}, {}))
        for rnd in range(1, rounds + 1):
            head = VersionRecord(kind=VersionKind.AGGREGATE, round=rnd, definition_id=definition.id,
                                 weights_id=head.weights_id, parents=(head.version_id,), strategy=strategy)
            reg.commit(run_id, [head], head_round=rnd, head=head.version_id,
                       state_id=reg.put_state({}, {}))
    return run_id, head.version_id


@pytest.mark.parametrize(("args", "message"), [
    (["--min-train-nodes", "9"], "key 'min-train-nodes': 9 is more than the 6 clients; allowed: 1 to 6"),
    (["--min-train-nodes", "0"], "key 'min-train-nodes': must be at least 1, got 0"),
    (["--fraction-train", "0"], "key 'fraction-train': expected a number in (0.0, 1.0], got 0.0"),
    (["--fraction-train", "1.5"], "key 'fraction-train': expected a number in (0.0, 1.0], got 1.5"),
    (["--strategy", "fedadam", "--strategy-config", "beta-1=1"],
     "strategy fedadam: beta-1=1 is out of range; allowed: [0, 1)"),
    (["--strategy", "fedyogi", "--strategy-config", "beta-2=1.5"],
     "strategy fedyogi: beta-2=1.5 is out of range; allowed: [0, 1)"),
    (["--strategy", "fedadagrad", "--strategy-config", "eta=nan"],
     "strategy fedadagrad: eta=nan is out of range; allowed: [0, inf)"),
    (["--strategy", "fedprox", "--strategy-config", "proximal-mu=-0.1"],
     "strategy fedprox: proximal-mu=-0.1 is out of range; allowed: [0, inf)"),
    (["--strategy", "krum", "--strategy-config", "num-malicious-nodes=2"],
     "strategy krum: num-malicious-nodes=2 needs at least 2*2+3 = 7 updates a round, but 6 clients are "
     "sampled a round; allowed: 0 to 1"),
    (["--strategy", "bulyan", "--strategy-config", "num-malicious-nodes=1"],
     "strategy bulyan: num-malicious-nodes=1 needs at least 4*1+3 = 7 updates a round, but 6 clients "
     "are sampled a round; allowed: 0 to 0"),
    (["--strategy", "fedavg", "--strategy", "multikrum", "--strategy-config",
      "multikrum.num-malicious-nodes=3"], "strategy multikrum: num-malicious-nodes=3 needs at least"),
])
def test_simulate_refuses_before_the_engine_starts(
    args: list[str], message: str, engine: list[dict[str, Any]], tmp_path: Path,
) -> None:
    line = _refused("simulate", "--registry", str(tmp_path / "runs"), *args)

    assert message in line
    assert engine == []


def test_simulate_accepts_the_edges_of_the_ranges(engine: list[dict[str, Any]], tmp_path: Path) -> None:
    code, _ = _flonnx("simulate", "--registry", str(tmp_path / "runs"), "--min-train-nodes", "6",
                      "--fraction-train", "1", "--strategy", "krum", "--strategy-config",
                      "num-malicious-nodes=1")

    assert code == 1 and len(engine) == 1  # the tripwire, not a refusal


def test_min_train_nodes_is_checked_against_a_column_partitioned_federation(
    engine: list[dict[str, Any]], tmp_path: Path,
) -> None:
    data = tmp_path / "sites.csv"
    data.write_text("site,a,b,y\n" + "".join(f"s{i % 3},{i % 7},{i % 5},{i % 2}\n" for i in range(60)))
    base = ["simulate", "--data", str(data), "--label", "y", "--model", "mlp-2-4-2", "--partition",
            "column:site", "--registry", str(tmp_path / "runs")]

    line = _refused(*base, "--min-train-nodes", "4")
    code, _ = _flonnx(*base, "--min-train-nodes", "3")

    assert line == "error: min-train-nodes=4 is out of range: the federation has 3 nodes; allowed: 1 to 3"
    assert code == 1 and len(engine) == 1


@pytest.mark.parametrize(("value", "message"), [
    ("7", "min-train-nodes=7 is out of range: the federation has 6 nodes; allowed: 1 to 6"),
    ("0", "min-train-nodes=0 is out of range; allowed: 1 to 6"),
])
def test_resume_refuses_min_train_nodes_outside_the_federation(
    value: str, message: str, engine: list[dict[str, Any]], tmp_path: Path,
) -> None:
    run_id, _ = _registry_with_run(tmp_path / "runs")

    line = _refused("resume", run_id, "--min-train-nodes", value, "--registry", str(tmp_path / "runs"))

    assert line == f"error: {message}"
    assert engine == []


def test_resume_passes_a_new_min_train_nodes_to_the_run(
    engine: list[dict[str, Any]], tmp_path: Path,
) -> None:
    run_id, _ = _registry_with_run(tmp_path / "runs")

    code, _ = _flonnx("resume", run_id[:12], "--min-train-nodes", "3", "--registry", str(tmp_path / "runs"))

    assert code == 1 and len(engine) == 1
    assert (engine[0]["resume"], engine[0]["min-train-nodes"]) == (run_id, 3)


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project directory holding ``flonnx_test_ema.py`` (a strategy), not on ``sys.path``."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "flonnx_test_ema.py").write_text(textwrap.dedent("""
        from flwr.serverapp.strategy import FedAvg

        class Ema(FedAvg):
            def __init__(self, decay: float = 0.5, fraction_train: float = 1.0,
                         fraction_evaluate: float = 1.0, min_train_nodes: int = 2,
                         min_evaluate_nodes: int = 2, min_available_nodes: int = 2) -> None:
                super().__init__(fraction_train=fraction_train, fraction_evaluate=fraction_evaluate,
                                 min_train_nodes=min_train_nodes, min_evaluate_nodes=min_evaluate_nodes,
                                 min_available_nodes=min_available_nodes)
                self.decay = decay
        """))
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(folder))])
    monkeypatch.delitem(sys.modules, "flonnx_test_ema", raising=False)
    yield folder
    sys.modules.pop("flonnx_test_ema", None)


def test_a_custom_strategy_is_imported_from_the_current_directory(
    project: Path, engine: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(project)

    code, _ = _flonnx("simulate", "--strategy", "flonnx_test_ema:Ema", "--strategy-config", "decay=0.9",
                      "--registry", str(project / "runs"))

    assert code == 1 and len(engine) == 1  # imported and built: the engine was about to start
    assert sys.modules["flonnx_test_ema"].__file__ == str(project / "flonnx_test_ema.py")


def test_a_custom_strategy_elsewhere_is_one_line(
    project: Path, engine: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)

    line = _refused("simulate", "--strategy", "flonnx_test_ema:Ema", "--registry", str(tmp_path / "runs"))

    assert line == "error: cannot import strategy flonnx_test_ema:Ema: No module named 'flonnx_test_ema'"
    assert engine == [] and str(tmp_path) not in sys.path


def test_replay_of_a_run_whose_strategy_cannot_be_imported_is_one_line(tmp_path: Path) -> None:
    run_id, _ = _registry_with_run(tmp_path / "runs", "flonnx_test_gone:Gone", rounds=2)

    line = _refused("lineage", "replay", run_id, "--registry", str(tmp_path / "runs"))

    assert line == ("error: cannot import strategy flonnx_test_gone:Gone: No module named "
                    "'flonnx_test_gone'")


def test_resume_into_a_read_only_registry_is_one_line_before_the_engine(tmp_path: Path) -> None:
    from tests.unprivileged import cli_without_engine, run, without_dac_override

    registry = tmp_path / "runs"
    run_id, _ = _registry_with_run(registry)
    for path in (registry, *registry.rglob("*")):
        path.chmod(0o555 if path.is_dir() else 0o444)

    done = run(without_dac_override(cli_without_engine(["resume", run_id, "--registry", str(registry)])))

    assert done.returncode == 1, done.stdout + done.stderr
    assert (done.stdout + done.stderr).strip().splitlines() == [
        f"error: cannot write the registry at {registry}: permission denied"]
