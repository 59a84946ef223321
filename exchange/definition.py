"""Model definitions: the ONNX graph without its weights, canonicalised and content-addressed.

A :class:`Definition` is what every participant must agree on before weights mean anything. It is the
ONNX model with the data of every floating-point initializer removed (name, dtype and shape kept),
normalised so that exporter noise (doc strings, producer fields, stack traces in node metadata,
attribute and initializer order, derived ``value_info``) does not change its id.

``definition_id`` is the SHA-256 of the canonical serialisation, which is also what travels to
clients (a few KB) and what the registry stores. A file ``flonnx export`` wrote carries a model card
(``flonnx.version_id``, metrics, its lineage: :func:`is_model_card_key`); it describes that one
export, not the graph, so :meth:`Definition.from_model` leaves it out and a file has one definition
id whether or not it was exported. (An export whose preprocessing was wrapped around the graph is a
different graph, with an id of its own; its card's ``flonnx.definition_id`` names the one it came
from.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from flonnx.exchange.errors import InvalidModel, InvalidUpdate
from flonnx.exchange.hashing import sha256_hex

__all__ = [
    "ALLOWED_DOMAINS",
    "MAX_MODEL_BYTES",
    "MAX_NODES",
    "MAX_TENSOR_ELEMENTS",
    "Definition",
    "TensorSpec",
    "check_graph",
    "is_model_card_key",
    "load_model_bytes",
]

#: Upper bound on an ONNX file flonnx will parse (bytes); larger input is refused before parsing.
MAX_MODEL_BYTES = 512 * 1024 * 1024

#: Upper bound on the nodes of a graph (a definition, or a model given to ONNX Runtime or the interpreter).
MAX_NODES = 65_536

#: Upper bound on the elements of one tensor: an initializer's declared dims, and the output a
#: ``ConstantOfShape``, ``Expand``, ``Tile``, ``Range`` or ``Pad`` asks for (1 GiB of float32).
MAX_TENSOR_ELEMENTS = 1 << 28

#: Operator domains a definition may use.
ALLOWED_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})

_FLOAT_TYPES = frozenset(
    {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16}
)
_DATA_FIELDS = (
    "raw_data",
    "float_data",
    "double_data",
    "int32_data",
    "int64_data",
    "uint64_data",
    "string_data",
)
#: Model-level metadata keys kept in a definition; everything else is exporter noise.
_KEPT_METADATA_PREFIX = "flonnx."
#: The model card of an exported version (``exchange/export.py``): about the export, not the graph.
_MODEL_CARD_KEYS = frozenset({
    "flonnx.version_id", "flonnx.kind", "flonnx.round", "flonnx.definition_id", "flonnx.weights_id",
    "flonnx.parents", "flonnx.parameter_count", "flonnx.lineage", "flonnx.strategy",
    # signed exports (exchange/signed_export.py)
    "flonnx.definition", "flonnx.lineage_chain", "flonnx.signature", "flonnx.signing_key",
})
#: Key prefixes of the card: metrics, the stable card, measured facts, a derived export's record.
_MODEL_CARD_PREFIXES = ("flonnx.metric.", "flonnx.card.", "flonnx.measured.", "flonnx.derived.")


def is_model_card_key(key: str) -> bool:
    """Whether a metadata key belongs to an exported version's model card (see the module)."""
    return key in _MODEL_CARD_KEYS or key.startswith(_MODEL_CARD_PREFIXES)


