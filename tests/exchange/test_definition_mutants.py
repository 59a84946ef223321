"""Definitions on hand-made graphs (fast, no exporter): what the canonical form keeps and drops, the id,
every refusal of a hostile graph and its message, and each limit exactly at and one past.

``tests/exchange/test_definition.py`` checks the same promises on the torch-exported MLP (4 s of export
per run); these tests build their models with ``onnx.helper`` so that each mutant of
``exchange/definition.py`` is judged in a fraction of a second.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from flonnx.exchange import definition as module
from flonnx.exchange.definition import (
    ALLOWED_DOMAINS,
    MAX_MODEL_BYTES,
    MAX_NODES,
    MAX_TENSOR_ELEMENTS,
    Definition,
    TensorSpec,
    check_graph,
    is_model_card_key,
    load_model_bytes,
)
from flonnx.exchange.errors import InvalidModel, InvalidUpdate
from flonnx.exchange.hashing import sha256_hex

LIMIT = MAX_TENSOR_ELEMENTS
Y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)


def _model(nodes: Sequence[onnx.NodeProto], inputs: Sequence[onnx.ValueInfoProto] = (),
           initializer: Sequence[TensorProto] = (), outputs: Sequence[onnx.ValueInfoProto] = (Y,),
           opsets: Sequence[tuple[str, int]] = (("", 17),)) -> onnx.ModelProto:
    graph = helper.make_graph(list(nodes), "g", list(inputs), list(outputs), list(initializer))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    model.ir_version = 8
    return model


def _ints(name: str, values: Sequence[int]) -> TensorProto:
    return helper.make_tensor(name, TensorProto.INT64, [len(values)], list(values))


def _const(name: str, values: Sequence[int]) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=_ints(name, values))


def _refused(model: onnx.ModelProto, match: str) -> None:
    with pytest.raises(InvalidModel, match=match):
        check_graph(model)


def _mlp() -> onnx.ModelProto:
    """x[n, 2] -> Gemm(w, b) -> Relu -> If(c) -> y, with an int64 shape initializer and a local function."""
    w = helper.make_tensor("w", TensorProto.FLOAT, [3, 2], [1.0, -2.0, 0.5, 3.0, 0.25, -1.0])
    b = helper.make_tensor("b", TensorProto.FLOAT, [3], [0.1, 0.2, 0.3])
    s = _ints("s", [-1, 3])
    branch_w = helper.make_tensor("bw", TensorProto.FLOAT, [1], [2.0])
    then = helper.make_graph([helper.make_node("Mul", ["r", "bw"], ["t"], doc_string="then")], "then",
                             [], [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)], [branch_w])
    other = helper.make_graph([helper.make_node("Identity", ["r"], ["e"])], "else", [],
                              [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)])
    nodes = [
        helper.make_node("Gemm", ["x", "w", "b"], ["h"], transB=1, alpha=1.0, beta=1.0),
        helper.make_node("Double", ["h"], ["h2"], domain="local"),
        helper.make_node("Reshape", ["h2", "s"], ["r"]),
        helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other),
    ]
    double = helper.make_function("local", "Double", ["a"], ["o"],
                                  [helper.make_node("Add", ["a", "a"], ["o"])],
                                  opset_imports=[helper.make_opsetid("", 17)])
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2]),
                           helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                   [w, b, s], opsets=[("", 17), ("local", 1)])
    model.functions.append(double)
    model.metadata_props.add(key="flonnx.model", value="mlp")
    return model


def _branch(model: onnx.ModelProto, name: str) -> onnx.GraphProto:
    return next(a.g for a in model.graph.node[3].attribute if a.name == name)


def _reverse(message: Any, field: str) -> None:
    """Put a repeated field of ``message`` in the opposite order."""
    items = list(getattr(message, field))[::-1]
    message.ClearField(field)
    getattr(message, field).extend(items)


def _annotate(doc: str, *items: Any) -> None:
    """Give each item a doc string and a metadata entry, both of which the canonical form drops."""
    for item in items:
        item.doc_string = doc
        item.metadata_props.add(key="k", value="v")


def _noisy(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same graph as an exporter might write it: every kind of noise the canonical form drops."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    out.doc_string, out.producer_name, out.producer_version = "exported", "torch", "9.9"
    out.domain, out.model_version = "org.example", 7
    out.metadata_props.add(key="pkg.torch.version", value="2.9")
    out.metadata_props.add(key="flonnx.version_id", value="v" * 64)  # the card of an export
    out.metadata_props.add(key="flonnx.metric.accuracy", value="0.9")
    _reverse(out, "metadata_props")
    _reverse(out, "opset_import")
    graph = out.graph
    _annotate("graph doc", graph)
    graph.value_info.append(helper.make_tensor_value_info("h", TensorProto.FLOAT, ["n", 3]))
    _annotate("value doc", *graph.input, *graph.output)
    _reverse(graph, "initializer")
    _annotate("tensor doc", *graph.initializer)
    for node in graph.node:
        node.doc_string = "node doc"
        node.metadata_props.add(key="pkg.torch.onnx.stack_trace", value="File /home/x.py")
        _reverse(node, "attribute")
        for attr in node.attribute:
            attr.doc_string = "attr doc"
            for sub in [attr.g] if attr.HasField("g") else []:
                _annotate("sub doc", sub)
                sub.value_info.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, None))
                for value in list(sub.input) + list(sub.output):
                    value.doc_string = "sub value doc"
                _annotate("sub tensor doc", *sub.initializer)
                _annotate("inner doc", *sub.node)
    for function in out.functions:
        _annotate("function doc", function)
        _annotate("function node doc", *function.node)
    extra = helper.make_function("aaa", "Unused", ["a"], ["o"], [helper.make_node("Identity", ["a"], ["o"])],
                                 opset_imports=[helper.make_opsetid("", 17)])
    out.functions.append(extra)
    _reverse(out, "functions")
    return out


def _with_unused(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    out.functions.append(helper.make_function("aaa", "Unused", ["a"], ["o"],
                                              [helper.make_node("Identity", ["a"], ["o"])],
                                              opset_imports=[helper.make_opsetid("", 17)]))
    return out


# -- the canonical form and the id ----------------------------------------------------------------

def test_the_id_is_the_sha256_of_the_canonical_bytes_and_is_frozen() -> None:
    definition, _ = Definition.from_model(_mlp())

    assert definition.id == sha256_hex(definition.canonical_bytes)
    assert definition.canonical_bytes == definition.proto.SerializeToString(deterministic=True)
    # ids are the product's promise: the canonical form of this graph must never change
    assert definition.id == "f58bcfc9091d72a04f64149556d225423415de71224e797a5e52e97bb5d80a09"


def test_exporter_noise_and_order_do_not_change_the_id() -> None:
    plain, _ = Definition.from_model(_with_unused(_mlp()))
    noisy, _ = Definition.from_model(_noisy(_mlp()))

    assert noisy.canonical_bytes == plain.canonical_bytes
    assert noisy.id == plain.id


def test_the_canonical_form_drops_the_noise_and_the_float_weights_only() -> None:
    definition, weights = Definition.from_model(_noisy(_mlp()))
    proto = definition.proto

    assert (proto.doc_string, proto.producer_name, proto.producer_version, proto.domain,
            proto.model_version) == ("", "", "", "", 0)
    assert [(p.key, p.value) for p in proto.metadata_props] == [("flonnx.model", "mlp")]
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", 17), ("local", 1)]
    assert [(f.domain, f.name) for f in proto.functions] == [("aaa", "Unused"), ("local", "Double")]
    graph = proto.graph
    assert (graph.doc_string, len(graph.metadata_props), len(graph.value_info)) == ("", 0, 0)
    assert [t.name for t in graph.initializer] == ["b", "s", "w"]
    assert all(not v.doc_string and not v.metadata_props for v in [*graph.input, *graph.output])
    assert all(not t.doc_string and not t.metadata_props for t in graph.initializer)
    data = [t.raw_data or list(t.float_data) or list(t.int64_data) for t in graph.initializer]
    assert data == [[], [-1, 3], []]
    assert all(not n.doc_string and not n.metadata_props for n in graph.node)
    assert [a.name for a in graph.node[0].attribute] == ["alpha", "beta", "transB"]
    assert [a.name for a in graph.node[3].attribute] == ["else_branch", "then_branch"]
    assert all(not a.doc_string for n in graph.node for a in n.attribute)
    for function in proto.functions:
        assert (function.doc_string, len(function.metadata_props)) == ("", 0)
        assert all(not n.doc_string and not n.metadata_props for n in function.node)
    then = graph.node[3].attribute[1].g
    assert (then.doc_string, len(then.metadata_props), len(then.value_info)) == ("", 0, 0)
    assert all(not v.doc_string for v in [*then.input, *then.output])
    assert all(not n.doc_string and not n.metadata_props for n in then.node)
    # a subgraph's initializer is part of the graph, not a weight: its data stays
    assert [(t.name, list(t.float_data), t.doc_string, len(t.metadata_props)) for t in then.initializer] == [
        ("bw", [2.0], "", 0)]
    assert sorted(weights) == ["b", "w"]
    assert sorted(definition.specs) == ["b", "w"]


@pytest.mark.parametrize("change", [
    "attribute", "node", "opset", "initializer-shape", "initializer-dtype", "int-constant", "subgraph",
    "subgraph-weight", "function", "input", "output", "flonnx-metadata", "graph-name",
])
def test_anything_that_changes_the_meaning_changes_the_id(change: str) -> None:
    model = _mlp()
    graph = model.graph
    if change == "attribute":
        graph.node[0].attribute[0].f = 2.0
    elif change == "node":
        graph.node[0].op_type = "Gemm"
        graph.node[1].name = "renamed"
    elif change == "opset":
        model.opset_import[0].version = 18
    elif change == "initializer-shape":
        graph.initializer[0].dims[:] = [2, 3]
    elif change == "initializer-dtype":
        graph.initializer[1].CopyFrom(helper.make_tensor("b", TensorProto.DOUBLE, [3], [0.1, 0.2, 0.3]))
    elif change == "int-constant":
        graph.initializer[2].int64_data[0] = 6
    elif change == "subgraph":
        _branch(model, "then_branch").node[0].op_type = "Add"
    elif change == "subgraph-weight":
        _branch(model, "then_branch").initializer[0].float_data[0] = 3.0
    elif change == "function":
        model.functions[0].node[0].op_type = "Mul"
    elif change == "input":
        graph.input[0].type.tensor_type.shape.dim[1].dim_value = 5
    elif change == "output":
        graph.output[0].name = "z"
    elif change == "flonnx-metadata":
        model.metadata_props[0].value = "other"
    elif change == "graph-name":
        graph.name = "h"

    assert Definition.from_model(model)[0].id != Definition.from_model(_mlp())[0].id


def test_weight_values_do_not_change_the_id_but_their_specs_are_kept() -> None:
    model = _mlp()
    model.graph.initializer[0].float_data[0] = 42.0
    double = TensorProto(name="d", data_type=TensorProto.DOUBLE, dims=[2], double_data=[1.0, 2.0])
    half = helper.make_tensor("f16", TensorProto.FLOAT16, [1], [1.0])
    bf16 = helper.make_tensor("bf16", TensorProto.BFLOAT16, [2, 1], [1.0, 2.0])
    other = _mlp()
    other.graph.initializer.extend([double, half, bf16])
    changed = _mlp()
    changed.graph.initializer.extend([double, half, bf16])
    changed.graph.initializer[3].double_data[0] = 5.0
    changed.graph.initializer[4].CopyFrom(helper.make_tensor("f16", TensorProto.FLOAT16, [1], [7.0]))
    changed.graph.initializer[5].CopyFrom(
        helper.make_tensor("bf16", TensorProto.BFLOAT16, [2, 1], [3.0, 4.0]))

    definition, weights = Definition.from_model(other)

    assert Definition.from_model(model)[0].id == Definition.from_model(_mlp())[0].id
    assert Definition.from_model(changed)[0].id == definition.id
    assert {n: (s.dtype.name, s.shape) for n, s in definition.specs.items()} == {
        "b": ("float32", (3,)), "w": ("float32", (3, 2)), "d": ("float64", (2,)), "f16": ("float16", (1,)),
        "bf16": (weights["bf16"].dtype.name, (2, 1))}
    assert definition.specs["w"] == TensorSpec("w", np.dtype(np.float32), (3, 2))
    assert all(not t.raw_data and not t.float_data and not t.double_data and not t.int32_data
               for t in definition.proto.graph.initializer if t.name != "s")
    assert sorted(weights) == ["b", "bf16", "d", "f16", "w"]
    np.testing.assert_array_equal(weights["d"], [1.0, 2.0])
    np.testing.assert_array_equal(weights["w"], np.array([[1.0, -2.0], [0.5, 3.0], [0.25, -1.0]], np.float32))


def test_every_data_field_of_a_weight_is_cleared() -> None:
    fields = {"raw_data": b"\0" * 8, "float_data": [1.0, 2.0], "double_data": [1.0, 2.0],
              "int32_data": [1, 2], "int64_data": [1, 2], "uint64_data": [1, 2], "string_data": [b"a", b"b"]}
    ids = set()
    for field, value in fields.items():
        model = _mlp()
        tensor = TensorProto(name="z", data_type=TensorProto.FLOAT, dims=[2])
        if field == "raw_data":
            tensor.raw_data = value  # type: ignore[assignment]
        else:
            getattr(tensor, field).extend(value)
        model.graph.initializer.append(tensor)
        canonical = module._canonical_model(model)
        assert [t for t in canonical.graph.initializer if t.name == "z"][0] == TensorProto(
            name="z", data_type=TensorProto.FLOAT, dims=[2]), field
        ids.add(Definition(canonical).id)
    assert len(ids) == 1


def test_the_model_card_is_left_out_of_a_models_definition_but_kept_in_a_received_one() -> None:
    model = _mlp()
    for key in ("flonnx.version_id", "flonnx.metric.loss", "flonnx.extra", "other.key"):
        model.metadata_props.add(key=key, value="1")
    plain = Definition.from_model(_mlp())[0]

    definition = Definition.from_model(model)[0]
    received = Definition.from_bytes(model.SerializeToString())

    assert definition.metadata == {"flonnx.model": "mlp", "flonnx.extra": "1"}
    assert definition.id != plain.id  # flonnx.extra is a flonnx key that is not the card's
    assert received.metadata == {"flonnx.model": "mlp", "flonnx.extra": "1", "flonnx.version_id": "1",
                                 "flonnx.metric.loss": "1"}
    assert received.id != definition.id
    assert Definition.from_bytes(definition.canonical_bytes).id == definition.id
    assert Definition.from_bytes(received.canonical_bytes).id == received.id


@pytest.mark.parametrize("key", [
    "flonnx.version_id", "flonnx.kind", "flonnx.round", "flonnx.definition_id", "flonnx.weights_id",
    "flonnx.parents", "flonnx.parameter_count", "flonnx.lineage", "flonnx.strategy", "flonnx.definition",
    "flonnx.lineage_chain", "flonnx.signature", "flonnx.signing_key", "flonnx.metric.accuracy",
    "flonnx.card.task", "flonnx.measured.latency", "flonnx.derived.from",
])
def test_model_card_keys(key: str) -> None:
    assert is_model_card_key(key)
    assert not is_model_card_key(key + "x") or key.count(".") > 1
    assert not is_model_card_key(key.replace("flonnx.", "flonnx_"))


@pytest.mark.parametrize("key", ["flonnx.model", "flonnx.metric", "flonnx.cards.x", "flonnx.version", "x"])
def test_keys_that_are_not_the_card(key: str) -> None:
    assert not is_model_card_key(key)


def test_the_views_of_a_definition() -> None:
    definition, _ = Definition.from_model(_mlp())

    proto = definition.proto
    proto.graph.ClearField("node")

    assert len(definition.proto.graph.node) == 4  # a copy
    assert definition.input_names == ["x", "c"]
    assert definition.output_names == ["y"]
    model = _mlp()
    model.graph.input.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [3, 2]))
    assert Definition.from_model(model)[0].input_names == ["x", "c"]
    assert TensorSpec("w", np.dtype(np.float16), (3, 2)).describe() == "float16[3, 2]"
    assert TensorSpec("w", np.dtype(np.float32), ()).describe() == "float32[]"


# -- weights against a definition ---------------------------------------------------------------

def _weights() -> dict[str, np.ndarray]:
    return {"w": np.arange(6, dtype=np.float32).reshape(3, 2), "b": np.ones(3, np.float32)}


def test_valid_weights_are_accepted_and_materialize_into_the_model() -> None:
    definition, weights = Definition.from_model(_mlp())
    new = _weights()
    new["w"] = np.asfortranarray(new["w"])  # a non-contiguous layout is written in C order

    model = definition.materialize(new)

    definition.validate(weights)
    again, read = Definition.from_model(model)
    assert again.id == definition.id
    np.testing.assert_array_equal(read["w"], np.arange(6, dtype=np.float32).reshape(3, 2))
    np.testing.assert_array_equal(read["b"], np.ones(3, np.float32))
    assert [t.name for t in model.graph.initializer if t.raw_data] == ["b", "w"]
    assert list([t for t in model.graph.initializer if t.name == "s"][0].int64_data) == [-1, 3]
    assert not definition.proto.graph.initializer[0].raw_data  # the definition is not filled in


def test_materialize_validates_first() -> None:
    definition, _ = Definition.from_model(_mlp())

    with pytest.raises(InvalidUpdate, match=r"^weights does not match definition .*: missing tensors: b "):
        definition.materialize({"w": _weights()["w"]})


@pytest.mark.parametrize(("change", "problems"), [
    (lambda w: w.pop("b"), ["missing tensors: b (expected float32[3])"]),
    (lambda w: (w.pop("b"), w.pop("w")),
     ["missing tensors: b (expected float32[3]), w (expected float32[3, 2])"]),
    (lambda w: w.update(z=np.zeros(1), a=np.zeros(1)), ["unexpected tensors not in the definition: a, z"]),
    (lambda w: w.update(b=w["b"].astype(np.float64)), ["tensor 'b': expected dtype float32, got float64"]),
    (lambda w: w.update(b=w["b"].astype(np.float16)),
     ["tensor 'b': expected dtype float32, got float16"]),
    (lambda w: w.update(b=w["b"].astype(">f4")), ["tensor 'b': expected dtype <f4, got >f4"]),
    (lambda w: w.update(w=w["w"].T), ["tensor 'w': expected shape [3, 2], got [2, 3]"]),
    (lambda w: w.update(b=np.ones(4, np.float32)), ["tensor 'b': expected shape [3], got [4]"]),
    (lambda w: w.update(w=w["w"].astype(np.float64).T),
     ["tensor 'w': expected dtype float32, got float64", "tensor 'w': expected shape [3, 2], got [2, 3]"]),
    (lambda w: w["b"].__setitem__(slice(0, 2), [np.nan, -np.inf]),
     ["tensor 'b': 2 non-finite values (NaN or inf)"]),
    (lambda w: w["w"].__setitem__(slice(0, 1), np.nan), ["tensor 'w': 2 non-finite values (NaN or inf)"]),
    (lambda w: w["w"].__setitem__((slice(None), 0), np.inf),
     ["tensor 'w': 3 non-finite values (NaN or inf)"]),
    (lambda w: (w.pop("w"), w.update(z=np.zeros(1)), w["b"].__setitem__(0, np.inf)),
     ["missing tensors: w (expected float32[3, 2])", "unexpected tensors not in the definition: z",
      "tensor 'b': 1 non-finite values (NaN or inf)"]),
], ids=["missing", "missing-two", "extra", "dtype", "float16", "byte-order", "shape", "longer",
        "dtype-and-shape", "non-finite", "non-finite-row", "non-finite-column", "all"])
def test_invalid_weights_are_refused_listing_every_problem(change: Callable[[dict[str, Any]], object],
                                                           problems: list[str]) -> None:
    definition, _ = Definition.from_model(_mlp())
    weights: dict[str, Any] = _weights()
    change(weights)

    with pytest.raises(InvalidUpdate) as info:
        definition.validate(weights, source="update from site-a")

    assert info.value.problems == problems
    prefix = f"update from site-a does not match definition {definition.id[:12]}: "
    assert str(info.value) == prefix + "; ".join(problems)


def test_finite_weights_whose_sum_overflows_are_accepted_without_a_warning() -> None:
    definition, _ = Definition.from_model(_mlp())
    weights = _weights()
    big = np.finfo(np.float32).max
    weights["w"][:] = big  # the float32 sum is inf, every value is finite
    weights["b"][:] = [big, -big, big]

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        definition.validate(weights)

    weights["b"][1] = np.inf  # among huge finite values, the one infinity is still counted
    with pytest.raises(InvalidUpdate, match=r"tensor 'b': 1 non-finite values"):
        definition.validate(weights)


def test_finiteness_is_checked_only_on_floats_of_the_right_shape_and_can_be_skipped() -> None:
    definition, _ = Definition.from_model(_mlp())
    weights = _weights()
    weights["b"][0] = np.nan

    definition.validate(weights, finite=False)
    with pytest.raises(InvalidUpdate, match="^update does not match"):
        definition.validate(weights)
    with pytest.raises(InvalidUpdate) as info:  # the shape is wrong: the values are not looked at
        definition.validate({**weights, "b": np.full(2, np.nan, np.float32)})
    assert info.value.problems == ["tensor 'b': expected shape [3], got [2]"]
    ints = Definition.from_model(_int_weight_model())[0]
    with pytest.raises(InvalidUpdate) as info:
        ints.validate({"w": np.zeros(2, np.int32)})
    assert info.value.problems == ["unexpected tensors not in the definition: w"]


def _int_weight_model() -> onnx.ModelProto:
    return _model([helper.make_node("Identity", ["w"], ["y"])], initializer=[_ints("w", [1, 2])])


# -- parsing untrusted bytes --------------------------------------------------------------------

def test_model_bytes_at_the_limit_are_parsed_and_one_past_are_refused() -> None:
    data = _mlp().SerializeToString()

    assert load_model_bytes(data, max_bytes=len(data)) == onnx.load_model_from_string(data)
    assert Definition.from_bytes(data, max_bytes=len(data)).id == Definition.from_bytes(data).id
    over = rf"^ONNX model is {len(data)} bytes; the limit is {len(data) - 1}$"
    with pytest.raises(InvalidModel, match=over):
        load_model_bytes(data, max_bytes=len(data) - 1)
    with pytest.raises(InvalidModel, match=over):
        Definition.from_bytes(data, max_bytes=len(data) - 1)
    with pytest.raises(InvalidModel, match=r"^not a parseable ONNX model: "):
        load_model_bytes(b"\xff\xff\xff not onnx")


def test_a_received_definition_must_hash_to_the_announced_id() -> None:
    definition, _ = Definition.from_model(_mlp())
    data = definition.canonical_bytes

    assert Definition.from_bytes(data, expected_id=definition.id).id == definition.id
    message = rf"^received definition hashes to {definition.id[:12]}, the sender announced {'0' * 12}$"
    with pytest.raises(InvalidModel, match=message):
        Definition.from_bytes(data, expected_id="0" * 64)
    with pytest.raises(InvalidModel, match=rf"^received definition hashes to {definition.id[:12]}, "):
        Definition.from_bytes(data, expected_id="f" * 64)


def _garbled(path: Callable[[onnx.ModelProto], Any], field: str) -> bytes:
    """The model's bytes with one string field replaced by bytes that are not UTF-8."""
    model = _mlp()
    setattr(path(model), field, "\u00e9" * 3)
    return model.SerializeToString().replace("\u00e9".encode() * 3, b"\xff\xfe\xfd\xfc\xfb\xfa")


