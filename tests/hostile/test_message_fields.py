"""Untrusted JSON fields and tensors in messages, on both sides: bounded, and refused in one line."""

from __future__ import annotations

import io

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord

from flonnx.exchange import wire
from flonnx.exchange.definition import Definition
from flonnx.exchange.errors import InvalidUpdate
from flonnx.exchange.npy import decode_tensors
from flonnx.server.replies import parse_environment
from tests.tiny_models import gemm_mlp

pytestmark = pytest.mark.reliability


def _forged(shape: tuple[int, ...]) -> bytes:
    """A .npy header claiming ``shape`` float32 with no data behind it (asks for terabytes)."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buffer.getvalue()


@pytest.mark.parametrize(("text", "message"), [
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ("x" * (wire.MAX_JSON_FIELD + 1), "at most"),
    ("{not json", "is not JSON"),
    (b"{}", "must be JSON text"),
])
def test_a_json_field_is_bounded_in_length_and_depth(text: object, message: str) -> None:
    with pytest.raises(InvalidUpdate, match=message):
        wire.loads_field(text, "the field")


def test_a_nested_or_huge_environment_is_refused_not_a_crash() -> None:
    with pytest.raises(InvalidUpdate, match="nested too deeply|at most"):
        parse_environment("[" * 100_000)
    with pytest.raises(InvalidUpdate, match="at most"):
        parse_environment('{"a": "' + "x" * 1_000_000 + '"}')
    assert parse_environment('{"numpy": "2.4.6"}') == {"numpy": "2.4.6"}


@pytest.fixture
def definition() -> Definition:
    return gemm_mlp(4, 8, 3)[0]


def test_tensors_decode_within_what_the_definition_allows(definition: Definition) -> None:
    weights = {name: np.zeros(spec.shape, spec.dtype) for name, spec in definition.specs.items()}
    record = ArrayRecord({k: Array(v) for k, v in weights.items()})
    decoded = decode_tensors(record, definition, source="the server's message")
    assert {k: (v.shape, v.dtype) for k, v in decoded.items()} == {
        k: (v.shape, v.dtype) for k, v in weights.items()}


def test_a_forged_header_is_refused_before_any_allocation(definition: Definition) -> None:
    name = next(iter(definition.specs))
    forged = Array(dtype="float32", shape=(2**40,), stype="numpy.ndarray", data=_forged((2**40,)))
    with pytest.raises(InvalidUpdate, match=f"tensor '{name}' does not decode"):
        decode_tensors({name: forged}, definition, source="the server's message")


def test_more_tensors_than_the_model_has_are_refused(definition: Definition) -> None:
    extra = {f"t{i}": Array(np.zeros(1, np.float32)) for i in range(len(definition.specs) + 1)}
    with pytest.raises(InvalidUpdate, match="carries .* tensors"):
        decode_tensors(extra, definition, source="the server's message")
