"""Progress shown while a federation runs: one line per round, a summary table at the end."""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table

from server.replies import Rejection

__all__ = ["ConsoleReporter", "Reporter", "RoundSummary", "wide_console"]


def wide_console(*, stderr: bool = False) -> Console:
    """A console that does not squeeze tables to 80 columns when output goes to a file or pipe."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(highlight=False, stderr=stderr, width=None if stream.isatty() else 160)


@dataclass
class RoundSummary:
    """What happened in one round."""

    round: int
    total_rounds: int
    sampled: int
    frameworks: list[str]  # of the accepted updates
    rejected: list[Rejection]
    metrics: dict[str, float]
    version_id: str
    seconds: float
    extra: dict[str, float] = field(default_factory=dict)


class Reporter:
    """Receives progress events; the base class ignores them."""

    def start(self, run_id: str, scenario: str, initial_version: str, metrics: dict[str, float],
              resumed_from: int | None = None) -> None:
        """The run is registered and its starting version evaluated (``resumed_from``: its round)."""

    def round(self, summary: RoundSummary) -> None:
        """A round was committed."""

    def finish(self, run_id: str, history: list[RoundSummary]) -> None:
        """The last round was committed."""


class ConsoleReporter(Reporter):
    """Rich output on the terminal (plain lines when not a TTY)."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or wide_console()

    def start(self, run_id: str, scenario: str, initial_version: str, metrics: dict[str, float],
              resumed_from: int | None = None) -> None:
        """Print the run id and the starting version."""
        what = "initial version" if resumed_from is None else f"resuming after round {resumed_from} from"
        self.console.print(
            f"[bold]run {run_id}[/] · scenario {scenario} · {what} {initial_version[:12]} · "
            f"accuracy {metrics.get('accuracy', float('nan')):.4f}",
            soft_wrap=True,
        )

    def round(self, summary: RoundSummary) -> None:
        """Print one line for the round, and its rejections."""
        mix = ", ".join(f"{fw} {n}" for fw, n in sorted(Counter(summary.frameworks).items()))
        line = (
            f"round {summary.round}/{summary.total_rounds} · replies {len(summary.frameworks)}/"
            f"{summary.sampled} ({mix}) · accuracy {summary.metrics.get('accuracy', float('nan')):.4f}"
            f" · loss {summary.metrics.get('loss', float('nan')):.4f} · {summary.seconds:.1f}s · "
            f"version {summary.version_id[:12]}"
        )
        self.console.print(line, soft_wrap=True)
        for rejection in summary.rejected:
            self.console.print(f"  [yellow]rejected[/] {rejection.client}: {rejection.reason}",
                               soft_wrap=True)

    def finish(self, run_id: str, history: list[RoundSummary]) -> None:
        """Print the summary table and the final version id."""
        table = Table(title=f"run {run_id}")
        for column in ("round", "replies", "rejected", "accuracy", "loss", "seconds", "version"):
            table.add_column(column, justify="right" if column != "version" else "left")
        for s in history:
            table.add_row(
                str(s.round), str(len(s.frameworks)), str(len(s.rejected)),
                f"{s.metrics.get('accuracy', float('nan')):.4f}",
                f"{s.metrics.get('loss', float('nan')):.4f}", f"{s.seconds:.1f}", s.version_id[:12],
            )
        self.console.print(table)
        if history:
            self.console.print(f"final version: [bold]{history[-1].version_id}[/]")