@pytest.mark.parametrize(("path", "field", "where"), [
    (lambda m: m.graph.node[0], "op_type", "NodeProto.op_type"),
    (lambda m: m.graph, "name", "GraphProto.name"),
    (lambda m: m, "producer_name", "ModelProto.producer_name"),
    (lambda m: _branch(m, "then_branch").node[0], "name", "NodeProto.name"),
    (lambda m: m.graph.initializer[0], "name", "TensorProto.name"),
    (lambda m: m.graph.initializer[0], "doc_string", "TensorProto.doc_string"),
    (lambda m: m.graph.initializer[0].metadata_props.add(), "key", "StringStringEntryProto.key"),
    (lambda m: _branch(m, "then_branch").initializer[0], "name", "TensorProto.name"),
], ids=["op_type", "graph", "model", "subgraph-node", "tensor", "tensor-doc", "tensor-metadata",
        "subgraph-tensor"])
def test_a_string_field_that_is_not_utf8_is_refused(path: Callable[[onnx.ModelProto], Any], field: str,
                                                    where: str) -> None:
    with pytest.raises(InvalidModel, match=rf"^a {where} is not valid UTF-8 text$"):
        load_model_bytes(_garbled(path, field))


def test_a_repeated_string_that_is_not_utf8_is_refused() -> None:
    model = _mlp()
    model.graph.node[0].input[0] = "\u00e9" * 3
    data = model.SerializeToString().replace("\u00e9".encode() * 3, b"\xff\xfe\xfd\xfc\xfb\xfa")

    with pytest.raises(InvalidModel, match=r"^a NodeProto.input is not valid UTF-8 text$"):
        load_model_bytes(data)


