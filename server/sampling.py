"""Reproducible client sampling by stable client key (Flower's node ids are random per run)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from flonnx.exchange.seeds import derive_seed

__all__ = ["sample_clients"]


def sample_clients(
    keys: Sequence[str], *, round: int, seed: int, fraction: float, minimum: int
) -> list[str]:
    """Choose ``max(minimum, ceil(fraction * n))`` keys with an RNG seeded by (seed, round); sorted."""
    pool = sorted(keys)
    size = min(len(pool), max(minimum, math.ceil(fraction * len(pool) - 1e-9)))
    rng = np.random.default_rng(derive_seed(seed, "sample", round))
    chosen = rng.choice(len(pool), size=size, replace=False)
    return sorted(pool[i] for i in chosen)
