"""The fixed-point mean's arithmetic, bounds and refusals, on hand-made arrays (fast, no federation).

``tests/server/test_streaming.py`` also runs federations and compares with Flower on a torch export;
these tests pin what :mod:`flonnx.server.streaming` computes: the scale for given N/E/B, the exact
bits of the mean, order independence, the refusals at the exact bounds, and the fixed working memory.
"""

from __future__ import annotations

import dataclasses
import itertools
import json

import numpy as np
import pytest

from flonnx.exchange.errors import FlonnxError, InvalidUpdate
from flonnx.server.streaming import (
    CHUNK,
    DEFAULT_BOUND,
    DEFAULT_MAX_EXAMPLES,
    FIXED_POINT,
    HELD,
    MAX_SCALE_BITS,
    MIN_SCALE_BITS,
    AggregationOverflow,
    AggregatorSpec,
    FixedPointMean,
    scale_bits,
)

#: 2**63 - 1 = 7**2 * 73 * 127 * 337 * 92737 * 649657: a bound and a weight whose product is exactly it.
Q_MAX = 649657
W_MAX = (2**63 - 1) // Q_MAX


def _reference(updates: list[tuple[dict[str, np.ndarray], int]], bits: int) -> dict[str, np.ndarray]:
    """The documented formula in float64 and int64: sum(rint(x * 2**S) * w) / (W * 2**S), in x's dtype."""
    total_weight = sum(w for _, w in updates)
    out = {}
    for name, first in updates[0][0].items():
        sums = np.zeros(first.shape, np.int64)
        for weights, w in updates:
            sums += np.rint(weights[name].astype(np.float64) * 2.0**bits).astype(np.int64) * w
        out[name] = (sums.astype(np.float64) / (float(total_weight) * 2.0**bits)).astype(first.dtype)
    return out


def _fold(updates: list[tuple[dict[str, np.ndarray], int]], bits: int, bound: float = 8.0,
          max_examples: int = 1000) -> FixedPointMean:
    acc = FixedPointMean(bound=bound, max_examples=max_examples, bits=bits)
    for weights, weight in updates:
        acc.add(weights, weight)
    return acc


def _same_bits(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes()
        for k in a)


# -- the scale ----------------------------------------------------------------------------------
def test_defaults_and_names_are_the_documented_ones() -> None:
    assert (FIXED_POINT, HELD) == ("fixed-point-v1", "float-v0")
    assert (DEFAULT_BOUND, DEFAULT_MAX_EXAMPLES, MIN_SCALE_BITS, MAX_SCALE_BITS) == (1024.0, 1048576, 16, 64)
    assert AggregatorSpec() == AggregatorSpec(HELD, 1024.0, 1048576)
    assert not AggregatorSpec().streams and AggregatorSpec(FIXED_POINT).streams
    assert not any(AggregatorSpec(name).streams for name in ("fixed-point-v0", "fixed-point-v2", "", "zz"))
    read = json.loads('"fixed-point-v1"')  # a name read from a record: equal, not the same object
    assert read is not FIXED_POINT and AggregatorSpec(read).streams
    with pytest.raises(dataclasses.FrozenInstanceError):  # a strategy's declaration cannot drift mid-run
        AggregatorSpec().bound = 1.0  # type: ignore[misc]


def test_scale_at_the_defaults_for_the_documented_round_sizes() -> None:
    assert [scale_bits(n, DEFAULT_MAX_EXAMPLES, DEFAULT_BOUND) for n in (1, 10, 100, 500, 1000, 65536)] == [
        32, 28, 25, 23, 22, 16]
    assert scale_bits(65537, DEFAULT_MAX_EXAMPLES, DEFAULT_BOUND) is None
    assert [AggregatorSpec(FIXED_POINT).scale_bits(n) for n in (10, 65536, 65537)] == [28, 16, None]
    assert AggregatorSpec(FIXED_POINT, bound=8.0, max_examples=1000).scale_bits(4) == 62 - 2 - 10 - 3


