"""The site audit log: one faithful, atomically written record per reply (and per failure)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from flonnx.client.app import app as client_app
from flonnx.client.audit import audit_mod, read_array
from flonnx.exchange import wire
from flonnx.exchange.errors import FlonnxError
from flonnx.exchange.hashing import weights_id


@pytest.fixture(autouse=True)
def _flower_identity():  # type: ignore[no-untyped-def]
    previous = TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = previous


def _context(**node_config: object) -> Context:
    return Context(run_id=1, node_id=7, node_config=node_config,  # type: ignore[arg-type]
                   state=RecordDict(), run_config={})


def _request() -> Message:
    return Message(RecordDict({"config": ConfigRecord({"x": 1})}), dst_node_id=7, message_type="train")


def _reply_with(content: RecordDict):  # type: ignore[no-untyped-def]
    def handler(msg: Message, context: Context) -> Message:
        return Message(content, reply_to=msg)
    return handler


def test_a_reply_is_recorded_losslessly(tmp_path: Path) -> None:
    weights = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    content = RecordDict({
        "arrays": ArrayRecord({"layer/w": Array(weights), "b": Array(np.array([1, 2], np.int64))}),
        "metrics": MetricRecord({"loss": float("nan"), "n": 3, "curve": [0.5, float("-inf")]}),
        "cfg": ConfigRecord({"blob": b"\x00\xff", "name": "é", "flags": [True, False], "big": 2**40}),
    })
    request = _request()

    reply = audit_mod(request, _context(audit=str(tmp_path / "log")), _reply_with(content))

    (path,) = sorted((tmp_path / "log").glob("*.json"))
    record = json.loads(path.read_text())
    assert reply.content is content
    assert path.name.split("-")[1] == "train"
    assert record["metrics"] == {"metrics": {"loss": {"float": "nan"}, "n": 3,
                                             "curve": [0.5, {"float": "-inf"}]}}
    assert record["configs"] == {"cfg": {"blob": {"base64": "AP8="}, "name": "é", "flags": [True, False],
                                         "big": 2**40}}
    assert record["message"]["reply_to_message_id"] == request.metadata.message_id
    assert [(a["record"], a["name"], a["dtype"], a["shape"]) for a in record["arrays"]] == [
        ("arrays", "layer/w", "float32", [2, 3]), ("arrays", "b", "int64", [2])]
    np.testing.assert_array_equal(np.load(tmp_path / "log" / record["arrays"][0]["file"]), weights)
    assert read_array(tmp_path / "log", record["arrays"][1]) == bytes(content["arrays"]["b"].data)
    assert sorted(p.name for p in (tmp_path / "log").iterdir() if p.name.startswith(".")) == []


def test_without_an_audit_directory_nothing_is_written(tmp_path: Path) -> None:
    reply = audit_mod(_request(), _context(), _reply_with(RecordDict()))

    assert not reply.has_error()
    assert list(tmp_path.iterdir()) == []


def test_a_failing_handler_is_recorded_with_the_error_flower_sends(tmp_path: Path) -> None:
    def crash(msg: Message, context: Context) -> Message:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        audit_mod(_request(), _context(audit=str(tmp_path)), crash)

    (path,) = tmp_path.glob("*.json")
    record = json.loads(path.read_text())
    assert record["error"] == {"code": 2, "reason": "<class 'RuntimeError'>:<'boom'>"}
    assert record["message"]["src_node_id"] == 7
    assert (record["configs"], record["metrics"], record["arrays"]) == ({}, {}, [])


def test_a_reply_is_not_sent_when_its_audit_record_cannot_be_written(tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")

    with pytest.raises(FlonnxError, match=r"^site audit: cannot write to .*a-file: .*; the reply was "
                                          r"not sent$"):
        audit_mod(_request(), _context(audit=str(blocked)), _reply_with(RecordDict()))


def test_a_tampered_audit_array_is_detected(tmp_path: Path) -> None:
    content = RecordDict({"arrays": ArrayRecord({"w": Array(np.ones(3, np.float32))})})
    audit_mod(_request(), _context(audit=str(tmp_path)), _reply_with(content))
    (path,) = tmp_path.glob("*.json")
    entry = json.loads(path.read_text())["arrays"][0]
    (tmp_path / entry["file"]).write_bytes(b"changed")

    with pytest.raises(FlonnxError, match="does not hash to its recorded SHA-256"):
        read_array(tmp_path, entry)


def test_the_client_app_audits_its_train_reply_after_client_side_clipping(
    tmp_path: Path, mlp_model,  # type: ignore[no-untyped-def]
) -> None:
    definition, weights = mlp_model
    lineage = ConfigRecord({
        wire.LINEAGE_RUN: "run", wire.LINEAGE_ROUND: 1, wire.LINEAGE_VERSION: "v" * 64,
        wire.LINEAGE_DEFINITION_ID: definition.id, wire.LINEAGE_WEIGHTS_ID: weights_id(weights),
        wire.LINEAGE_DEFINITION: definition.canonical_bytes, wire.LINEAGE_SEED: 3,
    })
    message = Message(RecordDict({
        wire.ARRAYS: ArrayRecord({k: Array(v) for k, v in weights.items()}),
        wire.CONFIG: ConfigRecord({"local-epochs": 1, wire.CONFIG_DP_CLIPPING: "fixed",
                                   "clipping_norm": 0.01}),
        wire.LINEAGE: lineage,
    }), dst_node_id=7, message_type="train")
    context = _context(**{"partition-id": 0, "num-partitions": 6, "framework": "torch",
                          "audit": str(tmp_path)})

    reply = client_app(message, context)

    (path,) = tmp_path.glob("*.json")
    record = json.loads(path.read_text())
    sent = {e["name"]: read_array(tmp_path, e) for e in record["arrays"]}
    assert sent == {k: bytes(a.data) for k, a in reply.content[wire.ARRAYS].items()}
    assert record["configs"][wire.LINEAGE][wire.REPLY_WEIGHTS_ID] == weights_id(
        {k: a.numpy() for k, a in reply.content[wire.ARRAYS].items()})
