"""Strategy state, type by type: what :func:`capture_state` saves and what :func:`restore_state` gives back.

``tests/server/test_strategy_state.py`` resumes real strategies mid-run (a torch export and several
rounds each); these tests hold hand-made strategies, so that every saved type, the nested strategy
and each refusal is checked in a fraction of a second.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord
from flwr.serverapp.strategy import FedAvg, FedAvgM

from flonnx.server.strategy_state import StateError, capture_state, restore_state, seeded_global_rng


class Holder:
    """A strategy's attributes without a strategy around them."""

    def method(self) -> None:  # a bound method stored as an attribute is configuration
        pass


def _holder(**attributes: object) -> Holder:
    holder = Holder()
    vars(holder).update(attributes)
    return holder


def _as_stored(description: dict[str, object]) -> dict[str, object]:
    """The description as a resume reads it back: the registry keeps it as JSON."""
    return json.loads(json.dumps(description))  # type: ignore[no-any-return]


def _round_trip(original: object, fresh: object) -> object:
    arrays, description = capture_state(original)
    restore_state(fresh, dict(arrays), _as_stored(description))
    return fresh


def test_plain_values_are_described_by_type_and_floats_kept_bit_for_bit() -> None:
    strategy = _holder(none=None, flag=True, count=3, rate=0.1, name="fedadam", config={"eta": [1, 2]},
                       history=[0.5, "x"], empty_dict={}, empty_list=[])

    arrays, description = capture_state(strategy)

    assert arrays == {}
    assert description == {
        "config": {"t": "json", "v": {"eta": [1, 2]}},
        "count": {"t": "int", "v": 3},
        "empty_dict": {"t": "json", "v": {}},
        "empty_list": {"t": "json", "v": []},
        "flag": {"t": "bool", "v": True},
        "history": {"t": "json", "v": [0.5, "x"]},
        "name": {"t": "str", "v": "fedadam"},
        "none": {"t": "NoneType", "v": None},
        "rate": {"t": "float", "v": (0.1).hex()},
    }


def test_plain_values_come_back_equal_and_of_the_same_type() -> None:
    original = _holder(none=None, flag=False, count=-4, rate=1 / 3, tiny=5e-324, name="", config={"a": 1},
                       history=[1, 2])

    restored = _round_trip(original, Holder())

    assert vars(restored) == vars(original)
    assert {k: type(v) for k, v in vars(restored).items()} == {k: type(v) for k, v in vars(original).items()}


def test_arrays_of_every_saved_shape_are_split_out_under_their_path() -> None:
    m, v = np.arange(4.0).reshape(2, 2), np.ones(3, np.float32)
    strategy = _holder(scalar=np.float32(2.5), vector=v, record=ArrayRecord({"w": Array(m), "b": Array(v)}),
                       named={"w": m, "b": v}, moments=[m, v], pair=(v, m))

    arrays, description = capture_state(strategy)

    assert description == {
        "moments": {"t": "list-ndarray", "n": 2},
        "named": {"t": "dict-ndarray", "keys": ["w", "b"]},
        "pair": {"t": "tuple-ndarray", "n": 2},
        "record": {"t": "ArrayRecord", "keys": ["w", "b"]},
        "scalar": {"t": "np-scalar"},
        "vector": {"t": "ndarray"},
    }
    assert sorted(arrays) == ["moments/0", "moments/1", "named/b", "named/w", "pair/0", "pair/1",
                              "record/b", "record/w", "scalar", "vector"]
    assert np.array_equal(arrays["moments/0"], m) and np.array_equal(arrays["pair/0"], v)
    assert np.array_equal(arrays["record/w"], m) and arrays["scalar"].dtype == np.float32


def test_arrays_come_back_equal_of_the_same_kind_and_writable() -> None:
    m, v = np.arange(4.0).reshape(2, 2), np.ones(3, np.float32)
    original = _holder(scalar=np.float32(2.5), vector=v, record=ArrayRecord({"w": Array(m)}),
                       named={"w": m, "b": v}, moments=[m, v], pair=(v, m))
    arrays, description = capture_state(original)
    frozen = {k: a.copy() for k, a in arrays.items()}
    for a in frozen.values():
        a.flags.writeable = False

    restored = vars(_round_trip_from(frozen, description))

    assert type(restored["scalar"]) is np.float32 and restored["scalar"] == np.float32(2.5)
    assert np.array_equal(restored["vector"], v) and restored["vector"].dtype == np.float32
    assert isinstance(restored["record"], ArrayRecord) and list(restored["record"].keys()) == ["w"]
    assert np.array_equal(restored["record"]["w"].numpy(), m)
    assert list(restored["named"]) == ["w", "b"] and np.array_equal(restored["named"]["b"], v)
    assert isinstance(restored["moments"], list) and len(restored["moments"]) == 2
    assert isinstance(restored["pair"], tuple) and np.array_equal(restored["pair"][1], m)
    restored["vector"] += 1  # strategies update their state in place
    assert not np.shares_memory(restored["vector"], frozen["vector"])


def _round_trip_from(arrays: dict[str, np.ndarray], description: dict[str, object]) -> Holder:
    fresh = Holder()
    restore_state(fresh, arrays, _as_stored(description))  # type: ignore[arg-type]
    return fresh


