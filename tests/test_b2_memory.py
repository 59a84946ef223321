"""B2 (benchmarks/b2_memory.py) runs, and streaming holds O(model) where Flower holds O(N models)."""

from __future__ import annotations

import pytest

from benchmarks import b2_memory


@pytest.fixture(scope="module")
def cases() -> dict[str, dict]:
    return {m: b2_memory.run_case(m, 6, "1M") for m in ("fixed-point-v1", "flower-fedavg-held")}


def test_streaming_peak_stays_near_three_models_while_held_grows_with_n(cases: dict[str, dict]) -> None:
    streamed, held = cases["fixed-point-v1"], cases["flower-fedavg-held"]

    assert streamed["peak_in_models"] < 3.5  # int64 accumulator (2) + the update in flight (1)
    assert held["peak_in_models"] > 6  # every update held


def test_both_aggregate_the_same_updates_to_the_same_mean(cases: dict[str, dict]) -> None:
    streamed, held = cases["fixed-point-v1"], cases["flower-fedavg-held"]

    assert streamed["checksum"] == pytest.approx(held["checksum"], rel=1e-6)
