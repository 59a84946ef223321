"""Every size limit on what flonnx parses (docs/reliability.md, "Size limits"), fed a value exactly
at the limit (accepted) and limit + 1 (refused): a ``>`` that became ``>=`` fails the first.

Limits in the hundreds of MiB are checked against a sparse file (its size is what is checked, before a
byte is read) or through the function's ``max_bytes`` argument, whose default is the named constant.
At the limit, where an input of the real size cannot be built in a test's time and memory, either the
module constant is patched to a small value (only where the code reads it at call time) or the input
declares the limit and then ends: it must pass the limit's check and be refused for what is missing.
"""

from __future__ import annotations

import csv
import inspect
import io
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from onnx import TensorProto, helper

from flonnx.exchange import check, definition, hashing, models, npy, signed_export, wire
from flonnx.exchange.check import check_model
from flonnx.exchange.data import tables
from flonnx.exchange.data.tables import MAX_DATA_FILE_BYTES, read_table
from flonnx.exchange.definition import (
    MAX_MODEL_BYTES,
    MAX_NODES,
    MAX_TENSOR_ELEMENTS,
    Definition,
    check_graph,
    load_model_bytes,
)
from flonnx.exchange.errors import DataError, InvalidModel, InvalidUpdate, LineageError, PolicyError
from flonnx.exchange.hashing import (
    MAX_WEIGHT_DIMS,
    MAX_WEIGHT_NAME,
    MAX_WEIGHT_TENSORS,
    MAX_WEIGHTS_BYTES,
    decode_weights,
    encode_weights,
    weights_id,
)
from flonnx.exchange.interpreter.ops._common import check_size
from flonnx.exchange.models import load_starting_model, read_user_model
from flonnx.exchange.npy import MAX_NPY_DIMS, MAX_NPY_HEADER, decode_npy
from flonnx.exchange.policy import MAX_POLICY_BYTES, SitePolicy
from flonnx.exchange.signed_export import embedded_record, verify_model_file
from flonnx.exchange.spec import BUILTIN_SPEC_DIR, MAX_SPEC_BYTES, SpecError, load_spec
from flonnx.server import replies
from flonnx.server.replies import ClientInfo, Rejection, Update, check_reply, one_line, parse_environment
from tests.flower_identity import flower_identity  # noqa: F401 - autouse here
from tests.tiny_models import gemm_mlp

pytestmark = pytest.mark.reliability

BASE, SEED = "v" * 64, 11
CLIENT = ClientInfo(7, "site-a", "numpy", "2", 10)


@pytest.fixture(scope="module")
def model() -> tuple[Definition, dict[str, np.ndarray]]:
    return gemm_mlp(4, 8, 3)


def _sparse(path: Path, size: int) -> Path:
    with path.open("wb") as handle:
        handle.truncate(size)
    return path


def _npy(header: str, data: bytes = b"") -> bytes:
    body = header.encode("latin1") + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body + data


def _blob(*tensors: tuple[bytes, bytes, tuple[int, ...], int, bytes]) -> bytes:
    """A weights blob of raw fields, per tensor: name, dtype, shape, declared bytes, data."""
    parts = [b"FLONNXW1", struct.pack("<I", len(tensors))]
    for name, dtype, shape, nbytes, data in tensors:
        parts += [struct.pack("<I", len(name)), name, struct.pack("<B", len(dtype)), dtype,
                  struct.pack(f"<B{len(shape)}QQ", len(shape), *shape, nbytes), data]
    return b"".join(parts)


def _header(shape: tuple[int, ...]) -> str:
    return f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape!r}, }}"