def test_bytes_fields_and_text_are_not_mistaken_for_bad_text() -> None:
    model = _mlp()
    model.graph.initializer.append(TensorProto(name="str", data_type=TensorProto.STRING, dims=[1],
                                               string_data=[b"\xff\xfe"]))
    model.graph.initializer.append(TensorProto(name="raw", data_type=TensorProto.UINT8, dims=[2],
                                               raw_data=b"\xff\xfe"))
    model.graph.node[0].doc_string = "caf\u00e9 \u2603"

    parsed = load_model_bytes(model.SerializeToString())

    assert parsed.graph.node[0].doc_string == "caf\u00e9 \u2603"


def test_external_data_is_refused_however_it_is_declared() -> None:
    for location, entries in [(TensorProto.EXTERNAL, False), (TensorProto.DEFAULT, True)]:
        model = _mlp()
        tensor = model.graph.initializer[0]
        tensor.ClearField("float_data")
        tensor.data_location = location
        if entries:
            tensor.external_data.add(key="location", value="../../etc/passwd")
        message = r"^initializer 'w' is stored as external data; flonnx accepts only self-contained models$"
        with pytest.raises(InvalidModel, match=message):
            load_model_bytes(model.SerializeToString())
        with pytest.raises(InvalidModel, match=message):
            Definition.from_model(model)
        with pytest.raises(InvalidModel, match=message):
            check_graph(model)


