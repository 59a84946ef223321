"""Reading an ONNX graph into plain Python: opsets, initializers, node attributes, validation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from flonnx.exchange.errors import InvalidModel
from flonnx.exchange.interpreter._registry import GENERIC, OpSpec, normalise_domain
from flonnx.exchange.interpreter.backend import Backend

__all__ = ["ResolvedNode", "decode_attributes", "initializer_arrays", "opsets", "resolve_nodes"]

#: Legacy attributes that only carried memory-reuse hints to old runtimes.
IGNORED_ATTRIBUTES = frozenset({"consumed_inputs"})


@dataclass(frozen=True)
class ResolvedNode:
    """A node together with the implementation chosen for it."""

    node: onnx.NodeProto
    spec: OpSpec
    attributes: dict[str, Any]


def opsets(model: onnx.ModelProto) -> dict[str, int]:
    """Domain (``""`` for the default one) -> imported opset version."""
    return {normalise_domain(o.domain): o.version for o in model.opset_import}


def initializer_arrays(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """The graph's initializers as numpy arrays.

    Raises:
        InvalidModel: A tensor is stored as external data or as a sparse initializer.
    """
    if len(graph.sparse_initializer):
        raise InvalidModel("sparse initializers are not supported by the flonnx interpreter")
    arrays = {}
    for tensor in graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            raise InvalidModel(f"initializer {tensor.name!r} is stored as external data; embed it")
        try:
            arrays[tensor.name] = numpy_helper.to_array(tensor)
        except (ValueError, TypeError) as exc:
            raise InvalidModel(f"initializer {tensor.name!r} cannot be decoded: {exc}") from exc
    return arrays


def decode_attributes(node: onnx.NodeProto) -> dict[str, Any]:
    """Node attributes as Python values: ints, floats, str, tuples, numpy arrays."""
    out: dict[str, Any] = {}
    for attribute in node.attribute:
        if attribute.name in IGNORED_ATTRIBUTES:
            continue
        kind = attribute.type
        if kind == onnx.AttributeProto.TENSOR:
            value: Any = numpy_helper.to_array(attribute.t)
        elif kind == onnx.AttributeProto.STRING:
            value = attribute.s.decode()
        elif kind == onnx.AttributeProto.STRINGS:
            value = tuple(s.decode() for s in attribute.strings)
        elif kind in (onnx.AttributeProto.INTS, onnx.AttributeProto.FLOATS):
            value = tuple(onnx.helper.get_attribute_value(attribute))
        else:
            value = onnx.helper.get_attribute_value(attribute)
        out[attribute.name] = value
    return out


def _problem(
    node: onnx.NodeProto, backend: Backend, versions: dict[str, int]
) -> tuple[OpSpec | None, str | None]:
    """The spec for ``node``, or why it cannot run."""
    domain = normalise_domain(node.domain)
    if domain not in versions:
        return None, f"domain {domain or 'ai.onnx'!r} is not imported by the model"
    opset = versions[domain]
    spec = backend.overrides.resolve(domain, node.op_type, opset)
    generic = GENERIC.resolve(domain, node.op_type, opset)
    # A backend override applies only if it follows an opset at least as new as the generic one.
    if spec is None or (generic is not None and generic.since > spec.since):
        spec = generic
    if spec is None:
        return None, "no implementation"
    unknown = {a.name for a in node.attribute} - spec.attributes - IGNORED_ATTRIBUTES
    if unknown:
        return None, f"attribute(s) {sorted(unknown)} not supported"
    wanted = max((i + 1 for i, o in enumerate(node.output) if o), default=0)
    if spec.outputs != -1 and wanted > spec.outputs:
        return None, f"{wanted} outputs requested, {spec.outputs} supported"
    return spec, None


def resolve_nodes(
    model: onnx.ModelProto, backend: Backend
) -> tuple[list[ResolvedNode], list[tuple[str, str, int, str]]]:
    """Pick an implementation for every node.

    Returns:
        The resolved nodes (only if nothing is missing) and the problems as
        ``(domain, op_type, opset, reason)``, one per distinct operator.
    """
    versions = opsets(model)
    resolved, problems, seen = [], [], set()
    for node in model.graph.node:
        spec, reason = _problem(node, backend, versions)
        if spec is None:
            domain = normalise_domain(node.domain)
            key = (domain, node.op_type)
            if key not in seen:
                seen.add(key)
                problems.append((domain or "ai.onnx", node.op_type, versions.get(domain, 0), reason or ""))
            continue
        resolved.append(ResolvedNode(node, spec, decode_attributes(node)))
    return resolved, problems
