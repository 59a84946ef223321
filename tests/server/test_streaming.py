"""Streaming aggregation: an exact fixed-point weighted mean, whatever the arrival order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flonnx.exchange.definition import Definition
from flonnx.exchange.errors import FlonnxError, InvalidUpdate
from flonnx.exchange.lineage import VersionKind
from flonnx.exchange.registry import Registry
from flonnx.server.aggregation import AggregationInput, RoundAggregation, aggregate_round, configure_round
from flonnx.server.federation import RoundFailed
from flonnx.server.replay import replay_run
from flonnx.server.settings import Settings
from flonnx.server.strategies import (
    AGGREGATOR_SCALE_BITS,
    build_strategy,
    recorded_aggregator,
)
from flonnx.server.streaming import (
    FIXED_POINT,
    HELD,
    AggregationOverflow,
    AggregatorSpec,
    FixedPointMean,
    scale_bits,
)
from tests.server.conftest import run_local

DEFAULTS = Settings(min_available_nodes=3).strategy_defaults()


def _fold(updates: list[tuple[dict[str, np.ndarray], int]], bits: int = 24) -> FixedPointMean:
    acc = FixedPointMean(bound=8.0, max_examples=1000, bits=bits)
    for weights, weight in updates:
        acc.add(weights, weight)
    return acc


def _random_updates(seed: int, n: int, shape: tuple[int, ...] = (7, 5)
                    ) -> list[tuple[dict[str, np.ndarray], int]]:
    rng = np.random.default_rng(seed)
    return [({"w": rng.uniform(-8, 8, shape).astype(np.float32),
              "b": rng.normal(0, 1, shape[-1:]).astype(np.float32)}, int(rng.integers(1, 1000)))
            for _ in range(n)]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 12), data=st.data())
def test_mean_is_bit_identical_whatever_the_arrival_order(seed: int, n: int, data: st.DataObject) -> None:
    updates = _random_updates(seed, n)
    order = data.draw(st.permutations(range(n)))

    first = _fold(updates).mean()
    permuted = _fold([updates[i] for i in order]).mean()

    assert first.keys() == permuted.keys()
    assert all(first[k].tobytes() == permuted[k].tobytes() and first[k].dtype == np.float32
               for k in first)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 12))
def test_mean_is_within_the_fixed_point_resolution_of_the_exact_mean(seed: int, n: int) -> None:
    updates = _random_updates(seed, n)
    bits = 24

    mean = _fold(updates, bits).mean()

    total = sum(w for _, w in updates)
    for name in mean:
        exact = sum(u[name].astype(np.float64) * w for u, w in updates) / total
        ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
        assert np.all(np.abs(mean[name] - exact) <= 2.0 ** -(bits + 1) + ulp)


def test_mean_matches_flowers_fedavg(mlp_model: tuple[Definition, dict[str, np.ndarray]]) -> None:
    definition, weights = mlp_model
    rng = np.random.default_rng(0)
    updates = [AggregationInput(f"c{i}", {k: (v + rng.normal(0, 0.1, v.shape)).astype(v.dtype)
                                          for k, v in weights.items()}, 10 + 7 * i, {"loss": 0.5 + i})
               for i in range(9)]
    strategy = build_strategy("fedavg", {}, DEFAULTS).strategy
    streamed = RoundAggregation(strategy, AggregatorSpec(FIXED_POINT), 1, 0, definition, updates=9)
    for update in reversed(updates):
        streamed.add(update)

    ours, our_metrics = streamed.finish()
    flower, flower_metrics = aggregate_round(strategy, 1, 0, updates, definition)

    bits = scale_bits(9, AggregatorSpec().max_examples, AggregatorSpec().bound)
    assert streamed.streaming and bits is not None
    for name in ours:
        assert ours[name].dtype == flower[name].dtype
        # Flower's float32 sum errs by up to ~N roundings of its largest summands
        largest = max(float(np.abs(u.weights[name]).max()) for u in updates)
        tolerance = 2.0 ** -bits + 9 * 2.0 ** -24 * largest
        assert np.all(np.abs(ours[name].astype(np.float64) - flower[name]) <= tolerance)
    assert our_metrics == flower_metrics  # train metrics: the strategy's own, in client order


@pytest.mark.parametrize(("name", "config"), [
    ("fedadam", {}), ("fedavgm", {"server-momentum": "0.9"}), ("fedyogi", {}), ("fedadagrad", {}),
    ("fedprox", {"proximal-mu": "0.1"}),
])
def test_server_step_strategies_apply_their_step_to_the_streamed_mean(
    name: str, config: dict[str, str], mlp_model: tuple[Definition, dict[str, np.ndarray]],
) -> None:
    definition, weights = mlp_model
    rng = np.random.default_rng(1)
    updates = [AggregationInput(f"c{i}", {k: (v + rng.normal(0, 0.1, v.shape)).astype(v.dtype)
                                          for k, v in weights.items()}, 20 + i, {})
               for i in range(3)]
    results = []
    for aggregator in (AggregatorSpec(FIXED_POINT), AggregatorSpec(HELD)):
        strategy = build_strategy(name, config, DEFAULTS).strategy
        configure_round(strategy, 1, 0, weights, {}, [1, 2, 3])
        aggregation = RoundAggregation(strategy, aggregator, 1, 0, definition, updates=3)
        for update in updates:
            aggregation.add(update)
        results.append(aggregation.finish()[0])

    streamed, held = results
    assert all(np.allclose(streamed[k], held[k], rtol=1e-5, atol=1e-6) for k in held)


def test_rejects_a_value_outside_the_bound_and_folds_nothing_of_it() -> None:
    good, bad = _random_updates(2, 2)
    bad[0]["w"][3, 1] = 8.5
    acc = _fold([good])

    with pytest.raises(InvalidUpdate, match=r"w has a value 8.5 outside the aggregator's declared "
                                            r"bound \|x\| <= 8 \(fixed-point-v1"):
        acc.add(*bad)

    assert acc.count == 1 and acc.total_weight == good[1]
    assert all(np.array_equal(acc.mean()[k], _fold([good]).mean()[k]) for k in good[0])


def test_rejects_a_weight_above_the_declared_maximum() -> None:
    (weights, _), = _random_updates(3, 1)

    with pytest.raises(InvalidUpdate, match="num-examples 1001 is outside .* 1 to 1000"):
        _fold([(weights, 1001)])


def test_scale_leaves_room_for_every_declared_update() -> None:
    assert [scale_bits(n, 2**20, 1024.0) for n in (10, 100, 500, 1000)] == [28, 25, 23, 22]
    assert scale_bits(2**17, 2**20, 1024.0) is None  # coarser than 2**-16: refused
    assert scale_bits(3, 1000, 1e-30) == 64  # a tiny bound: capped, 2**S stays a float32
    bits = scale_bits(4, 1000, 8.0)
    assert bits is not None and 4 * 1000 * 8 * 2**bits <= 2**62


def test_refuses_to_fold_more_weight_than_the_int64_accumulator_holds() -> None:
    (weights, _), = _random_updates(4, 1)
    acc = FixedPointMean(bound=8.0, max_examples=1000, bits=50)  # room for ~2**10 examples
    acc.add(weights, 1000)

    with pytest.raises(AggregationOverflow, match="could overflow the int64 accumulator"):
        acc.add(weights, 1000)
    assert acc.count == 1


def test_extreme_values_at_the_bound_sum_exactly() -> None:
    bits = scale_bits(3, 1000, 8.0)
    assert bits is not None
    acc = FixedPointMean(bound=8.0, max_examples=1000, bits=bits)
    for _ in range(3):
        acc.add({"w": np.full(4, -8.0, np.float32)}, 1000)

    assert np.array_equal(acc.mean()["w"], np.full(4, -8.0, np.float32))


def test_streaming_strategies_record_their_aggregator_and_others_do_not() -> None:
    fedavg = build_strategy("fedavg", {}, DEFAULTS)
    median = build_strategy("fedmedian", {}, DEFAULTS)

    assert fedavg.aggregator.streams and fedavg.config["aggregator"] == FIXED_POINT
    assert build_strategy("fedavg", {**fedavg.config, AGGREGATOR_SCALE_BITS: "25"},
                          DEFAULTS).config == fedavg.config
    assert not median.aggregator.streams and "aggregator" not in median.config
    with pytest.raises(FlonnxError, match="'krum' cannot aggregate as replies arrive"):
        build_strategy("krum", {"aggregator": FIXED_POINT}, DEFAULTS)
    with pytest.raises(FlonnxError, match="aggregator-bound=-1 is out of range"):
        build_strategy("fedavg", {"aggregator-bound": "-1"}, DEFAULTS)


def test_a_record_without_an_aggregator_replays_the_held_way() -> None:
    assert recorded_aggregator({"fraction-train": "1.0"}) == (AggregatorSpec(HELD), None)
    spec, bits = recorded_aggregator(build_strategy("fedavg", {}, DEFAULTS).config
                                     | {AGGREGATOR_SCALE_BITS: "25"})
    assert spec.streams and bits == 25
    with pytest.raises(FlonnxError, match="must record aggregator-scale-bits"):
        recorded_aggregator(build_strategy("fedavg", {}, DEFAULTS).config)


def test_a_streamed_run_records_its_scale_and_replays_bit_for_bit(tmp_path: Path) -> None:
    run_id = run_local(tmp_path, strategy="fedavg", **{"num-server-rounds": 2})

    with Registry(tmp_path) as reg:
        aggregates = [v.record for v in reg.versions(run_id) if v.record.kind is VersionKind.AGGREGATE]
        report = replay_run(reg, run_id)

    assert [a.strategy_config["aggregator"] for a in aggregates] == [FIXED_POINT] * 2
    assert [a.strategy_config[AGGREGATOR_SCALE_BITS] for a in aggregates] == [
        str(scale_bits(6, 2**20, 1024.0))] * 2
    assert report.ok, report.rounds


def test_a_held_run_records_float_v0_and_replays(tmp_path: Path) -> None:
    run_id = run_local(tmp_path, strategy="fedavg",
                       **{"num-server-rounds": 1, "strategy-config": "aggregator=float-v0"})

    with Registry(tmp_path) as reg:
        aggregate = next(v.record for v in reg.versions(run_id)
                         if v.record.kind is VersionKind.AGGREGATE)
        report = replay_run(reg, run_id)

    assert aggregate.strategy_config["aggregator"] == HELD
    assert AGGREGATOR_SCALE_BITS not in aggregate.strategy_config and report.ok


def test_updates_outside_the_bound_are_rejected_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(RoundFailed, match="outside the aggregator's declared bound"):
        run_local(tmp_path, strategy="fedavg",
                  **{"num-server-rounds": 1, "strategy-config": "aggregator-bound=1e-9"})

    with Registry(tmp_path) as reg:
        (run,) = reg.runs()
        status = reg.run(run.run_id).status
    assert status == "failed"


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_half_and_double_precision_fold_to_the_exact_integers(dtype: type) -> None:
    x: np.ndarray = np.random.default_rng(5).normal(0, 1, 1000).astype(dtype)
    acc = FixedPointMean(bound=8.0, max_examples=1000, bits=30)

    acc.add({"w": x}, 3)

    expected = np.rint(x.astype(np.float64) * 2.0**30).astype(np.int64) * 3
    assert np.array_equal(acc._sums["w"], expected)  # noqa: SLF001
    assert acc.mean()["w"].dtype == dtype


def test_a_reply_outside_the_bound_is_rejected_with_its_reason_and_the_round_goes_on(
    tmp_path: Path,
) -> None:
    from flonnx.client.app import make_client_app
    from flonnx.exchange.spec import parse_spec
    from flonnx.server.federation import Federation
    from flonnx.server.progress import Reporter
    from tests.server.local_grid import LocalGrid

    spec = parse_spec({"model": "digits-mlp", "clients": 3, "frameworks": "sklearn:3", "rounds": 1,
                       "standardize": False, "data": {"source": "digits"},
                       "train": {"local-epochs": 1}, "strategy-config": {"aggregator-bound": "64"}},
                      source="bound")
    configs = [{"partition-id": i, "num-partitions": 3, "client-id": f"honest-{i}"} for i in range(2)]
    configs.append({"partition-id": 2, "num-partitions": 3, "client-id": "huge", "fault": "scaled",
                    "fault-scale": 1e6})
    settings = Settings.from_run_config({"registry": str(tmp_path), "min-available-nodes": 3,
                                         "min-train-nodes": 2}, spec=spec)
    run_id = Federation(LocalGrid(make_client_app(spec), 3, node_configs=configs), settings,
                        Reporter()).run()

    with Registry(tmp_path) as reg:
        versions = [v.record for v in reg.versions(run_id)]
        aggregate = reg.record(reg.heads(run_id)[1])
        parents = sorted(reg.record(p).client for p in aggregate.parents)
        report = replay_run(reg, run_id)
    (rejected,) = [r for r in versions if r.kind is VersionKind.REJECTED]
    assert rejected.client == "huge"
    assert "outside the aggregator's declared bound |x| <= 64 (fixed-point-v1" in rejected.reason
    assert parents == ["honest-0", "honest-1"] and aggregate.strategy_config["aggregator-bound"] == "64.0"
    assert report.ok
