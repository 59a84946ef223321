"""The op table picks the newest implementation not newer than the model's opset."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from flonnx.exchange.interpreter import Program
from flonnx.exchange.interpreter._registry import OpTable


def test_resolve_picks_newest_version_not_newer_than_opset() -> None:
    table = OpTable()
    table.register("Squeeze", 1)(lambda ctx, x, *, axes=None: "v1")
    table.register("Squeeze", 13)(lambda ctx, x, axes=None: "v13")

    assert table.resolve("", "Squeeze", 12).since == 1
    assert table.resolve("ai.onnx", "Squeeze", 13).since == 13
    assert table.resolve("", "Squeeze", 21).since == 13
    assert table.resolve("", "Unsqueeze", 21) is None


def test_registered_attributes_come_from_keyword_only_parameters() -> None:
    table = OpTable()
    table.register("LeakyRelu")(lambda ctx, x, *, alpha=0.01: x)

    assert table.resolve("", "LeakyRelu", 16).attributes == frozenset({"alpha"})


def _squeeze_model(opset: int) -> object:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 1])
    if opset >= 13:
        node = helper.make_node("Squeeze", ["x", "axes"], ["y"])
        inits = [numpy_helper.from_array(np.array([0], np.int64), "axes")]
    else:
        node = helper.make_node("Squeeze", ["x"], ["y"], axes=[0])
        inits = []
    graph = helper.make_graph([node], "g", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_axes_attribute_and_axes_input_versions_agree(backend: str) -> None:
    from flonnx.exchange.interpreter.backend import load_backend

    be = load_backend(backend)
    x = be.asarray(np.arange(3, dtype=np.float32).reshape(1, 3, 1))

    old = Program(_squeeze_model(11), backend).run({}, {"x": x})[0]["y"]
    new = Program(_squeeze_model(13), backend).run({}, {"x": x})[0]["y"]

    assert tuple(old.shape) == tuple(new.shape) == (3, 1)
