"""``flonnx nodes``: one row per node the registry recorded, its counts, last sighting and refusals.

The summary itself is checked on hand-made histories (:func:`summarize_nodes` is a pure function);
the command on a real in-process federation (:class:`LocalGrid`) with two good nodes, one whose data
file is missing (refused at the handshake and in every round) and one whose client id is hostile
terminal text, plus a second, hand-recorded run whose refusal reason is hostile too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from flonnx import cli
from flonnx.cli import app
from flonnx.client.app import app as client_app
from flonnx.exchange.lineage import VersionKind, VersionRecord
from flonnx.exchange.registry import Registry, RunInfo, StoredVersion
from flonnx.exchange.spec import parse_spec
from flonnx.server.federation import Federation
from flonnx.server.nodes import summarize_nodes
from flonnx.server.progress import Reporter
from flonnx.server.settings import Settings
from tests.server.local_grid import LocalGrid

ROUNDS = 2
FEATURES = ("age", "bmi", "chol", "bp")
LABEL = "diagnosis"
HOSTILE = "\x1b[31mevil\x1b[0m [red]site[/red]"
HOSTILE_REASON = "\x1b]0;owned\x07 [bold]boom[/bold]\r\nsecond line"
JSON_FIELDS = {"client", "framework", "framework_version", "frameworks", "flonnx_version", "last_run",
               "last_round", "last_run_created_at", "updates", "refusals", "last_refusal"}


# -- the summary, on hand-made histories ----------------------------------------------------------

def _run(run_id: str, created_at: str = "2025-01-01T00:00:00+00:00") -> RunInfo:
    return RunInfo(run_id, created_at, "spec", 0, {}, "completed", None, None)


def _update(client: str, rnd: int, framework: str = "torch", version: str = "2.0",
            env: dict[str, str] | None = None) -> VersionRecord:
    return VersionRecord(VersionKind.CLIENT_UPDATE, rnd, "d", "w", framework=framework,
                         framework_version=version, client=client, environment=env or {})


def _rejected(client: str, rnd: int, reason: str, framework: str = "") -> VersionRecord:
    return VersionRecord(VersionKind.REJECTED, rnd, "d", "", framework=framework, client=client,
                         reason=reason)


def _history(*runs: tuple[RunInfo, list[VersionRecord]]) -> list[tuple[RunInfo, list[StoredVersion]]]:
    return [(run, [StoredVersion(run.run_id, r.version_id, r, seq, run.created_at)
                   for seq, r in enumerate(records)]) for run, records in runs]


def test_counts_updates_and_refusals_per_node_across_runs_sorted_by_client() -> None:
    first, second = _run("r1", "2025-01-01T00:00:00+00:00"), _run("r2", "2025-02-01T00:00:00+00:00")
    history = _history(
        (first, [VersionRecord(VersionKind.INITIAL, 0, "d", "w"), _update("b", 1), _update("a", 1),
                 _rejected("c", 1, "client refused to train: old"),
                 VersionRecord(VersionKind.AGGREGATE, 1, "d", "w", strategy="fedavg")]),
        (second, [_rejected("c", 0, "refused at the handshake: new"), _update("a", 1),
                  _update("a", 2)]),
    )

    nodes = {n.client: n for n in summarize_nodes(history)}

    assert list(nodes) == ["a", "b", "c"]  # initial and aggregate versions belong to no node
    assert [(n.updates, n.refusals) for n in nodes.values()] == [(3, 0), (1, 0), (0, 2)]
    assert (nodes["a"].last_run, nodes["a"].last_round, nodes["a"].last_run_created_at) == (
        "r2", 2, "2025-02-01T00:00:00+00:00")
    assert (nodes["b"].last_run, nodes["b"].last_round) == ("r1", 1)
    assert (nodes["c"].last_run, nodes["c"].last_round) == ("r2", 0)
    assert nodes["c"].last_refusal == "refused at the handshake: new"
    assert nodes["a"].last_refusal is None


def test_a_node_that_changed_framework_shows_the_latest_version_and_every_earlier_one() -> None:
    history = _history((_run("r1"), [_update("n", 1, "jax", "0.4"), _update("n", 2, "sklearn", "1.5"),
                                     _rejected("n", 3, "refused", framework=""),
                                     _update("n", 4, "torch", "2.3"), _update("n", 5, "torch", "2.4"),
                                     _rejected("n", 6, "refused", framework="torch")]))

    (node,) = summarize_nodes(history)

    assert (node.framework, node.framework_version) == ("torch", "2.4")
    assert node.frameworks == ("jax", "sklearn", "torch") and node.changed_framework


def test_the_flonnx_version_is_the_latest_updates_and_none_when_not_recorded() -> None:
    history = _history((_run("r1"), [_update("new", 1, env={"flonnx": "0.1"}),
                                     _update("new", 2, env={"flonnx": "0.2"}),
                                     _rejected("new", 3, "refused"),  # rejections carry no environment
                                     _update("old", 1, env={"python": "3.11"}),
                                     _rejected("refuser", 0, "no data")]))

    nodes = {n.client: n for n in summarize_nodes(history)}

    assert nodes["new"].flonnx_version == "0.2"
    assert nodes["old"].flonnx_version is None and nodes["refuser"].flonnx_version is None


def test_an_empty_history_has_no_nodes() -> None:
    assert summarize_nodes([]) == []
    assert summarize_nodes(_history((_run("r1"), [VersionRecord(VersionKind.INITIAL, 0, "d", "w")]))) == []


# -- the command, on a real federation --------------------------------------------------------------

@dataclass(frozen=True)
class Consortium:
    """A registry with a federated run and a hand-recorded second run."""

    registry: Path
    run_id: str
    manual_run: str
    records: list[VersionRecord]
    missing_file: str


def _write(path: Path, seed: int) -> str:
    x = np.random.default_rng(seed).normal(size=(40, len(FEATURES))).round(3)
    rows = [[*map(float, f), int(f[0] + f[1] > 0)] for f in x]
    path.write_text(",".join((*FEATURES, LABEL)) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return str(path)


def _node(client: str, data: str) -> dict[str, Any]:
    return {"client-id": client, "framework": "torch", "data": data, "label": LABEL}


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Consortium:
    pytest.importorskip("torch", reason="the nodes of this federation train with torch")
    folder = tmp_path_factory.mktemp("nodes")
    missing = str(folder / "absent.csv")
    configs = [_node("good-a", _write(folder / "a.csv", 1)), _node("good-b", _write(folder / "b.csv", 2)),
               _node(HOSTILE, _write(folder / "h.csv", 3)), _node("missing-file", missing)]
    spec = parse_spec({"model": "mlp-4-8-2", "task": "binary", "clients": len(configs), "evaluate": "none",
                       "rounds": ROUNDS, "min-train-nodes": 2, "standardize": False})
    settings = Settings(spec=spec, registry=str(folder / "registry"), min_available_nodes=len(configs))
    grid = LocalGrid(client_app, len(configs), node_configs=configs)
    run_id = Federation(grid, settings, Reporter()).run()  # type: ignore[arg-type]  # a Grid by duck typing
    with Registry(folder / "registry") as reg:
        records = [v.record for v in reg.versions(run_id)]
        manual = reg.create_run("manual", 0, {})
        rejected = VersionRecord(VersionKind.REJECTED, 1, records[0].definition_id, "",
                                 client="hand-made", reason=HOSTILE_REASON)
        reg.commit(manual, [rejected])
    return Consortium(folder / "registry", run_id, manual, records, missing)


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(app, ["nodes", *args])


@pytest.fixture()
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    """A console wide enough that no table cell wraps, so a row is one line."""
    monkeypatch.setattr(cli, "console", Console(highlight=False, width=400))


def _json(consortium: Consortium, *args: str) -> dict[str, dict[str, Any]]:
    result = _invoke("--registry", str(consortium.registry), "--json", *args)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [set(row) for row in rows] == [JSON_FIELDS] * len(rows)
    assert [row["client"] for row in rows] == sorted(row["client"] for row in rows)
    return {row["client"]: row for row in rows}


def test_json_lists_every_node_with_its_updates_refusals_and_last_sighting(consortium: Consortium) -> None:
    torch = pytest.importorskip("torch")
    created = {i.run_id: i.created_at for i in Registry(consortium.registry, create=False).runs()}

    rows = _json(consortium)

    assert set(rows) == {"good-a", "good-b", HOSTILE, "missing-file", "hand-made"}
    for client in ("good-a", "good-b", HOSTILE):
        env = next(r.environment for r in reversed(consortium.records) if r.client == client)
        assert rows[client] == {
            "client": client, "framework": "torch", "framework_version": torch.__version__,
            "frameworks": ["torch"], "flonnx_version": env.get("flonnx") or None,
            "last_run": consortium.run_id, "last_round": ROUNDS,
            "last_run_created_at": created[consortium.run_id], "updates": ROUNDS, "refusals": 0,
            "last_refusal": None,
        }
    missing = rows["missing-file"]
    assert (missing["updates"], missing["refusals"]) == (0, 1 + ROUNDS)  # the handshake and every round
    assert (missing["last_run"], missing["last_round"]) == (consortium.run_id, ROUNDS)
    assert missing["last_refusal"] == (f"client refused to train: data file {consortium.missing_file} "
                                       "does not exist")
    assert missing["flonnx_version"] is None
    assert rows["hand-made"]["last_refusal"] == HOSTILE_REASON
    assert rows["hand-made"]["last_run_created_at"] == created[consortium.manual_run]


def test_run_restricts_the_list_to_one_run_by_prefix(consortium: Consortium) -> None:
    rows = _json(consortium, "--run", consortium.manual_run[:-1])

    assert list(rows) == ["hand-made"]
    assert (rows["hand-made"]["last_round"], rows["hand-made"]["refusals"]) == (1, 1)


@pytest.mark.usefixtures("wide")
def test_table_shows_counts_and_the_latest_refusal(consortium: Consortium) -> None:
    created = Registry(consortium.registry, create=False).run(consortium.run_id).created_at

    result = _invoke("--registry", str(consortium.registry), "--run", consortium.run_id[:-1])

    assert result.exit_code == 0, result.output
    line = next(ln for ln in result.output.splitlines() if "missing-file" in ln)
    cells = [c.strip() for c in line.split("│")[1:-1]]
    # its refusals name the framework but not its version; no update recorded a flonnx version
    assert cells[:8] == ["missing-file", "torch", "-", consortium.run_id, str(ROUNDS), created, "0",
                         str(1 + ROUNDS)]
    assert cells[8] == f"client refused to train: data file {consortium.missing_file} does not exist"


@pytest.mark.usefixtures("wide")
def test_table_prints_hostile_client_ids_and_reasons_literally(consortium: Consortium) -> None:
    result = _invoke("--registry", str(consortium.registry))

    assert result.exit_code == 0, result.output
    assert not any(ch in result.output for ch in "\x1b\x07\r")
    assert "\\x1b[31mevil\\x1b[0m [red]site[/red]" in result.output
    assert "\\x1b]0;owned\\x07 [bold]boom[/bold]\\r\\nsecond line" in result.output


def test_an_empty_registry_prints_one_line_and_succeeds(tmp_path: Path) -> None:
    Registry(tmp_path / "empty").close()

    table = _invoke("--registry", str(tmp_path / "empty"))
    listed = _invoke("--registry", str(tmp_path / "empty"), "--json")

    assert table.exit_code == 0 and table.output.strip().splitlines() == [
        f"no nodes recorded in {tmp_path / 'empty'}"]
    assert listed.exit_code == 0 and json.loads(listed.output) == []


def test_a_missing_registry_is_an_error_without_traceback(tmp_path: Path) -> None:
    result = _invoke("--registry", str(tmp_path / "nowhere"))

    assert result.exit_code == 1
    assert "no flonnx registry at" in result.output and "Traceback" not in result.output