def _model_of(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto] | None = None,
              initializer: list[TensorProto] | None = None) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs or [],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _identity_chain(length: int) -> bytes:
    nodes = [helper.make_node("Identity", [f"t{i}"], [f"t{i + 1}"]) for i in range(length)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("t0", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info(f"t{length}", TensorProto.FLOAT, [1])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _reply(weights: dict[str, np.ndarray], *, arrays: dict[str, Array] | None = None,
           metrics: dict[str, Any] | None = None, lineage: dict[str, Any] | None = None) -> Message:
    train = Message(RecordDict({wire.CONFIG: ConfigRecord({"x": 1})}), dst_node_id=7, message_type="train")
    content = RecordDict({
        wire.ARRAYS: ArrayRecord(arrays if arrays is not None else {k: Array(v) for k, v in weights.items()}),
        wire.METRICS: MetricRecord({wire.REPLY_NUM_EXAMPLES: 10, "train-loss": 0.5, **(metrics or {})}),
        wire.LINEAGE: ConfigRecord({
            wire.REPLY_BASE_VERSION: BASE, wire.REPLY_CLIENT: "site-a", wire.REPLY_FRAMEWORK: "numpy",
            wire.REPLY_FRAMEWORK_VERSION: "2", wire.REPLY_WEIGHTS_ID: weights_id(weights),
            wire.REPLY_SEED: SEED, wire.REPLY_ENVIRONMENT: "{}", **(lineage or {})}),
    })
    return Message(content, reply_to=train)


def _rejected(reply: Message, definition: Definition) -> str:
    checked = check_reply(reply, client=CLIENT, definition=definition, base_version=BASE, seed=SEED)
    assert isinstance(checked, Rejection), checked
    assert "\n" not in checked.reason
    return checked.reason


# -- the documented values --------------------------------------------------------------------

@pytest.mark.parametrize(("limit", "documented"), [
    pytest.param(MAX_MODEL_BYTES, 512 * 1024 * 1024, id="definition.MAX_MODEL_BYTES"),
    pytest.param(MAX_NODES, 65_536, id="definition.MAX_NODES"),
    pytest.param(MAX_TENSOR_ELEMENTS, 2**28, id="definition.MAX_TENSOR_ELEMENTS"),
    pytest.param(MAX_WEIGHTS_BYTES, 2 * 1024**3, id="hashing.MAX_WEIGHTS_BYTES"),
    pytest.param(MAX_WEIGHT_TENSORS, 2**20, id="hashing.MAX_WEIGHT_TENSORS"),
    pytest.param(MAX_WEIGHT_NAME, 4096, id="hashing.MAX_WEIGHT_NAME"),
    pytest.param(MAX_WEIGHT_DIMS, 32, id="hashing.MAX_WEIGHT_DIMS"),
    pytest.param(MAX_NPY_HEADER, 10_000, id="npy.MAX_NPY_HEADER"),
    pytest.param(MAX_NPY_DIMS, 32, id="npy.MAX_NPY_DIMS"),
    pytest.param(replies.MAX_METRICS, 64, id="replies.MAX_METRICS"),
    pytest.param(replies.MAX_METRIC_NAME, 64, id="replies.MAX_METRIC_NAME"),
    pytest.param(replies.MAX_NUM_EXAMPLES, 10**12, id="replies.MAX_NUM_EXAMPLES"),
    pytest.param(replies.MAX_LINEAGE_TEXT, 256, id="replies.MAX_LINEAGE_TEXT"),
    pytest.param(replies.MAX_ENVIRONMENT_KEYS, 100, id="replies.MAX_ENVIRONMENT_KEYS"),
    pytest.param(replies.MAX_ENVIRONMENT_TEXT, 200, id="replies.MAX_ENVIRONMENT_TEXT"),
    pytest.param(replies.MAX_REASON, 500, id="replies.MAX_REASON"),
    pytest.param(MAX_SPEC_BYTES, 1024 * 1024, id="spec.MAX_SPEC_BYTES"),
    pytest.param(MAX_POLICY_BYTES, 1024 * 1024, id="policy.MAX_POLICY_BYTES"),
    pytest.param(MAX_DATA_FILE_BYTES, 4 * 1024**3, id="tables.MAX_DATA_FILE_BYTES"),
    pytest.param(wire.MAX_JSON_FIELD, 4 * 1024 * 1024, id="wire.MAX_JSON_FIELD"),
])
def test_each_limit_has_its_documented_value(limit: int, documented: int) -> None:
    # the other tests derive their inputs from the constant, so only this one sees it change
    assert limit == documented


@pytest.mark.parametrize(("function", "parameter", "limit"), [
    pytest.param(load_model_bytes, "max_bytes", MAX_MODEL_BYTES, id="load_model_bytes"),
    pytest.param(Definition.from_bytes, "max_bytes", MAX_MODEL_BYTES, id="Definition.from_bytes"),
    pytest.param(decode_weights, "max_bytes", MAX_WEIGHTS_BYTES, id="decode_weights"),
    pytest.param(wire.loads_field, "max_chars", wire.MAX_JSON_FIELD, id="loads_field"),
])
def test_a_bound_taken_as_an_argument_defaults_to_its_limit(function: Any, parameter: str,
                                                             limit: int) -> None:
    # bound at import: patching the module constant does not change these defaults
    assert inspect.signature(function).parameters[parameter].default == limit


# -- ONNX definitions and model files ----------------------------------------------------------

def test_model_bytes_over_the_limit_are_refused_before_parsing(tmp_path: Path) -> None:
    for function in (load_model_bytes, Definition.from_bytes):
        assert inspect.signature(function).parameters["max_bytes"].default == MAX_MODEL_BYTES

    with pytest.raises(InvalidModel, match=r"^ONNX model is 1025 bytes; the limit is 1024$"):
        Definition.from_bytes(b"\0" * 1025, max_bytes=1024)
    with pytest.raises(InvalidModel, match=f"is {MAX_MODEL_BYTES + 1} bytes; the limit is {MAX_MODEL_BYTES}"):
        load_starting_model(str(_sparse(tmp_path / "big.onnx", MAX_MODEL_BYTES + 1)), seed=0,
                            input_shape=None)
    export = _sparse(tmp_path / "export.onnx", MAX_MODEL_BYTES + 1)
    problems = verify_model_file(export, key=None)  # type: ignore[arg-type]  # refused before the key
    assert problems == [f"{export}: {MAX_MODEL_BYTES + 1} bytes; the limit is {MAX_MODEL_BYTES}"]


def test_a_graph_of_limit_plus_one_nodes_is_refused() -> None:
    nodes = [helper.make_node("Identity", [f"t{i}"], [f"t{i + 1}"]) for i in range(MAX_NODES + 1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("t0", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info(f"t{MAX_NODES + 1}", TensorProto.FLOAT, [1])])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()

    with pytest.raises(InvalidModel, match=rf"^graph has more than {MAX_NODES} nodes \(the limit\)$"):
        Definition.from_bytes(data)


def test_an_initializer_of_limit_plus_one_elements_is_refused() -> None:
    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[MAX_TENSOR_ELEMENTS + 1])
    graph = helper.make_graph([helper.make_node("Relu", ["w"], ["y"])], "g", [],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [tensor])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()

    with pytest.raises(InvalidModel, match=rf"declares dims \[{MAX_TENSOR_ELEMENTS + 1}\] .* the limit is "):
        Definition.from_bytes(data)


def test_a_name_that_is_not_utf8_is_refused() -> None:
    # found by fuzzing: proto2 hands invalid UTF-8 back as bytes, which reached onnx.defs (TypeError)
    data = b"\x08\x00:\x07\n\x05\"\x03\x00\x00\x80"  # graph { node { op_type: 00 00 80 } }

    with pytest.raises(InvalidModel, match=r"^a NodeProto.op_type is not valid UTF-8 text$"):
        Definition.from_bytes(data)


def test_model_bytes_exactly_at_the_limit_are_parsed(model: tuple[Definition, dict[str, np.ndarray]]) -> None:
    definition_, weights = model
    data = definition_.materialize(weights).SerializeToString()
    canonical = definition_.canonical_bytes

    parsed = load_model_bytes(data, max_bytes=len(data))
    received = Definition.from_bytes(canonical, max_bytes=len(canonical))

    assert len(parsed.graph.initializer) == len(weights)
    assert received.id == definition_.id
    over = rf"^ONNX model is {len(data)} bytes; the limit is {len(data) - 1}$"
    with pytest.raises(InvalidModel, match=over):
        load_model_bytes(data, max_bytes=len(data) - 1)


def test_model_files_exactly_at_the_limit_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   model: tuple[Definition, dict[str, np.ndarray]]) -> None:
    # the readers check the file's size against MAX_MODEL_BYTES as imported into their own module
    path = tmp_path / "m.onnx"
    path.write_bytes(model[0].materialize(model[1]).SerializeToString())
    junk = tmp_path / "junk.onnx"  # check_model runs every framework on a model: junk is refused fast
    junk.write_bytes(b"\xff" * 64)
    size = path.stat().st_size
    for module in (models, check, signed_export):
        monkeypatch.setattr(module, "MAX_MODEL_BYTES", size)
    monkeypatch.setattr(check, "MAX_MODEL_BYTES", 64)

    assert len(read_user_model(path).graph.node) == len(model[0].proto.graph.node)
    assert check_model(junk).problems[0].startswith("InvalidModel: not a parseable ONNX model")
    assert verify_model_file(path, key=None)[0].startswith(  # type: ignore[arg-type]
        f"{path}: not a signed flonnx export")

    for module in (models, signed_export):
        monkeypatch.setattr(module, "MAX_MODEL_BYTES", size - 1)
    monkeypatch.setattr(check, "MAX_MODEL_BYTES", 63)
    with pytest.raises(InvalidModel, match=rf"is {size} bytes; the limit is {size - 1}$"):
        read_user_model(path)
    assert check_model(junk).problems == ["InvalidModel: 64 bytes; the limit is 63"]
    assert verify_model_file(path, key=None) == [  # type: ignore[arg-type]
        f"{path}: {size} bytes; the limit is {size - 1}"]


def test_a_model_file_with_its_external_data_exactly_at_the_limit_is_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        model: tuple[Definition, dict[str, np.ndarray]]) -> None:
    path = tmp_path / "m.onnx"
    onnx.save_model(model[0].materialize(model[1]), path, save_as_external_data=True,
                    all_tensors_to_one_file=True, location="m.data", size_threshold=0)
    stored = onnx.load_model(path, load_external_data=False)
    total = path.stat().st_size + sum(int(e.value) for t in stored.graph.initializer
                                      for e in t.external_data if e.key == "length")
    monkeypatch.setattr(models, "MAX_MODEL_BYTES", total)

    assert len(read_user_model(path).graph.initializer) == len(model[1])
    monkeypatch.setattr(models, "MAX_MODEL_BYTES", total - 1)
    with pytest.raises(InvalidModel, match=rf"^m.onnx with its external data exceeds {total - 1} bytes$"):
        read_user_model(path)


