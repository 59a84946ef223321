"""Lineage records: ids over canonical JSON, protobuf schema kept in sync with its generated code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from flonnx.exchange._proto import flonnx_lineage_pb2
from flonnx.exchange.lineage import VersionKind, VersionRecord
from flonnx.exchange.serde import deserialize_record, serialize_record

ROOT = Path(__file__).resolve().parents[2]

RECORD = VersionRecord(
    kind=VersionKind.AGGREGATE, round=3, definition_id="d" * 64, weights_id="w" * 64,
    parents=("a" * 64, "b" * 64), num_examples=240, metrics={"loss": 0.25, "accuracy": 0.9},
    seed=7, strategy="fedadam", strategy_config={"eta": "0.1", "beta_1": "0.9"},
    environment={"python": "3.11.7", "onnx": "1.23.2"},
)


def test_version_id_is_independent_of_mapping_order() -> None:
    reordered = VersionRecord(**{**RECORD.__dict__, "metrics": {"accuracy": 0.9, "loss": 0.25},
                                 "strategy_config": {"beta_1": "0.9", "eta": "0.1"}})

    assert reordered.version_id == RECORD.version_id


@pytest.mark.parametrize("field,value", [("parents", ("a" * 64,)), ("round", 4), ("seed", 8),
                                         ("weights_id", "x" * 64), ("reason", "timeout")])
def test_every_field_takes_part_in_the_id(field, value) -> None:
    changed = VersionRecord(**{**RECORD.__dict__, field: value})

    assert changed.version_id != RECORD.version_id


def test_protobuf_round_trip_keeps_the_id() -> None:
    again = deserialize_record(serialize_record(RECORD))

    assert again == RECORD
    assert again.version_id == RECORD.version_id


def test_dict_round_trip_keeps_the_id() -> None:
    assert VersionRecord.from_dict(RECORD.to_dict()).version_id == RECORD.version_id


def test_generated_python_matches_the_proto_source(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools", reason="protoc (grpcio-tools) compiles the .proto")
    descriptor_set = tmp_path / "lineage.desc"
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'protos'}",
         f"--descriptor_set_out={descriptor_set}", str(ROOT / "protos" / "flonnx_lineage.proto")],
        check=True,
    )
    compiled = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes()).file[0]
    for message in compiled.message_type:  # generated code embeds descriptors without json_name
        for field in message.field:
            field.ClearField("json_name")
    committed = descriptor_pb2.FileDescriptorProto.FromString(flonnx_lineage_pb2.DESCRIPTOR.serialized_pb)

    assert committed == compiled, "protos/ changed: run `make protos` and commit exchange/_proto"


def test_environment_records_the_cpu_and_the_simd_numpy_dispatches_to() -> None:
    """A difference in local training across machines must be explainable from the record."""
    from numpy._core import _multiarray_umath as umath

    from flonnx.exchange.lineage import environment

    env = environment()
    assert env["cpu"] and "\n" not in env["cpu"] and len(env["cpu"]) <= 200
    found = [t for t in umath.__cpu_dispatch__ if umath.__cpu_features__.get(t)]
    assert env["cpu-simd"].split() == list(umath.__cpu_baseline__) + found
    # the same call twice gives the same record (ids hash it)
    assert environment() == env
