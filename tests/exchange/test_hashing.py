"""Weights ids depend only on decoded tensors: names, dtype, shape and values."""

from __future__ import annotations

import struct

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import TensorProto, helper, numpy_helper

from flonnx.exchange.definition import Definition
from flonnx.exchange.errors import InvalidUpdate
from flonnx.exchange.hashing import canonical_json, decode_weights, encode_weights, weights_id

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz._0123456789", min_size=1, max_size=12)
arrays = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float64]),
    shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=4),
    elements=st.floats(-1e3, 1e3, width=32),
)
weight_dicts = st.dictionaries(names, arrays, min_size=1, max_size=5)


def _model(weights: dict[str, np.ndarray], *, typed: bool, order: list[str]) -> onnx.ModelProto:
    """A model holding ``weights`` as initializers (consumed by Identity nodes)."""
    inits = []
    for name in order:
        if typed:
            value = weights[name]
            tensor = helper.make_tensor(
                name, helper.np_dtype_to_tensor_dtype(value.dtype), value.shape, value.flatten().tolist()
            )
        else:
            tensor = numpy_helper.from_array(weights[name], name)
        inits.append(tensor)
    nodes = [helper.make_node("Identity", [n], [f"out{i}"]) for i, n in enumerate(sorted(weights))]
    outputs = [helper.make_tensor_value_info(f"out{i}", TensorProto.UNDEFINED, None)
               for i in range(len(weights))]
    graph = helper.make_graph(nodes, "g", [], outputs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])


@settings(max_examples=40, deadline=None)
@given(weight_dicts, st.randoms())
def test_weights_id_ignores_initializer_order_and_storage(weights, rnd) -> None:
    order = sorted(weights)
    shuffled = list(order)
    rnd.shuffle(shuffled)

    _, raw = Definition.from_model(_model(weights, typed=False, order=order))
    _, typed = Definition.from_model(_model(weights, typed=True, order=shuffled))

    assert weights_id(raw) == weights_id(typed) == weights_id(weights)


@settings(max_examples=40, deadline=None)
@given(weight_dicts, st.data())
def test_any_single_changed_element_changes_the_weights_id(weights, data) -> None:
    name = data.draw(st.sampled_from(sorted(weights)))
    index = data.draw(st.integers(0, weights[name].size - 1))
    changed = {k: v.copy() for k, v in weights.items()}
    flat = changed[name].reshape(-1)
    flat[index] = np.nextafter(flat[index], np.inf, dtype=flat.dtype)

    assert weights_id(changed) != weights_id(weights)


@settings(max_examples=40, deadline=None)
@given(weight_dicts)
def test_encoding_round_trips(weights) -> None:
    decoded = decode_weights(encode_weights(weights))

    assert sorted(decoded) == sorted(weights)
    for name, value in weights.items():
        assert decoded[name].dtype == value.dtype
        np.testing.assert_array_equal(decoded[name], value)


def test_dtype_shape_and_name_each_change_the_id() -> None:
    base = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}

    variants = [
        {"w": base["w"].astype(np.float64)},
        {"w": base["w"].reshape(3, 2)},
        {"v": base["w"]},
    ]

    ids = {weights_id(base)} | {weights_id(v) for v in variants}
    assert len(ids) == 4


def test_big_endian_input_hashes_like_little_endian() -> None:
    little = {"w": np.arange(4, dtype="<f4")}
    big = {"w": little["w"].astype(">f4")}

    assert weights_id(big) == weights_id(little)


def test_truncated_blob_is_rejected() -> None:
    blob = encode_weights({"w": np.ones(3, np.float32)})

    with pytest.raises(InvalidUpdate, match="truncated"):
        decode_weights(blob[:-2])


def test_canonical_json_sorts_keys_and_rejects_nan() -> None:
    assert canonical_json({"b": 1, "a": [1.5, "x"]}) == b'{"a":[1.5,"x"],"b":1}'
    with pytest.raises(ValueError, match="non-finite"):
        canonical_json({"m": float("nan")})


def _old_encode_weights(weights: dict[str, np.ndarray]) -> bytes:
    """The encoding as first written (copy each tensor with ``tobytes``, join them): the reference."""
    import struct

    parts = [b"FLONNXW1", struct.pack("<I", len(weights))]
    for name in sorted(weights, key=lambda n: n.encode("utf-8")):
        array = np.asarray(weights[name])
        dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
        # reshape: ascontiguousarray makes a 0-d array 1-d (the encoding keeps the 0-d shape, #11)
        array = np.ascontiguousarray(array, dtype=dtype).reshape(array.shape)
        name_b, dtype_b, data = name.encode("utf-8"), array.dtype.str.encode("ascii"), array.tobytes()
        parts += [struct.pack("<I", len(name_b)), name_b, struct.pack("<B", len(dtype_b)), dtype_b,
                  struct.pack("<B", array.ndim), struct.pack(f"<{array.ndim}Q", *array.shape),
                  struct.pack("<Q", len(data)), data]
    return b"".join(parts)


_DTYPES = ["<f4", ">f4", "<f8", ">f8", "<f2", "<i1", "<u1", ">i2", "<i4", ">u4", "<i8", ">u8", "?",
           "<c8", ">c16"]


