"""One round of aggregation by a Flower strategy, on a tiny ONNX definition (fast, no federation, no torch).

``tests/server/test_streaming.py`` compares the two aggregators on a torch export and runs federations;
these tests pin what :mod:`flonnx.server.aggregation` hands a strategy (messages, order, node ids,
seeded RNG), what it makes of the strategy's answer (dtypes, validation, metrics, refusals), and
when a round streams and what it records.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from flwr.app import DEFAULT_TTL, Array, ArrayRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping, FedAdam, FedAvg, FedAvgM
from flwr.serverapp.strategy.strategy_utils import InconsistentMessageReplies
from flwr.supercore.task_identity import TaskIdentity
from onnx import TensorProto, helper

from flonnx.exchange.definition import Definition
from flonnx.exchange.errors import FlonnxError, InvalidUpdate
from flonnx.exchange.seeds import derive_seed
from flonnx.server.aggregation import (
    AggregationInput,
    RoundAggregation,
    _NodesGrid,
    aggregate_round,
    configure_round,
    update_message,
)
from flonnx.server.strategy_state import seeded_global_rng
from flonnx.server.streaming import FIXED_POINT, HELD, AggregatorSpec, FixedPointMean, scale_bits
from tests.tiny_models import gemm_mlp

DEFINITION, WEIGHTS = gemm_mlp(4, 3, 2)
STREAMING = AggregatorSpec(FIXED_POINT)


def _updates(n: int = 3, seed: int = 0) -> list[AggregationInput]:
    """``n`` updates whose client keys sort in the reverse of their list order (c9, c8, ...)."""
    rng = np.random.default_rng(seed)
    return [AggregationInput(f"c{9 - i}", {k: (v + rng.normal(0, 0.5, v.shape)).astype(np.float32)
                                           for k, v in WEIGHTS.items()},
                             10 * i + 5, {"loss": 0.5 + i, "acc": i})
            for i in range(n)]


def _fedavg(**kwargs: Any) -> FedAvg:
    return FedAvg(min_train_nodes=1, min_available_nodes=1, **kwargs)


def _same_bits(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes()
                                        for k in a)


def _numpy(record: ArrayRecord) -> dict[str, np.ndarray]:
    return dict(zip(record.keys(), record.to_numpy_ndarrays(), strict=True))


class Recording(FedAvg):
    """FedAvg that notes what it is given and draws from the global RNGs while aggregating."""

    def __init__(self, answer: Any = "mean", metrics: Any = "fedavg") -> None:
        super().__init__(min_train_nodes=1, min_available_nodes=1)
        self.answer, self.metrics = answer, metrics
        self.seen: list[Message] = []
        self.draws: tuple[float, float] | None = None

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[Any, Any]:
        self.seen = list(replies)
        self.draws = (float(np.random.random()), random.random())
        arrays, metrics = super().aggregate_train(server_round, self.seen)
        return (arrays if self.answer == "mean" else self.answer,
                metrics if self.metrics == "fedavg" else self.metrics)


def _draws(seed: int, rnd: int, phase: str) -> tuple[float, float]:
    with seeded_global_rng(derive_seed(seed, "strategy", rnd, phase)):
        return float(np.random.random()), random.random()


# -- what a strategy is given ---------------------------------------------------------------------
def test_configure_round_offers_exactly_the_given_nodes_sampled_under_the_round_seed() -> None:
    strategy = _fedavg(fraction_train=0.5)
    nodes = list(range(11, 21))
    state = random.getstate()

    messages = configure_round(strategy, 3, 42, dict(reversed(WEIGHTS.items())), {"lr": 0.25}, nodes)

    with seeded_global_rng(derive_seed(42, "strategy", 3, "configure")):
        expected = random.sample(nodes, 5)
    assert [m.metadata.dst_node_id for m in messages] == expected
    assert random.getstate() == state
    for message in messages:
        arrays = message.content.array_records["arrays"]
        assert list(arrays.keys()) == sorted(WEIGHTS)
        assert _same_bits(_numpy(arrays), WEIGHTS)
        assert dict(message.content.config_records["config"]) == {"lr": 0.25, "server-round": 3}
        assert message.metadata.message_type == MessageType.TRAIN


def test_outside_a_flower_run_messages_get_a_zero_identity_that_is_removed_after(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # outside a run: an earlier test in the same process may have left an identity set
    for name in ("_run_id", "_node_id", "_task_id"):
        monkeypatch.setattr(TaskIdentity, name, None)

    (message,) = configure_round(_fedavg(), 1, 0, WEIGHTS, {}, [5])

    assert (message.metadata.run_id, message.metadata.src_node_id, message.metadata.src_task_id) == (0, 0, 0)
    assert (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id) == (None, None, None)  # noqa: SLF001


def test_inside_a_flower_run_its_identity_is_used_and_kept() -> None:
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 7, 8, 9
    try:
        (message,) = configure_round(_fedavg(), 1, 0, WEIGHTS, {}, [5])
        kept = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)  # noqa: SLF001
    finally:
        TaskIdentity._run_id = TaskIdentity._node_id = TaskIdentity._task_id = None  # type: ignore[assignment]  # noqa: SLF001, E501
    assert (message.metadata.run_id, message.metadata.src_node_id, message.metadata.src_task_id) == (7, 8, 9)
    assert kept == (7, 8, 9)


def test_a_strategy_sees_only_the_offered_nodes_and_no_grid_in_replay() -> None:
    nodes = [3, 1, 2]
    grid = _NodesGrid(None, nodes)
    nodes.append(4)

    assert list(grid.get_node_ids()) == [3, 1, 2]
    with pytest.raises(AttributeError, match=r"^replay has no grid; a strategy asked for 'push_messages'$"):
        grid.push_messages  # noqa: B018
    assert _NodesGrid(SimpleNamespace(run=17), [1]).run == 17  # a live grid answers the rest


def test_an_update_message_is_its_sorted_arrays_and_metrics_with_fixed_metadata() -> None:
    update = AggregationInput("c1", {"b": np.ones(2, np.float32), "a": np.arange(6.0).reshape(2, 3).T},
                              12, {"z": 1, "loss": 0.5})

    message = update_message(update, 7)

    arrays, metrics = message.content.array_records["arrays"], message.content.metric_records["metrics"]
    assert list(arrays.keys()) == ["a", "b"]
    assert np.array_equal(_numpy(arrays)["a"], np.arange(6.0).reshape(2, 3).T)
    assert list(metrics.items()) == [("num-examples", 12), ("loss", 0.5), ("z", 1.0)]
    assert type(metrics["z"]) is float and type(metrics["num-examples"]) is int
    meta = message.metadata
    assert (meta.run_id, meta.message_id, meta.src_node_id, meta.dst_node_id, meta.reply_to_message_id,
            meta.group_id, meta.created_at, meta.ttl, meta.message_type) == (
        0, "flonnx-7", 7, 0, "", "", 0.0, DEFAULT_TTL, MessageType.TRAIN)


def test_aggregate_round_gives_updates_in_client_key_order_as_nodes_1_to_n_under_the_round_seed() -> None:
    strategy, updates = Recording(), _updates(3)

    weights, metrics = aggregate_round(strategy, 4, 99, updates, DEFINITION)

    assert [m.metadata.src_node_id for m in strategy.seen] == [1, 2, 3]
    # c7, c8, c9
    assert [m.content.metric_records["metrics"]["num-examples"] for m in strategy.seen] == [25, 15, 5]
    assert strategy.draws == _draws(99, 4, "aggregate")
    total = 45
    for name, value in weights.items():
        exact = sum(u.weights[name].astype(np.float64) * u.num_examples for u in updates) / total
        assert value.dtype == np.float32 and np.allclose(value, exact, rtol=0, atol=1e-6)
    assert metrics == pytest.approx({"loss": (0.5 * 5 + 1.5 * 15 + 2.5 * 25) / 45, "acc": (15 + 2 * 25) / 45},
                                    rel=1e-15)
    assert all(type(v) is float for v in metrics.values())


# -- what is made of the strategy's answer ----------------------------------------------------------
def test_a_strategy_that_returns_nothing_is_refused_naming_it_and_the_update_count() -> None:
    with pytest.raises(FlonnxError, match=r"^round 2: strategy Recording returned no weights "
                                          r"from 3 update\(s\)$"):
        aggregate_round(Recording(answer=None), 2, 0, _updates(3), DEFINITION)
    with pytest.raises(FlonnxError, match=r"^round 5: strategy mine returned no weights from 1 update\(s\)$"):
        aggregate_round(Recording(answer=None), 5, 0, _updates(1), DEFINITION, label="mine")


@pytest.mark.parametrize("record", [True, False])
def test_wider_or_narrower_floats_are_cast_to_the_definitions_dtypes(record: bool) -> None:
    wide = {k: v.astype(np.float64) / 3 for k, v in WEIGHTS.items()}
    wide["l1.b"] = wide["l1.b"].astype(np.float16)
    answer = ArrayRecord({k: Array(v) for k, v in wide.items()}) if record else wide

    weights, _ = aggregate_round(Recording(answer=answer), 1, 0, _updates(2), DEFINITION)

    assert {k: v.dtype for k, v in weights.items()} == {k: np.dtype(np.float32) for k in WEIGHTS}
    assert all(np.array_equal(weights[k], wide[k].astype(np.float32)) for k in WEIGHTS)


def test_weights_that_do_not_fit_the_definition_are_refused() -> None:
    ints = {**WEIGHTS, "l2.b": np.zeros(2, np.int64)}
    with pytest.raises(InvalidUpdate, match=r"^round 3 aggregate does not match definition [0-9a-f]{12}: "
                                            r"tensor 'l2.b': expected dtype float32, got int64$"):
        aggregate_round(Recording(answer=ints), 3, 0, _updates(2), DEFINITION)
    # only floats of another width are cast: booleans, unsigned and complex numbers are not floats
    for dtype in (np.bool_, np.uint8, np.complex64):
        with pytest.raises(InvalidUpdate, match=rf"expected dtype float32, got {np.dtype(dtype).name}$"):
            aggregate_round(Recording(answer={**WEIGHTS, "l2.b": np.zeros(2, dtype)}), 3, 0, _updates(2),
                            DEFINITION)
    with pytest.raises(InvalidUpdate, match="unexpected tensors not in the definition: extra$"):
        aggregate_round(Recording(answer={**WEIGHTS, "extra": np.zeros(2)}), 3, 0, _updates(2), DEFINITION)
    with pytest.raises(InvalidUpdate, match=r"tensor 'l1.b': 1 non-finite values"):
        aggregate_round(Recording(answer={**WEIGHTS, "l1.b": np.array([0, np.nan, 0], np.float32)}), 3, 0,
                        _updates(2), DEFINITION)


@pytest.mark.parametrize(("returned", "kept"), [
    ({"a": 1, "b": 2.5, "c": True, "d": "x", "e": [1.0], "f": np.float64(0.5)},
     {"a": 1.0, "b": 2.5, "f": 0.5}),
    (None, {}),
    ({}, {}),
    (MetricRecord({"loss": 0.25, "n": 3}), {"loss": 0.25, "n": 3.0}),
])
def test_only_numeric_train_metrics_are_kept_as_floats(returned: Any, kept: dict[str, float]) -> None:
    _, metrics = aggregate_round(Recording(metrics=returned), 1, 0, _updates(2), DEFINITION)

    assert metrics == kept and all(type(v) is float for v in metrics.values())


# -- held or streamed -------------------------------------------------------------------------------
def test_the_held_aggregator_keeps_the_updates_and_aggregates_like_aggregate_round() -> None:
    updates = _updates(3)
    aggregation = RoundAggregation(_fedavg(), AggregatorSpec(HELD), 2, 5, DEFINITION, updates=3)
    for update in updates:
        aggregation.add(update)

    weights, metrics = aggregation.finish()

    expected = aggregate_round(_fedavg(), 2, 5, updates, DEFINITION)
    assert not aggregation.streaming
    assert _same_bits(weights, expected[0]) and metrics == expected[1]
    with pytest.raises(FlonnxError, match=r"round 2: strategy FedAvg returned no weights from 0 update\(s\)"):
        aggregation.finish()  # the held updates were handed over, not kept


def test_a_streamed_fedavg_round_is_the_fixed_point_mean_with_the_held_metrics() -> None:
    updates = _updates(4, seed=3)
    aggregation = RoundAggregation(_fedavg(), STREAMING, 1, 0, DEFINITION, updates=4)
    for update in updates:
        aggregation.add(update)
    bits = scale_bits(4, STREAMING.max_examples, STREAMING.bound)
    assert bits == 62 - 2 - 20 - 10
    reference = FixedPointMean(bound=1024.0, max_examples=2**20, bits=bits)
    for update in reversed(updates):
        reference.add(update.weights, update.num_examples)

    weights, metrics = aggregation.finish()

    assert aggregation.streaming
    assert _same_bits(weights, reference.mean())
    assert metrics == aggregate_round(_fedavg(), 1, 0, updates, DEFINITION)[1]
    with pytest.raises(FlonnxError, match=r"the mean was already taken"):  # the accumulator was released
        aggregation.finish()


def test_the_streamed_train_metrics_are_aggregated_in_client_key_order_under_the_round_seed() -> None:
    seen: list[list[tuple[str, Any]]] = []
    draws: list[tuple[float, float]] = []

    def aggregate(records: list[RecordDict], key: str) -> MetricRecord:
        seen.extend([list(r.metric_records["metrics"].items()) for r in records])
        draws.append((float(np.random.random()), random.random()))
        return MetricRecord({"key": float(len(key))})

    aggregation = RoundAggregation(_fedavg(train_metrics_aggr_fn=aggregate), STREAMING, 6, 8, DEFINITION,
                                   updates=3)
    for update in _updates(3):
        aggregation.add(update)

    _, metrics = aggregation.finish()

    assert seen == [[("num-examples", 25), ("acc", 2.0), ("loss", 2.5)],
                    [("num-examples", 15), ("acc", 1.0), ("loss", 1.5)],
                    [("num-examples", 5), ("acc", 0.0), ("loss", 0.5)]]
    assert draws == [_draws(8, 6, "aggregate")]
    assert metrics == {"key": float(len("num-examples"))}


def test_streamed_metrics_must_be_consistent_like_flowers_replies() -> None:
    aggregation = RoundAggregation(_fedavg(), STREAMING, 1, 0, DEFINITION, updates=2)
    first, second = _updates(2)
    aggregation.add(first)
    aggregation.add(AggregationInput(second.client, second.weights, second.num_examples, {"other": 1.0}))

    with pytest.raises(InconsistentMessageReplies, match="All MetricRecords must have the same keys"):
        aggregation.finish()


def test_a_server_step_strategy_is_given_one_message_holding_the_streamed_mean() -> None:
    updates = _updates(3, seed=5)
    recording = Recording()
    aggregation = RoundAggregation(recording, STREAMING, 2, 11, DEFINITION, updates=3)
    for update in updates:
        aggregation.add(update)
    reference = FixedPointMean(bound=1024.0, max_examples=2**20, bits=30)
    for update in updates:
        reference.add(update.weights, update.num_examples)
    mean = reference.mean()

    weights, _ = aggregation.finish()

    (message,) = recording.seen
    assert message.metadata.src_node_id == 1
    assert message.content.metric_records["metrics"]["num-examples"] == 45
    assert _same_bits(_numpy(message.content.array_records["arrays"]), mean)
    assert recording.draws == _draws(11, 2, "aggregate")
    assert _same_bits(weights, mean)  # FedAvg of one message is that message


@pytest.mark.parametrize("make", [
    lambda: FedAdam(min_train_nodes=1, min_available_nodes=1),
    lambda: FedAvgM(min_train_nodes=1, min_available_nodes=1, server_momentum=0.9)])
def test_server_step_strategies_apply_their_step_to_the_streamed_mean(make: Any) -> None:
    updates = _updates(3, seed=6)
    streamed, direct = make(), make()
    configure_round(streamed, 1, 0, WEIGHTS, {}, [1])
    configure_round(direct, 1, 0, WEIGHTS, {}, [1])
    aggregation = RoundAggregation(streamed, STREAMING, 1, 0, DEFINITION, updates=3)
    for update in updates:
        aggregation.add(update)
    reference = FixedPointMean(bound=1024.0, max_examples=2**20, bits=30)
    for update in updates:
        reference.add(update.weights, update.num_examples)
    mean = reference.mean()

    weights, _ = aggregation.finish()

    stepped, _ = direct.aggregate_train(1, [update_message(AggregationInput("", mean, 45, {}), 1)])
    expected = {k: v.astype(np.float32) for k, v in _numpy(stepped).items()}
    assert _same_bits(weights, expected)
    assert not all(np.array_equal(weights[k], mean[k]) for k in mean)  # the step did something


def test_an_empty_streamed_round_is_refused_naming_the_strategy() -> None:
    with pytest.raises(FlonnxError, match=r"^round 4: strategy FedAvg returned no weights "
                                          r"from 0 update\(s\)$"):
        RoundAggregation(_fedavg(), STREAMING, 4, 0, DEFINITION, updates=3).finish()
    with pytest.raises(FlonnxError, match=r"^round 4: strategy mine returned no weights from 0 update\(s\)$"):
        RoundAggregation(_fedavg(), STREAMING, 4, 0, DEFINITION, updates=3, label="mine").finish()


@pytest.mark.parametrize(("updates", "bits", "expected"), [
    (0, None, 32), (1, None, 32), (2, None, 31), (3, None, 30), (1000, None, 22), (3, 25, 25),
    (2**47, 40, 40),
])
def test_a_streamed_round_records_its_aggregator_and_scale(updates: int, bits: int | None,
                                                           expected: int) -> None:
    aggregation = RoundAggregation(_fedavg(), STREAMING, 1, 0, DEFINITION, updates=updates, bits=bits)

    recorded = aggregation.recorded_config({"fraction-train": "1.0", "aggregator": "ignored"})

    assert aggregation.streaming
    assert recorded == {"fraction-train": "1.0", "aggregator": FIXED_POINT, "aggregator-bound": "1024.0",
                        "aggregator-max-examples": "1048576", "aggregator-scale-bits": str(expected)}


def test_the_declared_bounds_are_the_aggregators() -> None:
    spec = AggregatorSpec(FIXED_POINT, bound=2.0, max_examples=50)
    aggregation = RoundAggregation(_fedavg(), spec, 1, 0, DEFINITION, updates=2)
    (update,) = _updates(1)
    small = {k: np.clip(v, -2, 2) for k, v in update.weights.items()}

    with pytest.raises(InvalidUpdate, match="num-examples 51 is outside the aggregator's declared "
                                            "range 1 to 50"):
        aggregation.add(AggregationInput("a", small, 51, {}))
    with pytest.raises(InvalidUpdate, match=r"has a value 2.5 outside the aggregator's declared "
                                            r"bound \|x\| <= 2 "):
        aggregation.add(AggregationInput("a", {**small, "l2.b": np.array([0, 2.5], np.float32)}, 50, {}))
    aggregation.add(AggregationInput("a", small, 50, {}))
    assert aggregation.recorded_config({})["aggregator-bound"] == "2.0"
    assert aggregation.recorded_config({})["aggregator-scale-bits"] == str(62 - 1 - 6 - 1)
    assert _same_bits(aggregation.finish()[0], _mean_of([(small, 50)], 2.0, 50, 54))


def _mean_of(updates: list[tuple[dict[str, np.ndarray], int]], bound: float, max_examples: int,
             bits: int) -> dict[str, np.ndarray]:
    acc = FixedPointMean(bound=bound, max_examples=max_examples, bits=bits)
    for weights, weight in updates:
        acc.add(weights, weight)
    return acc.mean()


def _bfloat16_definition() -> Definition:
    w = helper.make_tensor("w", TensorProto.BFLOAT16, [2], [1.0, 2.0])
    graph = helper.make_graph([helper.make_node("Cast", ["w"], ["c"], to=TensorProto.FLOAT),
                               helper.make_node("Add", ["x", "c"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], initializer=[w])
    return Definition.from_model(helper.make_model(graph))[0]


@pytest.mark.parametrize(("case", "config", "recorded"), [
    ("held", {"fraction-train": "1.0"}, {"fraction-train": "1.0"}),
    ("held", {"fraction-train": "1.0", "aggregator": FIXED_POINT, "aggregator-bound": "8.0",
              "aggregator-max-examples": "9", "aggregator-scale-bits": "30"},
     {"fraction-train": "1.0", "aggregator": HELD}),
    ("not fedavg", {"aggregator": FIXED_POINT, "aggregator-bound": "8.0"}, {"aggregator": HELD}),
    ("bfloat16", {"aggregator": FIXED_POINT, "min-nodes": "2"}, {"aggregator": HELD, "min-nodes": "2"}),
    ("too many", {"aggregator": FIXED_POINT}, {"aggregator": HELD}),
])
def test_a_round_that_does_not_stream_records_the_held_aggregator(case: str, config: dict[str, str],
                                                                  recorded: dict[str, str]) -> None:
    strategy: Any = _fedavg()
    aggregator, definition, updates = STREAMING, DEFINITION, 3
    if case == "held":
        aggregator = AggregatorSpec(HELD)
    elif case == "not fedavg":
        strategy = DifferentialPrivacyServerSideFixedClipping(_fedavg(), 0.1, 5.0, 3)
    elif case == "bfloat16":
        definition = _bfloat16_definition()
    else:
        updates = 2**47  # 62 - 47 - 20 - 10 < 16: no scale

    aggregation = RoundAggregation(strategy, aggregator, 1, 0, definition, updates=updates)

    assert not aggregation.streaming
    assert aggregation.recorded_config(config) == recorded


def test_update_inputs_are_frozen() -> None:
    (update,) = _updates(1)

    with pytest.raises(AttributeError):
        update.num_examples = 3  # type: ignore[misc]
