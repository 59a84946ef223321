"""Fuzz one parser of untrusted input with hypothesis, in a process with a bounded address space.

``python tests/hostile/_fuzz.py ENTRY EXAMPLES`` runs ``EXAMPLES`` generated or mutated inputs
through one entry point and prints one JSON line ``{"entry", "examples", "failure"}``. The property,
for every entry point: the parser returns, or raises a subclass of
:class:`~flonnx.exchange.errors.FlonnxError` (for the reply checker: returns an ``Update`` or a
``Rejection``); any other exception, a hang past the hypothesis deadline or an allocation past the
address-space cap (``RLIMIT_AS``, set before anything is imported) is a failure, reported with the
input that caused it.

Entry points:

``definition``
    ``Definition.from_bytes`` (what a client does with a received definition, and the registry with
    a stored one) and ``Definition.from_model(load_model_bytes(...))`` (the coordinator's loader).
    An accepted definition must re-parse to the same id.
``weights``
    ``decode_weights`` (a weights blob read back from the registry). An accepted blob must be the
    canonical encoding of what it decodes to.
``arrays``
    ``decode_npy`` (a Flower ``Array``'s bytes, as the reply checker converts them to numpy).
``reply``
    ``check_reply`` over Flower reply messages built from mutated valid replies and from random
    record dicts.
``record``
    ``embedded_record``: the version record (JSON) an exported file carries, as ``flonnx
    verify-model`` reads it.
"""

from __future__ import annotations

import json
import resource
import struct
import sys
import time
from pathlib import Path
from typing import Any

#: Address space of a fuzzing process: the imports (numpy, onnx, Flower) take about 1 GiB of it.
LIMIT_BYTES = 3 << 30
#: A single input may take this long (milliseconds) before hypothesis calls it a hang.
DEADLINE_MS = 10_000

ROOT = Path(__file__).resolve().parents[2]


# -- byte mutations of valid inputs ------------------------------------------------------------

def _mutations(st: Any) -> Any:
    """A strategy of edit lists: (kind, position fraction, payload)."""
    kinds = st.sampled_from(["flip", "set", "truncate", "insert", "delete", "duplicate", "zero", "ff"])
    edit = st.tuples(kinds, st.floats(0, 1), st.binary(min_size=1, max_size=16), st.integers(1, 64))
    return st.lists(edit, min_size=1, max_size=6)


def _mutate(data: bytes, edits: list[tuple[str, float, bytes, int]]) -> bytes:
    out = bytearray(data)
    for kind, where, payload, length in edits:
        pos = int(where * len(out)) if out else 0
        pos = min(pos, max(len(out) - 1, 0))
        if kind == "flip" and out:
            out[pos] ^= 1 << (payload[0] % 8)
        elif kind == "set" and out:
            out[pos] = payload[0]
        elif kind == "truncate":
            del out[pos:]
        elif kind == "insert":
            out[pos:pos] = payload
        elif kind == "delete":
            del out[pos:pos + length]
        elif kind == "duplicate":
            out[pos:pos] = out[pos:pos + length]
        elif kind == "zero":
            out[pos:pos + length] = bytes(len(out[pos:pos + length]))
        elif kind == "ff":
            out[pos:pos + length] = b"\xff" * len(out[pos:pos + length])
    return bytes(out)


# -- seeds: valid (and hostile) inputs to mutate ----------------------------------------------