def test_external_data_in_a_subgraph_is_refused() -> None:
    model = _mlp()
    _branch(model, "then_branch").initializer[0].data_location = TensorProto.EXTERNAL

    _refused(model, r"^initializer 'bw' is stored as external data")


def test_sparse_initializers_are_refused() -> None:
    model = _mlp()
    values = helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])
    model.graph.sparse_initializer.add().values.CopyFrom(values)

    with pytest.raises(InvalidModel, match=r"^sparse initializers are not supported$"):
        load_model_bytes(model.SerializeToString())


@pytest.mark.parametrize(("opsets", "node_domain", "bad"), [
    ([("", 17), ("com.evil", 1)], "", "['com.evil']"),
    ([("", 17)], "com.evil", "['com.evil']"),
    ([("", 17), ("b.evil", 1), ("a.evil", 1)], "", "['a.evil', 'b.evil']"),
    ([("", 17), ("com.evil", 1)], "com.evil", "['com.evil']"),
])
def test_operator_domains_outside_onnx_and_the_models_functions_are_refused(
        opsets: list[tuple[str, int]], node_domain: str, bad: str) -> None:
    model = _model([helper.make_node("Relu", ["x"], ["y"], domain=node_domain)],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])], opsets=opsets)

    message = (f"operator domains {bad} are not allowed (allowed: ['ai.onnx', 'ai.onnx.ml'] and the default "
               "domain)")
    with pytest.raises(InvalidModel) as info:
        load_model_bytes(model.SerializeToString())
    assert str(info.value) == message
    with pytest.raises(InvalidModel):
        Definition.from_model(model)


def test_the_allowed_domains_and_local_functions_are_accepted() -> None:
    assert ALLOWED_DOMAINS == {"", "ai.onnx", "ai.onnx.ml"}
    model = _model([helper.make_node("Relu", ["x"], ["r"], domain="ai.onnx"),
                    helper.make_node("Normalizer", ["r"], ["y"], domain="ai.onnx.ml", norm="L1")],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                   opsets=[("", 17), ("ai.onnx.ml", 3)])

    assert len(load_model_bytes(model.SerializeToString()).graph.node) == 2
    assert Definition.from_bytes(_mlp().SerializeToString()).id == Definition.from_model(_mlp())[0].id


def test_unknown_operators_are_refused_unless_asked_not_to() -> None:
    for domain, shown in [("", "ai.onnx"), ("ai.onnx", "ai.onnx"), ("ai.onnx.ml", "ai.onnx.ml")]:
        model = _model([helper.make_node("Frobnicate", ["x"], ["y"], domain=domain)],
                       [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])])
        _refused(model, rf"^node 0 \(Frobnicate\): operator {shown}::Frobnicate is not an ONNX operator nor "
                        r"a function of the model$")
        check_graph(model, operators=False)
    named = _model([helper.make_node("Frobnicate", ["x"], ["y"], name="f")],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])])
    _refused(named, r"^node 'f' \(Frobnicate\): operator ai.onnx::Frobnicate")
    # a function of the model in another domain, and an ONNX operator of the ml domain
    check_graph(_mlp())
    ml = _model([helper.make_node("Normalizer", ["x"], ["y"], domain="ai.onnx.ml", norm="L1")],
                [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])])
    check_graph(ml)
    wrong_domain = _mlp()
    wrong_domain.graph.node[1].domain = "other"  # Double is a function of "local" only
    _refused(wrong_domain, r"operator other::Double is not")
    in_subgraph = _mlp()
    _branch(in_subgraph, "else_branch").node[0].op_type = "Frobnicate"
    _refused(in_subgraph, r"^node 0 \(Frobnicate\): operator ai.onnx::Frobnicate")
    check_graph(in_subgraph, operators=False)


# -- names and order ------------------------------------------------------------------------------

def test_a_graph_in_order_with_unique_names_is_accepted() -> None:
    check_graph(_mlp())
    load_model_bytes(_mlp().SerializeToString())


def test_a_node_reading_a_name_not_yet_produced_is_refused() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    unsorted = _model([helper.make_node("Relu", ["a"], ["y"]), helper.make_node("Relu", ["x"], ["a"])], [x])
    cycle = _model([helper.make_node("Add", ["x", "y"], ["y"])], [x])

    _refused(unsorted, r"^node 0 \(Relu\) reads 'a' before it is produced \(a cycle, an unsorted graph or an "
                       r"unknown name\)$")
    _refused(cycle, r"^node 0 \(Add\) reads 'y' before it is produced")
    with pytest.raises(InvalidModel, match="reads 'a' before it is produced"):
        load_model_bytes(unsorted.SerializeToString())
    # an empty name is an omitted optional input
    check_graph(_model([helper.make_node("Clip", ["x", "", "m"], ["y"]), ], [x], [helper.make_tensor(
        "m", TensorProto.FLOAT, [], [1.0])]))


def test_a_subgraph_reads_the_outer_scope_but_not_later_names() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    c = helper.make_tensor_value_info("c", TensorProto.BOOL, [])

    def branch(reads: str, output: str) -> onnx.GraphProto:
        return helper.make_graph([helper.make_node("Identity", [reads], [output])], output, [],
                                 [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)])

    def model_(reads: str) -> onnx.ModelProto:
        return _model([helper.make_node("Relu", ["x"], ["r"]),
                       helper.make_node("If", ["c"], ["i"], then_branch=branch(reads, "a"),
                                        else_branch=branch("r", "b")),
                       helper.make_node("Relu", ["i"], ["late"]),
                       helper.make_node("Identity", ["late"], ["y"])], [x, c])

    check_graph(model_("r"))
    check_graph(model_("x"))
    _refused(model_("late"), r"^node 0 \(Identity\) reads 'late' before it is produced")
    _refused(model_("i"), r"^node 0 \(Identity\) reads 'i' before it is produced")


def test_the_graphs_of_a_graphs_attribute_are_checked() -> None:
    body = helper.make_graph([helper.make_node("Identity", ["nowhere"], ["o"])], "body",
                             [helper.make_tensor_value_info("s", TensorProto.FLOAT, [1])],
                             [helper.make_tensor_value_info("o", TensorProto.FLOAT, [1])])
    node = helper.make_node("Scan", ["x"], ["y"], num_scan_inputs=1)
    attr = node.attribute.add()
    attr.name, attr.type = "body", onnx.AttributeProto.GRAPHS  # a list of graphs, not one
    attr.graphs.append(body)

    _refused(_model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])]),
             r"^node 0 \(Identity\) reads 'nowhere' before")


@pytest.mark.parametrize(("nodes", "inputs", "inits", "message"), [
    ([helper.make_node("Relu", ["x"], ["x"])], ["x"], [],
     r"^node 0 \(Relu\) writes 'x', which is already a graph input, an initializer or another node's "
     r"output$"),
    ([helper.make_node("Relu", ["x"], ["w"])], ["x"], ["w"],
     r"^node 0 \(Relu\) writes 'w', which is already"),
    ([helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Relu", ["x"], ["a"])], ["x"], [],
     r"^node 1 \(Relu\) writes 'a', which is already"),
    ([helper.make_node("Relu", ["x"], ["y"])], ["x", "x"], [],
     r"^graph input name\(s\) \['x'\] are declared twice$"),
    ([helper.make_node("Relu", ["x"], ["y"])], ["x", "b", "a", "b", "x"], [],
     r"^graph input name\(s\) \['b', 'x'\] are declared twice$"),
    ([helper.make_node("Relu", ["x"], ["y"])], ["x"], ["w", "w"], r"^initializer name 'w' is used twice$"),
])
def test_names_are_defined_once(nodes: list[onnx.NodeProto], inputs: list[str], inits: list[str],
                                message: str) -> None:
    model = _model(nodes, [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in inputs],
                   [helper.make_tensor(n, TensorProto.FLOAT, [1], [1.0]) for n in inits])

    _refused(model, message)


def test_a_subgraph_may_not_redefine_an_outer_name_and_empty_outputs_are_skipped() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    branch = helper.make_graph([helper.make_node("Identity", ["x"], ["x"])], "b", [],
                               [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)])
    ok = helper.make_graph([helper.make_node("Identity", ["x"], ["o"])], "b", [],
                           [helper.make_tensor_value_info("o", TensorProto.FLOAT, None)])
    c = helper.make_tensor_value_info("c", TensorProto.BOOL, [])

    _refused(_model([helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=ok)], [x, c]),
             r"^node 0 \(Identity\) writes 'x', which is already")
    # two optional outputs left out, both empty: not a name defined twice
    check_graph(_model([helper.make_node("Dropout", ["x"], ["", ""]), helper.make_node("Relu", ["x"], ["y"])],
                       [x]))