@pytest.mark.parametrize(("updates", "bits"), [(1, 62), (2, 61), (3, 60), (4, 60), (5, 59), (8, 59),
                                               (9, 58), (1023, 52), (1024, 52), (1025, 51)])
def test_scale_takes_the_exact_ceiling_of_log2_of_the_updates(updates: int, bits: int) -> None:
    assert scale_bits(updates, 1, 1.0) == bits
    assert scale_bits(1, updates, 1.0) == bits  # and of the maximum number of examples


@pytest.mark.parametrize(("bound", "bits"), [(1.0, 62), (2.0, 61), (3.0, 60), (4.0, 60), (4.5, 59),
                                             (1024.0, 52), (1000.5, 52), (1025.0, 51), (0.75, 62),
                                             (0.5, 63), (0.3, 63), (0.25, 64), (2.0**-20, 64),
                                             (1024, 52), (3, 60)])
def test_scale_takes_the_exact_ceiling_of_log2_of_the_bound(bound: float, bits: int) -> None:
    assert scale_bits(1, 1, bound) == bits


def test_scale_is_capped_at_64_and_refused_below_16_at_the_exact_limits() -> None:
    assert scale_bits(1, 1, 0.125) == 64  # 65 capped
    assert scale_bits(2**10, 2**10, 2.0**-11) == 53  # neither capped nor refused: 62 - 10 - 10 + 11
    assert scale_bits(2**46, 1, 1.0) == 16
    assert scale_bits(2**46 + 1, 1, 1.0) is None
    assert scale_bits(2**20, 2**20, 2.0**6) == 16 and scale_bits(2**20, 2**20, 2.0**6 + 1) is None
    assert scale_bits(1, 1, 1.7e308) is None  # a huge bound: no scale, not an error


def test_scale_counts_large_integers_exactly_not_through_a_float() -> None:
    # float(2**53 + 1) rounds to 2**53, whose log2 is 53; the exact ceiling is 54
    assert scale_bits(1, 2**53 + 1, 2.0**-20) == 62 - 54 + 20
    assert scale_bits(1, 2**53, 2.0**-20) == 62 - 53 + 20


@pytest.mark.parametrize(("updates", "max_examples", "bound"), [
    (0, 1, 1.0), (-1, 1, 1.0), (1, 0, 1.0), (1, -5, 1.0), (1, 1, 0.0), (1, 1, -1.0),
    (1, 1, float("inf")), (1, 1, float("nan")), (1, 1, -float("inf")),
])
def test_scale_refuses_non_positive_or_non_finite_arguments(updates: int, max_examples: int,
                                                            bound: float) -> None:
    with pytest.raises(FlonnxError, match=rf"fixed-point aggregation needs updates >= 1, max-examples >= 1 "
                                          rf"and a finite bound > 0; got {updates}, {max_examples}, "):
        scale_bits(updates, max_examples, bound)


def test_scale_accepts_the_smallest_valid_arguments() -> None:
    assert scale_bits(1, 1, 5e-324) == 64
    assert scale_bits(1, 1, 0.5) == 63


# -- the mean -------------------------------------------------------------------------------------
def test_values_round_half_to_even_at_the_scale() -> None:
    x = np.array([0.375, -0.375, 0.625, 0.125, 1.0, -8.0, 8.0, 0.0], np.float32)

    mean = _fold([({"w": x}, 1)], bits=2).mean()["w"]

    # x * 4 = 1.5, -1.5, 2.5, 0.5, 4, -32, 32, 0 -> rint 2, -2, 2, 0, 4, -32, 32, 0
    assert mean.tolist() == [0.5, -0.5, 0.5, 0.0, 1.0, -8.0, 8.0, 0.0] and mean.dtype == np.float32


