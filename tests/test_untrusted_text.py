"""Untrusted text is never markup: what a user typed, a client sent or a registry holds prints as it is.

Rich reads ``[...]`` as markup: ``[/x]`` crashed the command with ``MarkupError`` and ``[bold]x``
lost its brackets; ANSI escapes and control characters went straight to the terminal. Every such
string passes through :func:`flonnx.server.progress.literal`, on the command line and in the run
progress alike.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

import flonnx.simulations.runner as runner
from flonnx import cli
from flonnx.cli import app
from flonnx.exchange.lineage import VersionKind, VersionRecord
from flonnx.exchange.registry import Registry
from flonnx.server.progress import ConsoleReporter, RoundSummary, literal
from flonnx.server.replies import Rejection

HOSTILE = "[/bold] \x1b[2J\x1b]0;owned\x07 [bold]boom[/bold]\r\nnext \u202eline"
#: How :data:`HOSTILE` must appear: brackets kept, control characters as escapes, on one line.
SHOWN = "[/bold] \\x1b[2J\\x1b]0;owned\\x07 [bold]boom[/bold]\\r\\nnext \\u202eline"


def _assert_literal(output: str) -> None:
    assert SHOWN in output
    assert not any(ch in output for ch in "\x1b\x07\r\u202e")


@pytest.fixture(autouse=True)
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    """Consoles wide enough that no line wraps, and no simulation engine: nothing here may start one."""
    monkeypatch.setattr(cli, "console", Console(highlight=False, width=500))
    monkeypatch.setattr(cli, "err", Console(highlight=False, width=500, stderr=True))

    def tripwire(*args: object, **kwargs: object) -> list[str]:
        raise AssertionError("the simulation engine was started")

    monkeypatch.setattr(runner, "simulate", tripwire)


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def _error(result: Any) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "MarkupError" not in result.output
    (line,) = result.output.strip().splitlines()
    return line


@pytest.fixture()
def hostile_registry(tmp_path: Path) -> tuple[Path, str]:
    """A registry whose run name, client id, metric name and refusal reason are hostile text."""
    with Registry(tmp_path / "registry") as reg:
        run_id = reg.create_run(HOSTILE, 0, {})
        initial = VersionRecord(VersionKind.INITIAL, 0, "", "")
        update = VersionRecord(VersionKind.CLIENT_UPDATE, 1, "", "", parents=(initial.version_id,),
                               client=HOSTILE, framework=HOSTILE, metrics={HOSTILE: 1.0})
        rejected = VersionRecord(VersionKind.REJECTED, 1, "", "", parents=(initial.version_id,),
                                 client="site-b", reason=HOSTILE)
        reg.commit(run_id, [initial, update, rejected], head_round=0, head=initial.version_id)
    return tmp_path / "registry", run_id


def test_literal_keeps_markup_and_shows_control_characters() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=500)

    console.print(f"[red]error:[/] {literal(HOSTILE)}", soft_wrap=True)

    printed = console.file.getvalue()  # type: ignore[attr-defined]
    assert Console().render_str(literal(HOSTILE)).plain == SHOWN
    assert printed.count("\n") == 1 and "\x1b]0;owned" not in printed and "\r" not in printed


def test_a_spec_name_that_closes_a_tag_is_an_error_that_quotes_it() -> None:
    assert _error(_cli("simulate", "[/x]")).startswith("error: no spec file '[/x]' and no built-in")


def test_a_spec_name_that_opens_a_tag_keeps_its_brackets() -> None:
    assert _error(_cli("simulate", "[bold]x")).startswith("error: no spec file '[bold]x' and no built-in")


def test_a_strategy_parameter_that_closes_a_tag_is_an_error_that_quotes_it(tmp_path: Path) -> None:
    result = _cli("simulate", "--strategy-config", "[/x]=1", "--registry", str(tmp_path / "r"))

    assert _error(result) == "error: strategy 'fedavg' has no parameter '[/x]'; valid: (none)"


def test_a_version_prefix_that_closes_a_tag_is_an_error_that_quotes_it(
    hostile_registry: tuple[Path, str],
) -> None:
    registry, _ = hostile_registry

    assert _error(_cli("lineage", "show", "[/x]", "--registry", str(registry))) == (
        f"error: no version matches '[/x]' in {registry}")


def test_a_registry_path_with_brackets_is_named_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)

    for command in (["runs"], ["lineage", "ls"], ["nodes"]):
        line = _error(_cli(*command, "--registry", "exp[/old]"))
        assert line.startswith("error: no flonnx registry at exp[/old] (expected exp[/old]/registry.db)")


def test_an_argument_with_terminal_escapes_is_shown_escaped(hostile_registry: tuple[Path, str]) -> None:
    registry, _ = hostile_registry

    line = _error(_cli("lineage", "show", "\x1b[31mred\x1b[0m", "--registry", str(registry)))

    assert line == f"error: no version matches '\\x1b[31mred\\x1b[0m' in {registry}"


def test_lineage_ls_prints_a_hostile_reason_client_and_metric_literally(
    hostile_registry: tuple[Path, str],
) -> None:
    registry, _ = hostile_registry

    result = _cli("lineage", "ls", "--registry", str(registry))

    assert result.exit_code == 0, result.output
    _assert_literal(result.output)
    reason = next(line for line in result.output.splitlines() if "site-b" in line)
    assert f"reason: {SHOWN}" in reason
    client = next(line for line in result.output.splitlines() if " client_update " in line)
    assert client.count(SHOWN) == 3  # framework, client, and the metric's name


def test_runs_prints_a_hostile_run_name_literally(hostile_registry: tuple[Path, str]) -> None:
    registry, _ = hostile_registry

    result = _cli("runs", "--registry", str(registry))

    assert result.exit_code == 0, result.output
    _assert_literal(result.output)


def test_the_run_progress_prints_client_text_literally() -> None:
    out = io.StringIO()  # not a terminal: rich adds no escape sequence of its own
    reporter = ConsoleReporter(Console(file=out, width=500))
    summary = RoundSummary(round=1, total_rounds=2, sampled=2, frameworks=[HOSTILE],
                           rejected=[Rejection(HOSTILE, 1001, HOSTILE)], metrics={"accuracy": 0.5},
                           version_id="ab" * 32, seconds=0.1)

    reporter.start("run-1", HOSTILE, "cd" * 32, {"accuracy": 0.25})
    reporter.round(summary)
    reporter.note(HOSTILE)
    reporter.sites({HOSTILE: {"accuracy": 0.5}}, {HOSTILE: HOSTILE},
                   {"metric": "accuracy", "worst": 0.5, "worst_site": HOSTILE, "mean": 0.5, "spread": 0.0})
    reporter.finish("run-1", [summary])

    text = out.getvalue()
    assert text.count(SHOWN) == 9, text  # scenario, framework mix, rejection (2), note, sites (4)
    _assert_literal(text)
    assert f"  rejected {SHOWN}: {SHOWN}\n" in text