def test_a_graph_of_exactly_the_limit_nodes_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    # 65,536 nodes take seconds to build and check: the limit is read at call time, so patched
    monkeypatch.setattr(definition, "MAX_NODES", 4)

    assert len(Definition.from_bytes(_identity_chain(4)).proto.graph.node) == 4
    with pytest.raises(InvalidModel, match=r"^graph has more than 4 nodes \(the limit\)$"):
        Definition.from_bytes(_identity_chain(5))


def test_the_nodes_of_subgraphs_count_towards_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    def branch(output: str) -> onnx.GraphProto:
        return helper.make_graph([helper.make_node("Identity", ["x"], [output])], output, [],
                                 [helper.make_tensor_value_info(output, TensorProto.FLOAT, [1])])
    if_node = helper.make_node("If", ["c"], ["y"], then_branch=branch("a"), else_branch=branch("b"))
    model_ = _model_of([if_node], [helper.make_tensor_value_info("c", TensorProto.BOOL, []),
                        helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])])
    monkeypatch.setattr(definition, "MAX_NODES", 3)  # the If and one node in each branch

    check_graph(model_)
    monkeypatch.setattr(definition, "MAX_NODES", 2)
    with pytest.raises(InvalidModel, match=r"^graph has more than 2 nodes \(the limit\)$"):
        check_graph(model_)


def _initializer_model(dims: list[int]) -> onnx.ModelProto:
    # declared dims without data: check_graph reads the dims before any data
    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=dims)
    return _model_of([helper.make_node("Relu", ["w"], ["y"])], initializer=[tensor])


@pytest.mark.parametrize("dims", [[MAX_TENSOR_ELEMENTS], [1 << 14, 1 << 14], [MAX_TENSOR_ELEMENTS, 0],
                                  [0, MAX_TENSOR_ELEMENTS]])
def test_an_initializer_of_exactly_the_limit_elements_or_dim_is_accepted(dims: list[int]) -> None:
    check_graph(_initializer_model(dims))


@pytest.mark.parametrize(("dims", "elements"), [([MAX_TENSOR_ELEMENTS + 1], MAX_TENSOR_ELEMENTS + 1),
                                                ([1 << 14, (1 << 14) + 1], MAX_TENSOR_ELEMENTS + (1 << 14)),
                                                ([MAX_TENSOR_ELEMENTS + 1, 0], 0)])
def test_an_initializer_over_the_limit_in_elements_or_one_dim_is_refused(dims: list[int],
                                                                         elements: int) -> None:
    with pytest.raises(InvalidModel, match=rf"declares dims \[.*\] \({elements} elements\); the limit is "):
        check_graph(_initializer_model(dims))