def test_the_mean_is_weighted_by_the_number_of_examples() -> None:
    acc = _fold([({"w": np.array([1.0, 0.0], np.float32)}, 1),
                 ({"w": np.array([0.25, 2.0], np.float32)}, 3)], bits=2)

    # (4 * 1 + 1 * 3) / (4 * 4), (0 + 8 * 3) / 16
    assert acc.mean()["w"].tolist() == [0.4375, 1.5]
    assert (acc.count, acc.total_weight) == (2, 4)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_the_mean_has_the_exact_bits_of_the_formula_over_several_chunks(dtype: type) -> None:
    rng = np.random.default_rng(7)
    size = 2 * CHUNK + 3
    updates: list[tuple[dict[str, np.ndarray], int]] = [
        ({"a": rng.uniform(-8, 8, size).astype(dtype), "b": rng.uniform(-1, 1, (3, 2)).astype(dtype)}, w)
        for w in (1, 999, 37)]
    bits = 40

    mean = _fold(updates, bits).mean()

    assert _same_bits(mean, _reference(updates, bits))
    assert mean["a"].dtype == dtype and mean["b"].shape == (3, 2)


def test_double_precision_values_are_scaled_in_double_precision() -> None:
    x = np.array([1 / 3, -2 / 3, 1e-9], np.float64)  # float32(1/3) * 2**30 rounds to another integer

    acc = _fold([({"w": x}, 3)], bits=30)

    assert acc._sums["w"].tolist() == [3 * 357913941, -3 * 715827883, 3 * 1]  # noqa: SLF001
    assert acc.mean()["w"].tolist() == [357913941 / 2**30, -715827883 / 2**30, 2**-30]


def test_the_mean_is_bit_identical_whatever_the_arrival_order() -> None:
    rng = np.random.default_rng(3)
    updates = [({"w": rng.uniform(-8, 8, (5, 3)).astype(np.float32),
                 "b": rng.normal(0, 1, 3).astype(np.float32)}, int(rng.integers(1, 1000))) for _ in range(4)]
    first = _fold(updates, 33).mean()

    for order in itertools.permutations(range(4)):
        assert _same_bits(_fold([updates[i] for i in order], 33).mean(), first)
    assert _same_bits(first, _reference(updates, 33))


def test_the_mean_can_be_read_twice_and_folding_goes_on_after() -> None:
    one, two = ({"w": np.array([1.0, -2.0], np.float32)}, 2), ({"w": np.array([3.0, 0.5], np.float32)}, 1)
    acc = _fold([one], bits=10)

    first, again = acc.mean(), acc.mean()
    acc.add(*two)

    assert _same_bits(first, again) and first["w"].tolist() == [1.0, -2.0]
    assert _same_bits(acc.mean(), _fold([one, two], bits=10).mean())


def test_a_released_mean_frees_the_accumulator_and_cannot_be_read_again() -> None:
    acc = _fold([({"w": np.arange(5, dtype=np.float32)}, 4), ({"w": np.ones(5, np.float32)}, 4)], bits=20)
    expected = acc.mean()

    released = acc.mean(release=True)

    assert _same_bits(released, expected)
    assert acc._sums == {} and acc._f64.size == acc._i64.size == 0  # noqa: SLF001
    with pytest.raises(FlonnxError, match="no update was folded"):
        acc.mean()


def test_there_is_no_mean_before_the_first_update() -> None:
    acc = FixedPointMean(bound=8.0, max_examples=10, bits=20)

    with pytest.raises(FlonnxError, match=r"no update was folded \(or the mean was already taken\)"):
        acc.mean()
    assert (acc.count, acc.total_weight) == (0, 0)


def test_the_working_buffers_are_allocated_once_and_never_exceed_one_chunk() -> None:
    acc = FixedPointMean(bound=8.0, max_examples=10, bits=20)
    assert acc._f64.size == acc._i64.size == 0  # noqa: SLF001
    big, small = np.zeros(2 * CHUNK + 1, np.float32), np.zeros(3, np.float32)

    acc.add({"a": big, "b": small}, 1)
    f64, i64 = acc._f64, acc._i64  # noqa: SLF001
    acc.add({"a": big, "b": small}, 2)
    acc.mean()

    assert acc._f64 is f64 and acc._i64 is i64  # noqa: SLF001
    assert f64.nbytes + i64.nbytes == 512 * 1024 == 16 * CHUNK


