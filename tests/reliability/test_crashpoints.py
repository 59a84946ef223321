"""The crash-point hook: unarmed it does nothing; armed, it kills at the named point's Nth passage."""

from __future__ import annotations

import os
import signal

import pytest

from flonnx.exchange import crashpoints

pytestmark = pytest.mark.reliability


def _passes_survived(armed: str, calls: list[str]) -> tuple[int, int]:
    """(calls a forked child survived, how it ended) when it arms ``armed`` and makes ``calls``."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report each call it survives, then exit 0
        os.close(read)
        crashpoints.arm(armed)
        for name in calls:
            crashpoints.crash_point(name)
            os.write(write, b".")
        os._exit(0)
    os.close(write)
    survived = b""
    while chunk := os.read(read, 64):
        survived += chunk
    os.close(read)
    _, status = os.waitpid(pid, 0)
    return len(survived), os.waitstatus_to_exitcode(status)


def test_an_unarmed_point_does_nothing() -> None:
    assert _passes_survived("", ["commit.before"] * 3) == (3, 0)


def test_an_armed_point_kills_with_sigkill_at_its_first_passage() -> None:
    calls = ["blob.before_write", "blob.after_write", "commit.before"]

    assert _passes_survived("blob.after_write", calls) == (1, -signal.SIGKILL)


def test_a_hit_count_kills_at_that_passage_of_that_point_only() -> None:
    calls = ["commit.before", "blob.after_write", "commit.before", "commit.before"]

    assert _passes_survived("commit.before@3", calls) == (3, -signal.SIGKILL)


@pytest.mark.parametrize(("text", "message"), [
    ("blob.sideways", "no crash point 'blob.sideways'"),
    ("commit.before@0", "the hit after '@' must be a positive whole number"),
    ("commit.before@x", "the hit after '@' must be a positive whole number"),
])
def test_arming_an_unknown_point_or_a_bad_hit_count_says_what_is_allowed(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        crashpoints.arm(text)

    assert crashpoints._armed is None or crashpoints._armed[0] in crashpoints.CRASH_POINTS
