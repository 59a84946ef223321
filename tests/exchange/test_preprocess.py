"""Federated standardisation: node statistics add up to the pooled ones; the wrapped graph agrees."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from flonnx.exchange.errors import FlonnxError, InvalidModel
from flonnx.exchange.ort import run_model
from flonnx.exchange.preprocess import LocalStats, Preprocessing, combine_stats, local_stats, wrap_model


def _linear(features: int, outputs: int = 1) -> object:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((features, outputs)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", outputs])], initializer=[w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(min_value=2, max_value=30), min_size=1, max_size=5), st.integers(0, 10_000))
def test_node_statistics_combine_into_the_pooled_mean_and_std(sizes: list[int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    parts = [rng.normal(5.0, 3.0, size=(n, 4)) for n in sizes]

    pre = combine_stats([local_stats(p) for p in parts], standardize=True, regression=False)

    pooled = np.concatenate(parts)
    np.testing.assert_allclose(pre.mean, pooled.mean(axis=0), rtol=1e-9, atol=1e-9)
    expected_std = pooled.std(axis=0)
    np.testing.assert_allclose(pre.std, np.where(expected_std > 1e-12, expected_std, 1.0), rtol=1e-6)


def test_zero_variance_feature_is_centred_not_divided_by_zero() -> None:
    x = np.column_stack([np.full(10, 7.0), np.arange(10.0)])

    pre = combine_stats([local_stats(x)], standardize=True, regression=False)

    out = pre.apply(x.astype(np.float32))
    assert pre.std[0] == 1.0 and np.all(out[:, 0] == 0.0) and np.all(np.isfinite(out))


def test_missing_values_are_skipped_in_statistics_and_imputed_with_the_federated_mean() -> None:
    a = np.array([[1.0, np.nan], [3.0, 4.0]])
    b = np.array([[np.nan, 8.0]])

    pre = combine_stats([local_stats(a), local_stats(b)], standardize=False, regression=False)

    assert pre.mean == (2.0, 6.0)
    np.testing.assert_array_equal(pre.apply(b.astype(np.float32)), [[2.0, 8.0]])


def test_wrapped_graph_on_raw_rows_equals_the_model_on_preprocessed_rows() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(50.0, 10.0, size=(20, 3)).astype(np.float32)
    x[3, 1] = np.nan
    y = rng.normal(100.0, 20.0, size=20)
    pre = combine_stats([local_stats(x[:10], y[:10]), local_stats(x[10:], y[10:])],
                        standardize=True, regression=True)
    model = _linear(3)

    wrapped = run_model(wrap_model(model, pre), {"x": x})["y"]

    inner = run_model(model, {"x": pre.apply(x)})["y"]
    assert pre.target_mean is not None and pre.target_std is not None
    np.testing.assert_allclose(wrapped, inner * pre.target_std + pre.target_mean, rtol=1e-5, atol=1e-4)
    assert np.all(np.isfinite(wrapped))


def test_preprocessing_round_trips_through_its_json_exactly() -> None:
    pre = Preprocessing((0.1, 1 / 3), (2.0, 0.7), True, 152.1, 77.3)

    assert Preprocessing.from_json(pre.to_json()) == pre


@pytest.mark.parametrize("text", [
    '{"mean": [1.0], "std": [0.0], "standardize": true, "target_mean": null, "target_std": null}',
    '{"mean": [1.0, 2.0], "std": [1.0], "standardize": true, "target_mean": null, "target_std": null}',
    '{"mean": [NaN], "std": [1.0], "standardize": true, "target_mean": null, "target_std": null}',
    '{"mean": [1.0]}',
    "not json",
])
def test_malformed_preprocessing_metadata_is_refused(text: str) -> None:
    with pytest.raises(InvalidModel, match="flonnx.preprocess"):
        Preprocessing.from_json(text)


def test_statistics_from_a_node_are_checked_before_use() -> None:
    good = local_stats(np.ones((3, 2))).arrays()

    with pytest.raises(FlonnxError, match="shapes"):
        LocalStats.from_arrays(good, 3)
    with pytest.raises(FlonnxError, match="negative counts or non-finite"):
        LocalStats.from_arrays({**good, "sum": np.array([np.inf, 1.0])}, 2)
    with pytest.raises(FlonnxError, match="malformed"):
        LocalStats.from_arrays({"count": good["count"]}, 2)