def _definition_seeds() -> list[bytes]:
    import tempfile

    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    from tests.hostile.make_corpus import build
    from tests.tiny_models import gemm_mlp

    seeds = []
    definition, weights = gemm_mlp(4, 8, 3, head="Softmax")
    seeds += [definition.canonical_bytes, definition.materialize(weights).SerializeToString()]
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [2, 3])
    pads = helper.make_tensor("pads", TensorProto.INT64, [4], [0, 1, 0, 1])
    w = helper.make_tensor("w", TensorProto.FLOAT, [2, 3], np.ones(6, np.float32))
    branch = helper.make_graph([helper.make_node("Identity", ["w"], ["t"])], "b", [],
                               [helper.make_tensor_value_info("t", TensorProto.FLOAT, [2, 3])])
    graph = helper.make_graph(
        [helper.make_node("ConstantOfShape", ["shape"], ["c"]),
         helper.make_node("Pad", ["c", "pads"], ["p"]),
         helper.make_node("Add", ["c", "w"], ["s"]),
         helper.make_node("Cast", ["flag"], ["b"], to=TensorProto.BOOL),
         helper.make_node("If", ["b"], ["y"], then_branch=branch, else_branch=branch)],
        "g", [helper.make_tensor_value_info("flag", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3]),
         helper.make_tensor_value_info("p", TensorProto.FLOAT, [2, 5])],
        [shape, pads, w])
    seeds.append(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    with tempfile.TemporaryDirectory() as folder:
        for path in build(Path(folder)).values():
            if path.stat().st_size < 64 * 1024:  # the deep graph is 2 MB: too slow to mutate often
                seeds.append(path.read_bytes())
    assert all(isinstance(s, bytes) for s in seeds) and onnx
    return seeds


def _weights_seeds() -> list[dict[str, Any]]:
    import numpy as np

    return [
        {"l1.w": np.arange(6, dtype=np.float32).reshape(2, 3), "l1.b": np.zeros(2, np.float32)},
        {"a": np.float64(1.5) * np.ones((), np.float64), "b": np.arange(4, dtype=np.int64),
         "c": np.ones((2, 0, 3), np.float16), "é": np.array([True, False])},
        {},
    ]


# -- generated ONNX models ---------------------------------------------------------------------

_OPS = ["Add", "Relu", "Gemm", "MatMul", "Identity", "ConstantOfShape", "Expand", "Tile", "Range", "Pad",
        "Reshape", "Concat", "Constant", "If", "Loop", "Cast", "Squeeze", "Unsqueeze", "Mul", "Sub",
        "Conv", "NotAnOp", ""]
_NAMES = ["x", "y", "w", "b", "c", "", "x", "shape", "é", "a" * 300]


def _models(st: Any) -> Any:
    """Random ONNX models built with onnx.helper: junk ops, names, dims, dtypes and attributes."""
    import onnx
    from onnx import TensorProto, helper

    dtypes = st.sampled_from([TensorProto.FLOAT, TensorProto.INT64, TensorProto.DOUBLE, TensorProto.FLOAT16,
                              TensorProto.BFLOAT16, TensorProto.STRING, TensorProto.INT32, TensorProto.UINT8,
                              TensorProto.BOOL, 0, 17, 25, 999])
    dims = st.lists(st.one_of(st.integers(-3, 6), st.sampled_from([1 << 20, 1 << 31, 1 << 40, (1 << 63) - 1,
                                                                   -(1 << 63)])), max_size=5)

    @st.composite
    def tensor(draw: Any, name: str | None = None) -> onnx.TensorProto:
        t = onnx.TensorProto()
        t.name = name if name is not None else draw(st.sampled_from(_NAMES))
        t.data_type = draw(dtypes)
        t.dims.extend(draw(dims))
        choice = draw(st.integers(0, 4))
        if choice == 1:
            t.raw_data = draw(st.binary(max_size=64))
        elif choice == 2:
            t.float_data.extend(draw(st.lists(st.floats(allow_nan=True, width=32), max_size=8)))
        elif choice == 3:
            t.int64_data.extend(draw(st.lists(st.integers(-(1 << 63), (1 << 63) - 1), max_size=8)))
        elif choice == 4:
            t.int32_data.extend(draw(st.lists(st.integers(-(1 << 31), (1 << 31) - 1), max_size=8)))
        if draw(st.integers(0, 20)) == 0:
            t.data_location = TensorProto.EXTERNAL
            t.external_data.add(key="location", value=draw(st.sampled_from(["../x", "/etc/passwd", "w.bin"])))
        return t

    @st.composite
    def node(draw: Any, depth: int) -> onnx.NodeProto:
        n = helper.make_node(
            draw(st.sampled_from(_OPS)),
            draw(st.lists(st.sampled_from(_NAMES), max_size=3)),
            draw(st.lists(st.sampled_from(_NAMES), max_size=2)),
            domain=draw(st.sampled_from(["", "", "", "ai.onnx", "ai.onnx.ml", "evil.corp"])),
        )
        for _ in range(draw(st.integers(0, 3))):
            kind = draw(st.integers(0, 5))
            attr = n.attribute.add()
            attr.name = draw(st.sampled_from(["value", "to", "pads", "value_ints", "value_int", "axis",
                                              "then_branch", "body", "transB"]))
            if kind == 0:
                attr.type, attr.i = onnx.AttributeProto.INT, draw(st.integers(-(1 << 63), (1 << 63) - 1))
            elif kind == 1:
                attr.type = onnx.AttributeProto.INTS
                attr.ints.extend(draw(st.lists(st.integers(-(1 << 63), (1 << 63) - 1), max_size=6)))
            elif kind == 2:
                attr.type = onnx.AttributeProto.TENSOR
                attr.t.CopyFrom(draw(tensor()))
            elif kind == 3 and depth < 2:
                attr.type = onnx.AttributeProto.GRAPH
                attr.g.CopyFrom(draw(graph(depth + 1)))
            elif kind == 4:
                attr.type, attr.f = onnx.AttributeProto.FLOAT, draw(st.floats(width=32))
            else:
                attr.type, attr.s = onnx.AttributeProto.STRING, draw(st.binary(max_size=8))
        return n

    @st.composite
    def graph(draw: Any, depth: int = 0) -> onnx.GraphProto:
        g = onnx.GraphProto(name="g")
        g.node.extend(draw(st.lists(node(depth), max_size=6)))
        g.initializer.extend(draw(st.lists(tensor(), max_size=4)))
        for name in draw(st.lists(st.sampled_from(_NAMES), max_size=3)):
            g.input.append(helper.make_tensor_value_info(name, draw(dtypes) % 17,
                                                         [d if d >= 0 else None for d in draw(dims)]))
        for name in draw(st.lists(st.sampled_from(_NAMES), max_size=2)):
            g.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
        return g

    @st.composite
    def model(draw: Any) -> bytes:
        m = onnx.ModelProto(ir_version=draw(st.integers(0, 12)))
        m.graph.CopyFrom(draw(graph()))
        for domain in draw(st.lists(st.sampled_from(["", "ai.onnx.ml", "evil.corp"]), max_size=2)):
            m.opset_import.add(domain=domain, version=draw(st.integers(-1, 30)))
        for key, value in draw(st.lists(st.tuples(st.sampled_from(["flonnx.task", "flonnx.x", "other"]),
                                                  st.text(max_size=8)), max_size=2)):
            m.metadata_props.add(key=key, value=value)
        return m.SerializeToString()

    return model()


# -- entry points ------------------------------------------------------------------------------

def _definition(st: Any) -> tuple[Any, Any]:
    from flonnx.exchange.definition import Definition, load_model_bytes
    from flonnx.exchange.errors import FlonnxError

    seeds = _definition_seeds()
    inputs = st.one_of(
        st.builds(_mutate, st.sampled_from(seeds), _mutations(st)),
        _models(st),
        st.builds(_mutate, _models(st), _mutations(st)),
        st.binary(max_size=256),
    )

    def check(data: bytes) -> str:
        try:
            definition = Definition.from_bytes(data)
        except FlonnxError:
            outcome = "refused"
        else:
            outcome = "accepted"
            again = Definition.from_bytes(definition.canonical_bytes)
            assert again.id == definition.id, "a definition re-parses to another id"
            assert again.canonical_bytes == definition.canonical_bytes
        try:
            Definition.from_model(load_model_bytes(data))
        except FlonnxError:
            pass
        return outcome

    return inputs, check


def _weights(st: Any) -> tuple[Any, Any]:
    import numpy as np

    from flonnx.exchange.errors import FlonnxError
    from flonnx.exchange.hashing import decode_weights, encode_weights

    seeds = [encode_weights(w) for w in _weights_seeds()]
    dtype_names = st.sampled_from([b"<f4", b"<f8", b"<f2", b"|u1", b"<i8", b"|b1", b">f4", b"|O", b"<U4",
                                   b"|V8", b"<M8[s]", b"(3,)<f4", b"[('a','<f4')]", b"\xff", b"", b"f4"])

    @st.composite
    def generated(draw: Any) -> bytes:
        tensors = draw(st.lists(st.tuples(st.binary(max_size=8), dtype_names,
                                          st.lists(st.sampled_from([0, 1, 2, 3, 1 << 31, 1 << 62,
                                                                    (1 << 64) - 1]), max_size=4),
                                          st.booleans(), st.binary(max_size=32)), max_size=4))
        out = [b"FLONNXW1", struct.pack("<I", draw(st.sampled_from([len(tensors), 0, 1, 1 << 31])))]
        for name, dtype, shape, honest, data in tensors:
            out += [struct.pack("<I", len(name)), name, struct.pack("<B", len(dtype)), dtype,
                    struct.pack("<B", len(shape)), struct.pack(f"<{len(shape)}Q", *shape)]
            nbytes = len(data)
            if honest:
                try:
                    nbytes = int(np.dtype(dtype.decode()).itemsize) * int(np.prod(shape, dtype=object))
                except Exception:  # noqa: BLE001 - a junk dtype: keep the junk length
                    pass
            out += [struct.pack("<Q", nbytes % (1 << 64)), data]
        return b"".join(out)

    inputs = st.one_of(st.builds(_mutate, st.sampled_from(seeds), _mutations(st)), generated(),
                       st.binary(max_size=128))

    def check(blob: bytes) -> str:
        try:
            weights = decode_weights(blob)
        except FlonnxError:
            return "refused"
        assert encode_weights(weights) == blob, "an accepted weights blob is not canonical"
        return "accepted"

    return inputs, check


def _npy_seeds() -> list[bytes]:
    import io

    import numpy as np

    out = []
    for value in (np.arange(6, dtype=np.float32).reshape(2, 3), np.zeros((), np.float64),
                  np.asfortranarray(np.ones((3, 2), np.float16)), np.array([1, 2], ">i4"),
                  np.zeros((0, 4), np.float32)):
        buffer = io.BytesIO()
        np.save(buffer, value, allow_pickle=False)
        out.append(buffer.getvalue())
    return out


def _npy_headers(st: Any) -> Any:
    """Hand-written .npy headers: huge or negative shapes, object and structured dtypes, junk."""
    descr = st.sampled_from(["'<f4'", "'|O'", "'<U3'", "[('a', '<f4')]", "'(2,)<f4'", "'>f8'", "'<V4'", "1",
                             "'zz'"])
    shape = st.sampled_from(["()", "(3,)", "(2, 3)", "(1099511627776,)", "(-1,)", "(65536, 65536)",
                             "('a',)", "(2, 3, 4, 5, 6, 7, 8, 9, 10)", "None"])

    @st.composite
    def npy(draw: Any) -> bytes:
        order = draw(st.sampled_from(["False", "True", "1"]))
        header = f"{{'descr': {draw(descr)}, 'fortran_order': {order}, 'shape': {draw(shape)}, }}"
        version = draw(st.sampled_from([b"\x01\x00", b"\x02\x00", b"\x03\x00", b"\x09\x00"]))
        body = header.encode("latin1")
        size = struct.pack("<H" if version == b"\x01\x00" else "<I", len(body) + 1)
        return b"\x93NUMPY" + version + size + body + b"\n" + draw(st.binary(max_size=64))

    return npy()


def _arrays(st: Any) -> tuple[Any, Any]:
    from flonnx.exchange.errors import FlonnxError
    from flonnx.exchange.npy import decode_npy

    inputs = st.one_of(st.builds(_mutate, st.sampled_from(_npy_seeds()), _mutations(st)), _npy_headers(st),
                       st.builds(_mutate, _npy_headers(st), _mutations(st)), st.binary(max_size=128))

    def check(data: bytes) -> str:
        try:
            value = decode_npy(data)
        except FlonnxError:
            return "refused"
        assert value.nbytes <= len(data), "an array larger than its bytes"
        return "accepted"

    return inputs, check


def _identity() -> None:
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1


def _reply(st: Any) -> tuple[Any, Any]:
    import math

    import numpy as np
    from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, MetricRecord, RecordDict

    from flonnx.exchange import wire
    from flonnx.exchange.hashing import weights_id
    from flonnx.server.replies import ClientInfo, Rejection, Update, check_reply
    from tests.tiny_models import gemm_mlp

    _identity()
    definition, weights = gemm_mlp(4, 8, 3)
    base, seed, client = "v" * 64, 11, ClientInfo(7, "site-a", "numpy", "2", 10)
    train = Message(RecordDict({wire.CONFIG: ConfigRecord({"x": 1})}), dst_node_id=7, message_type="train")
    npy = _npy_seeds()

    floats = st.floats(allow_nan=True, allow_infinity=True)
    ints = st.integers(-(1 << 63), (1 << 63) - 1)
    texts = st.one_of(st.text(max_size=16), st.just("x" * 100_000), st.just("{" * 5000),
                      st.just('{"a": ' * 3000), st.sampled_from([base, "site-a", "{}", "[]", "null", "nan"]))
    config_values = st.one_of(ints, floats, texts, st.binary(max_size=16), st.booleans(),
                              st.lists(ints, max_size=3), st.lists(floats, max_size=3),
                              st.lists(texts, max_size=3))
    metric_values = st.one_of(ints, floats, st.lists(floats, max_size=3), st.lists(ints, max_size=3),
                              st.sampled_from([10, 10.0, 1e300, -1, 0, 2**62]))
    keys = st.one_of(st.sampled_from([wire.REPLY_BASE_VERSION, wire.REPLY_CLIENT, wire.REPLY_WEIGHTS_ID,
                                      wire.REPLY_SEED, wire.REPLY_ENVIRONMENT, wire.REPLY_FRAMEWORK,
                                      wire.REPLY_FRAMEWORK_VERSION, wire.REPLY_NUM_EXAMPLES,
                                      wire.REFUSAL_REASON, "train-loss"]),
                     st.text(min_size=1, max_size=8), st.just("k" * 1000))
    array_data = st.one_of(st.sampled_from(npy), st.builds(_mutate, st.sampled_from(npy), _mutations(st)),
                           _npy_headers(st), st.binary(max_size=64))
    arrays = st.builds(lambda d, t, s, st_: Array(dtype=t, shape=tuple(s), stype=st_, data=d), array_data,
                       st.sampled_from(["float32", "float64", "object", ""]),
                       st.lists(st.integers(0, 1 << 40), max_size=3),
                       st.sampled_from(["numpy.ndarray", "numpy.ndarray", "torch.Tensor", ""]))
    array_names = st.one_of(st.sampled_from(sorted(weights)), st.text(min_size=1, max_size=8))
    records = st.one_of(
        st.builds(ArrayRecord, st.dictionaries(array_names, arrays, max_size=6)),
        st.builds(ConfigRecord, st.dictionaries(keys, config_values, max_size=8)),
        st.builds(MetricRecord, st.dictionaries(keys, metric_values, max_size=8)),
    )
    record_names = st.sampled_from([wire.ARRAYS, wire.METRICS, wire.LINEAGE, wire.REFUSAL, "other"])

    def valid(trained: dict[str, Any]) -> RecordDict:
        lineage = {wire.REPLY_BASE_VERSION: base, wire.REPLY_CLIENT: "site-a", wire.REPLY_FRAMEWORK: "numpy",
                   wire.REPLY_FRAMEWORK_VERSION: "2", wire.REPLY_WEIGHTS_ID: weights_id(trained),
                   wire.REPLY_SEED: seed, wire.REPLY_ENVIRONMENT: '{"python": "3.11"}'}
        return RecordDict({wire.ARRAYS: ArrayRecord({k: Array(v) for k, v in trained.items()}),
                           wire.METRICS: MetricRecord({wire.REPLY_NUM_EXAMPLES: 10, "train-loss": 0.5}),
                           wire.LINEAGE: ConfigRecord(lineage)})

    @st.composite
    def content(draw: Any) -> RecordDict:
        how = draw(st.integers(0, 3))
        if how == 0:  # random records under flonnx's names
            return RecordDict(draw(st.dictionaries(record_names, records, max_size=4)))
        scale = draw(st.sampled_from([1.0, math.nan, math.inf, 1e38]))
        trained = {k: (v * np.float32(scale)).astype(v.dtype) for k, v in weights.items()}
        out = valid(trained)
        for _ in range(draw(st.integers(1 if how == 1 else 0, 4))):
            target = draw(record_names)
            action = draw(st.integers(0, 3))
            if action == 0:
                out[target] = draw(records)
            elif action == 1 and target in out:
                del out[target]
            elif target in out:
                record = out[target]
                if isinstance(record, ArrayRecord):
                    record[draw(array_names)] = draw(arrays)
                elif isinstance(record, MetricRecord):
                    record[draw(keys)] = draw(metric_values)
                else:
                    record[draw(keys)] = draw(config_values)
        if how == 3:  # a valid reply whose reported weights id matches whatever it now carries
            try:
                arrays_now = {k: a.numpy() for k, a in out.array_records[wire.ARRAYS].items()}
                out.config_records[wire.LINEAGE][wire.REPLY_WEIGHTS_ID] = weights_id(arrays_now)
            except Exception:  # noqa: BLE001 - not decodable: leave the id as it is
                pass
        return out

    @st.composite
    def message(draw: Any) -> Message:
        if draw(st.integers(0, 15)) == 0:
            return Message(Error(draw(st.integers(0, 5)), draw(st.one_of(st.none(), texts))), reply_to=train)
        return Message(draw(content()), reply_to=train)

    def check(reply: Message) -> str:
        out = check_reply(reply, client=client, definition=definition, base_version=base, seed=seed)
        assert isinstance(out, Update | Rejection), type(out)
        if isinstance(out, Rejection):
            assert "\n" not in out.reason and len(out.reason) <= 2000, out.reason[:300]
            return "refused"
        assert all(math.isfinite(v) for v in out.metrics.values())
        assert out.weights_id == weights_id(out.weights)
        return "accepted"

    return message(), check


def _record(st: Any) -> tuple[Any, Any]:
    from flonnx.exchange.errors import FlonnxError
    from flonnx.exchange.lineage import VersionKind, VersionRecord
    from flonnx.exchange.signed_export import embedded_record

    record = VersionRecord(schema=1, kind=VersionKind.CLIENT_UPDATE, round=3, parents=("a" * 64,),
                           definition_id="d" * 64, weights_id="w" * 64, framework="torch",
                           framework_version="2.13", client="site-a", num_examples=10,
                           metrics={"loss": 0.5}, seed=7, strategy="fedavg", strategy_config={"x": "1"},
                           environment={"python": "3.11"}, reason="")
    seed = record.canonical_bytes()
    leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8))
    documents = st.recursive(leaf, lambda c: st.one_of(st.lists(c, max_size=3),
                                                        st.dictionaries(st.text(max_size=12), c, max_size=4)))
    fields = st.fixed_dictionaries({}, optional={k: documents for k in record.to_dict()})
    inputs = st.one_of(
        st.builds(lambda b, e: _mutate(b, e).decode("utf-8", "replace"), st.just(seed), _mutations(st)),
        st.builds(lambda d: json.dumps({**record.to_dict(), **d}), fields),
        st.builds(json.dumps, documents),
        st.sampled_from(["[" * 100_000, '{"a":' * 50_000, "1e999999", "-" * 10]),
        st.text(max_size=64),
    )

    def check(text: str) -> str:
        try:
            embedded_record(text)
        except FlonnxError:
            return "refused"
        return "accepted"

    return inputs, check


