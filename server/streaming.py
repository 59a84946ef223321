"""A weighted mean folded in as updates arrive, exact and independent of their order.

Float addition is not associative, so a mean accumulated in floating point depends on the order in
which replies arrive; holding every update until all have come (and sorting them) fixes the order
but costs ``N`` models of memory. :class:`FixedPointMean` does neither: each value is rounded once to
a fixed-point integer ``q = rint(x * 2**S)`` at a scale ``2**S`` fixed before the round, multiplied
by the update's integer weight (its ``num-examples``) and added to an ``int64`` accumulator. Integer
addition is associative, so the sums — and the mean read from them — are the same bits whatever the
arrival order, on any CPU. Memory: one ``int64`` accumulator (2x a float32 model) plus a fixed
working buffer, whatever ``N``.

Overflow analysis (the guarantee is made here). Every accepted value satisfies ``|x| <= B`` (the
declared bound; an update with a value outside it is rejected before anything of it is added), so
``|q| <= ceil(B * 2**S)``; every weight satisfies ``1 <= w <= E`` (the declared maximum
``num-examples``); a round folds at most ``N`` updates (the clients sampled). Each accumulator
element is then at most ``N * E * ceil(B * 2**S)`` in magnitude, and :func:`scale_bits` picks

    S = 62 - ceil(log2 N) - ceil(log2 E) - ceil(log2 B)

(at most 64) so that this is ``<= 2**62 < 2**63``. :meth:`FixedPointMean.add` re-checks it exactly (Python
integers) with the actual running total weight ``W`` — ``W * ceil(B * 2**S) <= 2**63 - 1`` — and
raises :class:`AggregationOverflow` rather than wrap. With the defaults (``B = 1024``,
``E = 2**20``) ``S`` is 28 at 10 updates, 25 at 100, 23 at 500, 22 at 1,000; a scale below
:data:`MIN_SCALE_BITS` (more than 65,536 updates a round at the defaults) is refused by
:func:`scale_bits` (``None``) and the caller falls back to the held path.

Resolution: the mean differs from the exact weighted mean of the received values by at most
``2**-(S+1)`` (each ``q`` is off by at most half a unit, and a weighted mean of such errors is too)
plus the final rounding to the array's dtype. Flower's FedAvg, accumulating ``w_i / W * x_i`` in
float32, is off by up to about ``N`` float32 roundings, so the two agree to about
``2**-S + N * 2**-24 * max|x|`` (tests/server/test_streaming.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from flonnx.exchange.errors import FlonnxError, InvalidUpdate

__all__ = [
    "DEFAULT_BOUND",
    "DEFAULT_MAX_EXAMPLES",
    "FIXED_POINT",
    "HELD",
    "MAX_SCALE_BITS",
    "MIN_SCALE_BITS",
    "AggregationOverflow",
    "AggregatorSpec",
    "FixedPointMean",
    "scale_bits",
]

#: The streaming aggregator: int64 fixed point at a per-round scale (this module, version 1).
FIXED_POINT = "fixed-point-v1"
#: Every update held until the round ends, then the Flower strategy's own float aggregation.
HELD = "float-v0"
#: Default declared bound on every value of an update: |x| <= 1024.
DEFAULT_BOUND = 1024.0
#: Default declared maximum ``num-examples`` of one update.
DEFAULT_MAX_EXAMPLES = 2**20
#: A coarser scale than 2**-16 is refused (the round is aggregated the held way instead).
MIN_SCALE_BITS = 16
#: A finer scale than 2**-64 is not used (a tiny bound would otherwise ask for 2**S beyond float32).
MAX_SCALE_BITS = 64
#: Elements converted per step: the working buffers (16 bytes an element, 512 KiB) whatever the model.
CHUNK = 1 << 15


class AggregationOverflow(FlonnxError):
    """Folding one more update could overflow the int64 accumulator; nothing of it was added."""


@dataclass(frozen=True)
class AggregatorSpec:
    """Which aggregator a strategy uses and what it declares before any round.

    ``name`` is :data:`FIXED_POINT` or :data:`HELD`; ``bound`` and ``max_examples`` matter for the
    fixed-point aggregator only.
    """

    name: str = HELD
    bound: float = DEFAULT_BOUND
    max_examples: int = DEFAULT_MAX_EXAMPLES

    @property
    def streams(self) -> bool:
        """Whether updates are folded in as they arrive."""
        return self.name == FIXED_POINT

    def scale_bits(self, updates: int) -> int | None:
        """The round's scale exponent for at most ``updates`` updates (see :func:`scale_bits`)."""
        return scale_bits(updates, self.max_examples, self.bound)