# -- limits ----------------------------------------------------------------------------------------

def test_the_node_limit_counts_every_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _mlp()  # 4 nodes, and 1 in each branch of the If
    monkeypatch.setattr(module, "MAX_NODES", 6)

    check_graph(model)
    load_model_bytes(model.SerializeToString())
    monkeypatch.setattr(module, "MAX_NODES", 5)
    _refused(model, r"^graph has more than 5 nodes \(the limit\)$")
    monkeypatch.setattr(module, "MAX_NODES", 3)
    with pytest.raises(InvalidModel, match=r"^graph has more than 3 nodes \(the limit\)$"):
        load_model_bytes(model.SerializeToString())


def test_the_node_limit_is_checked_before_the_text_of_a_huge_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _mlp()
    model.graph.node[0].op_type = "\u00e9" * 3
    data = model.SerializeToString().replace("\u00e9".encode() * 3, b"\xff\xfe\xfd\xfc\xfb\xfa")
    monkeypatch.setattr(module, "MAX_NODES", 3)

    with pytest.raises(InvalidModel, match=r"^graph has more than 3 nodes \(the limit\)$"):
        load_model_bytes(data)
    monkeypatch.setattr(module, "MAX_NODES", 4)  # the main graph passes: the text is checked first
    with pytest.raises(InvalidModel, match=r"^a NodeProto.op_type is not valid UTF-8 text$"):
        load_model_bytes(data)


def _init_model(dims: list[int]) -> onnx.ModelProto:
    return _model([helper.make_node("Relu", ["w"], ["y"])],
                  initializer=[TensorProto(name="w", data_type=TensorProto.FLOAT, dims=dims)])


@pytest.mark.parametrize("dims", [[LIMIT], [1 << 14, 1 << 14], [LIMIT, 0], [0, LIMIT], [], [0]])
def test_an_initializer_of_the_limit_elements_or_dim_is_accepted(dims: list[int]) -> None:
    check_graph(_init_model(dims))


@pytest.mark.parametrize(("dims", "elements"), [
    ([LIMIT + 1], LIMIT + 1), ([1 << 14, (1 << 14) + 1], LIMIT + (1 << 14)), ([LIMIT + 1, 0], 0),
    ([0, LIMIT + 1], 0),
])
def test_an_initializer_over_the_limit_is_refused(dims: list[int], elements: int) -> None:
    shown = str(dims).replace("[", r"\[").replace("]", r"\]")
    _refused(_init_model(dims),
             rf"^initializer 'w' declares dims {shown} \({elements} elements\); the limit is {LIMIT}$")


@pytest.mark.parametrize("dims", [[-1], [2, -3], [-1, -1]])
def test_an_initializer_with_a_negative_dim_is_refused(dims: list[int]) -> None:
    shown = str(dims).replace("[", r"\[").replace("]", r"\]")
    _refused(_init_model(dims), rf"^initializer 'w' has a negative dimension {shown}$")


def _shape_model(*nodes: onnx.NodeProto, inputs: Sequence[onnx.ValueInfoProto] = (),
                 inits: Sequence[TensorProto] = ()) -> onnx.ModelProto:
    return _model(nodes, inputs, inits)


def _cos(shape_node: onnx.NodeProto | None, name: str = "s") -> list[onnx.NodeProto]:
    return [n for n in (shape_node, helper.make_node("ConstantOfShape", [name], ["y"])) if n is not None]


def _produce(elements: int) -> str:
    return rf"^node 'big' \(\w+\) would produce {elements} elements; the limit is {LIMIT}$"


@pytest.mark.parametrize(("at", "over"), [([1 << 14, 1 << 14], [1 << 14, (1 << 14) + 1]),
                                          ([LIMIT], [LIMIT + 1]), ([LIMIT, 1], [LIMIT, 2])])
def test_constant_of_shape_at_the_limit_is_accepted_and_one_past_refused(at: list[int],
                                                                         over: list[int]) -> None:
    def model_(shape: list[int], how: str) -> onnx.ModelProto:
        node = helper.make_node("ConstantOfShape", ["s"], ["y"], name="big")
        if how == "initializer":
            return _shape_model(node, inits=[_ints("s", shape)])
        if how == "value_ints":
            return _shape_model(helper.make_node("Constant", [], ["s"], value_ints=shape), node)
        return _shape_model(_const("s", shape), node)

    elements = int(np.prod(over, dtype=object))
    for how in ("initializer", "value_ints", "value"):
        check_graph(model_(at, how))
        _refused(model_(over, how), _produce(elements))


def test_a_single_value_int_is_a_shape_too() -> None:
    node = helper.make_node("ConstantOfShape", ["s"], ["y"], name="big")
    check_graph(_shape_model(helper.make_node("Constant", [], ["s"], value_int=LIMIT), node))
    _refused(_shape_model(helper.make_node("Constant", [], ["s"], value_int=LIMIT + 1), node),
             _produce(LIMIT + 1))


def test_a_dimension_over_the_limit_is_refused_even_with_no_element() -> None:
    for op, inputs in [("ConstantOfShape", ["s"]), ("Expand", ["x", "s"]), ("Tile", ["x", "s"])]:
        x = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])]
        node = helper.make_node(op, inputs, ["y"], name="big")
        over = _shape_model(_const("s", [LIMIT + 1, 0]), node, inputs=x)
        at = _shape_model(_const("s", [LIMIT, 0]), node, inputs=x)
        huge = _shape_model(_const("s", [0, 1 << 62, 1 << 62]), node, inputs=x)

        check_graph(at)
        _refused(over, rf"^node 'big' \({op}\) asks for a dimension of {LIMIT + 1}; the limit is {LIMIT}$")
        _refused(huge, rf"^node 'big' \({op}\) asks for a dimension of {1 << 62}; the limit is {LIMIT}$")


def test_a_shape_op_with_its_shape_input_missing_is_not_followed() -> None:
    x = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])]
    for op in ("ConstantOfShape", "Expand", "Tile"):
        inputs = [] if op == "ConstantOfShape" else ["x"]
        check_graph(_shape_model(_const("s", [LIMIT + 1, 0]), helper.make_node(op, inputs, ["y"]), inputs=x),
                    operators=False)


def test_expand_and_tile_read_their_second_input() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    for op in ("Expand", "Tile"):
        check_graph(_shape_model(_const("s", [LIMIT + 1, 0]), helper.make_node(op, ["s", "r"], ["y"]),
                                 inputs=[x, helper.make_tensor_value_info("r", TensorProto.INT64, [2])]))
    check_graph(_shape_model(_const("s", [1 << 14, 1 << 14]),
                             helper.make_node("Expand", ["x", "s"], ["y"], name="big"), inputs=[x]))
    _refused(_shape_model(_const("s", [1 << 14, (1 << 14) + 1]),
                          helper.make_node("Expand", ["x", "s"], ["y"], name="big"), inputs=[x]),
             _produce(LIMIT + (1 << 14)))


@pytest.mark.parametrize(("base", "repeats", "elements"), [
    ([2, 3], [1 << 13, 1 << 14], 6 << 27),  # 6 base elements times the repeats
    ([4, 4], [1 << 12, 1 << 12], LIMIT),
    ([4, 4], [1 << 12, (1 << 12) + 1], LIMIT + (1 << 16)),
    ([0, 3], [LIMIT, LIMIT], 0),
])
def test_tile_asks_for_the_base_times_the_repeats(base: list[int], repeats: list[int], elements: int) -> None:
    for how in ("input", "initializer"):
        inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, base)] if how == "input" else []
        inits = [] if how == "input" else [TensorProto(name="x", data_type=TensorProto.INT64, dims=base,
                                                       int64_data=[0] * int(np.prod(base)))]
        model = _shape_model(_const("r", repeats), helper.make_node("Tile", ["x", "r"], ["y"], name="big"),
                             inputs=inputs, inits=inits)
        if elements > LIMIT:
            _refused(model, _produce(elements))
        else:
            check_graph(model)


def test_tile_of_an_unknown_base_counts_the_repeats_and_unknown_dims_as_one() -> None:
    unknown = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])
    no_shape = helper.make_tensor_value_info("x", TensorProto.FLOAT, None)

    def model_(x: onnx.ValueInfoProto, repeats: list[int]) -> onnx.ModelProto:
        return _shape_model(_const("r", repeats), helper.make_node("Tile", ["x", "r"], ["y"], name="big"),
                            inputs=[x])

    check_graph(model_(unknown, [1 << 12, 1 << 14]))  # 1 * 4 * 2**26
    _refused(model_(unknown, [(1 << 12) + 1, 1 << 14]), _produce(((1 << 12) + 1) * (1 << 16)))
    check_graph(model_(no_shape, [1 << 14, 1 << 14]))
    _refused(model_(no_shape, [1 << 14, (1 << 14) + 1]), _produce(LIMIT + (1 << 14)))


