"""Seeds and client sampling: every id of a replayed run depends on them staying exactly as they are."""

from __future__ import annotations

import math

import pytest

from flonnx.exchange.seeds import derive_seed
from flonnx.server.sampling import sample_clients

KEYS = [f"partition-{i}" for i in range(20)]


def test_a_seed_depends_on_every_part_and_on_their_order() -> None:
    base = derive_seed(7, "sample", 3)
    assert 0 <= base < 2**31 - 1
    assert derive_seed(7, "sample", 3) == base
    assert derive_seed(8, "sample", 3) != base
    assert derive_seed(7, "sample", 4) != base
    assert derive_seed(7, "aggregate", 3) != base
    assert derive_seed(7, 3, "sample") != base
    # parts are separated: ("ab", "c") is not ("a", "bc")
    assert derive_seed("ab", "c") != derive_seed("a", "bc")
    assert derive_seed("a", "b") != derive_seed("a", "b", "")


def test_seeds_are_frozen_across_releases() -> None:
    """Recorded runs replay only if these never change (a changed prefix or digest slice breaks them)."""
    assert derive_seed(0, "sample", 1) == 1204742736
    assert derive_seed(42, "client", 3, "partition-2") == 503085879


def test_seeds_spread_over_the_whole_range() -> None:
    seeds = [derive_seed(0, "sample", r) for r in range(2000)]
    assert len(set(seeds)) == len(seeds)
    assert max(seeds) > 2**30 and min(seeds) < 2**29


@pytest.mark.parametrize(("fraction", "minimum", "expected"), [
    (0.1, 1, 2), (0.25, 1, 5), (0.5, 2, 10), (1.0, 1, 20), (0.01, 3, 3), (0.0, 0, 0), (0.3, 50, 20),
])
def test_sample_size_is_the_larger_of_the_fraction_and_the_minimum_capped_at_all(
        fraction: float, minimum: int, expected: int) -> None:
    chosen = sample_clients(KEYS, round=1, seed=0, fraction=fraction, minimum=minimum)
    assert len(chosen) == expected == min(len(KEYS), max(minimum, math.ceil(fraction * len(KEYS))))


def test_a_fraction_that_lands_on_a_whole_number_is_not_rounded_up() -> None:
    # 0.3 * 10 is 3.0000000000000004 in floating point: three clients, not four
    assert len(sample_clients(KEYS[:10], round=1, seed=0, fraction=0.3, minimum=1)) == 3


def test_a_sample_is_sorted_distinct_and_drawn_from_the_keys() -> None:
    chosen = sample_clients(KEYS, round=2, seed=5, fraction=0.5, minimum=1)
    assert chosen == sorted(set(chosen)) and set(chosen) <= set(KEYS)


def test_a_sample_depends_on_seed_and_round_not_on_the_order_keys_arrive_in() -> None:
    first = sample_clients(KEYS, round=3, seed=1, fraction=0.25, minimum=1)
    assert sample_clients(list(reversed(KEYS)), round=3, seed=1, fraction=0.25, minimum=1) == first
    assert sample_clients(KEYS, round=3, seed=1, fraction=0.25, minimum=1) == first
    others = {tuple(sample_clients(KEYS, round=r, seed=s, fraction=0.25, minimum=1))
              for r, s in [(4, 1), (3, 2), (5, 1), (3, 3)]}
    assert len(others | {tuple(first)}) >= 4


def test_samples_are_frozen_across_releases() -> None:
    """Replay of a recorded run re-derives each round's sample: it must not change."""
    assert sample_clients(KEYS, round=1, seed=0, fraction=0.2, minimum=1) == [
        "partition-10", "partition-12", "partition-18", "partition-2"]
