"""Definitions: canonical ids, safe loading, and validation of weights with actionable messages."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from flonnx.exchange.definition import Definition, load_model_bytes
from flonnx.exchange.errors import InvalidModel, InvalidUpdate
from flonnx.exchange.ort import run_model


def test_definition_id_ignores_exporter_noise(mlp_model) -> None:
    definition, weights = mlp_model
    noisy = definition.materialize(weights)
    noisy.doc_string = "exported on a Tuesday"
    noisy.producer_name, noisy.producer_version = "someone", "9.9"
    noisy.graph.node[0].metadata_props.add(key="pkg.torch.onnx.stack_trace", value="File /home/x.py")
    attrs = list(noisy.graph.node[0].attribute)[::-1]
    del noisy.graph.node[0].attribute[:]
    noisy.graph.node[0].attribute.extend(attrs)
    inits = list(noisy.graph.initializer)[::-1]
    del noisy.graph.initializer[:]
    noisy.graph.initializer.extend(inits)

    again, _ = Definition.from_model(noisy)

    assert again.id == definition.id


def test_definition_id_changes_with_the_graph(mlp_model) -> None:
    definition, weights = mlp_model
    model = definition.materialize(weights)
    for attr in model.graph.node[0].attribute:
        if attr.name == "alpha":
            attr.f = 2.0

    changed, _ = Definition.from_model(model)

    assert changed.id != definition.id


def test_definition_carries_no_weight_data(mlp_model) -> None:
    definition, weights = mlp_model

    assert len(definition.canonical_bytes) < 2048
    assert all(not t.raw_data for t in definition.proto.graph.initializer)
    assert set(definition.specs) == set(weights)


def test_materialized_model_is_valid_and_runs(mlp_model) -> None:
    definition, weights = mlp_model

    model = definition.materialize(weights)

    onnx.checker.check_model(model, full_check=True)
    out = run_model(model, {"input": np.zeros((3, 64), np.float32)})
    np.testing.assert_allclose(out["logits"][0], weights["fc2.bias"] + weights["fc2.weight"] @ np.maximum(
        weights["fc1.bias"], 0), rtol=1e-5, atol=1e-6)


def test_definition_round_trips_through_bytes(mlp_model) -> None:
    definition, _ = mlp_model

    assert Definition.from_bytes(definition.canonical_bytes).id == definition.id


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda w: w.pop("fc1.bias"), r"missing tensors: fc1\.bias \(expected float32\[32\]\)"),
        (lambda w: w.__setitem__("extra", np.zeros(2, np.float32)), "unexpected tensors .*: extra"),
        (lambda w: w.__setitem__("fc2.bias", w["fc2.bias"].astype(np.float64)),
         "'fc2.bias': expected dtype float32, got float64"),
        (lambda w: w.__setitem__("fc1.weight", w["fc1.weight"].T.copy()),
         r"'fc1.weight': expected shape \[32, 64\], got \[64, 32\]"),
        (lambda w: w["fc2.weight"].__setitem__((0, 0), np.nan), "'fc2.weight': 1 non-finite values"),
        (lambda w: w["fc2.bias"].__setitem__(slice(0, 2), np.inf), "'fc2.bias': 2 non-finite values"),
    ],
    ids=["missing", "extra", "dtype", "shape", "nan", "inf"],
)
def test_rejects_invalid_weights_with_what_was_expected(mlp_model, mutate, message) -> None:
    definition, weights = mlp_model
    bad = {k: v.copy() for k, v in weights.items()}
    mutate(bad)

    with pytest.raises(InvalidUpdate, match=message) as info:
        definition.validate(bad, source="update from partition-3")

    assert "update from partition-3" in str(info.value)
    assert len(info.value.problems) == 1


def test_reports_every_problem_at_once(mlp_model) -> None:
    definition, weights = mlp_model
    bad = {k: v.copy() for k, v in weights.items()}
    bad.pop("fc1.bias")
    bad["fc2.bias"] = bad["fc2.bias"].astype(np.float16)

    with pytest.raises(InvalidUpdate) as info:
        definition.validate(bad)

    assert len(info.value.problems) == 2


def _tiny(domain: str = "") -> onnx.ModelProto:
    node = helper.make_node("Relu", ["x"], ["y"], domain=domain)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    opsets = [helper.make_opsetid("", 20)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(graph, opset_imports=opsets)


def test_rejects_unknown_operator_domains() -> None:
    with pytest.raises(InvalidModel, match=r"domains \['com.evil'\] are not allowed"):
        load_model_bytes(_tiny("com.evil").SerializeToString())


def test_rejects_external_data() -> None:
    model = _tiny()
    tensor = model.graph.initializer.add()
    tensor.name, tensor.data_type = "w", TensorProto.FLOAT
    tensor.dims.append(1)
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="../../etc/passwd")

    with pytest.raises(InvalidModel, match="'w' is stored as external data"):
        load_model_bytes(model.SerializeToString())


def test_rejects_oversized_and_garbage_input() -> None:
    with pytest.raises(InvalidModel, match="the limit is 10"):
        load_model_bytes(_tiny().SerializeToString(), max_bytes=10)
    with pytest.raises(InvalidModel, match="not a parseable ONNX model"):
        load_model_bytes(b"\xff\xff\xff not onnx")
