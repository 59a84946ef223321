"""scikit-learn MLPClassifier <-> definition: a layout map read from the graph, and parity."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from flonnx.exchange.adapters.dense_chain import read_dense_chain
from flonnx.exchange.adapters.sklearn_mlp import classifier_from_weights, to_sklearn, weights_from_classifier
from flonnx.exchange.definition import Definition
from flonnx.exchange.errors import InvalidModel
from flonnx.exchange.ort import probe_inputs, run_model

pytest.importorskip("sklearn", reason="scikit-learn adapter")


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_reads_torch_gemm_layout_from_the_graph(mlp_model) -> None:
    definition, _ = mlp_model

    chain = read_dense_chain(definition)

    assert [(layer.weight, layer.bias, layer.transposed) for layer in chain.layers] == [
        ("fc1.weight", "fc1.bias", True), ("fc2.weight", "fc2.bias", True)]
    assert [(layer.in_features, layer.out_features) for layer in chain.layers] == [(64, 32), (32, 10)]
    assert chain.activation == "Relu"


def test_map_follows_the_graph_not_the_names(mlp_model) -> None:
    definition, weights = mlp_model
    model = definition.materialize(weights)
    swap = {"fc1.weight": "zz.bias", "fc1.bias": "aa.weight"}  # misleading names on purpose
    for tensor in model.graph.initializer:
        tensor.name = swap.get(tensor.name, tensor.name)
    for node in model.graph.node:
        node.input[:] = [swap.get(i, i) for i in node.input]
    renamed, renamed_weights = Definition.from_model(model)

    chain = read_dense_chain(renamed)
    coefs, intercepts = to_sklearn(chain, renamed_weights)

    assert chain.layers[0].weight == "zz.bias" and chain.layers[0].bias == "aa.weight"
    np.testing.assert_array_equal(coefs[0], weights["fc1.weight"].T)
    np.testing.assert_array_equal(intercepts[0], weights["fc1.bias"])


def test_classifier_matches_onnx_runtime(mlp_model) -> None:
    definition, weights = mlp_model
    probes = probe_inputs(definition, batch=32, seed=3)

    clf, _ = classifier_from_weights(definition, weights, random_state=np.random.RandomState(0))

    reference = _softmax(run_model(definition.materialize(weights), probes)["logits"])
    np.testing.assert_allclose(clf.predict_proba(probes["input"]), reference, atol=1e-6)


def test_weights_round_trip_through_the_classifier(mlp_model) -> None:
    definition, weights = mlp_model
    chain = read_dense_chain(definition)

    clf, _ = classifier_from_weights(definition, weights, random_state=np.random.RandomState(0))
    back = weights_from_classifier(chain, definition, clf)

    for name, value in weights.items():
        assert back[name].dtype == value.dtype
        np.testing.assert_array_equal(back[name], value)


def test_trained_classifier_maps_back_to_a_model_onnx_runtime_agrees_with(mlp_model) -> None:
    definition, weights = mlp_model
    chain = read_dense_chain(definition)
    rng = np.random.default_rng(0)
    x, y = rng.random((100, 64), dtype=np.float32), rng.integers(0, 10, 100)
    clf, _ = classifier_from_weights(definition, weights, random_state=np.random.RandomState(0))

    clf.partial_fit(x, y)
    trained = weights_from_classifier(chain, definition, clf)

    assert not np.array_equal(trained["fc1.weight"], weights["fc1.weight"])
    logits = run_model(definition.materialize(trained), {"input": x})["logits"]
    np.testing.assert_allclose(_softmax(logits), clf.predict_proba(x), atol=1e-5)


def test_reads_skl2onnx_matmul_add_layout() -> None:
    skl2onnx = pytest.importorskip("skl2onnx", reason="converter used to produce a MatMul graph")
    from sklearn.neural_network import MLPClassifier

    rng = np.random.default_rng(1)
    x, y = rng.random((60, 8), dtype=np.float32), np.arange(60) % 3
    native = MLPClassifier(hidden_layer_sizes=(5,), max_iter=5, random_state=0).fit(x, y)
    model = skl2onnx.to_onnx(native, x[:1], options={"zipmap": False})
    # keep only the dense part: MatMul/Add/Relu up to the logits, as a definition would
    definition, weights = Definition.from_model(_logits_subgraph(model))

    chain = read_dense_chain(definition)
    coefs, intercepts = to_sklearn(chain, weights)

    assert [layer.transposed for layer in chain.layers] == [False, False]
    for got, want in zip(coefs, native.coefs_, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    for got, want in zip(intercepts, native.intercepts_, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def _logits_subgraph(model: onnx.ModelProto) -> onnx.ModelProto:
    """The skl2onnx graph cut after the last Add (the logits), without its label/probability head."""
    graph = model.graph
    adds = [n for n in graph.node if n.op_type == "Add"]
    keep_until = list(graph.node).index(adds[-1])
    nodes = list(graph.node)[: keep_until + 1]
    used = {i for n in nodes for i in n.input}
    out = onnx.helper.make_tensor_value_info(adds[-1].output[0], onnx.TensorProto.FLOAT, None)
    inits = [t for t in graph.initializer if t.name in used]
    new = onnx.helper.make_graph(nodes, "dense", list(graph.input), [out], initializer=inits)
    return onnx.helper.make_model(new, opset_imports=[o for o in model.opset_import if o.domain == ""])


def test_rejects_graphs_that_are_not_dense_chains() -> None:
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 4], np.ones(16, np.float32).tolist())
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w"], ["h"]), helper.make_node("Exp", ["h"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])], initializer=[w],
    )
    definition, _ = Definition.from_model(helper.make_model(graph))

    with pytest.raises(InvalidModel, match="Exp node .* is not part of a dense chain"):
        read_dense_chain(definition)