@dataclass(frozen=True)
class TensorSpec:
    """What a definition expects of one weight tensor."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]

    def describe(self) -> str:
        """Human-readable ``dtype[shape]``, as used in error messages."""
        return f"{self.dtype.name}{list(self.shape)}"


def load_model_bytes(data: bytes, *, max_bytes: int = MAX_MODEL_BYTES) -> onnx.ModelProto:
    """Parse untrusted ONNX bytes safely: size cap, no external data, allowed domains only."""
    if len(data) > max_bytes:
        raise InvalidModel(f"ONNX model is {len(data)} bytes; the limit is {max_bytes}")
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf raises DecodeError and others
        raise InvalidModel(f"not a parseable ONNX model: {exc}") from exc
    _reject_unsafe(model)
    return model


def _reject_non_text(model: onnx.ModelProto) -> None:
    """Refuse a string field that is not valid UTF-8 (protobuf then returns ``bytes``, not ``str``).

    ONNX's schema is proto2, whose parser accepts any bytes in a ``string`` field: an operator type
    or a name of bytes would otherwise reach ``onnx.defs`` and the checks below as a foreign type.
    """
    stack: list[Any] = [model]
    while stack:
        message = stack.pop()
        if isinstance(message, TensorProto):  # ListFields would copy raw_data: read its text fields only
            fields = [(f, getattr(message, f.name)) for f in _TENSOR_TEXT_FIELDS]
        else:
            fields = message.ListFields()
        for field, value in fields:
            items = value if field.is_repeated else (value,)
            if field.type == field.TYPE_MESSAGE:
                stack.extend(items)
            elif field.type == field.TYPE_STRING and any(not isinstance(item, str) for item in items):
                raise InvalidModel(f"a {message.DESCRIPTOR.name}.{field.name} is not valid UTF-8 text")


_TENSOR_TEXT_FIELDS = tuple(
    f for f in TensorProto.DESCRIPTOR.fields if f.type in (f.TYPE_STRING, f.TYPE_MESSAGE) and f.is_repeated
) + tuple(f for f in TensorProto.DESCRIPTOR.fields if f.type == f.TYPE_STRING and not f.is_repeated)


def _reject_unsafe(model: onnx.ModelProto) -> None:
    if len(model.graph.node) > MAX_NODES:  # before walking every field of a huge graph
        raise InvalidModel(f"graph has more than {MAX_NODES} nodes (the limit)")
    _reject_non_text(model)
    graph = model.graph
    for tensor in graph.initializer:
        if tensor.data_location == TensorProto.EXTERNAL or tensor.external_data:
            raise InvalidModel(
                f"initializer {tensor.name!r} is stored as external data; flonnx accepts only "
                "self-contained models"
            )
    if graph.sparse_initializer:
        raise InvalidModel("sparse initializers are not supported")
    domains = {op.domain for op in model.opset_import} | {n.domain for n in graph.node}
    local = {f.domain for f in model.functions}
    bad = sorted(d for d in domains - ALLOWED_DOMAINS - local)
    if bad:
        raise InvalidModel(
            f"operator domains {bad} are not allowed (allowed: {sorted(ALLOWED_DOMAINS - {''})} and "
            "the default domain)"
        )
    check_graph(model)


# -- structural checks of untrusted graphs (docs/reliability.md, "Hostile input") ----------------

_SHAPE_OPS = frozenset({"ConstantOfShape", "Expand", "Tile", "Range", "Pad"})


def _elements(dims: object) -> int:
    out = 1
    for d in dims:  # type: ignore[attr-defined]
        out *= max(int(d), 0)
    return out


#: Operators the static pre-check evaluates on small integer constants (to follow a shape built from them).
_FOLDABLE = {
    "Identity": lambda *a: a[0],
    "Cast": lambda *a: a[0],
    "Squeeze": lambda *a: a[0],
    "Unsqueeze": lambda *a: a[0],
    "Reshape": lambda *a: a[0],
    "Add": lambda a, b: a + b,
    "Sub": lambda a, b: a - b,
    "Mul": lambda a, b: a * b,
    "Concat": lambda *a: np.concatenate(a),
}


#: Folded integers are kept within int64's range (a dim beyond every limit): squaring a 2**62 in 30 ``Mul``
#: nodes would otherwise take gigabytes, and ``Range`` converts its bounds to float.
_FOLD_BOUND = 1 << 63


def _small(tensor: TensorProto) -> np.ndarray | None:
    if _elements(tensor.dims) > 64 or tensor.external_data:
        return None
    try:
        value = numpy_helper.to_array(tensor)
    except Exception:  # noqa: BLE001 - malformed data is reported where it is decoded
        return None
    if value.dtype.kind not in "iubf":  # text (or complex) is no shape nor bound: not followed
        return None
    # Python ints: a product of huge dims must not wrap around in int64
    return value.reshape(-1).astype(object) if value.dtype.kind in "iub" else value.reshape(-1)


def _int_constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Small constants (initializers, ``Constant`` nodes and simple arithmetic on them), flattened."""
    out: dict[str, np.ndarray] = {}
    for tensor in graph.initializer:
        if not _is_weight(tensor) and (value := _small(tensor)) is not None:
            out[tensor.name] = value
    for node in graph.node:
        if node.domain not in ("", "ai.onnx") or len(node.output) != 1:
            continue
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    value = _small(attr.t)
                    if value is not None:
                        out[node.output[0]] = value
                elif attr.name in ("value_int", "value_ints"):
                    out[node.output[0]] = np.asarray(
                        onnx.helper.get_attribute_value(attr), dtype=object
                    ).reshape(-1)
            continue
        fold = _FOLDABLE.get(node.op_type)
        args = [out.get(n) for n in node.input[:2 if node.op_type not in ("Concat",) else None]]
        if fold is None or not args or any(a is None for a in args):
            continue
        try:
            value = np.asarray(fold(*args)).reshape(-1)
        except Exception:  # noqa: BLE001 - shapes that do not broadcast are not followed
            continue
        if value.size <= 64:
            if value.dtype == object:  # Python ints: a chain of Mul must not grow them without bound
                value = np.clip(value, -_FOLD_BOUND, _FOLD_BOUND)
            out[node.output[0]] = value
    return out


