"""The site audit log: a copy of every reply this node's ClientApp sends, one file per message.

A site turns it on in its node config, ``audit="/var/log/flonnx/outgoing"``. :func:`audit_mod` wraps
the whole ClientApp (handshake, training, evaluation: every handler and every other mod), so what it
writes is exactly the reply Flower then sends. Per reply, in the audit directory:

- ``<time>-<type>-<tag>.json``: ``audit`` (format version 1), ``written_at`` (UTC),
  ``message`` (Flower metadata: type, run id, source and destination node, the id of the message
  it answers, group id, creation time, ttl), ``error`` (``null``, or the code and reason Flower sends
  when the handler raised or answered with an error), ``configs`` and ``metrics`` (each record's
  entries as JSON: bytes as ``{"base64": …}``, a non-finite float as ``{"float": "nan"}``), and
  ``arrays``: per array its record, name, dtype, shape, Flower serialisation type, byte count,
  SHA-256 and ``file``;
- ``<same stem>.<i>.npy``: array ``i``'s bytes exactly as they travel (Flower serialises a numpy
  array as an ``.npy`` file: ``numpy.load`` reads it, ``sha256sum`` gives the recorded hash).

Every file is written to a hidden temporary name, flushed to disk and renamed, and the JSON file
last, so a listed ``.json`` always has all its arrays and nothing half-written ever carries a final
name. If the log cannot be written, the reply is not sent (the node fails the message instead).
What is not here: Flower's own traffic (node registration, heartbeats, pulling messages), which
carries no data of the site.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord
from flwr.clientapp.typing import ClientAppCallable
from flwr.common.constant import ErrorCode

from flonnx.exchange.blobstore import fsync_dir
from flonnx.exchange.errors import FlonnxError

__all__ = ["AUDIT_FORMAT", "audit_mod", "read_array", "write_audit"]

AUDIT_FORMAT = 1
_TYPE = re.compile(r"[^a-z0-9_.]+")


def audit_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Write the reply to the node's audit directory (node config ``audit``), then pass it on."""
    folder = context.node_config.get("audit")
    if not folder:
        return call_next(msg, context)
    try:
        reply = call_next(msg, context)
    except Exception as exc:
        # Flower answers with an error whose reason is the exception's type and text: that leaves too
        reason = str(type(exc)) + ":<'" + str(exc) + "'>"
        write_audit(Path(str(folder)), msg.metadata.message_type, msg,
                    error={"code": ErrorCode.CLIENT_APP_RAISED_EXCEPTION, "reason": reason})
        raise
    write_audit(Path(str(folder)), reply.metadata.message_type, reply)
    return reply


def write_audit(folder: Path, message_type: str, message: Message,
                error: Mapping[str, Any] | None = None) -> Path:
    """Write one audit record of ``message`` (a reply; or the request, with the ``error`` sent)."""
    kind = _TYPE.sub("-", message_type.lower()) or "message"
    stem = f"{time.time_ns():020d}-{kind}-{secrets.token_hex(4)}"
    is_reply = error is None
    record: dict[str, Any] = {
        "audit": AUDIT_FORMAT,
        "written_at": datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "message": _metadata(message, message_type, is_reply),
        "error": dict(error) if error is not None else None,
        "configs": {}, "metrics": {}, "arrays": [],
    }
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if is_reply and message.has_error():
            record["error"] = {"code": message.error.code, "reason": message.error.reason}
        elif is_reply:
            for name, value in message.content.items():
                if isinstance(value, ArrayRecord):
                    for array_name, array in value.items():
                        data = bytes(array.data)
                        suffix = "npy" if array.stype == "numpy.ndarray" else "bin"
                        file = f"{stem}.{len(record['arrays'])}.{suffix}"
                        _write_atomic(folder / file, data)
                        record["arrays"].append({
                            "record": name, "name": array_name, "dtype": array.dtype,
                            "shape": list(array.shape), "stype": array.stype, "bytes": len(data),
                            "sha256": hashlib.sha256(data).hexdigest(), "file": file,
                        })
                elif isinstance(value, ConfigRecord | MetricRecord):
                    target = record["configs"] if isinstance(value, ConfigRecord) else record["metrics"]
                    target[name] = {str(k): _json_value(v) for k, v in value.items()}
        text = json.dumps(record, indent=1, sort_keys=True, ensure_ascii=False, allow_nan=False)
        path = folder / f"{stem}.json"
        _write_atomic(path, text.encode("utf-8") + b"\n")
        fsync_dir(folder)
    except OSError as exc:
        raise FlonnxError(f"site audit: cannot write to {folder}: {exc.strerror or exc}; the reply "
                          "was not sent") from None
    return path


def read_array(folder: Path, entry: Mapping[str, Any]) -> bytes:
    """The bytes an audit record's array entry refers to, checked against its SHA-256."""
    data = (folder / str(entry["file"])).read_bytes()
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise FlonnxError(f"audit file {entry['file']} does not hash to its recorded SHA-256")
    return data


def _metadata(message: Message, message_type: str, is_reply: bool) -> dict[str, Any]:
    meta = message.metadata
    out: dict[str, Any] = {"type": message_type, "run_id": meta.run_id, "group_id": meta.group_id}
    if is_reply:
        out.update({"src_node_id": meta.src_node_id, "dst_node_id": meta.dst_node_id,
                    "reply_to_message_id": meta.reply_to_message_id,
                    "created_at": meta.created_at, "ttl": meta.ttl})
    else:  # the request that failed: the error reply answers it and goes back to its sender
        out.update({"src_node_id": meta.dst_node_id, "dst_node_id": meta.src_node_id,
                    "reply_to_message_id": meta.message_id})
    return out


def _json_value(value: Any) -> Any:
    """A record value as JSON, losslessly: bytes as base64, non-finite floats tagged, lists kept."""
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": repr(value)}
    return value


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)