def test_an_initializer_shape_wins_over_a_graph_input_of_the_same_name() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    base = TensorProto(name="x", data_type=TensorProto.INT64, dims=[4], int64_data=[0] * 4)
    model = _shape_model(_const("r", [1 << 27]), helper.make_node("Tile", ["x", "r"], ["y"], name="big"),
                         inputs=[x], inits=[base])

    _refused(model, _produce(1 << 29))


@pytest.mark.parametrize(("start", "limit", "delta", "elements"), [
    (0, LIMIT, 1, LIMIT), (0, LIMIT + 1, 1, LIMIT + 1), (LIMIT + 1, 0, -1, LIMIT + 1),
    (0, 2 * LIMIT + 1, 2, LIMIT + 1),
    (0, 2 * LIMIT, 2, LIMIT), (1, LIMIT + 2, 1, LIMIT + 1), (0, 1 << 40, 0, None), (5, 0, 1, 0),
    (0.0, float(LIMIT) + 0.5, 1.0, LIMIT + 1), (0.0, float("inf"), 1.0, None), (float("nan"), 1.0, 1.0, None),
    (0.0, 1e12, float("-inf"), None),
])
def test_range_asks_for_its_ceiling_count(start: float, limit: float, delta: float,
                                          elements: int | None) -> None:
    def scalar(name: str, value: float) -> onnx.NodeProto:
        kind = TensorProto.INT64 if isinstance(value, int) else TensorProto.DOUBLE
        return helper.make_node("Constant", [], [name], value=helper.make_tensor(name, kind, [], [value]))

    model = _shape_model(scalar("a", start), scalar("b", limit), scalar("c", delta),
                         helper.make_node("Range", ["a", "b", "c"], ["y"], name="big"))

    if elements is not None and elements > LIMIT:
        _refused(model, _produce(elements))
    else:
        check_graph(model)
    assert module._requested_elements(model.graph.node[3], module._int_constants(model.graph), {}) == elements


def test_range_with_an_input_not_constant_is_not_followed() -> None:
    for missing in range(3):
        names = ["a", "b", "c"]
        names[missing] = "x"
        model = _shape_model(_const("a", [0]), _const("b", [LIMIT + 1]), _const("c", [1]),
                             helper.make_node("Range", names, ["y"]),
                             inputs=[helper.make_tensor_value_info("x", TensorProto.INT64, [])])
        check_graph(model)


@pytest.mark.parametrize(("pads", "refused"), [
    ([0, 0, (1 << 14) - 4, (1 << 14) - 4], False),  # (4 + 2**14 - 4)**2: exactly the limit
    ([0, 0, (1 << 14) - 4, (1 << 14) - 3], True),
    ([(1 << 14) - 4, 0, 0, (1 << 14) - 3], True),
    ([0, (1 << 14) - 3, (1 << 14) - 4, 0], True),
    ([-4, -3, LIMIT, 0], False),  # a negative pad crops
])
def test_pad_asks_for_the_input_plus_the_pads(pads: list[int], refused: bool) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4])
    a, b = pads[0] + 4 + pads[2], pads[1] + 4 + pads[3]
    for how in ("input", "attribute"):
        node = (helper.make_node("Pad", ["x", "p"], ["y"], name="big") if how == "input"
                else helper.make_node("Pad", ["x"], ["y"], name="big", pads=pads))
        model = _shape_model(*([_const("p", pads)] if how == "input" else []), node, inputs=[x])
        if refused:
            _refused(model, _produce(a * b))
        else:
            check_graph(model)


def test_pad_is_not_followed_without_a_shape_matching_pads_or_with_axes() -> None:
    pads = [0, 0, LIMIT, LIMIT]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4])
    unknown = helper.make_tensor_value_info("x", TensorProto.FLOAT, None)
    three = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4, 4])

    check_graph(_shape_model(_const("p", pads), helper.make_node("Pad", ["x", "p"], ["y"]), inputs=[unknown]))
    check_graph(_shape_model(_const("p", pads), helper.make_node("Pad", ["x", "p"], ["y"]), inputs=[three]))
    longer = _const("p", [*pads, 0, 0])
    check_graph(_shape_model(longer, helper.make_node("Pad", ["x", "p"], ["y"]), inputs=[x]))
    check_graph(_shape_model(_const("p", pads), _const("ax", [0, 1]),
                             helper.make_node("Pad", ["x", "p", "", "ax"], ["y"]), inputs=[x]))
    check_graph(_shape_model(helper.make_node("Pad", ["x"], ["y"]), inputs=[x]), operators=False)
    _refused(_shape_model(_const("p", pads), _const("v", [0]),
                          helper.make_node("Pad", ["x", "p", "v"], ["y"]), inputs=[x]), r"would produce")
    data = TensorProto(name="x", data_type=TensorProto.INT64, dims=[4, 4], int64_data=[1] * 16)
    _refused(_shape_model(_const("p", pads), _const("v", [1]),
                          helper.make_node("Pad", ["x", "p", "v"], ["y"]), inits=[data]), r"would produce")
    _refused(_shape_model(_const("p", pads), helper.make_node("Pad", ["x", "p", ""], ["y"], name="big"),
                          inputs=[x]), _produce((4 + LIMIT) ** 2))


def test_shape_ops_of_another_domain_are_not_followed() -> None:
    node = helper.make_node("ConstantOfShape", ["s"], ["y"], domain="local")
    check_graph(_shape_model(_const("s", [LIMIT + 1]), node), operators=False)
    ai = helper.make_node("ConstantOfShape", ["s"], ["y"], domain="ai.onnx", name="big")
    _refused(_shape_model(_const("s", [LIMIT + 1]), ai), _produce(LIMIT + 1))


# -- the constants the pre-check follows ---------------------------------------------------------

@pytest.mark.parametrize(("op", "a", "b", "shape"), [
    ("Add", [1 << 27], [(1 << 27) + 1], [LIMIT + 1]),
    ("Sub", [LIMIT + 8], [7], [LIMIT + 1]),  # not LIMIT + 8 ^ 7
    ("Mul", [1 << 14, 1 << 14], [1, 2], [1 << 14, 1 << 15]),
    ("Concat", [1 << 14], [(1 << 14) + 1], [1 << 14, (1 << 14) + 1]),
    ("Mul", [1 << 62], [4], [1 << 63]),  # Python ints, no wrap-around to 0 in int64 (and bounded)
])
def test_arithmetic_on_constants_is_followed(op: str, a: list[int], b: list[int], shape: list[int]) -> None:
    node = helper.make_node(op, ["a", "b"], ["s"])
    if op == "Concat":
        node.attribute.append(helper.make_attribute("axis", 0))
    model = _shape_model(_const("a", a), _const("b", b), node,
                         helper.make_node("ConstantOfShape", ["s"], ["y"], name="big"))

    assert list(module._int_constants(model.graph)["s"]) == shape
    with pytest.raises(InvalidModel, match=r"^node 'big' \(ConstantOfShape\) "):
        check_graph(model)


@pytest.mark.parametrize("op", ["Identity", "Cast", "Squeeze", "Unsqueeze", "Reshape"])
def test_unary_shape_plumbing_passes_the_constant_through(op: str) -> None:
    inputs = ["s", "k"]  # Identity and Cast have one input: a second one is not what they pass on
    model = _shape_model(_const("s", [1 << 14, (1 << 14) + 1]), _const("k", [2]),
                         helper.make_node(op, inputs, ["t"]),
                         helper.make_node("ConstantOfShape", ["t"], ["y"]))

    assert list(module._int_constants(model.graph)["t"]) == [1 << 14, (1 << 14) + 1]
    _refused(model, rf"would produce {LIMIT + (1 << 14)} elements")


def test_concat_of_three_constants_uses_them_all() -> None:
    model = _shape_model(_const("a", [1 << 10]), _const("b", [1 << 10]), _const("c", [1 << 9]),
                         helper.make_node("Concat", ["a", "b", "c"], ["s"], axis=0))

    assert list(module._int_constants(model.graph)["s"]) == [1 << 10, 1 << 10, 1 << 9]


def test_constants_of_up_to_64_elements_are_followed() -> None:
    def model_(size: int, how: str) -> onnx.ModelProto:
        cos = helper.make_node("ConstantOfShape", ["s"], ["y"], name="big")
        if how == "initializer":
            return _shape_model(cos, inits=[_ints("s", [2] * size)])
        if how == "constant":
            return _shape_model(_const("s", [2] * size), cos)
        half = size // 2
        return _shape_model(_const("a", [2] * half), _const("b", [2] * (size - half)),
                            helper.make_node("Concat", ["a", "b"], ["s"], axis=0), cos)

    for how in ("initializer", "constant", "concat"):
        _refused(model_(64, how), _produce(1 << 64))
        check_graph(model_(65, how))  # too long to be a shape worth following: left to the runtime


