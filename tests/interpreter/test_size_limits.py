"""The interpreter refuses an output above MAX_TENSOR_ELEMENTS before allocating it (docs/reliability.md).

Shapes here are graph inputs, so no static check can see them: the operator's own check must refuse.
The sizes are just above the limit (1 GiB of float32), so a missing check would allocate, not crash.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from flonnx.exchange.definition import MAX_TENSOR_ELEMENTS, check_graph
from flonnx.exchange.errors import InvalidModel
from flonnx.exchange.interpreter import Program

BIG = MAX_TENSOR_ELEMENTS // 2 + 1  # two of these rows exceed the limit


def _program(node, inputs):  # type: ignore[no-untyped-def]
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph([node], "g", inputs, [output])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return Program(model, "numpy")


def _x() -> object:
    return helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])


def _i(name: str, n: int) -> object:
    return helper.make_tensor_value_info(name, TensorProto.INT64, [n])


CASES = {
    "ConstantOfShape": (helper.make_node("ConstantOfShape", ["s"], ["y"]), [_i("s", 2)],
                        {"s": np.array([2, BIG], np.int64)}),
    "Expand": (helper.make_node("Expand", ["x", "s"], ["y"]), [_x(), _i("s", 2)],
               {"x": np.ones((1, 2), np.float32), "s": np.array([BIG, 2], np.int64)}),
    "Tile": (helper.make_node("Tile", ["x", "r"], ["y"]), [_x(), _i("r", 2)],
             {"x": np.ones((1, 2), np.float32), "r": np.array([BIG, 1], np.int64)}),
    "Pad": (helper.make_node("Pad", ["x", "p"], ["y"]), [_x(), _i("p", 4)],
            {"x": np.ones((1, 2), np.float32), "p": np.array([0, 0, 1, 2 * BIG], np.int64)}),
    "Range": (helper.make_node("Range", ["a", "b", "d"], ["y"]),
              [helper.make_tensor_value_info(n, TensorProto.INT64, []) for n in "abd"],
              {"a": np.array(0, np.int64), "b": np.array(2 * BIG, np.int64), "d": np.array(1, np.int64)}),
}


@pytest.mark.parametrize("op_type", sorted(CASES))
def test_op_refuses_an_output_above_the_limit_before_allocating(op_type: str) -> None:
    node, inputs, feed = CASES[op_type]
    program = _program(node, inputs)

    expected = f"^{op_type} would produce .* the limit is {MAX_TENSOR_ELEMENTS}$"
    with pytest.raises(InvalidModel, match=expected):
        program.run({}, feed)


def test_range_with_zero_delta_is_refused() -> None:
    node, inputs, feed = CASES["Range"]
    program = _program(node, inputs)

    with pytest.raises(InvalidModel, match="no finite length"):
        program.run({}, {**feed, "d": np.array(0, np.int64)})


def test_static_check_follows_arithmetic_on_constants() -> None:
    nodes = [helper.make_node("Constant", [], ["a"], value_ints=[1 << 30, 1 << 30]),
             helper.make_node("Mul", ["a", "a"], ["s"]),
             helper.make_node("ConstantOfShape", ["s"], ["y"])]
    graph = helper.make_graph(nodes, "g", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    # 2**120 elements: Python ints, no int64 wrap-around to a small or negative count
    with pytest.raises(InvalidModel, match=r"would produce 1329227995784915872903807060280344576 elements"):
        check_graph(model)


HUGE_BUT_EMPTY = [2**31, 2**31, 2**31, 0]  # no element, yet no array library can describe the shape


def test_a_huge_dimension_beside_a_zero_is_refused_by_the_op_not_by_numpy() -> None:
    node, inputs, _ = CASES["ConstantOfShape"]
    program = _program(node, [_i("s", 4)])

    with pytest.raises(InvalidModel, match=rf"^ConstantOfShape would produce shape \[{2**31}, .* limit is "):
        program.run({}, {"s": np.array(HUGE_BUT_EMPTY, np.int64)})


@pytest.mark.parametrize("op_type", ["ConstantOfShape", "Expand", "Tile"])
def test_the_static_check_refuses_a_constant_shape_with_a_huge_dimension_beside_a_zero(op_type: str) -> None:
    shape = helper.make_tensor("s", TensorProto.INT64, [4], HUGE_BUT_EMPTY)
    data = [] if op_type == "ConstantOfShape" else ["x"]
    node = helper.make_node(op_type, [*data, "s"], ["y"])
    x = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 1, 1])] if data else []
    graph = helper.make_graph([node], "g", x, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=[shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    with pytest.raises(InvalidModel, match=rf"a dimension of {2**31}; the limit is {MAX_TENSOR_ELEMENTS}$"):
        check_graph(model)
