"""Every size limit on what flonnx parses, fed its limit + 1 (docs/reliability.md, "Size limits").

Limits in the hundreds of MiB are checked against a sparse file (its size is what is checked, before a
byte is read) or through the function's ``max_bytes`` argument, whose default is the named constant.
"""

from __future__ import annotations

import csv
import inspect
import io
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity
from onnx import TensorProto, helper

from flonnx.exchange import wire
from flonnx.exchange.data.tables import MAX_DATA_FILE_BYTES, read_table
from flonnx.exchange.definition import (
    MAX_MODEL_BYTES,
    MAX_NODES,
    MAX_TENSOR_ELEMENTS,
    Definition,
    load_model_bytes,
)
from flonnx.exchange.errors import DataError, InvalidModel, InvalidUpdate, LineageError, PolicyError
from flonnx.exchange.hashing import (
    MAX_WEIGHT_NAME,
    MAX_WEIGHT_TENSORS,
    MAX_WEIGHTS_BYTES,
    decode_weights,
    encode_weights,
    weights_id,
)
from flonnx.exchange.models import load_starting_model
from flonnx.exchange.npy import MAX_NPY_DIMS, MAX_NPY_HEADER, decode_npy
from flonnx.exchange.policy import MAX_POLICY_BYTES, SitePolicy
from flonnx.exchange.signed_export import embedded_record, verify_model_file
from flonnx.exchange.spec import MAX_SPEC_BYTES, SpecError, load_spec
from flonnx.server import replies
from flonnx.server.replies import ClientInfo, Rejection, Update, check_reply, one_line
from tests.tiny_models import gemm_mlp

pytestmark = pytest.mark.reliability

BASE, SEED = "v" * 64, 11
CLIENT = ClientInfo(7, "site-a", "numpy", "2", 10)


@pytest.fixture(autouse=True)
def _flower_identity() -> Iterator[None]:
    # Messages need a run id; outside a Flower run nobody sets one (internal API, test only).
    previous = TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = previous


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