def _static_shapes(graph: onnx.GraphProto, consts: dict[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    """Known shapes of graph inputs (unknown dims taken as 1), initializers and constants."""
    shapes: dict[str, tuple[int, ...]] = {}
    for tensor in graph.initializer:
        shapes[tensor.name] = tuple(int(d) for d in tensor.dims)
    for value in graph.input:
        dims = value.type.tensor_type.shape.dim
        shapes.setdefault(value.name, tuple(d.dim_value if d.HasField("dim_value") else 1 for d in dims))
    return shapes


def _too_long_dim(node: onnx.NodeProto, consts: dict[str, np.ndarray]) -> int | None:
    """A dimension above ``MAX_TENSOR_ELEMENTS`` in a constant shape (or repeats) input, if any.

    ``[2**31, 2**31, 0]`` has no element, yet no array library can describe it: it is refused like
    an initializer declaring such a dim.
    """
    index = {"ConstantOfShape": 0, "Expand": 1, "Tile": 1}.get(node.op_type)
    if index is None or index >= len(node.input) or (value := consts.get(node.input[index])) is None:
        return None
    return next((int(d) for d in value.reshape(-1) if int(d) > MAX_TENSOR_ELEMENTS), None)


def _requested_elements(
    node: onnx.NodeProto, consts: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]]
) -> int | None:
    """Elements of the output of a shape-making node, if its shape inputs are constants."""
    ins = list(node.input)

    def const(i: int) -> np.ndarray | None:
        return consts.get(ins[i]) if i < len(ins) and ins[i] else None

    op = node.op_type
    if op == "ConstantOfShape" and (shape := const(0)) is not None:
        return _elements(shape.reshape(-1))
    if op == "Expand" and (shape := const(1)) is not None:
        return _elements(shape.reshape(-1))
    if op == "Tile" and (repeats := const(1)) is not None:
        base = shapes.get(ins[0], ())
        return _elements(base) * _elements(repeats.reshape(-1)) if base else _elements(repeats.reshape(-1))
    if op == "Range" and all(const(i) is not None for i in range(3)):
        start, limit, delta = (float(np.asarray(const(i)).reshape(-1)[0]) for i in range(3))
        if delta == 0 or not all(np.isfinite((start, limit, delta))):
            return None
        return max(int(np.ceil((limit - start) / delta)), 0)
    if op == "Pad":
        pads = const(1)
        if pads is None:
            attr = next((a for a in node.attribute if a.name == "pads"), None)
            pads = np.asarray(attr.ints) if attr is not None else None
        in_shape = shapes.get(ins[0]) if ins else None
        if pads is None or not in_shape or len(pads.reshape(-1)) != 2 * len(in_shape) or const(3) is not None:
            return None
        p = [int(v) for v in pads.reshape(-1)]
        return _elements(d + p[i] + p[i + len(in_shape)] for i, d in enumerate(in_shape))
    return None


