"""Stopping a run on request (Ctrl-C, SIGTERM) without committing part of a round.

A :class:`StopRequest` is set by a signal handler (:func:`stop_on_signals`, in the main thread of the
process that drives a simulation) and read by the federation in the ServerApp's thread: every wait
for replies polls it (:func:`receive`), and a round checks it once more right before its
one commit transaction. So a round in progress when the signal comes is never committed; the run is
marked ``interrupted`` and :class:`Interrupted` names it and its last committed round, from which
``flonnx resume`` continues as if it had never stopped (the round is run again with the same seeds).

The first signal asks to stop; a second one raises :class:`KeyboardInterrupt` in the main thread,
for when the clients' work in flight takes too long to finish.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from flwr.app import Message
from flwr.serverapp import Grid

from flonnx.exchange.errors import FlonnxError

__all__ = ["Interrupted", "StopRequest", "receive", "send_and_receive", "stop_on_signals"]

#: The signals that stop a run; the process exits with 128 + the signal's number.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(FlonnxError):
    """A signal stopped the run; nothing after ``last_round`` was committed.

    ``run_id`` is ``None`` when the signal came before the run was registered.
    """

    def __init__(self, signum: int, run_id: str | None = None, last_round: int | None = None,
                 rounds: int | None = None) -> None:
        self.signum = signum
        self.run_id = run_id
        self.last_round = last_round
        self.rounds = rounds
        name = signal.Signals(signum).name
        if run_id is None:
            message = f"stopped by {name} before a run was recorded"
        else:
            message = (f"stopped by {name}: run {run_id} is interrupted after round {last_round} of "
                       f"{rounds} (the round in progress was not committed)")
        super().__init__(message)

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + the signal's number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum

    @property
    def resumable(self) -> bool:
        """A recorded run with rounds left to run."""
        return (self.run_id is not None and self.last_round is not None and self.rounds is not None
                and self.last_round < self.rounds)

    def of_run(self, run_id: str, last_round: int, rounds: int) -> Interrupted:
        """The same stop, naming the run it ended."""
        return Interrupted(self.signum, run_id, last_round, rounds)


class StopRequest:
    """Set once (by a signal handler, or a caller) to ask the federation to stop; thread-safe."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signum: int = signal.SIGINT

    def request(self, signum: int = signal.SIGINT) -> None:
        """Ask to stop; the first request's signal is the one reported."""
        if not self._event.is_set():
            self.signum = signum
            self._event.set()

    @property
    def requested(self) -> bool:
        """Whether a stop was asked for."""
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep ``seconds``, or less if a stop is asked for; whether one was."""
        return self._event.wait(seconds)

    def check(self) -> None:
        """Raise :class:`Interrupted` if a stop was asked for."""
        if self._event.is_set():
            raise Interrupted(self.signum)


@contextmanager
def stop_on_signals(stop: StopRequest) -> Iterator[None]:
    """Turn SIGINT and SIGTERM into ``stop`` requests for the block (main thread only, else nothing).

    A second signal raises :class:`KeyboardInterrupt` in the main thread. The previous handlers
    come back when the block ends.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.requested:
            raise KeyboardInterrupt
        stop.request(signum)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def receive(grid: Any, messages: Iterable[Message], *, timeout: float,
            stop: StopRequest, while_answering: bool = False) -> Iterator[Message]:
    """Send ``messages`` and yield each reply as it arrives; a stop request ends the wait at once.

    A Flower :class:`Grid` is polled as Flower's own ``send_and_receive`` does (``push_messages``,
    then ``pull_messages`` every ``pull_interval`` seconds, 3 s if the grid names none) until every
    reply came or ``timeout`` passed, and each pulled reply is yielded before the next pull: the
    caller checks (and folds) one reply at a time and holds none it has done with. A grid that
    offers only ``send_and_receive`` (a test's stand-in) is waited for as it is.

    ``while_answering``: ``timeout`` counts from the push or from the latest reply, whichever is
    later, so a step that asks every node (the handshake, the site evaluation) takes as long as
    the nodes keep answering, and still gives up ``timeout`` after the last answer. A round asks
    only its sample and keeps a fixed deadline. (Flower's simulation engine runs a few nodes at a
    time: asking 10,000 of them took longer than the default 600 s, although none hung.)

    Replies come in arrival order, which is not reproducible: a caller keeps whatever it records
    in its own (client-key) order.

    Raises:
        Interrupted: a stop was asked for before or while waiting.
    """
    stop.check()
    if not isinstance(grid, Grid):
        replies = list(grid.send_and_receive(messages, timeout=timeout))
        stop.check()
        replies.reverse()
        while replies:  # released one by one, as a polled grid's
            yield replies.pop()
        return
    # Flower's HTTP grid names a message it could not push None (and logs it): no reply will come
    pending = {mid for mid in grid.push_messages(messages) if mid is not None}
    del messages
    deadline = time.monotonic() + timeout  # from the push, as Flower's send_and_receive
    interval = float(getattr(grid, "pull_interval", 3.0))
    while pending:
        pulled = list(grid.pull_messages(list(pending)))
        pulled.reverse()
        if pulled and while_answering:
            deadline = time.monotonic() + timeout
        while pulled:  # each released by the time the caller asks for the next
            reply = pulled.pop()
            pending.discard(reply.metadata.reply_to_message_id)
            yield reply
        if not pending or time.monotonic() >= deadline:
            return
        stop.wait(min(interval, max(deadline - time.monotonic(), 0.0)))
        stop.check()


def send_and_receive(grid: Any, messages: Iterable[Message], *, timeout: float,
                     stop: StopRequest) -> list[Message]:
    """All the replies of :func:`receive`, as a list (for a caller that needs them together).

    Raises:
        Interrupted: a stop was asked for before or while waiting.
    """
    return list(receive(grid, messages, timeout=timeout, stop=stop))
