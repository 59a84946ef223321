"""Recognise a chain of dense layers in an ONNX graph, by reading the graph.

Frameworks that have a native multi-layer perceptron (scikit-learn's ``MLPClassifier``, Keras
``Dense`` stacks) need to know which initializer is which layer's weight matrix or bias, and in which
layout. That map is read from the graph — which input of which ``Gemm``/``MatMul``/``Add`` each
initializer feeds, and ``transB`` — never guessed from initializer names.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx
from onnx import helper

from flonnx.exchange.definition import Definition
from flonnx.exchange.errors import InvalidModel

__all__ = ["DenseChain", "DenseLayer", "read_dense_chain"]

_ACTIVATIONS = frozenset({"Relu", "Tanh", "Sigmoid", "Identity"})
_OUTPUT_ACTIVATIONS = frozenset({"Softmax", "LogSoftmax"})


@dataclass(frozen=True)
class DenseLayer:
    """One affine layer ``y = x @ W' + b``.

    ``weight`` is stored ``[out, in]`` when ``transposed`` (Gemm ``transB=1``, the torch layout) and
    ``[in, out]`` otherwise (Gemm ``transB=0`` or MatMul, the scikit-learn/Keras layout).
    """

    weight: str
    bias: str | None
    transposed: bool
    in_features: int
    out_features: int


@dataclass(frozen=True)
class DenseChain:
    """Dense layers in order, the activation between them and the one after the last."""

    layers: tuple[DenseLayer, ...]
    activation: str  # ONNX op between layers ("Relu", ...), "Identity" for a single layer
    output_activation: str | None  # "Softmax"/"LogSoftmax" or None (logits)


def _attr(node: onnx.NodeProto, name: str, default: object) -> object:
    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def read_dense_chain(definition: Definition) -> DenseChain:
    """Read the dense chain of ``definition``; :class:`InvalidModel` says where it stops being one."""
    graph = definition.proto.graph
    specs = definition.specs
    inits = {t.name for t in graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = set(definition.output_names)
    data_inputs = definition.input_names
    if len(data_inputs) != 1:
        raise InvalidModel(f"a dense chain has one data input; this graph has {data_inputs}")

    def only_consumer(value: str) -> onnx.NodeProto:
        nodes = consumers.get(value, [])
        if len(nodes) != 1:
            raise InvalidModel(
                f"value {value!r} feeds {len(nodes)} nodes; a dense chain feeds exactly one"
            )
        return nodes[0]

    def initializer(node: onnx.NodeProto, index: int) -> str:
        name = node.input[index] if index < len(node.input) else ""
        if name not in specs:
            raise InvalidModel(
                f"{node.op_type} node {node.name!r}: input {index} is {name!r}, expected a weight "
                "initializer"
            )
        return name

    layers: list[DenseLayer] = []
    activations: list[str] = []
    output_activation: str | None = None
    current = data_inputs[0]
    while current not in outputs:
        node = only_consumer(current)
        if node.input[0] != current:
            raise InvalidModel(f"{node.op_type} node {node.name!r} takes the data as input 1, not 0")
        if node.op_type == "Gemm":
            if _attr(node, "transA", 0) or _attr(node, "alpha", 1.0) != 1.0 or (
                _attr(node, "beta", 1.0) != 1.0
            ):
                raise InvalidModel(f"Gemm node {node.name!r}: transA/alpha/beta other than 0/1/1")
            weight = initializer(node, 1)
            bias = initializer(node, 2) if len(node.input) > 2 and node.input[2] else None
            transposed = bool(_attr(node, "transB", 0))
            current = node.output[0]
        elif node.op_type == "MatMul":
            weight, bias, transposed = initializer(node, 1), None, False
            current = node.output[0]
            if current not in outputs:
                add = only_consumer(current)
                if add.op_type == "Add":
                    other = 1 if add.input[0] == current else 0
                    bias = initializer(add, other)
                    current = add.output[0]
        elif node.op_type in _ACTIVATIONS:
            if len(activations) != len(layers) - 1 or not layers:
                raise InvalidModel(f"activation {node.op_type} {node.name!r} not after a dense layer")
            activations.append(node.op_type)
            current = node.output[0]
            continue
        elif node.op_type == "Cast" and not layers:
            # converters (skl2onnx) cast the input to the weights' float type first
            current = node.output[0]
            continue
        elif node.op_type in _OUTPUT_ACTIVATIONS and node.output[0] in outputs:
            output_activation = node.op_type
            current = node.output[0]
            continue
        else:
            raise InvalidModel(f"{node.op_type} node {node.name!r} is not part of a dense chain")
        shape = specs[weight].shape
        if len(shape) != 2:
            raise InvalidModel(f"weight {weight!r} has shape {list(shape)}; a dense weight is 2-D")
        out_f, in_f = shape if transposed else shape[::-1]
        if bias is not None and specs[bias].shape not in ((out_f,), (1, out_f)):
            raise InvalidModel(f"bias {bias!r} has shape {list(specs[bias].shape)}, expected [{out_f}]")
        if layers and layers[-1].out_features != in_f:
            raise InvalidModel(
                f"weight {weight!r} takes {in_f} features but the previous layer gives "
                f"{layers[-1].out_features}"
            )
        layers.append(DenseLayer(weight, bias, transposed, in_f, out_f))
    if not layers:
        raise InvalidModel("the graph has no dense layer")
    if len(activations) == len(layers):
        raise InvalidModel(f"the last dense layer is followed by {activations[-1]}; expected logits")
    if len(set(activations)) > 1:
        raise InvalidModel(f"hidden layers use different activations {sorted(set(activations))}")
    used = {layer.weight for layer in layers} | {layer.bias for layer in layers if layer.bias}
    unused = sorted(set(specs) - used)
    if unused:
        raise InvalidModel(f"weights {unused} are not part of the dense chain")
    if inits - set(specs):
        raise InvalidModel(f"non-weight initializers {sorted(inits - set(specs))} in a dense chain")
    return DenseChain(tuple(layers), activations[0] if activations else "Identity", output_activation)