def check_graph(model: onnx.ModelProto, *, operators: bool = True) -> None:
    """Refuse a graph that is hostile or malformed, before anything executes or allocates it.

    Checks, in the main graph and in every subgraph (``If``, ``Loop``, ``Scan`` bodies): at most
    :data:`MAX_NODES` nodes in all; no initializer stored as external data; every initializer
    declares at most :data:`MAX_TENSOR_ELEMENTS` elements and no negative dim; unique initializer,
    input and node output names, no node output redefining a name already in scope; nodes
    topologically sorted (which also refuses cycles); a ``ConstantOfShape``, ``Expand``, ``Tile``,
    ``Range`` or ``Pad`` whose shape inputs are initializers or ``Constant`` nodes asks for at most
    :data:`MAX_TENSOR_ELEMENTS` elements. With ``operators`` (the default) also: every operator is
    known to ONNX or is a function of the model.

    Raises:
        InvalidModel: The first problem found, in one line.
    """
    local = {(f.domain, f.name) for f in model.functions}
    _check_graph(model.graph, set(), local, operators, [0])


def _check_graph(
    graph: onnx.GraphProto, outer: set[str], local: set[tuple[str, str]], operators: bool, count: list[int]
) -> None:
    count[0] += len(graph.node)
    if count[0] > MAX_NODES:
        raise InvalidModel(f"graph has more than {MAX_NODES} nodes (the limit)")
    seen_inits: set[str] = set()
    for tensor in graph.initializer:
        if tensor.data_location == TensorProto.EXTERNAL or tensor.external_data:
            raise InvalidModel(
                f"initializer {tensor.name!r} is stored as external data; flonnx accepts only "
                "self-contained models"
            )
        if any(int(d) < 0 for d in tensor.dims):
            raise InvalidModel(f"initializer {tensor.name!r} has a negative dimension {list(tensor.dims)}")
        if _elements(tensor.dims) > MAX_TENSOR_ELEMENTS or any(d > MAX_TENSOR_ELEMENTS for d in tensor.dims):
            raise InvalidModel(
                f"initializer {tensor.name!r} declares dims {list(tensor.dims)} "
                f"({_elements(tensor.dims)} elements); the limit is {MAX_TENSOR_ELEMENTS}"
            )
        if tensor.name in seen_inits:
            raise InvalidModel(f"initializer name {tensor.name!r} is used twice")
        seen_inits.add(tensor.name)
    inputs = [v.name for v in graph.input]
    if len(set(inputs)) != len(inputs):
        dup = sorted({n for n in inputs if inputs.count(n) > 1})
        raise InvalidModel(f"graph input name(s) {dup} are declared twice")
    available = set(outer) | set(inputs) | seen_inits | {""}
    consts = _int_constants(graph)
    shapes = _static_shapes(graph, consts)
    for index, node in enumerate(graph.node):
        label = f"node {node.name or index!r} ({node.op_type})"
        if operators:
            domain = "" if node.domain == "ai.onnx" else node.domain
            if (node.domain, node.op_type) not in local and not onnx.defs.has(node.op_type, domain):
                raise InvalidModel(f"{label}: operator {domain or 'ai.onnx'}::{node.op_type} is not an "
                                   "ONNX operator nor a function of the model")
        for name in node.input:
            if name not in available:
                raise InvalidModel(
                    f"{label} reads {name!r} before it is produced (a cycle, an unsorted graph or an "
                    "unknown name)"
                )
        if node.op_type in _SHAPE_OPS and node.domain in ("", "ai.onnx"):
            elements = _requested_elements(node, consts, shapes)
            if elements is not None and elements > MAX_TENSOR_ELEMENTS:
                raise InvalidModel(
                    f"{label} would produce {elements} elements; the limit is {MAX_TENSOR_ELEMENTS}"
                )
            if (dim := _too_long_dim(node, consts)) is not None:  # with a zero dim beside it
                raise InvalidModel(
                    f"{label} asks for a dimension of {dim}; the limit is {MAX_TENSOR_ELEMENTS}")
        for attr in node.attribute:
            subgraphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            for sub in subgraphs:
                _check_graph(sub, available, local, operators, count)
        for name in node.output:
            if not name:
                continue
            if name in available:
                raise InvalidModel(
                    f"{label} writes {name!r}, which is already a graph input, an initializer or "
                    "another node's output"
                )
            available.add(name)