@pytest.mark.parametrize("op", ["ConstantOfShape", "interpreter"])
def test_a_shape_op_of_exactly_the_limit_elements_is_accepted(op: str) -> None:
    def model_(shape: list[int]) -> onnx.ModelProto:
        return _model_of([helper.make_node("Constant", [], ["s"], value_ints=shape),
                          helper.make_node("ConstantOfShape", ["s"], ["y"])])
    at, over = [1 << 14, 1 << 14], [1 << 14, (1 << 14) + 1]
    elements = MAX_TENSOR_ELEMENTS + (1 << 14)

    if op == "interpreter":  # the same bound when the interpreter is about to allocate
        assert check_size("Tile", at) == tuple(at)
        with pytest.raises(InvalidModel, match=rf"\({elements} elements\); the limit is "):
            check_size("Tile", over)
    else:
        check_graph(model_(at))
        with pytest.raises(InvalidModel, match=rf"would produce {elements} elements; the limit is "):
            check_graph(model_(over))


# -- weights blobs (the registry's encoding) ---------------------------------------------------

def test_weights_blob_limits(model: tuple[Definition, dict[str, np.ndarray]]) -> None:
    blob = encode_weights(model[1])
    assert inspect.signature(decode_weights).parameters["max_bytes"].default == MAX_WEIGHTS_BYTES
    with pytest.raises(InvalidUpdate, match=rf"^weights blob of {len(blob)} bytes; the limit is "):
        decode_weights(blob, max_bytes=len(blob) - 1)

    with pytest.raises(InvalidUpdate, match=rf"declares {MAX_WEIGHT_TENSORS + 1} tensors; the limit is "):
        decode_weights(b"FLONNXW1" + struct.pack("<I", MAX_WEIGHT_TENSORS + 1))

    long_name = b"FLONNXW1" + struct.pack("<II", 1, MAX_WEIGHT_NAME + 1) + b"a" * (MAX_WEIGHT_NAME + 1)
    with pytest.raises(InvalidUpdate, match=rf"name of {MAX_WEIGHT_NAME + 1} bytes; the limit is "):
        decode_weights(long_name)

    huge = b"FLONNXW1" + struct.pack("<II", 1, 1) + b"w" + struct.pack("<B", 3) + b"<f4" + struct.pack(
        "<BQQ", 1, MAX_TENSOR_ELEMENTS + 1, 4 * (MAX_TENSOR_ELEMENTS + 1))
    with pytest.raises(InvalidUpdate, match=rf"has {MAX_TENSOR_ELEMENTS + 1} elements; the limit is "):
        decode_weights(huge)


def test_a_weights_blob_of_exactly_max_bytes_is_decoded(
        model: tuple[Definition, dict[str, np.ndarray]]) -> None:
    blob = encode_weights(model[1])

    decoded = decode_weights(blob, max_bytes=len(blob))

    assert encode_weights(decoded) == blob


def test_a_weights_blob_declaring_exactly_the_limit_tensors_passes_the_count_check() -> None:
    # 2**20 tensors would take seconds: the count is declared, and then the blob ends
    with pytest.raises(InvalidUpdate, match=r"^truncated weights blob$"):
        decode_weights(b"FLONNXW1" + struct.pack("<I", MAX_WEIGHT_TENSORS))


def test_a_weights_blob_of_exactly_the_limit_tensors_is_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    weights = {name: np.full(2, i, np.float32) for i, name in enumerate("abc")}
    monkeypatch.setattr(hashing, "MAX_WEIGHT_TENSORS", 3)  # read at call time

    assert encode_weights(decode_weights(encode_weights(weights))) == encode_weights(weights)
    with pytest.raises(InvalidUpdate, match=r"^weights blob declares 4 tensors; the limit is 3$"):
        decode_weights(encode_weights({**weights, "d": np.zeros(1, np.float32)}))


