"""The card's peak activation memory for one example: live tensors walked in graph order."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from flonnx.exchange.card import peak_activation_bytes
from flonnx.exchange.models import load_starting_model


def _weight(name: str, shape: tuple[int, ...]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.ones(shape, np.float32), name)


def test_the_peak_is_the_most_bytes_alive_at_once_counted_by_hand() -> None:
    # x[1,4] -> a = x W1 [1,16] -> b = Relu(a) -> c = a + b -> e = c * k (Constant) -> y = e W2 [1,2]
    # float32, batch 1: x 16 B, a b c e 64 B each, y 8 B; initializers and the Constant not counted.
    # while Add runs, a, b and c are alive (x was freed after its one use): 3 x 64 = 192 bytes.
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["a"]),
         helper.make_node("Relu", ["a"], ["b"]),
         helper.make_node("Add", ["a", "b"], ["c"]),
         helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(
             np.full((1, 16), 2, np.float32))),
         helper.make_node("Mul", ["c", "k"], ["e"]),
         helper.make_node("MatMul", ["e", "w2"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        initializer=[_weight("w1", (4, 16)), _weight("w2", (16, 2))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    assert peak_activation_bytes(model) == (192, False)


def test_a_large_input_counts_while_its_consumer_runs() -> None:
    # x [1,100] float32 (400 B) is alive while Gemm writes y [1,2] (8 B): 408 bytes
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "bias"], ["y"], transB=1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 100])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        initializer=[_weight("w", (2, 100)), _weight("bias", (2,))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    assert peak_activation_bytes(model) == (408, False)


def test_an_unknown_shape_gives_no_estimate() -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "width"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "width"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    assert peak_activation_bytes(model) is None


def test_a_zoo_cnn_has_a_peak_at_least_its_largest_activation() -> None:
    model = load_starting_model("digits-cnn", seed=0, input_shape=None).model
    inferred = onnx.shape_inference.infer_shapes(model)
    largest = max(4 * int(np.prod([d.dim_value or 1 for d in v.type.tensor_type.shape.dim]))
                  for v in inferred.graph.value_info)

    peak = peak_activation_bytes(model)

    assert peak is not None and not peak[1]
    assert largest <= peak[0] < 10 * largest


def test_a_cnn_whose_flatten_is_computed_at_run_time_still_has_its_flops_counted() -> None:
    """digits-cnn flattens with a Reshape whose target shape is computed: its Gemm head still counts."""
    from flonnx.exchange.card import estimated_flops

    model = load_starting_model("digits-cnn", seed=0, input_shape=None).model
    convolutions = 16 * 8 * 8 * (1 * 3 * 3) + 32 * 4 * 4 * (16 * 3 * 3)  # outputs x reduced inputs
    head = 10 * (32 * 2 * 2)
    assert estimated_flops(model) == 2 * (convolutions + head)