def test_callables_are_configuration_and_do_not_stop_the_capture() -> None:
    holder = Holder()
    strategy = _holder(a_function=len, a_lambda=lambda x: x, a_method=holder.method, a_class=dict, z=1)

    arrays, description = capture_state(strategy)

    assert (arrays, description) == ({}, {"z": {"t": "int", "v": 1}})


@pytest.mark.parametrize("value", [
    object(),
    {"w": np.ones(2), "n": 1},  # arrays mixed with numbers
    {1: np.ones(2)},  # a key that is not a string
    [np.ones(2), 1],
    {"loss": float("nan")},  # not strict JSON
    {"when": {1, 2}},
], ids=["object", "dict-mixed", "dict-int-key", "list-mixed", "nan", "set"])
def test_an_attribute_that_cannot_be_saved_is_named_with_its_type(value: object) -> None:
    with pytest.raises(StateError, match=f"attribute 'cache' of Holder holds a {type(value).__name__}, "):
        capture_state(_holder(ok=1, cache=value))


def test_a_wrapped_strategy_is_saved_under_its_path_and_restored_into_the_fresh_one() -> None:
    inner = FedAvgM(server_momentum=0.9)
    inner.momentum_vector = [np.full(2, 0.5)]
    original = _holder(strategy=inner, clip=np.float32(1.25))

    arrays, description = capture_state(original)
    fresh = _holder(strategy=FedAvgM(server_momentum=0.9))
    restore_state(fresh, arrays, _as_stored(description))

    assert description["strategy"] == {"t": "strategy", "class": "FedAvgM"}
    assert description["strategy.server_momentum"] == {"t": "float", "v": (0.9).hex()}
    assert sorted(arrays) == ["clip", "strategy.momentum_vector/0"]
    assert vars(fresh)["clip"] == 1.25 and isinstance(fresh.strategy, FedAvgM)  # type: ignore[attr-defined]
    assert np.array_equal(fresh.strategy.momentum_vector[0], np.full(2, 0.5))  # type: ignore[attr-defined]


def test_strategies_nested_two_deep_are_restored_at_their_depth() -> None:
    original = _holder(outer=_holder(strategy=FedAvg(fraction_train=0.25)))
    original.outer.strategy.extra = "kept"  # type: ignore[attr-defined]
    arrays, description = capture_state(_holder(wrapper=original.outer.strategy))
    fresh = _holder(wrapper=FedAvg())

    restore_state(fresh, arrays, _as_stored(description))

    assert fresh.wrapper.fraction_train == 0.25 and fresh.wrapper.extra == "kept"  # type: ignore[attr-defined]


@pytest.mark.parametrize(("saved", "fresh"), [(FedAvgM, FedAvg), (FedAvg, FedAvgM)])
def test_state_restored_into_a_different_strategy_is_refused(saved: type, fresh: type) -> None:
    arrays, description = capture_state(_holder(strategy=saved()))
    wrong = _holder(strategy=fresh())
    refusal = f"'strategy' was saved from a {saved.__name__}, but the strategy has a {fresh.__name__} there"

    with pytest.raises(StateError, match=refusal):
        restore_state(wrong, arrays, _as_stored(description))


def test_state_that_lacks_an_array_or_has_an_unknown_type_is_refused() -> None:
    arrays, description = capture_state(_holder(vector=np.ones(2), moments=[np.ones(2)]))

    with pytest.raises(StateError, match="lacks the array 'moments/0'"):
        restore_state(Holder(), {"vector": arrays["vector"]}, description)
    for unknown in ("sparse", "Array"):  # e.g. a type a newer flonnx saves
        with pytest.raises(StateError, match=f"state of 'vector' has unknown type '{unknown}'"):
            restore_state(Holder(), arrays, {"vector": {"t": unknown}})


def test_seeded_global_rng_puts_the_old_state_back_when_the_block_raises() -> None:
    np.random.seed(11)
    random.seed(11)
    expected_next = (np.random.random(), random.random())
    np.random.seed(11)
    random.seed(11)

    with pytest.raises(RuntimeError), seeded_global_rng(5):
        seeded = (np.random.random(), random.random())
        raise RuntimeError("strategy failed")

    np.random.seed(5)
    random.seed(5)
    assert seeded == (np.random.random(), random.random())  # numpy and Python both seeded
    np.random.seed(11)
    random.seed(11)
    assert expected_next == (np.random.random(), random.random())


def test_numpy_scalars_a_strategy_computes_come_back_at_resume() -> None:
    # e.g. self.norm = np.mean(...) in a custom strategy: np.float64 is a float subclass, and was
    # described as type 'float64', which the resume could not restore
    saved = _holder(norm=np.float64(0.5), steps=np.int64(3), half=np.float32(0.25), on=np.bool_(True),
                    label=np.str_("fedavg"))

    restored = _round_trip(saved, _holder())

    for name, value in vars(saved).items():
        assert getattr(restored, name) == value
    assert type(restored.norm) is np.float64 and type(restored.half) is np.float32  # type: ignore[attr-defined]
    assert type(restored.label) is str  # type: ignore[attr-defined]