def test_a_tensor_name_of_exactly_the_limit_bytes_is_decoded() -> None:
    name = "é" * (MAX_WEIGHT_NAME // 2)  # bytes of UTF-8 count, not characters: 2,048 characters
    weights = {name: np.zeros(1, np.float32)}

    assert list(decode_weights(encode_weights(weights))) == [name]
    with pytest.raises(InvalidUpdate, match=rf"^tensor 0: name of {MAX_WEIGHT_NAME + 1} bytes; the limit "):
        decode_weights(encode_weights({name + "a": np.zeros(1, np.float32)}))


def test_a_tensor_of_exactly_the_limit_dims_is_decoded() -> None:
    weights = {"w": np.zeros((1,) * MAX_WEIGHT_DIMS, np.float32)}

    assert decode_weights(encode_weights(weights))["w"].shape == (1,) * MAX_WEIGHT_DIMS
    blob = _blob((b"w", b"<f4", (1,) * (MAX_WEIGHT_DIMS + 1), 4, b"\0" * 4))
    with pytest.raises(InvalidUpdate, match=rf"^tensor 'w': {MAX_WEIGHT_DIMS + 1} dims; the limit is 32$"):
        decode_weights(blob)


@pytest.mark.parametrize("shape", [(MAX_TENSOR_ELEMENTS,), (1 << 14, 1 << 14)])
def test_tensors_declaring_exactly_the_limit_elements_pass_the_element_check(shape: tuple[int, ...]) -> None:
    # 1 GiB of data is not built: the header declares it, and the missing data is what is refused
    with pytest.raises(InvalidUpdate, match=r"^truncated weights blob$"):
        decode_weights(_blob((b"w", b"<f4", shape, 4 * MAX_TENSOR_ELEMENTS, b"")))
    with pytest.raises(InvalidUpdate, match=rf"^EOF: the header declares {4 * MAX_TENSOR_ELEMENTS} bytes of "
                                            r"<f4 data, 0 follow$"):
        decode_npy(_npy(_header(shape)))


def test_tensors_of_exactly_the_limit_elements_are_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    # hashing imports definition's constant at call time, npy at import (its own module global)
    monkeypatch.setattr(definition, "MAX_TENSOR_ELEMENTS", 6)
    monkeypatch.setattr(npy, "MAX_TENSOR_ELEMENTS", 6)
    at, over = np.arange(6, dtype=np.float32).reshape(2, 3), np.zeros(7, np.float32)
    saved = io.BytesIO()
    np.save(saved, at)

    assert np.array_equal(decode_weights(encode_weights({"w": at}))["w"], at)
    assert np.array_equal(decode_npy(saved.getvalue()), at)
    with pytest.raises(InvalidUpdate, match=r"^tensor 'w': shape \[7\] has 7 elements; the limit is 6$"):
        decode_weights(encode_weights({"w": over}))
    with pytest.raises(InvalidUpdate, match=r"^shape \[7\] has 7 elements; the limit is 6$"):
        decode_npy(_npy(_header((7,)), b"\0" * 28))


@pytest.mark.parametrize("shape", [(MAX_TENSOR_ELEMENTS, 0), (0, MAX_TENSOR_ELEMENTS)])
def test_an_empty_tensor_with_a_dim_of_exactly_the_limit_is_decoded(shape: tuple[int, ...]) -> None:
    over = tuple(d + 1 if d else 0 for d in shape)

    assert decode_weights(_blob((b"w", b"<f4", shape, 0, b"")))["w"].shape == shape
    assert decode_npy(_npy(_header(shape))).shape == shape
    with pytest.raises(InvalidUpdate, match=rf"has a dim of {MAX_TENSOR_ELEMENTS + 1}; the limit is "):
        decode_weights(_blob((b"w", b"<f4", over, 0, b"")))
    with pytest.raises(InvalidUpdate, match=rf"has a dim of {MAX_TENSOR_ELEMENTS + 1}; the limit is "):
        decode_npy(_npy(_header(over)))


def test_weights_blob_must_be_canonical() -> None:
    # found by fuzzing: a repeated name silently kept the last tensor; a byte-swapped dtype decoded
    one = encode_weights({"a": np.zeros(1, np.float32)})
    twice = b"FLONNXW1" + struct.pack("<I", 2) + one[12:] * 2
    with pytest.raises(InvalidUpdate, match="names are not unique and in order"):
        decode_weights(twice)
    with pytest.raises(InvalidUpdate, match="is not a little-endian number type"):
        decode_weights(one.replace(b"<f4", b">f4"))
    with pytest.raises(InvalidUpdate, match="name is not UTF-8"):
        decode_weights(b"FLONNXW1" + struct.pack("<II", 1, 1) + b"\x80")


# -- .npy arrays (a Flower Array's payload) ----------------------------------------------------

def test_npy_limits() -> None:
    elements = _npy(f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({MAX_TENSOR_ELEMENTS + 1},), }}")
    with pytest.raises(InvalidUpdate, match=rf"has {MAX_TENSOR_ELEMENTS + 1} elements; the limit is "):
        decode_npy(elements)

    dims = ", ".join(["1"] * (MAX_NPY_DIMS + 1))
    with pytest.raises(InvalidUpdate, match="is not a valid array shape"):
        decode_npy(_npy(f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({dims}), }}", b"\0" * 4))

    with pytest.raises(InvalidUpdate, match="not a readable .npy array"):
        decode_npy(_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), "
                        + " " * MAX_NPY_HEADER + "}"))

    buffer = io.BytesIO()
    np.save(buffer, np.zeros(4, np.float32))
    with pytest.raises(InvalidUpdate, match=rf"^array of {len(buffer.getvalue())} bytes; at most 10 "):
        decode_npy(buffer.getvalue(), max_bytes=10)


def test_a_npy_header_of_exactly_the_limit_bytes_is_read() -> None:
    header = _header((1,))
    padded = header + " " * (MAX_NPY_HEADER - len(header) - 1)  # and the newline: MAX_NPY_HEADER bytes

    assert decode_npy(_npy(padded, b"\0" * 4)).shape == (1,)
    with pytest.raises(InvalidUpdate, match=rf"Header info length \({MAX_NPY_HEADER + 1}\) is large"):
        decode_npy(_npy(padded + " ", b"\0" * 4))


def test_a_npy_array_of_exactly_the_limit_dims_is_read() -> None:
    shape = (1,) * MAX_NPY_DIMS

    assert decode_npy(_npy(_header(shape), b"\0" * 4)).shape == shape
    with pytest.raises(InvalidUpdate, match=r"^shape \[1, .*\] is not a valid array shape$"):
        decode_npy(_npy(_header((1,) * (MAX_NPY_DIMS + 1)), b"\0" * 4))


def test_a_npy_array_of_exactly_max_bytes_is_read() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.arange(4, dtype=np.float32))
    data = buffer.getvalue()

    assert decode_npy(data, max_bytes=len(data)).tolist() == [0, 1, 2, 3]
    with pytest.raises(InvalidUpdate, match=rf"^array of {len(data)} bytes; at most {len(data) - 1} "):
        decode_npy(data, max_bytes=len(data) - 1)


def test_npy_of_an_allocation_bomb_is_refused_without_allocating() -> None:
    # found by fuzzing: Flower's Array.numpy() allocates what the header claims (MemoryError for 4 TiB)
    bomb = _npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776,), }")

    with pytest.raises(InvalidUpdate, match=r"has 1099511627776 elements; the limit is 268435456"):
        decode_npy(bomb)
    with pytest.raises(InvalidUpdate, match=r"dtype \|O is not a number or bool type"):
        decode_npy(_npy("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", b"\0" * 8))


# -- client replies -----------------------------------------------------------------------------

def test_a_reply_with_more_tensors_than_the_definition_is_refused(model: Any) -> None:
    definition, weights = model
    extra = {**{k: Array(v) for k, v in weights.items()}, "spare": Array(np.zeros(1, np.float32))}

    reason = _rejected(_reply(weights, arrays=extra), definition)

    assert reason == (f"reply carries {len(weights) + 1} tensors; definition {definition.id[:12]} "
                      f"has {len(weights)}")


