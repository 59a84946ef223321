"""Progress shown while a federation runs: one line per round, a summary table at the end.

Three reporters for the command line: :class:`ConsoleReporter` (rich; on a terminal also a
transient status line while a round waits for its replies), :class:`QuietReporter` (the final
version only) and :class:`JsonReporter` (one JSON object per event on stdout, for scripts; the
fields are listed there and in ``flonnx simulate --help``).

Also the console helpers the command line shares: :func:`wide_console`, and :func:`literal`, through
which every untrusted string (a user's argument, a client's id or reason, anything read from a
registry) passes before rich prints it.
"""

from __future__ import annotations

import json
import math
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.status import Status
from rich.table import Table

from flonnx.server.replies import Rejection

__all__ = ["HEADLINE_METRICS", "ConsoleReporter", "JsonReporter", "QuietReporter", "Reporter",
           "RoundProgress", "RoundSummary", "headline", "literal", "wide_console"]

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


@dataclass(frozen=True)
class RoundProgress:
    """A round so far: sent after each reply of a sampled client is checked.

    ``received`` counts the sampled clients that answered (1, 2, … up to ``sampled``; those that do
    not answer before the round timeout are never counted), ``rejected`` those of them whose reply
    was refused; ``eta_s`` is the time left if the others answer at the pace of those so far.
    """

    round: int
    total_rounds: int
    received: int
    sampled: int
    rejected: int
    elapsed_s: float
    eta_s: float


class Reporter:
    """Receives progress events; the base class ignores them."""

    def start(self, run_id: str, scenario: str, initial_version: str, metrics: dict[str, float],
              resumed_from: int | None = None) -> None:
        """The run is registered and its starting version evaluated (``resumed_from``: its round)."""

    def progress(self, progress: RoundProgress) -> None:
        """One more reply of the round in progress was received and checked."""

    def idle(self) -> None:
        """No round is in progress any more (it was committed, failed or stopped)."""

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
        self._status: Status | None = None

    def progress(self, progress: RoundProgress) -> None:
        """On a terminal, a transient status line (replaced by the round's line); else nothing."""
        if not self.console.is_terminal:
            return
        p = progress
        text = (f"round {p.round}/{p.total_rounds} · replies {p.received}/{p.sampled} · rejected "
                f"{p.rejected} · {p.elapsed_s:.1f}s" + (f" · ~{p.eta_s:.0f}s left" if p.eta_s > 0 else ""))
        if self._status is None:
            self._status = self.console.status(text)
            self._status.start()
        else:
            self._status.update(text)

    def idle(self) -> None:
        """Remove the status line."""
        if self._status is not None:
            self._status.stop()
            self._status = None

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
        self.idle()
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


class QuietReporter(Reporter):
    """Only the final version of each run (errors are the command line's)."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or wide_console()

    def finish(self, run_id: str, history: list[RoundSummary]) -> None:
        """Print the final version id."""
        if history:
            self.console.print(f"final version: {literal(history[-1].version_id)}", soft_wrap=True)


class JsonReporter(Reporter):
    """One JSON object per event and line on ``stream`` (stdout), flushed at once.

    Every object has ``event``; the other fields by event:

    - ``start``: ``run_id``, ``scenario``, ``initial_version``, ``metrics``, ``resumed_from``
      (the round a resumed run continues after, else null)
    - ``progress``: ``round``, ``total_rounds``, ``received``, ``sampled``, ``rejected``,
      ``elapsed_s``, ``eta_s`` (:class:`RoundProgress`)
    - ``round``: ``round``, ``total_rounds``, ``sampled``, ``accepted``, ``frameworks`` (framework
      -> accepted updates), ``rejected`` (list of ``client``, ``reason``), ``metrics``,
      ``version_id``, ``seconds``
    - ``note``: ``text``
    - ``sites``: ``sites`` (client -> metrics), ``failed`` (client -> reason), ``summary``
    - ``finish``: ``run_id``, ``rounds``, ``final_version`` (null if no round ran)

    Strings from clients are JSON-escaped, never interpreted; a NaN or infinite number is null.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def _emit(self, event: str, **fields: Any) -> None:
        stream = self.stream or sys.stdout
        stream.write(json.dumps(_plain({"event": event, **fields}), allow_nan=False) + "\n")
        stream.flush()

    def start(self, run_id: str, scenario: str, initial_version: str, metrics: dict[str, float],
              resumed_from: int | None = None) -> None:
        """Emit ``start``."""
        self._emit("start", run_id=run_id, scenario=scenario, initial_version=initial_version,
                   metrics=metrics, resumed_from=resumed_from)

    def progress(self, progress: RoundProgress) -> None:
        """Emit ``progress``."""
        self._emit("progress", **asdict(progress))

    def round(self, summary: RoundSummary) -> None:
        """Emit ``round``."""
        self._emit("round", round=summary.round, total_rounds=summary.total_rounds,
                   sampled=summary.sampled, accepted=len(summary.frameworks),
                   frameworks=dict(sorted(Counter(summary.frameworks).items())),
                   rejected=[{"client": r.client, "reason": r.reason} for r in summary.rejected],
                   metrics=summary.metrics, version_id=summary.version_id, seconds=summary.seconds)

    def note(self, text: str) -> None:
        """Emit ``note``."""
        self._emit("note", text=text)

    def sites(self, sites: dict[str, dict[str, float]], failed: dict[str, str],
              summary: dict[str, Any]) -> None:
        """Emit ``sites``."""
        self._emit("sites", sites=sites, failed=failed, summary=summary)

    def finish(self, run_id: str, history: list[RoundSummary]) -> None:
        """Emit ``finish``."""
        self._emit("finish", run_id=run_id, rounds=len(history),
                   final_version=history[-1].version_id if history else None)


def _plain(value: Any) -> Any:
    """``value`` as strict JSON can hold it: a NaN or infinite number becomes null."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
