"""Signed exports: what an exported ONNX file carries so that a device can check it before loading.

:func:`signature_card` adds to an export's ``metadata_props`` (beside the model card of
:mod:`flonnx.exchange.export`):

``flonnx.definition``
    the version's canonical definition (base64), which the file's graph is served from;
``flonnx.lineage_chain``
    the version id, then each global version (aggregate, back to the initial) it descends from;
``flonnx.signature``, ``flonnx.signing_key``
    the coordinator's signature of the version id and its key's fingerprint (signed runs only).

:func:`verify_model_file` checks a file against a public key without a registry: the embedded
record re-hashes to ``flonnx.version_id``, the embedded definition to the record's definition id, the
file's weights to its weights id, the file's graph is exactly what that definition and those weights
serve, and the signature of the version id verifies with the key. The signature covers the id, the id
the record, and the record the definition and weights: flipping one weight byte or swapping a
signature is found.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path

import onnx
from onnx import numpy_helper

from flonnx.exchange.definition import MAX_MODEL_BYTES, Definition, load_model_bytes
from flonnx.exchange.errors import FlonnxError, LineageError
from flonnx.exchange.evaluation import served_model
from flonnx.exchange.hashing import sha256_hex, weights_id
from flonnx.exchange.lineage import VersionKind, VersionRecord
from flonnx.exchange.registry import Registry, recorded_key
from flonnx.exchange.signing import PublicKey

__all__ = ["DEFINITION_KEY", "LINEAGE_CHAIN_KEY", "SIGNATURE_KEY", "SIGNING_KEY_KEY", "embedded_record",
           "lineage_chain", "signature_card", "verify_model_file"]

DEFINITION_KEY = "flonnx.definition"
LINEAGE_CHAIN_KEY = "flonnx.lineage_chain"
SIGNATURE_KEY = "flonnx.signature"
SIGNING_KEY_KEY = "flonnx.signing_key"


def lineage_chain(registry: Registry, version_id: str) -> list[str]:
    """``version_id``, then the global versions it descends from, back to the run's initial one."""
    chain = [version_id]
    record = registry.record(version_id)
    while record.kind is not VersionKind.INITIAL and record.parents:
        parent = record.parents[0]
        record = registry.record(parent)
        if record.kind is VersionKind.CLIENT_UPDATE and record.parents:  # an update of a global one
            parent = record.parents[0]
            record = registry.record(parent)
        chain.append(parent)
    return chain


def signature_card(registry: Registry, version_id: str) -> dict[str, str]:
    """The signed-export keys of ``version_id`` (see the module); no signature for an unsigned run."""
    record = registry.record(version_id)
    card = {
        DEFINITION_KEY: base64.b64encode(registry.blobs.get(record.definition_id)).decode("ascii"),
        LINEAGE_CHAIN_KEY: ",".join(lineage_chain(registry, version_id)),
    }
    key = recorded_key(registry.run(registry.stored_version(version_id).run_id).config)
    signature = None if key is None else registry.signatures(version_id).get(key.fingerprint)
    if key is not None and signature is not None:
        card.update({SIGNATURE_KEY: signature, SIGNING_KEY_KEY: key.fingerprint})
    return card


def verify_model_file(path: str | Path, key: PublicKey) -> list[str]:
    """Every problem of an exported file against ``key`` (``[]``: verified); nothing is run."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_MODEL_BYTES:
            return [f"{path}: {size} bytes; the limit is {MAX_MODEL_BYTES}"]
        model = load_model_bytes(path.read_bytes())
    except (OSError, FlonnxError) as exc:
        return [f"{path}: {exc}"]
    card = {p.key: p.value for p in model.metadata_props}
    missing = [k for k in ("flonnx.version_id", "flonnx.lineage", DEFINITION_KEY, SIGNATURE_KEY,
                           SIGNING_KEY_KEY) if k not in card]
    if missing:
        return [f"{path}: not a signed flonnx export: no {', '.join(missing)} in its metadata"]
    version_id = card["flonnx.version_id"]
    problems = _signature_problems(version_id, card, key)
    try:
        record = embedded_record(card["flonnx.lineage"])
    except FlonnxError as exc:
        return [*problems, f"the embedded record is unreadable: {exc}"]
    actual = sha256_hex(card["flonnx.lineage"].encode("utf-8"))
    if actual != version_id:
        problems.append(f"the embedded record re-hashes to {actual[:12]}, not the version id "
                        f"{version_id[:12]}")
    chain = card.get(LINEAGE_CHAIN_KEY, "").split(",")
    if chain[0] != version_id:
        problems.append(f"the lineage chain starts at {chain[0][:12]}, not at version {version_id[:12]}")
    for name in ("definition_id", "weights_id"):
        if card.get(f"flonnx.{name}", getattr(record, name)) != getattr(record, name):
            problems.append(f"flonnx.{name} {card[f'flonnx.{name}'][:12]} is not the record's "
                            f"{getattr(record, name)[:12]}")
    return problems + _content_problems(model, card[DEFINITION_KEY], record)


def embedded_record(text: str) -> VersionRecord:
    """The version record an export carries as JSON (untrusted: the file came from elsewhere).

    Raises:
        LineageError: not JSON, nested too deeply, or not a version record.
    """
    try:
        return VersionRecord.from_dict(json.loads(text))
    except ValueError as exc:
        raise LineageError(f"not JSON: {exc}") from exc
    except RecursionError:
        raise LineageError("not a version record: JSON nested too deeply") from None


def _signature_problems(version_id: str, card: dict[str, str], key: PublicKey) -> list[str]:
    if card[SIGNING_KEY_KEY] != key.fingerprint:
        return [f"version {version_id[:12]} is signed by key {card[SIGNING_KEY_KEY][:16]}, not by "
                f"the given key {key.fingerprint[:16]}"]
    if not key.verifies(version_id, card[SIGNATURE_KEY]):
        return [f"version {version_id[:12]}: bad signature: it does not verify with key "
                f"{key.fingerprint[:16]}"]
    return []


def _content_problems(model: onnx.ModelProto, encoded: str, record: VersionRecord) -> list[str]:
    """The file's graph and weights against the definition and weights the record names."""
    try:
        definition = Definition.from_bytes(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError, FlonnxError) as exc:
        return [f"the embedded definition is unreadable: {exc}"]
    problems = []
    if definition.id != record.definition_id:
        problems.append(f"the embedded definition re-hashes to {definition.id[:12]}, not the "
                        f"record's definition id {record.definition_id[:12]}")
    initializers = {t.name: t for t in model.graph.initializer}
    absent = sorted(set(definition.specs) - set(initializers))
    if absent:
        return [*problems, f"the file has no weights {', '.join(absent)} of its definition"]
    weights = {name: numpy_helper.to_array(initializers[name]) for name in definition.specs}
    actual = weights_id(weights)
    if actual != record.weights_id:
        problems.append(f"the file's weights re-hash to {actual[:12]}, not the record's weights id "
                        f"{record.weights_id[:12]}")
    try:
        expected, expected_weights = Definition.from_model(served_model(definition, weights))
        found, found_weights = Definition.from_model(model)
    except FlonnxError as exc:
        return [*problems, f"the file's graph cannot be rebuilt from its definition: {exc}"]
    if found.id != expected.id or weights_id(found_weights) != weights_id(expected_weights):
        problems.append(f"the file's graph is not what definition {definition.id[:12]} and weights "
                        f"{actual[:12]} serve")
    return problems
