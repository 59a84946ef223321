"""Progress within a round, and replies folded as they arrive, in any order, to the same versions.

In-process federations (no Ray) of four honest sklearn nodes and one that answers with a NaN
(``fault=nan``). On a :class:`PollingGrid` the federation pushes and pulls as it does on Flower's
grids; with an arrival seed, replies come shuffled, a few per pull. The reporters' output (console,
``--quiet``, ``--json``) is read back as a user or a script would.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from flonnx.client.app import make_client_app
from flonnx.exchange.lineage import VersionKind
from flonnx.exchange.registry import Registry
from flonnx.exchange.spec import FederationSpec, parse_spec
from flonnx.server.federation import Federation
from flonnx.server.progress import ConsoleReporter, JsonReporter, QuietReporter, Reporter, RoundProgress
from flonnx.server.settings import Settings
from tests.server.local_grid import LocalGrid, PollingGrid

NODES = 5
ROUNDS = 2
FAULTY = "nan-node"
#: the fields of each ``--json`` event besides ``event`` (documented in JsonReporter and --help)
JSON_FIELDS = {
    "start": {"run_id", "scenario", "initial_version", "metrics", "resumed_from"},
    "progress": {"round", "total_rounds", "received", "sampled", "rejected", "elapsed_s", "eta_s"},
    "round": {"round", "total_rounds", "sampled", "accepted", "frameworks", "rejected", "metrics",
              "version_id", "seconds"},
    "note": {"text"},
    "sites": {"sites", "failed", "summary"},
    "finish": {"run_id", "rounds", "final_version"},
}


def _spec(strategy: str = "fedavg") -> FederationSpec:
    return parse_spec({"model": "digits-mlp", "clients": NODES, "frameworks": f"sklearn:{NODES}",
                       "rounds": ROUNDS, "standardize": False, "data": {"source": "digits"},
                       "strategy": strategy, "train": {"local-epochs": 1}}, source="progress")


def _configs() -> list[dict[str, Any]]:
    configs: list[dict[str, Any]] = [{"partition-id": i, "num-partitions": NODES, "client-id": f"site-{i}"}
                                     for i in range(NODES)]
    configs[2].update({"client-id": FAULTY, "fault": "nan"})
    return configs


def _run(registry: Path, reporter: Reporter, strategy: str = "fedavg",
         arrival_seed: int | None = None, polling: bool = True) -> tuple[str, Any]:
    spec = _spec(strategy)
    app = make_client_app(spec)
    grid = (PollingGrid(app, NODES, node_configs=_configs(), arrival_seed=arrival_seed) if polling
            else LocalGrid(app, NODES, node_configs=_configs()))
    settings = Settings.from_run_config({"registry": str(registry), "min-available-nodes": NODES},
                                        spec=spec)
    return Federation(grid, settings, reporter).run(), grid  # type: ignore[arg-type]


def _versions(registry: Path, run_id: str) -> list[tuple[int, str, str, str, tuple[str, ...]]]:
    with Registry(registry) as reg:
        return [(v.record.round, v.record.kind.value, v.record.client, v.record.version_id,
                 v.record.parents) for v in reg.versions(run_id)]


class _Recorder(Reporter):
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def progress(self, progress: RoundProgress) -> None:
        self.events.append(("progress", progress))

    def round(self, summary: Any) -> None:
        self.events.append(("round", summary))


def test_progress_counts_each_reply_as_it_arrives_and_the_rejected_ones(tmp_path: Path) -> None:
    recorder = _Recorder()

    _run(tmp_path, recorder, arrival_seed=3)

    for rnd in range(1, ROUNDS + 1):
        events = [e for e in recorder.events
                  if (e[1].round if e[0] == "progress" else e[1].round) == rnd]
        progress = [p for kind, p in events if kind == "progress"]
        assert [kind for kind, _ in events] == ["progress"] * NODES + ["round"]
        assert [p.received for p in progress] == list(range(1, NODES + 1))
        assert {(p.sampled, p.total_rounds) for p in progress} == {(NODES, ROUNDS)}
        assert progress[-1].rejected == 1 and progress[-1].eta_s == 0.0
        assert all(a.rejected <= b.rejected for a, b in zip(progress, progress[1:], strict=False))
        assert all(a.elapsed_s <= b.elapsed_s for a, b in zip(progress, progress[1:], strict=False))


@pytest.mark.parametrize("strategy", ["fedavg", "fedmedian"])  # folded as they arrive; held
def test_replies_in_a_shuffled_order_give_the_versions_of_replies_in_client_order(
    tmp_path: Path, strategy: str,
) -> None:
    in_order, _ = _run(tmp_path / "in-order", Reporter(), strategy, polling=False)
    shuffled, grid = _run(tmp_path / "shuffled", Reporter(), strategy, arrival_seed=11)

    sent = [m.metadata.message_id for m in grid.sent if m.metadata.message_id in grid.arrivals]
    assert grid.arrivals != sorted(grid.arrivals, key=sent.index)  # they did come out of order
    assert grid.pulls > ROUNDS + 1  # and over several pulls per exchange
    ids = _versions(tmp_path / "shuffled", shuffled)
    assert ids == _versions(tmp_path / "in-order", in_order)
    assert [k for _, k, c, _, _ in ids if c == FAULTY] == [VersionKind.REJECTED.value] * ROUNDS


def test_json_reporter_writes_one_documented_object_per_line(tmp_path: Path) -> None:
    out = io.StringIO()

    run_id, _ = _run(tmp_path, JsonReporter(out), arrival_seed=5)

    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert all(set(e) == {"event"} | JSON_FIELDS[e["event"]] for e in events)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "finish"
    assert kinds.count("progress") == NODES * ROUNDS and kinds.count("round") == ROUNDS
    rounds = [e for e in events if e["event"] == "round"]
    assert [r["rejected"][0]["client"] for r in rounds] == [FAULTY] * ROUNDS
    assert (events[-1]["run_id"], events[-1]["final_version"]) == (run_id, rounds[-1]["version_id"])


def test_quiet_prints_the_final_version_only_and_a_pipe_shows_no_status_line(tmp_path: Path) -> None:
    quiet, console = io.StringIO(), io.StringIO()

    run_id, _ = _run(tmp_path / "q", QuietReporter(Console(file=quiet, width=200)))
    _run(tmp_path / "c", ConsoleReporter(Console(file=console, width=200)))

    final = _versions(tmp_path / "q", run_id)[-1][3]
    assert quiet.getvalue() == f"final version: {final}\n"
    lines = console.getvalue().splitlines()
    assert sum(line.startswith("round ") for line in lines) == ROUNDS  # a round's line, no status
    assert not any("rejected 0" in line or "left" in line for line in lines)


def test_a_terminal_shows_a_status_line_that_goes_when_the_round_is_committed() -> None:
    out = io.StringIO()
    reporter = ConsoleReporter(Console(file=out, width=200, force_terminal=True))

    reporter.progress(RoundProgress(1, 3, 2, 4, 1, 2.0, 2.0))
    shown = reporter._status is not None  # noqa: SLF001
    reporter.idle()

    assert shown and reporter._status is None  # noqa: SLF001
    assert "replies 2/4 · rejected 1" in out.getvalue()


def test_quiet_and_json_exclude_each_other() -> None:
    from flonnx.cli import app

    result = CliRunner().invoke(app, ["simulate", "--quiet", "--json"])

    assert result.exit_code == 1
    assert "--quiet and --json exclude each other" in result.output