# -- refusals -------------------------------------------------------------------------------------
def test_values_at_the_bound_are_accepted_and_just_outside_rejected_with_the_value() -> None:
    bound = 8.0
    acc = _fold([({"w": np.array([-8.0, 8.0, 0.0], np.float32)}, 1)], bits=20, bound=bound)
    above = np.nextafter(np.float32(8.0), np.float32(9.0))
    below = -above

    for value, shown in ((above, "8"), (below, "-8"), (np.float32("nan"), "nan"), (np.float32("inf"), "inf"),
                         (np.float32(-9.5), "-9.5"), (np.float32(9.5), "9.5")):
        with pytest.raises(InvalidUpdate, match=rf"^w has a value {shown} outside the aggregator's declared "
                                                r"bound \|x\| <= 8 \(fixed-point-v1; raise it with "
                                                r"--strategy-config aggregator-bound=B\)$"):
            acc.add({"w": np.array([0.0, value, 1.0], np.float32)}, 1)
    with pytest.raises(InvalidUpdate, match="w has a value -9.5 outside"):  # the low one is named first
        acc.add({"w": np.array([9.5, -9.5, 0.0], np.float32)}, 1)
    with pytest.raises(InvalidUpdate, match="w has a value 9.5 outside"):  # a low one at -B is inside
        acc.add({"w": np.array([9.5, -8.0, 0.0], np.float32)}, 1)
    assert (acc.count, acc.total_weight) == (1, 1)
    assert acc.mean()["w"].tolist() == [-8.0, 8.0, 0.0]


@pytest.mark.parametrize("where", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 4])
def test_a_value_outside_the_bound_is_found_in_any_chunk(where: int) -> None:
    x = np.zeros(2 * CHUNK + 5, np.float32)
    x[where] = 8.5

    with pytest.raises(InvalidUpdate, match="w has a value 8.5 outside"):
        _fold([({"w": x}, 1)], bits=20)


@pytest.mark.parametrize("weight", [0, -1, 11, True, 1.0, 3.0, "3", None])
def test_a_weight_outside_1_to_max_examples_or_not_an_integer_is_rejected(weight: object) -> None:
    acc = FixedPointMean(bound=8.0, max_examples=10, bits=20)

    with pytest.raises(InvalidUpdate, match=rf"^num-examples {weight} is outside the aggregator's "
                                            r"declared range 1 to 10 \(fixed-point-v1; raise it with "
                                            r"--strategy-config aggregator-max-examples=N\)$"):
        acc.add({"w": np.zeros(2, np.float32)}, weight)  # type: ignore[arg-type]
    assert acc.count == 0


def test_weights_of_1_and_of_max_examples_and_numpy_integers_are_accepted() -> None:
    acc = _fold([({"w": np.ones(2, np.float32)}, 1), ({"w": np.ones(2, np.float32)}, 10),
                 ({"w": np.ones(2, np.float32)}, np.int64(5))], bits=20, max_examples=10)  # type: ignore[list-item]

    assert (acc.count, acc.total_weight) == (3, 16)
    assert type(acc.total_weight) is int


def test_arrays_must_keep_the_first_updates_names_shapes_and_kind() -> None:
    acc = _fold([({"w": np.zeros((2, 3), np.float32), "b": np.zeros(3, np.float32)}, 1)], bits=20)

    with pytest.raises(InvalidUpdate, match=r"^update has arrays \['b', 'v'\], "
                                            r"the round folds \['b', 'w'\]$"):
        acc.add({"v": np.zeros((2, 3), np.float32), "b": np.zeros(3, np.float32)}, 1)
    with pytest.raises(InvalidUpdate, match=r"^update has arrays \['w'\], the round folds \['b', 'w'\]$"):
        acc.add({"w": np.zeros((2, 3), np.float32)}, 1)
    with pytest.raises(InvalidUpdate, match=r"^w has shape \(3, 2\), the round folds \(2, 3\)$"):
        acc.add({"w": np.zeros((3, 2), np.float32), "b": np.zeros(3, np.float32)}, 1)
    with pytest.raises(InvalidUpdate, match=r"^w has shape \(2, 2\), the round folds \(2, 3\)$"):
        acc.add({"w": np.zeros((2, 2), np.float32), "b": np.zeros(3, np.float32)}, 1)
    assert (acc.count, acc.total_weight) == (1, 1)