def test_a_reply_with_exactly_the_definitions_tensor_count_is_accepted(model: Any) -> None:
    definition_, weights = model

    checked = check_reply(_reply(weights), client=CLIENT, definition=definition_, base_version=BASE,
                          seed=SEED)

    assert isinstance(checked, Update)
    assert sorted(checked.weights) == sorted(weights)


@pytest.mark.parametrize("extra", [0, 1])
def test_a_reply_tensor_of_exactly_its_bound_passes_the_size_check(model: Any, extra: int) -> None:
    # no valid .npy reaches the bound (its header is at most MAX_NPY_HEADER): an array padded to it
    # passes the size check and is then refused for the bytes after its data
    definition_, weights = model
    bound = 32 + MAX_NPY_HEADER + 128  # l1.b is [8] float32: 32 bytes
    good = Array(weights["l1.b"]).data
    data = good + b"\0" * (bound - len(good) + extra)
    arrays = {**{k: Array(v) for k, v in weights.items()},
              "l1.b": Array("float32", (8,), "numpy.ndarray", data)}

    reason = _rejected(_reply(weights, arrays=arrays), definition_)

    if extra:
        assert reason == (f"tensor 'l1.b' does not decode: array of {bound + 1} bytes; at most {bound} are "
                          "accepted here")
    else:
        assert reason == (f"tensor 'l1.b' does not decode: EOF: the header declares 32 bytes of <f4 data, "
                          f"{32 + bound - len(good)} follow")


def test_a_tensor_larger_than_its_spec_is_refused_before_decoding(model: Any) -> None:
    definition, weights = model
    data = Array(np.zeros(4096, np.float32)).data  # l1.b is [8] float32: 32 bytes
    arrays = {**{k: Array(v) for k, v in weights.items()},
              "l1.b": Array("float32", (8,), "numpy.ndarray", data)}

    reason = _rejected(_reply(weights, arrays=arrays), definition)

    assert reason == (f"tensor 'l1.b' does not decode: array of {len(data)} bytes; at most "
                      f"{32 + MAX_NPY_HEADER + 128} are accepted here")


def test_a_tensor_bomb_in_a_reply_is_refused(model: Any) -> None:
    definition, weights = model
    bomb = _npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776,), }")
    arrays = {**{k: Array(v) for k, v in weights.items()},
              "l1.b": Array("float32", (8,), "numpy.ndarray", bomb)}

    assert _rejected(_reply(weights, arrays=arrays), definition).startswith(
        "tensor 'l1.b' does not decode: shape [1099511627776] has 1099511627776 elements")


def test_truncated_and_foreign_payloads_are_refused(model: Any) -> None:
    definition, weights = model
    good = Array(weights["l1.b"])
    truncated = Array("float32", (8,), "numpy.ndarray", good.data[: len(good.data) - 4])
    foreign = Array("float32", (8,), "torch.Tensor", good.data)

    for array, reason in ((truncated, "tensor 'l1.b' does not decode: EOF: the header declares 32 bytes"),
                          (foreign, "tensor 'l1.b' is serialised as 'torch.Tensor', not 'numpy.ndarray'")):
        arrays = {**{k: Array(v) for k, v in weights.items()}, "l1.b": array}
        assert _rejected(_reply(weights, arrays=arrays), definition).startswith(reason)


def test_metrics_limits(model: Any) -> None:
    definition, weights = model
    many = {f"m{i}": 1.0 for i in range(replies.MAX_METRICS)}  # + num-examples and train-loss
    long_name = {"m" * (replies.MAX_METRIC_NAME + 1): 1.0}

    assert _rejected(_reply(weights, metrics=many), definition) == (
        f"reply has {replies.MAX_METRICS + 2} metrics; at most {replies.MAX_METRICS} are accepted")
    assert _rejected(_reply(weights, metrics=long_name), definition) == (
        f"metric name of {replies.MAX_METRIC_NAME + 1} characters; at most {replies.MAX_METRIC_NAME}")


def test_num_examples_over_the_limit_is_refused(model: Any) -> None:
    definition, weights = model
    over = replies.MAX_NUM_EXAMPLES + 1

    reason = _rejected(_reply(weights, metrics={wire.REPLY_NUM_EXAMPLES: over}), definition)

    assert reason == f"num-examples must be a positive integer, got {float(over)}"
    ok = check_reply(_reply(weights, metrics={wire.REPLY_NUM_EXAMPLES: replies.MAX_NUM_EXAMPLES}),
                     client=CLIENT, definition=definition, base_version=BASE, seed=SEED)
    assert isinstance(ok, Update)


def test_a_lineage_text_field_over_the_limit_is_refused(model: Any) -> None:
    definition, weights = model
    value = "x" * (replies.MAX_LINEAGE_TEXT + 1)

    reason = _rejected(_reply(weights, lineage={wire.REPLY_FRAMEWORK_VERSION: value}), definition)

    assert reason.startswith(f"lineage field 'framework-version' has {len(value)} characters")


def test_metrics_exactly_at_the_limits_are_accepted(model: Any) -> None:
    definition_, weights = model
    many = {f"m{i}": 1.0 for i in range(replies.MAX_METRICS - 2)}  # + num-examples and train-loss
    long_name = "m" * replies.MAX_METRIC_NAME

    for metrics in (many, {long_name: 1.0}):
        checked = check_reply(_reply(weights, metrics=metrics), client=CLIENT, definition=definition_,
                              base_version=BASE, seed=SEED)
        assert isinstance(checked, Update), checked
    assert _rejected(_reply(weights, metrics={**many, "one-more": 1.0}), definition_) == (
        f"reply has {replies.MAX_METRICS + 1} metrics; at most {replies.MAX_METRICS} are accepted")
    assert _rejected(_reply(weights, metrics={long_name + "m": 1.0}), definition_) == (
        f"metric name of {replies.MAX_METRIC_NAME + 1} characters; at most {replies.MAX_METRIC_NAME}")


