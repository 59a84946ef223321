"""Unsupported operators and bad arguments fail loudly with actionable messages."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from flonnx.exchange.errors import InvalidModel, UnsupportedOp
from flonnx.exchange.interpreter import Program, missing_ops


def _model(node_op: str, domain: str = "", opset: int = 17) -> object:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    node = helper.make_node(node_op, ["x"], ["y"], domain=domain)
    imports = [helper.make_opsetid("", opset)]
    if domain:
        imports.append(helper.make_opsetid(domain, 1))
    return helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=imports)


def test_unsupported_op_names_op_domain_opset_and_backend(backend: str) -> None:
    model = _model("Det", opset=17)

    with pytest.raises(UnsupportedOp) as info:
        Program(model, backend)

    message = str(info.value)
    assert "ai.onnx::Det" in message and "opset 17" in message and backend in message
    assert (info.value.op_type, info.value.domain, info.value.opset) == ("Det", "ai.onnx", 17)


def test_missing_ops_lists_unsupported_ml_operator() -> None:
    model = _model("ZipMap", domain="ai.onnx.ml")

    assert missing_ops(model, "numpy") == [("ai.onnx.ml", "ZipMap", 1)]


def test_missing_ops_is_empty_for_a_runnable_model() -> None:
    assert missing_ops(_model("Relu"), "numpy") == []


def test_op_newer_than_any_implementation_is_reported_at_its_opset() -> None:
    # Gelu exists from opset 20; a model importing opset 19 cannot use it.
    model = _model("Gelu", opset=19)

    assert missing_ops(model, "numpy") == [("ai.onnx", "Gelu", 19)]


def test_unknown_attribute_is_reported_as_unsupported() -> None:
    model = _model("Relu")
    model.graph.node[0].attribute.append(helper.make_attribute("mystery", 1))

    with pytest.raises(UnsupportedOp, match="Relu"):
        Program(model, "numpy")


def test_unknown_parameter_name_is_rejected() -> None:
    program = Program(_model("Relu"), "numpy")

    with pytest.raises(InvalidModel, match="not initializers"):
        program.run({"typo.weight": np.ones(2, np.float32)}, {"x": np.ones(2, np.float32)})


def test_missing_graph_input_is_rejected_with_expected_names() -> None:
    program = Program(_model("Relu"), "numpy")

    with pytest.raises(InvalidModel, match=r"missing graph input 'x'"):
        program.run({}, {})


def test_unknown_backend_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown backend"):
        Program(_model("Relu"), "tensorflow")