def test_what_is_not_a_small_constant_is_not_followed() -> None:
    cos = helper.make_node("ConstantOfShape", ["s"], ["y"])
    floats = TensorProto(name="s", data_type=TensorProto.FLOAT, dims=[1], float_data=[LIMIT + 1])
    malformed = TensorProto(name="s", data_type=TensorProto.INT64, dims=[2], int64_data=[LIMIT + 1])
    external = _ints("s", [LIMIT + 1])
    external.external_data.add(key="location", value="x")
    graph = _shape_model(cos, inits=[floats]).graph
    assert "s" not in module._int_constants(graph)  # a weight changes every round: not a constant
    check_graph(_shape_model(cos, inits=[floats]))
    check_graph(_shape_model(cos, inits=[malformed]))
    assert module._small(external) is None
    assert module._small(malformed) is None
    two = helper.make_node("Identity", ["a"], ["s", "t"])
    other_domain = helper.make_node("Identity", ["a"], ["s"], domain="local")
    two_constant = helper.make_node("Constant", [], ["s", "t"], value=_ints("s", [LIMIT + 1]))
    assert "s" not in module._int_constants(_shape_model(two_constant).graph)
    for node in (two, other_domain):
        assert "s" not in module._int_constants(_shape_model(_const("a", [LIMIT + 1]), node).graph)
    # a Constant of another attribute, a constant that does not broadcast, an op that is not followed
    sparse = helper.make_node("Constant", [], ["s"], value_float=1.0)
    assert "s" not in module._int_constants(_shape_model(sparse).graph)
    bad = _shape_model(_const("a", [1, 2]), _const("b", [1, 2, 3]),
                       helper.make_node("Add", ["a", "b"], ["s"]))
    assert "s" not in module._int_constants(bad.graph)
    unknown = _shape_model(_const("a", [1]), helper.make_node("Neg", ["a"], ["s"]))
    assert "s" not in module._int_constants(unknown.graph)
    empty = _shape_model(helper.make_node("Identity", [], ["s"]))
    assert "s" not in module._int_constants(empty.graph)
    partly = _shape_model(_const("a", [1]), helper.make_node("Add", ["a", "x"], ["s"]))
    assert "s" not in module._int_constants(partly.graph)


def test_small_constants_keep_their_values() -> None:
    def small(tensor: TensorProto) -> list[Any] | None:
        value = module._small(tensor)
        return None if value is None else [value.dtype, value.tolist()]

    assert small(_ints("s", [3, -1])) == [object, [3, -1]]
    assert small(helper.make_tensor("f", TensorProto.FLOAT, [2], [0.5, 1.5])) == [np.float32, [0.5, 1.5]]
    assert small(helper.make_tensor("b", TensorProto.BOOL, [2, 1], [True, False])) == [object, [True, False]]
    assert small(helper.make_tensor("u", TensorProto.UINT8, [1], [7])) == [object, [7]]
    assert small(TensorProto(name="e", data_type=TensorProto.INT64, dims=[64], int64_data=[1] * 64)) == [
        object, [1] * 64]
    assert small(TensorProto(name="e", data_type=TensorProto.INT64, dims=[65], int64_data=[1] * 65)) is None
    assert module._elements([2, -3, 4]) == 0
    assert module._elements([]) == 1
    assert module._elements([3, 5]) == 15


def test_the_limits_have_their_documented_values() -> None:
    assert (MAX_MODEL_BYTES, MAX_NODES, MAX_TENSOR_ELEMENTS) == (512 * 1024 * 1024, 65_536, 2**28)
    for function in (load_model_bytes, Definition.from_bytes):
        assert inspect.signature(function).parameters["max_bytes"].default == MAX_MODEL_BYTES


def test_the_text_check_never_reads_a_tensors_data() -> None:
    # raw_data may be 512 MiB: the check reads a tensor's text fields (and its metadata) only
    fields = {f.name for f in module._TENSOR_TEXT_FIELDS}
    assert fields == {"name", "doc_string", "external_data", "metadata_props"}


def test_external_data_is_refused_before_the_domains_are_looked_at() -> None:
    model = _mlp()
    model.graph.initializer[0].data_location = TensorProto.EXTERNAL
    model.opset_import.append(helper.make_opsetid("com.evil", 1))
    values = helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])
    model.graph.sparse_initializer.add().values.CopyFrom(values)

    with pytest.raises(InvalidModel, match=r"^initializer 'w' is stored as external data"):
        load_model_bytes(model.SerializeToString())
    model.graph.initializer[0].data_location = TensorProto.DEFAULT
    with pytest.raises(InvalidModel, match=r"^sparse initializers are not supported$"):
        load_model_bytes(model.SerializeToString())


def test_weights_whose_data_does_not_match_their_dims_are_refused() -> None:
    model = _mlp()
    model.graph.initializer[1].dims[0] = 4  # b: 3 values

    with pytest.raises(InvalidModel, match=r"^an initializer's data does not match its dims or dtype: "):
        Definition.from_model(model)


def test_constants_are_followed_past_nodes_that_are_not() -> None:
    # a node that is not folded, and one whose fold fails, come before the shape that is followed
    model = _shape_model(_const("a", [1 << 14]), _const("b", [(1 << 14) + 1]), _const("c", [1, 2, 3]),
                         _const("d", [1, 2]),
                         helper.make_node("Identity", ["a"], ["i1", "i2"]),
                         helper.make_node("Identity", ["a"], ["i3"], domain="local"),
                         helper.make_node("Neg", ["a"], ["n"]),
                         helper.make_node("Add", ["a", "x"], ["p"]),
                         helper.make_node("Add", ["c", "d"], ["q"]),  # does not broadcast
                         helper.make_node("Add", ["c", "a", "x"], ["r"]),  # a third input is not read
                         helper.make_node("Concat", ["a", "b"], ["s"], axis=0),
                         helper.make_node("ConstantOfShape", ["s"], ["y"], name="big"),
                         inputs=[helper.make_tensor_value_info("x", TensorProto.INT64, [1])])
    consts = module._int_constants(model.graph)

    assert sorted(consts) == ["a", "b", "c", "d", "r", "s"]
    assert list(consts["r"]) == [1 + (1 << 14), 2 + (1 << 14), 3 + (1 << 14)]
    with pytest.raises(InvalidModel, match=_produce(LIMIT + (1 << 14))):
        check_graph(model, operators=False)  # local::Identity is not a function of this model


def test_a_name_after_an_omitted_output_is_defined() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    model = _model([helper.make_node("Dropout", ["x"], ["", "m"]),
                    helper.make_node("Cast", ["m"], ["y"], to=1)], [x])

    check_graph(model)


def test_finiteness_is_not_asked_of_an_array_that_is_not_numbers() -> None:
    definition, _ = Definition.from_model(_mlp())
    text = np.array(["a", "b", "c"])

    with pytest.raises(InvalidUpdate) as info:
        definition.validate({"w": _weights()["w"], "b": text})

    assert info.value.problems == [f"tensor 'b': expected dtype float32, got {text.dtype.name}"]


def _scan(body_weight: float, noise: bool) -> onnx.ModelProto:
    w = helper.make_tensor("k", TensorProto.FLOAT, [1], [body_weight])
    body = helper.make_graph([helper.make_node("Mul", ["s", "k"], ["o"])], "body",
                             [helper.make_tensor_value_info("s", TensorProto.FLOAT, [1])],
                             [helper.make_tensor_value_info("o", TensorProto.FLOAT, [1])], [w])
    if noise:
        body.doc_string = "body doc"
        body.node[0].doc_string = "body node doc"
        body.initializer[0].doc_string = "body tensor doc"
    node = helper.make_node("Scan", ["x"], ["y"], num_scan_inputs=1)
    attr = node.attribute.add()
    attr.name, attr.type = "body", onnx.AttributeProto.GRAPHS
    attr.graphs.append(body)
    return _model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])])


def test_the_graphs_of_a_graphs_attribute_are_canonicalised_and_keep_their_initializers() -> None:
    plain = Definition.from_model(_scan(2.0, noise=False))[0]

    assert Definition.from_model(_scan(2.0, noise=True))[0].id == plain.id
    assert Definition.from_model(_scan(3.0, noise=False))[0].id != plain.id
    body = plain.proto.graph.node[0].attribute[0].graphs[0]
    assert (body.doc_string, body.node[0].doc_string, list(body.initializer[0].float_data)) == ("", "", [2.0])


def test_a_tensor_spec_is_immutable_and_hashable() -> None:
    spec = Definition.from_model(_mlp())[0].specs["w"]

    with pytest.raises(AttributeError):
        spec.name = "other"  # type: ignore[misc]
    assert {spec: 1}[TensorSpec("w", np.dtype(np.float32), (3, 2))] == 1


