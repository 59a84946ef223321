"""Progress shown while a federation runs: one line per round, a summary table at the end.

Also the console helpers the command line shares: :func:`wide_console`, and :func:`literal`, through
which every untrusted string (a user's argument, a client's id or reason, anything read from a
registry) passes before rich prints it.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from flonnx.server.replies import Rejection

__all__ = ["HEADLINE_METRICS", "ConsoleReporter", "Reporter", "RoundSummary", "headline", "literal",
           "wide_console"]

#: Metrics shown per round, in this order, when the task reports them.
HEADLINE_METRICS = ("accuracy", "macro-f1", "roc-auc", "r2", "mse", "mae", "loss")


def headline(metrics: dict[str, float]) -> str:
    """``accuracy 0.9499 · loss 0.1832`` for the metrics a task reported."""
    return " · ".join(f"{k} {metrics[k]:.4f}" for k in HEADLINE_METRICS if k in metrics)


def literal(text: object) -> str:
    r"""Untrusted text for rich (a line, a table cell): printed as it is, never read as markup.

    ``rich.markup.escape`` alone keeps ``[red]`` literal but lets ANSI escape sequences, carriage
    returns, newlines and bidi overrides reach the terminal; those are shown as ``\x1b``, ``\r``,
    ``\n``, ``\u202e``, so a client cannot forge a line or recolour one, and two ids that differ
    only in invisible characters look different.
    """
    return escape("".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
                          for ch in str(text)))


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

    def note(self, text: str) -> None:
        """Something worth a line (e.g. a node that refused at the handshake)."""

    def sites(self, sites: dict[str, dict[str, float]], failed: dict[str, str],
              summary: dict[str, Any]) -> None:
        """Each node's metrics of the final version on its own rows."""

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
            f"[bold]run {literal(run_id)}[/] · {literal(scenario)} · {what} "
            f"{literal(initial_version[:12])} · "
            f"{headline(metrics) or 'no evaluation data'}",
            soft_wrap=True,
        )

    def note(self, text: str) -> None:
        """Print ``text`` (literally: it may come from a client)."""
        self.console.print(f"  [yellow]note[/] {literal(text)}", soft_wrap=True)

    def sites(self, sites: dict[str, dict[str, float]], failed: dict[str, str],
              summary: dict[str, Any]) -> None:
        """A table of per-site metrics (first 20 sites) and the worst/mean/spread line."""
        if not sites and not failed:
            return
        shown = [k for k in HEADLINE_METRICS if any(k in m for m in sites.values())]
        table = Table(title="final model on each site's own data")
        for column in ("site", *shown):
            table.add_column(column, justify="left" if column == "site" else "right")
        for key in sorted(sites)[:20]:
            table.add_row(literal(key), *(f"{sites[key].get(k, float('nan')):.4f}" for k in shown))
        if len(sites) > 20:
            table.add_row(f"… {len(sites) - 20} more", *("" for _ in shown))
        self.console.print(table)
        if "worst" in summary:
            self.console.print(
                f"sites: {summary['metric']} worst {summary['worst']:.4f} "
                f"({literal(summary['worst_site'])}) · mean {summary['mean']:.4f} · spread "
                f"{summary['spread']:.4f}", soft_wrap=True)
        for key, reason in sorted(failed.items()):
            self.console.print(f"  [yellow]site {literal(key)} did not evaluate:[/] {literal(reason)}",
                               soft_wrap=True)

    def round(self, summary: RoundSummary) -> None:
        """Print one line for the round, and its rejections."""
        mix = ", ".join(f"{fw} {n}" for fw, n in sorted(Counter(summary.frameworks).items()))
        line = (
            f"round {summary.round}/{summary.total_rounds} · replies {len(summary.frameworks)}/"
            f"{summary.sampled} ({literal(mix)}) · {headline(summary.metrics)} · "
            f"{summary.seconds:.1f}s · version {literal(summary.version_id[:12])}"
        )
        self.console.print(line, soft_wrap=True)
        for rejection in summary.rejected:
            self.console.print(f"  [yellow]rejected[/] {literal(rejection.client)}: "
                               f"{literal(rejection.reason)}", soft_wrap=True)

    def finish(self, run_id: str, history: list[RoundSummary]) -> None:
        """Print the summary table and the final version id."""
        table = Table(title=f"run {literal(run_id)}")
        shown = [k for k in HEADLINE_METRICS if history and k in history[-1].metrics]
        for column in ("round", "replies", "rejected", *shown, "seconds", "version"):
            table.add_column(column, justify="right" if column != "version" else "left")
        for s in history:
            table.add_row(
                str(s.round), str(len(s.frameworks)), str(len(s.rejected)),
                *(f"{s.metrics.get(k, float('nan')):.4f}" for k in shown),
                f"{s.seconds:.1f}", literal(s.version_id[:12]),
            )
        self.console.print(table)
        if history:
            self.console.print(f"final version: [bold]{literal(history[-1].version_id)}[/]")
