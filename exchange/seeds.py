"""Seeds derived from stable parts (run seed, round, client key), never from process state."""

from __future__ import annotations

import hashlib

__all__ = ["derive_seed"]


def derive_seed(*parts: object) -> int:
    """A 31-bit seed determined only by ``parts`` (e.g. ``derive_seed(run_seed, round, client)``)."""
    text = "flonnx-seed\x1f" + "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little") % (2**31 - 1)
