"""What a classifier definition outputs, so every trainer optimises the same loss.

flonnx's own definitions output logits. Converted models often output probabilities (skl2onnx ends
MLPClassifier and LogisticRegression in Softmax, next to an integer label output). Trainers minimise
cross-entropy either way: on logits directly, or as the negative log of the probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from exchange.definition import Definition
from exchange.errors import InvalidModel

__all__ = ["ClassifierOutput", "classifier_output"]

_FLOATS = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16}


@dataclass(frozen=True)
class ClassifierOutput:
    """The graph output a trainer fits, and whether it holds logits or probabilities."""

    name: str
    probabilities: bool


def classifier_output(definition: Definition) -> ClassifierOutput:
    """The first floating-point, rank-2 output; probabilities if a Softmax produces it."""
    proto = definition.proto
    producers = {out: node for node in proto.graph.node for out in node.output}
    for value in proto.graph.output:
        tensor = value.type.tensor_type
        rank_ok = not tensor.HasField("shape") or len(tensor.shape.dim) == 2
        if tensor.elem_type in _FLOATS and rank_ok:
            node = producers.get(value.name)
            return ClassifierOutput(value.name, node is not None and node.op_type == "Softmax")
    raise InvalidModel(
        f"no floating-point [batch, classes] output to train on among {definition.output_names}"
    )