def test_only_float_arrays_are_averaged() -> None:
    acc = FixedPointMean(bound=8.0, max_examples=10, bits=20)

    with pytest.raises(InvalidUpdate, match=r"^w is int64; fixed-point-v1 averages float arrays only$"):
        acc.add({"w": np.zeros(3, np.int64)}, 1)
    for dtype in ("bool", "complex64", "uint8"):  # kinds on either side of "f"
        with pytest.raises(InvalidUpdate, match=rf"^w is {dtype}; fixed-point-v1 averages float arrays "
                                                r"only$"):
            acc.add({"w": np.zeros(3, dtype)}, 1)
    acc.add({"v": np.ones(3, np.float64)}, 2)  # a rejected first update fixed nothing
    assert acc.mean()["v"].tolist() == [1.0, 1.0, 1.0]


def test_overflow_is_refused_at_the_exact_int64_bound_and_folds_nothing() -> None:
    # q_max = 649657 at scale 2**0: W_MAX * q_max == 2**63 - 1 still fits, one more example does not
    acc = FixedPointMean(bound=float(Q_MAX), max_examples=W_MAX, bits=0)
    assert W_MAX * Q_MAX == 2**63 - 1

    acc.add({"w": np.array([Q_MAX, -Q_MAX, 1.0], np.float64)}, W_MAX)
    with pytest.raises(AggregationOverflow, match=rf"^folding 1 more examples onto {W_MAX} could overflow "
                                                  r"the int64 accumulator at scale 2\*\*0 and bound 649657; "
                                                  r"the scale was chosen for fewer updates or examples than "
                                                  r"arrived$"):
        acc.add({"w": np.zeros(3, np.float64)}, 1)

    assert (acc.count, acc.total_weight) == (1, W_MAX)
    assert acc._sums["w"].tolist() == [2**63 - 1, -(2**63 - 1), W_MAX]  # noqa: SLF001
    assert acc.mean()["w"].tolist() == [Q_MAX, -Q_MAX, 1.0]


def test_overflow_counts_the_rounded_up_bound_and_the_running_total() -> None:
    # bound 1 at 2**40: q_max = 2**40, room for 2**23 - 1 examples (2**23 * 2**40 = 2**63)
    acc = FixedPointMean(bound=1.0, max_examples=2**23, bits=40)
    with pytest.raises(AggregationOverflow, match="folding 8388608 more examples onto 0 could overflow"):
        acc.add({"w": np.ones(2, np.float32)}, 2**23)
    assert (acc.count, acc._sums) == (0, {})  # noqa: SLF001

    acc.add({"w": np.ones(2, np.float32)}, 2**22)
    acc.add({"w": np.ones(2, np.float32)}, 2**22 - 1)
    with pytest.raises(AggregationOverflow, match=r"folding 1 more examples onto 8388607 .* scale 2\*\*40 "):
        acc.add({"w": np.ones(2, np.float32)}, 1)
    assert acc.mean()["w"].tolist() == [1.0, 1.0]

    # at scale 2**1 a bound of 649657 / 2 gives q_max = 649657 again: the same exact limit
    half = FixedPointMean(bound=Q_MAX / 2, max_examples=W_MAX, bits=1)
    half.add({"w": np.ones(2, np.float32)}, W_MAX)
    with pytest.raises(AggregationOverflow, match=rf"folding 1 more examples onto {W_MAX} .* "
                                                  r"scale 2\*\*1 and bound 324828"):
        half.add({"w": np.ones(2, np.float32)}, 1)
