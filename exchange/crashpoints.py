"""Named crash points: where a test may kill this process with SIGKILL, to prove nothing is lost.

``crash_point("blob.after_write")`` marks a place in a write path. When the environment variable
``FLONNX_CRASH_AT`` names that point when this module is imported, the process kills itself with
``SIGKILL`` there (no ``finally``, no ``atexit``, no flush: as a power cut or the OOM killer would);
``name@3`` kills at the point's third passage; :func:`arm` does the same in a running process.
Unarmed (always, outside the crash trials of ``tests/reliability/``), ``crash_point`` returns after
one comparison: nothing to measure next to the ``fsync`` of the write it sits in.

The points, in the order a round passes them (docs/reliability.md lists the trials):

``blob.before_write``, ``blob.after_tmp_write`` (temporary file written and fsynced, not renamed),
``blob.after_write`` (renamed into place), ``state.before_write``, ``state.after_write``,
``commit.before``, ``commit.in_transaction`` (every row inserted, not committed),
``commit.after`` (committed, before the next round starts), ``status.before_write``; and
``database.before_link`` (a new registry's database made under a temporary name, not linked).
"""

from __future__ import annotations

import os
import signal
from collections import Counter

__all__ = ["CRASH_POINTS", "ENV", "arm", "crash_point"]

#: the environment variable naming the point (``name`` or ``name@hit``)
ENV = "FLONNX_CRASH_AT"

#: every point placed in the code
CRASH_POINTS = (
    "blob.before_write", "blob.after_tmp_write", "blob.after_write",
    "state.before_write", "state.after_write",
    "commit.before", "commit.in_transaction", "commit.after",
    "status.before_write", "database.before_link",
)


def _parse(text: str) -> tuple[str, int]:
    name, _, hit = text.partition("@")
    if name not in CRASH_POINTS:
        raise ValueError(f"{ENV}={text!r}: no crash point {name!r} (known: {', '.join(CRASH_POINTS)})")
    if hit and (not hit.isdigit() or int(hit) < 1):
        raise ValueError(f"{ENV}={text!r}: the hit after '@' must be a positive whole number")
    return name, int(hit or 1)


_armed: tuple[str, int] | None = None
_passes: Counter[str] = Counter()


def arm(text: str | None) -> None:
    """Arm the point ``text`` names (``name`` or ``name@hit``); ``None`` or ``""`` disarms.

    What a forked trial process calls (the environment is read once, at import).
    """
    global _armed
    _armed = _parse(text) if text else None
    _passes.clear()


def crash_point(name: str) -> None:
    """Kill this process with SIGKILL here if the armed point is ``name`` (at its armed passage)."""
    if _armed is None or name != _armed[0]:
        return
    _passes[name] += 1
    if _passes[name] == _armed[1]:
        os.kill(os.getpid(), signal.SIGKILL)


arm(os.environ.get(ENV))