@st.composite
def _any_layout(draw: st.DrawFn) -> np.ndarray:
    """An array of any dtype/byte order and shape (0-d and empty too), maybe a non-contiguous view."""
    dtype = np.dtype(draw(st.sampled_from(_DTYPES)))
    base = draw(hnp.arrays(dtype=dtype, shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0,
                                                               max_side=5)))
    layout = draw(st.sampled_from(["as-is", "transposed", "strided", "fortran"]))
    if layout == "transposed":
        return base.T
    if layout == "strided" and base.ndim:
        return base[..., ::2]
    if layout == "fortran":
        return np.asfortranarray(base)
    return base


_unicode_names = st.text(min_size=0, max_size=10)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_unicode_names, _any_layout(), min_size=0, max_size=6))
def test_the_streamed_id_is_the_hash_of_the_old_encoding(weights) -> None:
    import hashlib

    reference = _old_encode_weights(weights)

    assert weights_id(weights) == hashlib.sha256(reference).hexdigest()
    assert encode_weights(weights) == reference


def test_weights_id_hashes_contiguous_tensors_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    """No copy of a C-contiguous little-endian update is made: its buffers are hashed directly."""
    weights = {"a": np.arange(1000, dtype=np.float32), "b": np.ones((30, 40), np.float64)}
    expected = weights_id(weights)

    real = np.ascontiguousarray
    copies: list[int] = []

    def watched(a: object, *args: object, **kwargs: object) -> np.ndarray:
        out = real(a, *args, **kwargs)
        if isinstance(a, np.ndarray) and not np.shares_memory(out, a):
            copies.append(a.nbytes)
        return out

    monkeypatch.setattr(np, "ascontiguousarray", watched)
    assert weights_id(weights) == expected
    assert copies == []


def test_canonical_json_keeps_text_as_utf8_and_refuses_non_finite_numbers_anywhere() -> None:
    # non-ASCII text is stored as itself (not \\u escapes), so an id does not depend on escaping
    assert canonical_json({"site": "Zürich"}) == '{"site":"Zürich"}'.encode()
    for nested in [{"a": [1.0, float("nan")]}, [{"b": float("inf")}], {"c": {"d": [float("-inf")]}}]:
        with pytest.raises(ValueError, match="non-finite"):
            canonical_json(nested)
    with pytest.raises(ValueError, match="is not a string"):
        canonical_json({"a": {1: 2}})


def test_empty_tensors_and_big_endian_ones_encode_like_their_little_endian_values() -> None:
    empty = {"e": np.zeros((0, 3), np.float32)}
    assert decode_weights(encode_weights(empty))["e"].shape == (0, 3)
    values = np.arange(6, dtype=np.float64).reshape(2, 3)
    for dtype in (">f8", "<f8", "=f8"):
        assert weights_id({"w": values.astype(dtype)}) == weights_id({"w": values})
    # a non-contiguous view hashes like its contiguous copy, element order C
    assert weights_id({"w": values.T}) == weights_id({"w": np.ascontiguousarray(values.T)})


@pytest.mark.parametrize("cut", ["magic", "length", "trailing"])
def test_a_blob_that_is_not_exactly_an_encoding_is_refused(cut: str) -> None:
    blob = encode_weights({"a": np.ones(3, np.float32), "b": np.zeros(2, np.int64)})
    damaged = {"magic": b"X" + blob[1:], "length": blob[:-1], "trailing": blob + b"\x00"}[cut]
    with pytest.raises(InvalidUpdate):
        decode_weights(damaged)
    # a magic that sorts before or after the real one, and a longer or shorter data section
    for magic in (b"\x00" * 8, b"\xff" * 8):
        with pytest.raises(InvalidUpdate):
            decode_weights(magic + blob[8:])


def _tensor(name: bytes, dtype: bytes, shape: tuple[int, ...], nbytes: int, data: bytes) -> bytes:
    """One tensor of a weights blob, from raw fields (the declared byte count may lie)."""
    return (struct.pack("<I", len(name)) + name + struct.pack("<B", len(dtype)) + dtype
            + struct.pack(f"<B{len(shape)}QQ", len(shape), *shape, nbytes) + data)


def test_names_out_of_order_are_refused_and_an_empty_first_name_is_not() -> None:
    b, a = _tensor(b"b", b"<f4", (1,), 4, b"\0" * 4), _tensor(b"a", b"<f4", (1,), 4, b"\0" * 4)

    with pytest.raises(InvalidUpdate, match=r"^tensor 'a': names are not unique and in order$"):
        decode_weights(b"FLONNXW1" + struct.pack("<I", 2) + b + a)
    # the empty name sorts first: it is the one name equal to the "previous" of the first tensor
    assert list(decode_weights(encode_weights({"": np.zeros(1), "a": np.ones(1)}))) == ["", "a"]


def test_an_unknown_dtype_is_named_by_its_first_16_bytes() -> None:
    blob = b"FLONNXW1" + struct.pack("<I", 1) + _tensor(b"w", b"0123456789abcdefXYZ", (1,), 4, b"\0" * 4)

    with pytest.raises(InvalidUpdate, match=r"^tensor 'w': dtype b'0123456789abcdef' is not a little-"):
        decode_weights(blob)


@pytest.mark.parametrize("nbytes", [3, 5, 8])
def test_a_byte_count_that_does_not_match_the_shape_is_refused(nbytes: int) -> None:
    # the data present is what the lie declares, so only the count's check can refuse it
    blob = b"FLONNXW1" + struct.pack("<I", 1) + _tensor(b"w", b"<f4", (1,), nbytes, b"\0" * nbytes)

    with pytest.raises(InvalidUpdate, match=rf"^tensor 'w': {nbytes} bytes for shape \(1,\) of float32$"):
        decode_weights(blob)