@pytest.mark.parametrize("field", [wire.REPLY_BASE_VERSION, wire.REPLY_CLIENT, wire.REPLY_FRAMEWORK,
                                   wire.REPLY_FRAMEWORK_VERSION, wire.REPLY_WEIGHTS_ID])
def test_a_lineage_text_field_of_exactly_the_limit_is_accepted(model: Any, field: str) -> None:
    definition_, weights = model

    def check(value: str) -> Update | Rejection:
        base = value if field == wire.REPLY_BASE_VERSION else BASE
        client = ClientInfo(7, value, "numpy", "2", 10) if field == wire.REPLY_CLIENT else CLIENT
        reply = _reply(weights, lineage={wire.REPLY_BASE_VERSION: base, wire.REPLY_CLIENT: client.key,
                                         field: value})
        return check_reply(reply, client=client, definition=definition_, base_version=base, seed=SEED)

    at, over = check("x" * replies.MAX_LINEAGE_TEXT), check("x" * (replies.MAX_LINEAGE_TEXT + 1))

    if field == wire.REPLY_WEIGHTS_ID:  # past the length check, the id must still be the weights'
        assert isinstance(at, Rejection) and at.reason.endswith("but the client reported xxxxxxxxxxxx")
    else:
        assert isinstance(at, Update), at
    assert isinstance(over, Rejection)
    assert over.reason == (f"lineage field {field!r} has {replies.MAX_LINEAGE_TEXT + 1} characters; at most "
                           f"{replies.MAX_LINEAGE_TEXT} are accepted")


def test_an_environment_exactly_at_its_limits_is_accepted() -> None:
    keys, text = replies.MAX_ENVIRONMENT_KEYS, replies.MAX_ENVIRONMENT_TEXT
    environment = {f"{i:03d}".ljust(text, "k"): "v" * text for i in range(keys)}

    assert parse_environment(json.dumps(environment)) == environment
    assert parse_environment(hashing.canonical_json(environment).decode()) == environment


def test_an_environment_at_its_limits_whose_every_character_is_escaped_is_accepted() -> None:
    keys, text = replies.MAX_ENVIRONMENT_KEYS, replies.MAX_ENVIRONMENT_TEXT
    # non-ASCII text from json.dumps' default: 6 characters of JSON (\uXXXX) per character
    environment = {f"{i:03d}".ljust(text, "é"): "\u2028" * text for i in range(keys)}
    spaced = json.dumps(environment)

    assert len(spaced) > 5 * keys * (2 * text + 8)  # far more JSON than the same entries in plain ASCII
    assert parse_environment(spaced) == environment


@pytest.mark.parametrize("environment", [
    pytest.param({f"k{i}": "1" for i in range(replies.MAX_ENVIRONMENT_KEYS + 1)}, id="one entry more"),
    pytest.param({"k" * (replies.MAX_ENVIRONMENT_TEXT + 1): "1"}, id="a longer name"),
    pytest.param({"numpy": "1" * (replies.MAX_ENVIRONMENT_TEXT + 1)}, id="a longer version"),
])
def test_an_environment_over_its_limits_is_refused(environment: dict[str, str]) -> None:
    with pytest.raises(InvalidUpdate, match=r"^the environment must have at most 100 entries of at most "):
        parse_environment(json.dumps(environment))


def test_environment_json_one_character_over_its_bound_is_refused() -> None:
    bound = replies.MAX_ENVIRONMENT_KEYS * (2 * 6 * replies.MAX_ENVIRONMENT_TEXT + 8)

    with pytest.raises(InvalidUpdate, match=rf"^the environment is {bound + 1} characters of JSON; at most "
                                            rf"{bound} are accepted$"):
        parse_environment("{}" + " " * (bound - 1))


def test_a_record_of_the_wrong_kind_is_refused(model: Any) -> None:
    definition, weights = model
    reply = _reply(weights)
    reply.content[wire.ARRAYS] = ConfigRecord({"l1.b": 1})

    assert _rejected(reply, definition) == "record 'arrays' is a ConfigRecord, expected a ArrayRecord"


def test_a_long_refusal_reason_is_cut_to_one_line(model: Any) -> None:
    definition, weights = model
    train = Message(RecordDict({wire.CONFIG: ConfigRecord({"x": 1})}), dst_node_id=7, message_type="train")
    refusal = RecordDict({wire.REFUSAL: ConfigRecord({wire.REFUSAL_REASON: "why\n" * 1_000_000})})

    reason = _rejected(Message(refusal, reply_to=train), definition)

    assert reason.startswith("client refused to train: why why")
    assert len(reason) == len("client refused to train: ") + replies.MAX_REASON
    assert one_line("x" * (replies.MAX_REASON + 1)).endswith("…")


def test_a_reason_of_exactly_the_limit_is_kept_whole() -> None:
    assert one_line("x" * replies.MAX_REASON) == "x" * replies.MAX_REASON
    assert one_line("x" * (replies.MAX_REASON + 1)) == "x" * (replies.MAX_REASON - 1) + "…"


# -- files a user or a site gives ---------------------------------------------------------------

def test_a_spec_file_over_the_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.toml"
    path.write_text("#" * (MAX_SPEC_BYTES + 1))

    with pytest.raises(SpecError, match=rf"is {MAX_SPEC_BYTES + 1} bytes; the limit is {MAX_SPEC_BYTES}$"):
        load_spec(path)


def test_a_policy_file_over_the_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text("#" * (MAX_POLICY_BYTES + 1))

    with pytest.raises(PolicyError, match=rf"is {MAX_POLICY_BYTES + 1} bytes; the limit is "):
        SitePolicy.load(path)