ENTRIES = {"definition": _definition, "weights": _weights, "arrays": _arrays, "reply": _reply,
           "record": _record}


def run(entry: str, examples: int) -> dict[str, Any]:
    """Run ``examples`` inputs through ``entry``; the failure (type, message, input) or None."""
    import logging
    import warnings

    import numpy as np
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    logging.disable(logging.WARNING)  # Flower warns about every record it is asked to overwrite
    warnings.simplefilter("ignore")
    np.seterr(all="ignore")
    inputs, check = ENTRIES[entry](st)
    failure: dict[str, Any] = {}
    outcomes = {"accepted": 0, "refused": 0}

    @settings(max_examples=examples, deadline=DEADLINE_MS, database=None,
              # no shrinking: the first failing input is reported as generated (shrinking junk takes minutes)
              phases=(Phase.explicit, Phase.reuse, Phase.generate),
              suppress_health_check=list(HealthCheck), print_blob=True)
    @given(inputs)
    def prop(value: Any) -> None:
        try:
            outcomes[check(value)] += 1
        except BaseException as exc:
            failure.update(type=type(exc).__name__, message=str(exc)[:500], input=repr(value)[:2000])
            raise

    started = time.perf_counter()
    try:
        prop()
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        failure.setdefault("type", type(exc).__name__)
        failure.setdefault("message", str(exc)[:2000])
    return {"entry": entry, "examples": examples, **outcomes,
            "seconds": round(time.perf_counter() - started, 1), "failure": failure or None}


def main() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT_BYTES, LIMIT_BYTES))
    sys.path.insert(0, str(ROOT))
    print(json.dumps(run(sys.argv[1], int(sys.argv[2]))))


if __name__ == "__main__":
    main()
