"""Small ONNX models for task tests, built with ``onnx.helper`` (no exporter needed)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from flonnx.exchange.definition import Definition


def gemm_mlp(
    features: int,
    hidden: int,
    outputs: int,
    *,
    head: str | None = None,
    flat: bool = False,
    seed: int = 0,
) -> tuple[Definition, dict[str, np.ndarray]]:
    """``features -> hidden (ReLU) -> outputs`` as Gemm (``transB=1``, the torch layout).

    ``head`` is an op after the last layer (``Softmax``, ``Sigmoid``); ``flat`` squeezes a one-unit
    output to ``[batch]``.
    """
    rng = np.random.default_rng(seed)
    inits = [
        helper.make_tensor("l1.w", TensorProto.FLOAT, [hidden, features],
                           (rng.standard_normal((hidden, features)) / np.sqrt(features)).ravel()),
        helper.make_tensor("l1.b", TensorProto.FLOAT, [hidden], np.zeros(hidden)),
        helper.make_tensor("l2.w", TensorProto.FLOAT, [outputs, hidden],
                           (rng.standard_normal((outputs, hidden)) / np.sqrt(hidden)).ravel()),
        helper.make_tensor("l2.b", TensorProto.FLOAT, [outputs], np.zeros(outputs)),
    ]
    names = ["z"] + (["p"] if head else []) + (["s"] if flat else [])
    names[-1] = "y"
    nodes = [
        helper.make_node("Gemm", ["x", "l1.w", "l1.b"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "l2.w", "l2.b"], [names[0]], transB=1),
    ]
    if head is not None:
        attrs = {"axis": 1} if head == "Softmax" else {}
        nodes.append(helper.make_node(head, [names[0]], [names[1]], **attrs))
    shape: list[str | int] = ["n", outputs]
    if flat:
        nodes.append(helper.make_node(
            "Constant", [], ["axes"], value=helper.make_tensor("axes", TensorProto.INT64, [1], [1])))
        nodes.append(helper.make_node("Squeeze", [names[-2], "axes"], ["y"]))
        shape = ["n"]
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return Definition.from_model(model)


def function_mlp(features: int = 4, hidden: int = 8, outputs: int = 2, *, seed: int = 0) -> onnx.ModelProto:
    """:func:`gemm_mlp`'s network with its first layer in a model-local function ``local::Dense``.

    ``Relu`` runs only inside the function's body (a nested graph the interpreter inlines).
    """
    definition, weights = gemm_mlp(features, hidden, outputs, seed=seed)
    dense = helper.make_function(
        "local", "Dense", ["x", "w", "b"], ["r"],
        [helper.make_node("Gemm", ["x", "w", "b"], ["h"], transB=1),
         helper.make_node("Relu", ["h"], ["r"])],
        opset_imports=[helper.make_opsetid("", 17)])
    model = definition.materialize(weights)
    nodes = list(model.graph.node)
    model.graph.ClearField("node")
    model.graph.node.extend([helper.make_node("Dense", ["x", "l1.w", "l1.b"], ["r"], domain="local"),
                             *nodes[2:]])
    model.functions.append(dense)
    model.opset_import.append(helper.make_opsetid("local", 1))
    onnx.checker.check_model(model, full_check=True)
    return model


def matmul_definition() -> tuple[Definition, dict[str, np.ndarray]]:
    """``y = x @ w`` with a fixed 2x3 ``w`` (batch 4): the smallest definition with weights."""
    w = helper.make_tensor("w", TensorProto.FLOAT, [2, 3], [1.0, -2.0, 0.5, 3.0, 0.25, -1.0])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 3])], initializer=[w])
    return Definition.from_model(helper.make_model(graph))
