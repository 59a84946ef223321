"""Lineage records: ids over canonical JSON, protobuf schema kept in sync with its generated code."""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from flonnx.exchange._proto import flonnx_lineage_pb2
from flonnx.exchange.errors import LineageError
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


# -- what the id is computed over, and the environment a record carries -------------------------------


def test_a_record_s_canonical_form_and_id_do_not_change_across_releases() -> None:
    """Registries hold ids computed by older flonnx: the same record must hash to the same id."""
    minimal = VersionRecord(VersionKind.INITIAL, 0, "d", "w")

    assert minimal.to_dict() == {
        "schema": 1, "kind": "initial", "round": 0, "parents": [], "definition_id": "d", "weights_id": "w",
        "framework": "", "framework_version": "", "client": "", "num_examples": 0, "metrics": {},
        "seed": 0, "strategy": "", "strategy_config": {}, "environment": {}, "reason": "",
    }
    assert minimal.version_id == "65c3c3757c5ee248084988ee2643c96c1e86024f3cc1250f2ad0ca07202deb0f"
    assert RECORD.canonical_bytes().startswith(b'{"client":"","definition_id":"ddd')
    assert RECORD.version_id == "f8eee47d3711b38ba63169829759e440243e1abc68996b2177ccf4cd763b8151"


def test_a_record_without_its_optional_fields_reads_back_with_the_defaults() -> None:
    required = {"schema": 1, "kind": "initial", "round": 0, "parents": [], "definition_id": "d",
                "weights_id": "w"}

    assert VersionRecord.from_dict(required) == VersionRecord(VersionKind.INITIAL, 0, "d", "w")


@pytest.mark.parametrize(("key", "value"), [
    ("kind", None),  # None: the key is missing
    ("kind", "merged"),  # not a kind
    ("parents", 3),  # not iterable
    ("metrics", [["loss", 1.0]]),  # a list where a mapping belongs
    ("round", float("inf")),  # int(inf)
    ("num_examples", "many"),
])
def test_a_malformed_record_raises_lineage_error(key: str, value: object) -> None:
    data = {**RECORD.to_dict(), key: value}
    if value is None:
        del data[key]

    with pytest.raises(LineageError, match="malformed version record"):
        VersionRecord.from_dict(data)


def test_with_metrics_merges_into_a_copy_and_changes_the_id() -> None:
    updated = RECORD.with_metrics({"loss": 0.5, "f1": 0.7})

    assert updated.metrics == {"loss": 0.5, "accuracy": 0.9, "f1": 0.7}
    assert RECORD.metrics == {"loss": 0.25, "accuracy": 0.9}
    assert updated.version_id != RECORD.version_id


def test_flonnx_version_is_unknown_when_flonnx_is_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    from flonnx.exchange import lineage

    def missing(name: str) -> str:
        raise lineage.importlib_metadata.PackageNotFoundError(name)

    installed = lineage.flonnx_version()
    monkeypatch.setattr(lineage.importlib_metadata, "version", missing)

    assert installed and installed != "unknown"
    assert lineage.flonnx_version() == "unknown"


def _cpuinfo(monkeypatch: pytest.MonkeyPatch, text: str | None) -> None:
    from flonnx.exchange import lineage

    def fake_open(*args: object, **kwargs: object) -> io.StringIO:
        if text is None:
            raise FileNotFoundError("/proc/cpuinfo")
        return io.StringIO(text)

    monkeypatch.setattr(lineage, "open", fake_open, raising=False)


def test_cpu_model_is_the_first_non_empty_model_name_on_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from flonnx.exchange.lineage import cpu_model

    _cpuinfo(monkeypatch, "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 85\n"
                          "model name\t:   \nmodel name\t: Intel(R)  Xeon(R)\tCPU @ 2.20GHz\n"
                          "model name\t: Other\n")

    assert cpu_model() == "Intel(R) Xeon(R) CPU @ 2.20GHz"


def test_cpu_model_is_cut_to_200_characters(monkeypatch: pytest.MonkeyPatch) -> None:
    from flonnx.exchange import lineage

    _cpuinfo(monkeypatch, "model name : " + "x" * 300 + "\n")
    from_cpuinfo = lineage.cpu_model()
    _cpuinfo(monkeypatch, None)
    monkeypatch.setattr(lineage.platform, "processor", lambda: "y" * 300)

    assert from_cpuinfo == "x" * 200
    assert lineage.cpu_model() == "y" * 200


@pytest.mark.parametrize(("cpuinfo", "processor", "machine", "expected"), [
    (None, " Some   CPU ", "x86_64", "Some CPU"),  # no /proc/cpuinfo: what platform knows
    ("processor : 0\n", "", "aarch64", "aarch64"),  # no model name in it
    (None, "", "", "unknown"),
])
def test_cpu_model_falls_back_to_platform(
    monkeypatch: pytest.MonkeyPatch, cpuinfo: str | None, processor: str, machine: str, expected: str,
) -> None:
    from flonnx.exchange import lineage

    _cpuinfo(monkeypatch, cpuinfo)
    monkeypatch.setattr(lineage.platform, "processor", lambda: processor)
    monkeypatch.setattr(lineage.platform, "machine", lambda: machine)

    assert lineage.cpu_model() == expected


@pytest.mark.parametrize(("baseline", "dispatch", "features", "expected"), [
    (["SSE", "SSE2"], ["AVX2", "AVX512F", "FMA3"], {"AVX2": True, "AVX512F": False, "FMA3": True},
     "SSE SSE2 AVX2 FMA3"),
    ([], ["AVX2"], {"AVX2": True}, "AVX2"),
    ([], ["AVX2"], {"AVX2": False}, "unknown"),
])
def test_cpu_simd_lists_the_baseline_then_the_dispatch_targets_the_cpu_has(
    monkeypatch: pytest.MonkeyPatch, baseline: list[str], dispatch: list[str], features: dict[str, bool],
    expected: str,
) -> None:
    from numpy._core import _multiarray_umath as umath

    from flonnx.exchange.lineage import cpu_simd

    monkeypatch.setattr(umath, "__cpu_baseline__", baseline)
    monkeypatch.setattr(umath, "__cpu_dispatch__", dispatch)
    monkeypatch.setattr(umath, "__cpu_features__", features)

    assert cpu_simd() == expected


def test_environment_names_python_the_platform_and_each_installed_package() -> None:
    import platform
    from importlib import metadata

    from flonnx.exchange.lineage import environment

    env = environment(["flonnx-test-no-such-package", "numpy", "onnx"])
    default = environment()

    assert env["python"] == "{}.{}.{}".format(*sys.version_info[:3])
    assert env["platform"] == f"{platform.system()}-{platform.machine()}"
    assert set(env) == {"python", "platform", "cpu", "cpu-simd", "numpy", "onnx"}  # the missing one skipped
    assert env["numpy"] == metadata.version("numpy") and env["onnx"] == metadata.version("onnx")
    assert default["numpy"] == env["numpy"] and default["flwr"] == metadata.version("flwr")


def test_a_record_cannot_be_changed_once_made() -> None:
    """Its id is computed from its fields: a record edited in place would no longer match its id."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        RECORD.round = 4  # type: ignore[misc]
    assert RECORD.round == 3


def test_cpu_simd_is_unknown_when_numpy_no_longer_has_the_module(monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy._core

    from flonnx.exchange.lineage import cpu_simd

    monkeypatch.delattr(numpy._core, "_multiarray_umath")
    monkeypatch.setitem(sys.modules, "numpy._core._multiarray_umath", None)  # an import of it fails

    assert cpu_simd() == "unknown"