def _sums_to_finite(value: np.ndarray) -> bool:
    """Whether ``value``'s sum is finite, which proves every element finite at no allocation.

    NaN and infinity survive every addition, so a finite sum has neither; a non-finite sum means a
    non-finite element or an overflow of the sum, and the caller then counts element by element.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(np.sum(value)))


def _is_weight(tensor: TensorProto) -> bool:
    return tensor.data_type in _FLOAT_TYPES


def _clear_data(tensor: TensorProto) -> None:
    for field in _DATA_FIELDS:
        tensor.ClearField(field)  # type: ignore[arg-type]


def _canonicalise_nodes(nodes: list[onnx.NodeProto]) -> None:
    for node in nodes:
        node.ClearField("doc_string")
        node.ClearField("metadata_props")
        attrs = sorted(node.attribute, key=lambda a: a.name)
        node.ClearField("attribute")
        for attr in attrs:
            attr.ClearField("doc_string")
            if attr.HasField("g"):
                _canonicalise_graph(attr.g, strip=False)
            for sub in attr.graphs:
                _canonicalise_graph(sub, strip=False)
        node.attribute.extend(attrs)


def _canonicalise_graph(graph: onnx.GraphProto, *, strip: bool) -> None:
    graph.ClearField("doc_string")
    graph.ClearField("metadata_props")
    graph.ClearField("value_info")
    for value in list(graph.input) + list(graph.output):
        value.ClearField("doc_string")
        value.ClearField("metadata_props")
    inits = sorted(graph.initializer, key=lambda t: t.name)
    graph.ClearField("initializer")
    for tensor in inits:
        tensor.ClearField("doc_string")
        tensor.ClearField("metadata_props")
        if strip and _is_weight(tensor):
            _clear_data(tensor)
    graph.initializer.extend(inits)
    _canonicalise_nodes(list(graph.node))


def _canonical_model(model: onnx.ModelProto, *, card: bool = True) -> onnx.ModelProto:
    # card=False (from_model) leaves a model card out; a stored or received definition keeps the
    # metadata it was hashed with, so the id of a definition a registry holds never changes.
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for field in ("doc_string", "producer_name", "producer_version", "domain", "model_version"):
        out.ClearField(field)  # type: ignore[arg-type]
    kept = sorted(
        (p.key, p.value) for p in out.metadata_props
        if p.key.startswith(_KEPT_METADATA_PREFIX) and (card or not is_model_card_key(p.key))
    )
    out.ClearField("metadata_props")
    for key, value in kept:
        out.metadata_props.add(key=key, value=value)
    opsets = sorted((o.domain, o.version) for o in out.opset_import)
    out.ClearField("opset_import")
    for domain, version in opsets:
        out.opset_import.add(domain=domain, version=version)
    functions = sorted(out.functions, key=lambda f: (f.domain, f.name, f.overload))
    out.ClearField("functions")
    for function in functions:
        function.ClearField("doc_string")
        function.ClearField("metadata_props")
        _canonicalise_nodes(list(function.node))
    out.functions.extend(functions)
    _canonicalise_graph(out.graph, strip=True)
    return out


class Definition:
    """A canonical, weights-stripped ONNX graph and the specs of its weight tensors."""

    def __init__(self, canonical: onnx.ModelProto) -> None:
        self._proto = canonical
        self.canonical_bytes: bytes = canonical.SerializeToString(deterministic=True)
        self.id: str = sha256_hex(self.canonical_bytes)
        self.specs: dict[str, TensorSpec] = {
            t.name: TensorSpec(
                t.name,
                np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type)),
                tuple(int(d) for d in t.dims),
            )
            for t in canonical.graph.initializer
            if _is_weight(t)
        }

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_model(cls, model: onnx.ModelProto) -> tuple[Definition, dict[str, np.ndarray]]:
        """Split a full model into its definition and its weights (float initializers).

        An exported file's model card is left out (see the module).
        """
        _reject_unsafe(model)
        try:
            weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer if _is_weight(t)}
        except (ValueError, TypeError) as exc:
            raise InvalidModel(f"an initializer's data does not match its dims or dtype: {exc}") from exc
        return cls(_canonical_model(model, card=False)), weights

    @classmethod
    def from_bytes(
        cls, data: bytes, *, max_bytes: int = MAX_MODEL_BYTES, expected_id: str | None = None
    ) -> Definition:
        """Parse a definition (stripped or full model) received from elsewhere.

        With ``expected_id`` (the id a sender announced), a definition hashing to anything else is
        refused.
        """
        definition = cls(_canonical_model(load_model_bytes(data, max_bytes=max_bytes)))
        if expected_id is not None and definition.id != expected_id:
            raise InvalidModel(
                f"received definition hashes to {definition.id[:12]}, the sender announced "
                f"{str(expected_id)[:12]}"
            )
        return definition

    # -- views --------------------------------------------------------------------------------
    @property
    def proto(self) -> onnx.ModelProto:
        """A copy of the canonical (stripped) model."""
        out = onnx.ModelProto()
        out.CopyFrom(self._proto)
        return out

    @property
    def metadata(self) -> dict[str, str]:
        """The ``flonnx.*`` metadata this definition carries."""
        return {p.key: p.value for p in self._proto.metadata_props}

    @property
    def input_names(self) -> list[str]:
        """Graph inputs that are not initializers (the data inputs)."""
        inits = {t.name for t in self._proto.graph.initializer}
        return [v.name for v in self._proto.graph.input if v.name not in inits]

    @property
    def output_names(self) -> list[str]:
        """Graph outputs."""
        return [v.name for v in self._proto.graph.output]

    # -- weights ------------------------------------------------------------------------------
    def validate(
        self, weights: Mapping[str, np.ndarray], *, source: str = "update", finite: bool = True
    ) -> None:
        """Check names, dtypes, shapes and (unless ``finite=False``) finiteness.

        Raises :class:`InvalidUpdate` listing every problem.
        """
        problems: list[str] = []
        missing = sorted(set(self.specs) - set(weights))
        extra = sorted(set(weights) - set(self.specs))
        if missing:
            problems.append(
                "missing tensors: "
                + ", ".join(f"{n} (expected {self.specs[n].describe()})" for n in missing)
            )
        if extra:
            problems.append(f"unexpected tensors not in the definition: {', '.join(extra)}")
        for name in sorted(set(self.specs) & set(weights)):
            spec, value = self.specs[name], np.asarray(weights[name])
            if value.dtype != spec.dtype:
                # same name, other byte order: name the order, or the message contradicts itself
                shown = ((spec.dtype.str, value.dtype.str) if spec.dtype.name == value.dtype.name
                         else (spec.dtype.name, value.dtype.name))
                problems.append(f"tensor {name!r}: expected dtype {shown[0]}, got {shown[1]}")
            if tuple(value.shape) != spec.shape:
                problems.append(
                    f"tensor {name!r}: expected shape {list(spec.shape)}, got {list(value.shape)}"
                )
            elif finite and value.dtype.kind == "f" and not _sums_to_finite(value):
                bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
                if bad:
                    problems.append(f"tensor {name!r}: {bad} non-finite values (NaN or inf)")
        if problems:
            raise InvalidUpdate(
                f"{source} does not match definition {self.id[:12]}: " + "; ".join(problems),
                problems,
            )

    def materialize(self, weights: Mapping[str, np.ndarray]) -> onnx.ModelProto:
        """The full, standalone ONNX model: this definition with ``weights`` filled in."""
        self.validate(weights, source="weights")
        model = self.proto
        for tensor in model.graph.initializer:
            if tensor.name in self.specs:
                value = np.ascontiguousarray(weights[tensor.name])
                tensor.raw_data = value.astype(value.dtype.newbyteorder("<"), copy=False).tobytes()
        return model
