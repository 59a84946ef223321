"""Strategy state: captured after a round, restored into a fresh strategy, stored in the registry."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from flonnx.exchange.definition import Definition
from flonnx.exchange.registry import Registry, strategy_state_id
from flonnx.server.aggregation import AggregationInput, aggregate_round, configure_round
from flonnx.server.settings import Settings
from flonnx.server.strategies import build_strategy
from flonnx.server.strategy_state import StateError, capture_state, restore_state, seeded_global_rng

DEFAULTS = Settings(min_available_nodes=3).strategy_defaults()


def _updates(weights: dict[str, np.ndarray], rnd: int) -> list[AggregationInput]:
    rng = np.random.default_rng(rnd)
    return [AggregationInput(f"c{i}", {k: (v + rng.normal(0, 0.1, v.shape)).astype(v.dtype)
                                       for k, v in weights.items()}, 10 + i, {"train-loss": 1.0})
            for i in range(3)]


def _round(strategy: object, rnd: int, weights: dict[str, np.ndarray],
           definition: Definition) -> dict[str, np.ndarray]:
    configure_round(strategy, rnd, 0, weights, {}, [1, 2, 3])
    return aggregate_round(strategy, rnd, 0, _updates(weights, rnd), definition)[0]


@pytest.mark.parametrize(("name", "config"), [
    ("fedadam", {}), ("fedavgm", {"server-momentum": "0.9"}), ("fedyogi", {}),
    ("dp-server-adaptive", {"noise-multiplier": "0.05", "initial-clipping-norm": "1.0"}),
    ("qfedavg", {}),
])
def test_restored_strategy_continues_exactly_like_the_original(
    name: str, config: dict[str, str], mlp_model: tuple[Definition, dict[str, np.ndarray]],
) -> None:
    definition, weights = mlp_model
    original = build_strategy(name, config, DEFAULTS).strategy
    after_one = _round(original, 1, weights, definition)
    resumed = build_strategy(name, config, DEFAULTS).strategy
    restore_state(resumed, *capture_state(original))

    expected = _round(original, 2, after_one, definition)
    actual = _round(resumed, 2, after_one, definition)

    assert all(np.array_equal(expected[k], actual[k]) for k in expected)
    assert strategy_state_id(*capture_state(original)) == strategy_state_id(*capture_state(resumed))


def test_fedopt_aggregates_are_cast_back_to_the_definition_dtype(
    mlp_model: tuple[Definition, dict[str, np.ndarray]],
) -> None:
    definition, weights = mlp_model

    out = _round(build_strategy("fedadam", {}, DEFAULTS).strategy, 1, weights, definition)

    assert {v.dtype for v in out.values()} == {np.dtype("float32")}


def test_state_that_cannot_be_saved_is_named() -> None:
    strategy = build_strategy("fedavg", {}).strategy
    strategy.cache = object()

    with pytest.raises(StateError, match="'cache' of FedAvg holds a object"):
        capture_state(strategy)


def test_seeded_global_rng_is_reproducible_and_puts_the_old_state_back() -> None:
    np.random.seed(7)
    random.seed(7)
    expected_next = (np.random.random(), random.random())
    np.random.seed(7)
    random.seed(7)

    with seeded_global_rng(123):
        first = np.random.normal(size=3)
    with seeded_global_rng(123):
        second = np.random.normal(size=3)

    assert np.array_equal(first, second)
    assert (np.random.random(), random.random()) == expected_next


def test_registry_stores_state_with_the_round_and_verify_rehashes_it(tmp_path: Path) -> None:
    arrays, description = capture_state(build_strategy("fedavgm", {"server-momentum": "0.9"}).strategy)
    with Registry(tmp_path) as registry:
        run_id = registry.create_run("digits-mixed", 0, {})
        state_id = registry.put_state(arrays, description)
        registry.commit(run_id, [], head_round=0, state_id=state_id)

        assert registry.state_at(run_id, 0) == state_id == strategy_state_id(arrays, description)
        assert registry.verify(run_id)[1] == []
        registry.blobs.path(state_id).write_bytes(b'{"arrays_id": "x", "state": {}}')
        problems = registry.verify(run_id)[1]

    assert len(problems) == 1 and f"round 0: strategy state {state_id[:12]}" in problems[0]