def _ceil_log2(x: float) -> int:
    """``ceil(log2(x))`` for ``x > 0``, exactly (no floating-point log)."""
    if isinstance(x, int):
        return (x - 1).bit_length()
    mantissa, exponent = math.frexp(x)  # x = mantissa * 2**exponent, 0.5 <= mantissa < 1
    return exponent - 1 if mantissa == 0.5 else exponent


def scale_bits(updates: int, max_examples: int, bound: float) -> int | None:
    """``S`` such that ``updates * max_examples * bound * 2**S <= 2**62``, at most 64; ``None`` if below 16.

    Raises:
        FlonnxError: a non-positive or non-finite argument.
    """
    if updates < 1 or max_examples < 1 or not (0 < bound < math.inf):
        raise FlonnxError(f"fixed-point aggregation needs updates >= 1, max-examples >= 1 and a "
                          f"finite bound > 0; got {updates}, {max_examples}, {bound}")
    bits = 62 - _ceil_log2(updates) - _ceil_log2(max_examples) - _ceil_log2(float(bound))
    return min(bits, MAX_SCALE_BITS) if bits >= MIN_SCALE_BITS else None


class FixedPointMean:
    """An exact, order-independent weighted mean of arrays, folded one update at a time.

    Args:
        bound: Declared bound on every value: ``|x| <= bound`` or the update is rejected.
        max_examples: Declared maximum weight of one update.
        bits: The scale exponent ``S`` (values are stored as ``rint(x * 2**S)``), fixed before
            the first update; see :func:`scale_bits`.
    """

    def __init__(self, *, bound: float, max_examples: int, bits: int) -> None:
        self.bound, self.max_examples, self.bits = float(bound), int(max_examples), int(bits)
        self._scale = math.ldexp(1.0, self.bits)
        # Largest |q| any accepted value can give: the per-weight-unit growth of an element.
        self._q_max = math.ceil(self.bound * self._scale)
        self._sums: dict[str, np.ndarray] = {}
        self._dtypes: dict[str, np.dtype] = {}
        self.total_weight = 0
        self.count = 0
        self._f64 = np.empty(0, np.float64)
        self._i64 = np.empty(0, np.int64)

    # -- checks ---------------------------------------------------------------------------------
    def check(self, weights: Mapping[str, np.ndarray], weight: int) -> None:
        """Raise :class:`InvalidUpdate` if ``weights`` or ``weight`` break a declared bound."""
        if isinstance(weight, bool) or not isinstance(weight, int | np.integer) or not (
                1 <= weight <= self.max_examples):
            raise InvalidUpdate(
                f"num-examples {weight} is outside the aggregator's declared range 1 to "
                f"{self.max_examples} ({FIXED_POINT}; raise it with --strategy-config "
                f"aggregator-max-examples=N)")
        if self._sums and set(weights) != set(self._sums):
            raise InvalidUpdate(f"update has arrays {sorted(weights)}, the round folds "
                                f"{sorted(self._sums)}")
        for name in sorted(weights):
            array = np.asarray(weights[name])
            if array.dtype.kind != "f":
                raise InvalidUpdate(f"{name} is {array.dtype}; {FIXED_POINT} averages float arrays only")
            if self._sums and array.shape != self._sums[name].shape:
                raise InvalidUpdate(f"{name} has shape {array.shape}, the round folds "
                                    f"{self._sums[name].shape}")
            flat = array.reshape(-1)
            for start in range(0, flat.size, CHUNK):
                chunk = flat[start:start + CHUNK]
                low, high = float(chunk.min()), float(chunk.max())
                # `not <=` also catches NaN
                if not (-self.bound <= low and high <= self.bound):
                    worst = low if not (-self.bound <= low) else high
                    raise InvalidUpdate(
                        f"{name} has a value {worst:g} outside the aggregator's declared bound "
                        f"|x| <= {self.bound:g} ({FIXED_POINT}; raise it with --strategy-config "
                        "aggregator-bound=B)")

    # -- folding --------------------------------------------------------------------------------
    def add(self, weights: Mapping[str, np.ndarray], weight: int) -> None:
        """Fold one update in; it is checked first, so a rejected update leaves no trace.

        Raises:
            InvalidUpdate: a value outside the bound, a weight outside 1..max_examples, or arrays
                that differ from the first update's in names, shapes or kind.
            AggregationOverflow: the accumulator could overflow (more weight than declared).
        """
        self.check(weights, weight)
        weight = int(weight)
        if (self.total_weight + weight) * self._q_max > 2**63 - 1:
            raise AggregationOverflow(
                f"folding {weight} more examples onto {self.total_weight} could overflow the "
                f"int64 accumulator at scale 2**{self.bits} and bound {self.bound:g}; the scale was "
                "chosen for fewer updates or examples than arrived")
        if not self._sums:
            self._sums = {k: np.zeros(np.shape(v), np.int64) for k, v in sorted(weights.items())}
            self._dtypes = {k: np.asarray(v).dtype for k, v in weights.items()}
        for name in sorted(weights):
            self._fold(np.asarray(weights[name]).reshape(-1), self._sums[name].reshape(-1), weight)
        self.total_weight += weight
        self.count += 1

    def _buffers(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        if self._f64.size < size:
            self._f64, self._i64 = np.empty(size, np.float64), np.empty(size, np.int64)
        return self._f64[:size], self._i64[:size]

    def _fold(self, flat: np.ndarray, total: np.ndarray, weight: int) -> None:
        # Scaling by a power of two is exact in the value's own float type (no overflow: |x| * 2**S
        # <= 2**62; float16 is widened to float32 exactly), and rint of a float is an integer
        # exactly representable in it: so q is the same integer in float32 or float64 arithmetic,
        # and float32 is 4x cheaper. rint is IEEE round-half-to-even, the same on every CPU.
        work = np.float64 if flat.dtype == np.float64 else np.float32
        scale = work(self._scale)
        for start in range(0, flat.size, CHUNK):
            chunk = flat[start:start + CHUNK]
            f64, i64 = self._buffers(chunk.size)
            scaled = f64.view(np.float32)[:chunk.size] if work is np.float32 else f64
            np.multiply(chunk, scale, out=scaled, dtype=work)
            np.rint(scaled, out=scaled)
            np.copyto(i64, scaled, casting="unsafe")
            np.multiply(i64, weight, out=i64)
            np.add(total[start:start + chunk.size], i64, out=total[start:start + chunk.size])

    # -- result ---------------------------------------------------------------------------------
    def mean(self, *, release: bool = False) -> dict[str, np.ndarray]:
        """The weighted mean, each array in the dtype it arrived in.

        With ``release`` each array's accumulator is freed as soon as its mean is read (peak:
        the accumulator plus one array of the result, not the whole result), and the
        accumulator cannot be read again.

        Raises:
            FlonnxError: no update was folded (or the accumulator was released).
        """
        if not self.count or not self._sums:
            raise FlonnxError("no update was folded (or the mean was already taken); there is no mean")
        denominator = float(self.total_weight) * self._scale  # exact: W < 2**53 by the analysis
        out: dict[str, np.ndarray] = {}
        for name in list(self._sums):
            total = self._sums.pop(name) if release else self._sums[name]
            result = np.empty(total.shape, self._dtypes[name])
            flat_total, flat_out = total.reshape(-1), result.reshape(-1)
            for start in range(0, flat_total.size, CHUNK):
                chunk = flat_total[start:start + CHUNK]
                f64, _ = self._buffers(chunk.size)
                np.divide(chunk, denominator, out=f64)
                flat_out[start:start + chunk.size] = f64
            out[name] = result
            del total, flat_total
        if release:
            self.release()
        return out

    def release(self) -> None:
        """Free the accumulator and buffers (the mean, once read, is all that is needed)."""
        self._sums = {}
        self._f64, self._i64 = np.empty(0, np.float64), np.empty(0, np.int64)