def test_a_spec_file_of_exactly_the_limit_is_read(tmp_path: Path) -> None:
    text = (BUILTIN_SPEC_DIR / "digits-mixed.toml").read_text(encoding="utf-8")
    path = tmp_path / "digits-mixed.toml"  # a spec is named for its file
    path.write_text(text + "#" * (MAX_SPEC_BYTES - len(text.encode())), encoding="utf-8")

    assert load_spec(path) == load_spec("digits-mixed")
    path.write_text(text + "#" * (MAX_SPEC_BYTES + 1 - len(text.encode())), encoding="utf-8")
    with pytest.raises(SpecError, match=rf"is {MAX_SPEC_BYTES + 1} bytes; the limit is {MAX_SPEC_BYTES}$"):
        load_spec(path)


def test_a_policy_file_of_exactly_the_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text("min-rows = 5\n" + "#" * (MAX_POLICY_BYTES - len("min-rows = 5\n")))

    assert SitePolicy.load(path).min_rows == 5


def test_deeply_nested_toml_is_refused(tmp_path: Path) -> None:
    # found by fuzzing the parsers' inputs: tomllib recurses per nesting level (RecursionError)
    path = tmp_path / "nested.toml"
    path.write_text("a = " + "[" * 5000 + "]" * 5000)

    with pytest.raises(SpecError, match="nested too deeply"):
        load_spec(path)
    with pytest.raises(PolicyError, match="nested too deeply"):
        SitePolicy.load(path)


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".npz"])
def test_a_data_file_over_the_limit_is_refused(tmp_path: Path, suffix: str) -> None:
    path = _sparse(tmp_path / f"data{suffix}", MAX_DATA_FILE_BYTES + 1)

    with pytest.raises(DataError, match=rf"is {MAX_DATA_FILE_BYTES + 1} bytes; the limit is "):
        read_table(path)


def test_a_data_file_of_exactly_the_limit_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 4 GiB is not written: read_table reads the limit at call time, so it is patched to the file's size
    path = tmp_path / "data.csv"
    path.write_text("a,b\n1,2\n3,4\n")
    size = path.stat().st_size
    monkeypatch.setattr(tables, "MAX_DATA_FILE_BYTES", size)

    assert read_table(path).num_rows == 2
    monkeypatch.setattr(tables, "MAX_DATA_FILE_BYTES", size - 1)
    with pytest.raises(DataError, match=rf"is {size} bytes; the limit is {size - 1} \(split it"):
        read_table(path)


def test_an_exported_record_that_is_not_an_object_or_nested_too_deeply_is_refused() -> None:
    # found by fuzzing: a list raised AttributeError, deep nesting RecursionError (flonnx verify-model)
    with pytest.raises(LineageError, match="nested too deeply"):
        embedded_record("[" * 100_000)
    with pytest.raises(LineageError, match="malformed version record"):
        embedded_record(json.dumps({"schema": 1, "kind": "initial", "round": 0, "parents": [],
                                    "definition_id": "d", "weights_id": "w", "metrics": []}))



def test_a_csv_cell_over_the_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text(f"a,b\n{'x' * (csv.field_size_limit() + 1)},1\n")

    with pytest.raises(DataError, match=rf"line 2: not valid CSV \(field larger than field limit "
                                        rf"\({csv.field_size_limit()}\)\)$"):
        read_table(path)


def test_a_csv_cell_of_exactly_the_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text(f"a,b\n{'x' * csv.field_size_limit()},1\n")

    assert read_table(path).num_rows == 1


def test_a_json_field_of_exactly_the_limit_is_parsed() -> None:
    text = json.dumps("x" * (wire.MAX_JSON_FIELD - 2))

    assert len(wire.loads_field(text, "the feature names")) == wire.MAX_JSON_FIELD - 2
    with pytest.raises(InvalidUpdate, match=rf"^the feature names is {wire.MAX_JSON_FIELD + 1} characters of "
                                            rf"JSON; at most {wire.MAX_JSON_FIELD} are accepted$"):
        wire.loads_field(text + " ", "the feature names")


def test_an_empty_tensor_with_huge_dims_is_refused() -> None:
    # found by fuzzing (10,000 inputs): [2**31, 2**31, 2**31, 0] has no elements, numpy cannot shape it
    dims = [1 << 31, 1 << 31, 1 << 31, 0]
    blob = b"FLONNXW1" + struct.pack("<II", 1, 1) + b"w" + struct.pack("<B", 3) + b"<f4" + struct.pack(
        "<B4QQ", 4, *dims, 0)
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2147483648, 2147483648, 2147483648, 0), }"

    with pytest.raises(InvalidUpdate, match=r"has a dim of 2147483648; the limit is 268435456$"):
        decode_weights(blob)
    with pytest.raises(InvalidUpdate, match=r"has a dim of 2147483648; the limit is 268435456$"):
        decode_npy(_npy(header))
    with pytest.raises(InvalidUpdate, match=r"33 dims; the limit is 32$"):
        decode_weights(blob[:21] + struct.pack("<B33QQ", 33, *([1] * 33), 4) + b"\0" * 4)


def test_an_exported_record_with_an_infinite_integer_is_refused() -> None:
    # found by fuzzing (10,000 inputs): int(-Infinity) raised OverflowError
    with pytest.raises(LineageError, match="malformed version record: OverflowError"):
        embedded_record('{"schema": -Infinity, "kind": "initial", "round": 0, "parents": [], '
                        '"definition_id": "d", "weights_id": "w"}')


def test_a_scalar_weight_keeps_its_shape_through_the_encoding() -> None:
    # found by fuzzing (10,000 inputs, round-trip property): a 0-d tensor was encoded as shape [1],
    # so a stored scalar weight read back as [1] and no longer matched its definition
    weights = {"s": np.array(1.5, np.float32)}

    decoded = decode_weights(encode_weights(weights))

    assert decoded["s"].shape == ()
    assert encode_weights(decoded) == encode_weights(weights)
