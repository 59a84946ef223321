"""How long :func:`flonnx.server.stopping.receive` waits: a fixed deadline, or one renewed by each reply.

A fake clock that only the waits advance makes every case exact: no test here sleeps.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

import pytest
from flwr.serverapp import Grid

from flonnx.server import stopping
from flonnx.server.stopping import StopRequest, receive


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _ClockedStop(StopRequest):
    """A stop request whose waits move the fake clock instead of sleeping."""

    def __init__(self, clock: _Clock) -> None:
        super().__init__()
        self.clock = clock

    def wait(self, seconds: float) -> bool:
        self.clock.now += seconds
        return False


class _SlowGrid(Grid):
    """Nodes that answer one message per pull (every 3 s, Flower's default interval), up to ``answers``."""

    def __init__(self, clock: _Clock, answers: int) -> None:
        self.clock, self.answers, self.times = clock, answers, []  # type: ignore[var-annotated]

    def set_run(self, run: Any) -> None: ...
    @property
    def run(self) -> Any: ...
    def create_message(self, *args: Any, **kwargs: Any) -> Any: ...
    def get_node_ids(self) -> Iterable[int]:
        return []

    def push_messages(self, messages: Iterable[Any]) -> Iterable[str]:
        return [f"m{i}" for i, _ in enumerate(messages)]

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Any]:
        first = sorted(message_ids)[:1]
        if not first or self.answers == 0:
            return []
        self.answers -= 1
        self.times.append(self.clock.now)
        return [SimpleNamespace(metadata=SimpleNamespace(reply_to_message_id=first[0]))]

    def send_and_receive(self, messages: Iterable[Any], *, timeout: float | None = None) -> Any:
        raise AssertionError("receive polls a Grid")


@pytest.fixture()
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr(stopping.time, "monotonic", fake)
    return fake


def _receive(clock: _Clock, grid: _SlowGrid, *, while_answering: bool) -> list[Any]:
    return list(receive(grid, [object()] * 10, timeout=10.0, stop=_ClockedStop(clock),
                        while_answering=while_answering))


def test_a_round_stops_at_its_fixed_deadline_even_while_nodes_still_answer(clock: _Clock) -> None:
    grid = _SlowGrid(clock, answers=10)
    replies = _receive(clock, grid, while_answering=False)
    assert grid.times == [0.0, 3.0, 6.0, 9.0, 10.0]  # the last pull at the deadline itself
    assert len(replies) == 5


def test_asking_every_node_waits_as_long_as_they_keep_answering(clock: _Clock) -> None:
    grid = _SlowGrid(clock, answers=10)
    replies = _receive(clock, grid, while_answering=True)
    assert len(replies) == 10 and grid.times[-1] == 27.0  # well past the 10 s timeout
    assert len({r.metadata.reply_to_message_id for r in replies}) == 10


def test_asking_every_node_still_gives_up_one_timeout_after_the_last_answer(clock: _Clock) -> None:
    grid = _SlowGrid(clock, answers=3)  # then silent (a hung node)
    replies = _receive(clock, grid, while_answering=True)
    assert len(replies) == 3 and grid.times == [0.0, 3.0, 6.0]
    assert clock.now == 16.0  # 10 s after the last answer, not 10 s after the push


def test_nodes_that_never_answer_end_the_wait_at_the_timeout_either_way(clock: _Clock) -> None:
    for while_answering in (False, True):
        clock.now = 0.0
        assert _receive(clock, _SlowGrid(clock, answers=0), while_answering=while_answering) == []
        assert clock.now == 10.0