def test_range_reads_the_first_value_of_each_constant() -> None:
    model = _shape_model(_const("a", [0, 5]), _const("b", [LIMIT + 1, 5]), _const("c", [1, 5]),
                         helper.make_node("Range", ["a", "b", "c"], ["y"], name="big"))

    _refused(model, _produce(LIMIT + 1))


def test_constant_of_shape_reads_its_first_input() -> None:
    model = _shape_model(_const("s", [2, 2]), _const("t", [LIMIT + 1, 0]),
                         helper.make_node("ConstantOfShape", ["s", "t"], ["y"]))

    check_graph(model)


def test_nodes_without_outputs_are_not_constants() -> None:
    model = _shape_model(helper.make_node("Constant", [], [], value=_ints("s", [1])),
                         helper.make_node("Constant", [], [], value_ints=[1]),
                         _const("a", [1]), helper.make_node("Identity", ["a"], []))

    assert sorted(module._int_constants(model.graph)) == ["a"]
    check_graph(model)


def test_many_inputs_and_many_dims_are_counted_exactly() -> None:
    # counts above 256 are not the same int object: compared by value
    inputs = [helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, [1]) for i in range(300)]
    check_graph(_model([helper.make_node("Sum", [f"x{i}" for i in range(300)], ["y"])], inputs))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2] * 200)
    pad = helper.make_node("Pad", ["x"], ["y"], name="big", pads=[0] * 400)
    _refused(_model([pad], [x]), _produce(1 << 200))


def test_an_equal_dtype_is_accepted_whatever_object_describes_it() -> None:
    definition, _ = Definition.from_model(_mlp())
    float32 = np.dtype(np.float32, metadata={"from": "elsewhere"})

    definition.validate({"w": np.zeros((3, 2), float32), "b": np.zeros(3, float32)})


def test_pad_reads_its_pads_attribute_among_others() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4])
    node = helper.make_node("Pad", ["x"], ["y"], name="big")
    node.attribute.extend([helper.make_attribute("value", 0.0), helper.make_attribute("mode", "constant"),
                           helper.make_attribute("pads", [0, 0, LIMIT, 0])])

    _refused(_model([node], [x]), _produce((LIMIT + 4) * 4))


def test_pad_adds_each_axis_its_own_pads() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3])
    pads = [1 << 3, 1 << 5, 1 << 7, 1 << 9, 1 << 11, 1 << 13]
    elements = (1 + 8 + 512) * (2 + 32 + 2048) * (3 + 128 + 8192)
    model = _shape_model(_const("p", pads), helper.make_node("Pad", ["x", "p"], ["y"], name="big"),
                         inputs=[x])

    _refused(model, _produce(elements))


@pytest.mark.parametrize("domain", ["aaa", "com.x"])
def test_an_onnx_operator_in_another_domain_is_refused_by_the_graph_check(domain: str) -> None:
    model = _model([helper.make_node("Relu", ["x"], ["y"], domain=domain)],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])])

    _refused(model, rf"^node 0 \(Relu\): operator {domain}::Relu is not an ONNX operator nor a function")


def test_a_constant_of_another_attribute_is_not_followed() -> None:
    sparse = helper.make_sparse_tensor(_ints("v", [LIMIT + 1]), _ints("i", [0]), [1])
    model = _shape_model(helper.make_node("Constant", [], ["s"], sparse_value=sparse),
                         helper.make_node("ConstantOfShape", ["s"], ["y"]))

    assert "s" not in module._int_constants(model.graph)
    check_graph(model)


def _squares(levels: int, *tail: onnx.NodeProto) -> onnx.ModelProto:
    nodes = [_const("a0", [1 << 62]),
             *(helper.make_node("Mul", [f"a{i}", f"a{i}"], [f"a{i + 1}"]) for i in range(levels)), *tail]
    return _shape_model(*nodes)


def test_folded_integers_stay_within_int64s_range() -> None:
    # found by review: 2**62 squared in a chain of Mul grew without bound (30 nodes: gigabytes), and a
    # Range over such a bound raised OverflowError (a foreign exception) converting it to float
    assert module._int_constants(_squares(12).graph)["a12"].tolist() == [1 << 63]
    assert module._int_constants(_shape_model(_const("a", [-(1 << 62)]), _const("b", [4]), helper.make_node(
        "Mul", ["a", "b"], ["c"])).graph)["c"].tolist() == [-(1 << 63)]
    model = _squares(5, _const("z", [0]), _const("one", [1]),
                     helper.make_node("Range", ["z", "a5", "one"], ["y"], name="big"))

    with pytest.raises(InvalidModel, match=_produce(1 << 63)):
        load_model_bytes(model.SerializeToString())


def test_a_subgraph_input_may_shadow_an_outer_name() -> None:
    # as the ONNX checker allows: the body reads its own input x, not the outer one
    body = helper.make_graph([helper.make_node("Relu", ["x"], ["o"])], "body",
                             [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                             [helper.make_tensor_value_info("o", TensorProto.FLOAT, [1])])
    model = _model([helper.make_node("Scan", ["x"], ["y"], num_scan_inputs=1, body=body)],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 1])])

    check_graph(model)


def test_an_omitted_input_stays_omitted_whatever_the_graph_names() -> None:
    # a hostile initializer named "" does not make the empty name (an omitted input) unavailable
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    inits = [helper.make_tensor("", TensorProto.FLOAT, [1], [0.0]),
             helper.make_tensor("m", TensorProto.FLOAT, [], [1.0])]

    check_graph(_model([helper.make_node("Clip", ["x", "", "m"], ["y"])], [x], inits))


def test_a_constant_is_read_from_its_value_attribute_only() -> None:
    # a tensor under another attribute name is not what the Constant produces (runtimes read by name)
    hidden = helper.make_attribute("aaa", _ints("t", [LIMIT + 1]))
    node = helper.make_node("Constant", [], ["s"])
    node.attribute.append(hidden)
    model = _shape_model(node, helper.make_node("ConstantOfShape", ["s"], ["y"]))

    assert "s" not in module._int_constants(model.graph)
    check_graph(model, operators=False)


def test_shape_ops_with_too_few_or_non_constant_inputs_are_not_followed() -> None:
    # whatever their other inputs hold: a constant beside a non-constant one is not a shape
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    for op in ("Expand", "Tile"):
        check_graph(_shape_model(helper.make_node(op, [], ["y"])), operators=False)
    check_graph(_shape_model(_const("p", [2, LIMIT]), helper.make_node("ConstantOfShape", ["x", "p"], ["y"]),
                             inputs=[x]))
    check_graph(_shape_model(_const("b", [0, LIMIT]), _const("c", [1]),
                             helper.make_node("Range", ["x", "b", "c"], ["y"]), inputs=[x]))


@pytest.mark.parametrize("nodes", [
    [helper.make_node("ConstantOfShape", ["s"], ["y"])],
    [helper.make_node("Identity", ["s"], ["t"]), helper.make_node("ConstantOfShape", ["t"], ["y"])],
    [helper.make_node("Range", ["s", "s", "s"], ["y"])],
], ids=["shape", "folded", "range"])
def test_a_text_constant_is_not_followed(nodes: list[onnx.NodeProto]) -> None:
    # found by review: int(b"abc") and float(b"abc") raised ValueError, a foreign exception
    text = TensorProto(name="s", data_type=TensorProto.STRING, dims=[1], string_data=[b"abc"])
    model = _shape_model(*nodes, inits=[text])

    assert "s" not in module._int_constants(model.graph)
    assert len(load_model_bytes(model.SerializeToString()).graph.node) == len(nodes)


def test_a_folded_float_is_not_clipped() -> None:
    # only Python ints are bounded: an infinite Range bound stays infinite, and is not followed
    def scalar(name: str, value: float) -> onnx.NodeProto:
        return helper.make_node("Constant", [], [name],
                                value=helper.make_tensor(name, TensorProto.FLOAT, [], [value]))

    model = _shape_model(scalar("inf", float("inf")), scalar("zero", 0.0), scalar("c", 1.0),
                         helper.make_node("Add", ["zero", "zero"], ["a"]),
                         helper.make_node("Add", ["inf", "zero"], ["b"]),
                         helper.make_node("Range", ["a", "b", "c"], ["y"]))

    assert module._int_constants(model.graph)["a"].tolist() == [0.0]
    check_graph(model)


def test_values_that_are_not_floats_are_not_checked_for_finiteness() -> None:
    definition, _ = Definition.from_model(_mlp())
    times = np.array(["NaT", 1, 2], dtype="m8[s]")

    with pytest.raises(InvalidUpdate) as info:
        definition.validate({"w": _weights()["w"], "b": times})

    assert info.value.problems == [f"tensor 'b': expected dtype float32, got {times.dtype.name}"]
