"""The parity check's ONNX Runtime session, built once per definition with the weights fed as inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flonnx.exchange import ort
from flonnx.exchange.adapters.torch_native import export_module
from flonnx.exchange.definition import Definition
from flonnx.exchange.errors import InvalidUpdate, ParityError
from flonnx.exchange.ort import probe_inputs, run_definition, run_model, weights_as_inputs
from flonnx.exchange.parity import check_parity
from flonnx.exchange.zoo import build


def _zoo(name: str, shape: tuple[int, ...], seed: int = 0) -> tuple[Definition, dict[str, np.ndarray]]:
    torch.manual_seed(seed)
    return export_module(build(name), torch.zeros((2, *shape)), metadata={"flonnx.model": name})


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    ort._sessions.clear()


def _counting_sessions(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    built: list[int] = []
    real = ort.session

    def counted(model, **kwargs):  # type: ignore[no-untyped-def]
        built.append(1)
        return real(model, **kwargs)

    monkeypatch.setattr(ort, "session", counted)
    return built


@pytest.mark.parametrize(("name", "shape"), [("digits-mlp", (64,)), ("digits-cnn", (1, 8, 8))])
def test_fed_weights_compute_what_the_materialized_model_computes(name: str, shape: tuple[int, ...]) -> None:
    definition, weights = _zoo(name, shape)
    probes = probe_inputs(definition, seed=3)
    expected = run_model(definition.materialize(weights), probes)
    got = run_definition(definition, weights, probes)
    assert sorted(got) == sorted(expected)
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, atol=1e-6)


def test_one_session_per_definition_and_each_call_uses_its_own_weights(monkeypatch) -> None:
    built = _counting_sessions(monkeypatch)
    definition, first = _zoo("digits-mlp", (64,), seed=0)
    _, second = _zoo("digits-mlp", (64,), seed=1)  # same graph, other weights
    probes = probe_inputs(definition, seed=0)
    a = run_definition(definition, first, probes)
    b = run_definition(definition, second, probes)
    again = run_definition(definition, first, probes)
    assert len(built) == 1
    # a cached session must not keep the weights it was built with
    np.testing.assert_allclose(b["logits"], run_model(definition.materialize(second), probes)["logits"],
                               rtol=1e-5, atol=1e-6)
    assert not np.allclose(a["logits"], b["logits"])
    np.testing.assert_array_equal(a["logits"], again["logits"])


def test_the_cache_keeps_the_most_recently_used_definitions_only(monkeypatch) -> None:
    built = _counting_sessions(monkeypatch)
    models = [_zoo(f"mlp-64-{8 + i}-10", (64,)) for i in range(ort.CACHED_SESSIONS + 1)]
    for definition, weights in models:
        run_definition(definition, weights, probe_inputs(definition))
    assert len(ort._sessions) == ort.CACHED_SESSIONS
    assert models[0][0].id not in ort._sessions  # the least recently used went first
    definition, weights = models[-1]
    run_definition(definition, weights, probe_inputs(definition))
    assert len(built) == ort.CACHED_SESSIONS + 1  # the newest was still cached


def test_weights_that_do_not_fit_the_definition_are_refused_before_running() -> None:
    definition, weights = _zoo("digits-mlp", (64,))
    name = sorted(weights)[0]
    probes = probe_inputs(definition)
    with pytest.raises(InvalidUpdate, match=rf"{name}.*expected shape"):
        run_definition(definition, {**weights, name: np.zeros((3, 3), np.float32)}, probes)
    with pytest.raises(InvalidUpdate, match=rf"missing tensors: {name}"):
        run_definition(definition, {k: v for k, v in weights.items() if k != name}, probes)
    # another byte order is another dtype: refused, and the message says which (not "float32, got float32")
    swapped = {**weights, name: weights[name].astype(weights[name].dtype.newbyteorder(">"))}
    with pytest.raises(InvalidUpdate, match=rf"{name}': expected dtype <f4, got >f4"):
        run_definition(definition, swapped, probes)


def test_weights_become_inputs_and_only_weights_leave_the_initializers() -> None:
    definition, _ = _zoo("digits-cnn", (1, 8, 8))
    model = weights_as_inputs(definition)
    inputs = {v.name for v in model.graph.input}
    initializers = {t.name for t in model.graph.initializer}
    assert set(definition.specs) <= inputs
    assert not set(definition.specs) & initializers
    assert len(inputs) == len(model.graph.input)  # no name declared twice


def test_parity_still_fails_a_framework_that_computes_something_else() -> None:
    definition, weights = _zoo("digits-mlp", (64,))

    def off_by_one(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: v + 1.0 for k, v in run_definition(definition, weights, inputs).items()}

    with pytest.raises(ParityError, match="does not reproduce ONNX Runtime"):
        check_parity(definition, weights, off_by_one, framework="test")
    report = check_parity(definition, weights, lambda x: run_model(definition.materialize(weights), x),
                          framework="test")
    assert report.max_abs <= 1e-6
