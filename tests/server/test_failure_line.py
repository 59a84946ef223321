"""A client's failure is recorded as one canonical line, so rejected versions stay reproducible."""

from __future__ import annotations

import pytest

from flonnx.server.replies import MAX_REASON, failure_line, one_line


def _ray_reason(pid: int, actor: str, address: str) -> str:
    """What Flower's Ray backend reports for a ClientApp that raised (shape as seen here)."""
    head = (f"\x1b[36mray::ClientAppActor.run()\x1b[39m (pid={pid}, ip=192.0.2.2, actor_id={actor}, "
            f"repr=<flwr.simulation.ray_transport.ray_actor.ClientAppActor object at {address}>)")
    return (
        "<class 'ray.exceptions.RayTaskError(ClientAppException)'>:<'" + head + "\n"
        '  File "/work/main/client/faults.py", line 34, in train\n'
        '    raise RuntimeError("injected failure: this node crashes in every round (fault=raise)")\n'
        "RuntimeError: injected failure: this node crashes in every round (fault=raise)\n\n"
        "The above exception was the direct cause of the following exception:\n\n" + head + "\n"
        "flwr.clientapp.client_app.ClientAppException: \n"
        "Exception ClientAppException occurred. Message: injected failure: this node crashes'>"
    )


def test_a_ray_traceback_becomes_the_original_exception_line() -> None:
    line = failure_line(_ray_reason(19510, "fea1f17e9952ca4d", "0x7ff8ae00a5d0"))

    assert line == "RuntimeError: injected failure: this node crashes in every round (fault=raise)"


def test_process_ids_and_addresses_do_not_reach_the_record() -> None:
    first = failure_line(_ray_reason(19510, "fea1f17e9952ca4d", "0x7ff8ae00a5d0"))
    second = failure_line(_ray_reason(20211, "0b0c0d0e0f101112", "0x7f00deadbeef"))

    assert first == second


def test_a_reason_without_an_exception_line_keeps_its_last_line_without_volatile_parts() -> None:
    line = failure_line("worker died\nactor (pid=123, actor_id=abcdef) at 0x7f12 lost")

    assert line == "actor (…, …) at … lost"


@pytest.mark.parametrize("text", ["a\nb\tc", "\x1b[31mred\x1b[0m", "x" * 5000, "zero\x00width\x7f"])
def test_untrusted_text_becomes_one_bounded_printable_line(text: str) -> None:
    line = one_line(text)

    assert "\n" not in line and "\x1b" not in line and line.isprintable()
    assert len(line) <= MAX_REASON
