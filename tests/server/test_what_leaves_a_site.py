"""No row of a site's data crosses the wire, and the site's audit log holds exactly what did.

A real in-process federation of three sites (:class:`Federation` on a :class:`LocalGrid`), each
naming its own CSV with numeric and categorical columns and text labels, with federated
standardisation, two rounds and site evaluation of the final model. The grid records every message
in both directions; every node also keeps its audit log (node config ``audit``). Then:

- no row appears in any message's serialised content (Flower's own protobuf serialisation):
  neither as CSV text (the file's line, or its feature cells joined by commas) nor as numbers (the
  row's raw numeric features, its encoded feature vector as the node trains on it, before and after
  standardisation, packed little-endian as float32 and float64, whole rows);
- every node's audit directory holds one record per reply it sent, equal to what the grid saw.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.common.serde import message_from_proto, message_to_proto

from flonnx.client.app import app as client_app
from flonnx.client.audit import read_array
from flonnx.exchange.lineage import VersionKind
from flonnx.exchange.preprocess import METADATA_KEY, Preprocessing
from flonnx.exchange.registry import Registry
from flonnx.exchange.sources import node_source
from flonnx.exchange.spec import parse_spec
from flonnx.server.federation import Federation
from flonnx.server.progress import Reporter
from flonnx.server.settings import Settings
from tests.server.local_grid import LocalGrid

ROUNDS = 2
HEADER = ("age", "bmi", "sex", "smoker", "outcome")
SITES = {  # the values each site holds of its categorical columns
    "site-a": (("F", "M"), ("no", "yes")),
    "site-b": (("F", "X"), ("no", "former")),
    "site-c": (("M",), ("yes",)),
}
WIDTH = 2 + (3 + 1) + (3 + 1)  # age, bmi, sex one-hot + <other>, smoker one-hot + <other>
CLASSES = "benign,malignant"


def _write(path: Path, seed: int, sexes: tuple[str, ...], smokers: tuple[str, ...]) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(40):
        age, bmi = rng.normal(55, 12), rng.normal(26, 4)
        sex, smoker = sexes[i % len(sexes)], smokers[(i // 2) % len(smokers)]
        label = "malignant" if age + (9 if smoker == "yes" else 0) > 58 else "benign"
        rows.append([f"{age:.3f}", f"{bmi:.3f}", sex, smoker, label])
    path.write_text(",".join(HEADER) + "\n" + "".join(",".join(r) + "\n" for r in rows))
    return rows


class CapturingGrid(LocalGrid):
    """A LocalGrid that keeps every (message, reply) pair it carried."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.exchanged: list[tuple[Message, Message]] = []

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        messages = list(messages)
        replies = super().send_and_receive(messages, timeout=timeout)
        # a copy of what crossed the wire: the server releases the arrays it has folded in
        self.exchanged += [(m, message_from_proto(message_to_proto(r)))
                           for m, r in zip(messages, replies, strict=True)]
        return replies


@dataclass(frozen=True)
class Site:
    key: str
    node_id: int
    data: Path
    audit: Path
    config: dict[str, Any]
    rows: list[list[str]]


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("what-leaves")
    sites = []
    for i, (key, (sexes, smokers)) in enumerate(SITES.items()):
        data = folder / f"{key}.csv"
        rows = _write(data, i, sexes, smokers)
        config = {"client-id": key, "framework": ("torch", "sklearn", "torch")[i], "data": str(data),
                  "label": "outcome", "categorical": "sex,smoker", "classes": CLASSES,
                  "audit": str(folder / "audit" / key)}
        sites.append(Site(key, 1000 + i, data, folder / "audit" / key, config, rows))
    spec = parse_spec({"model": f"mlp-{WIDTH}-8-2", "task": "binary", "clients": 3, "evaluate": "none",
                       "rounds": ROUNDS, "min-train-nodes": 3, "standardize": True,
                       "evaluate-sites": True})
    settings = Settings(spec=spec, registry=str(folder / "registry"), min_available_nodes=3)
    grid = CapturingGrid(client_app, 3, node_configs=[s.config for s in sites])

    run_id = Federation(grid, settings, Reporter()).run()  # type: ignore[arg-type]

    with Registry(folder / "registry") as reg:
        records = [v.record for v in reg.versions(run_id)]
        run = reg.run(run_id)
        definition = reg.get_definition(next(r.definition_id for r in records
                                             if r.kind is VersionKind.AGGREGATE))
    return {"sites": sites, "exchanged": grid.exchanged, "records": records, "run": run,
            "preprocessing": Preprocessing.from_json(definition.metadata[METADATA_KEY])}


def _row_patterns(site: Site, pre: Preprocessing) -> list[tuple[str, bytes]]:
    """Every form of every row of ``site`` that must not cross the wire, with a label for each."""
    source = node_source({k: v for k, v in site.config.items() if k != "audit"}, None, "binary")
    encoded, _ = source.load(pre.vocabularies)
    standardised = pre.apply(encoded)
    assert encoded.shape == (len(site.rows), WIDTH)
    patterns: list[tuple[str, bytes]] = []
    for i, row in enumerate(site.rows):
        line = ",".join(row)
        patterns += [(f"{site.key} row {i + 1} as CSV text", line.encode()),
                     (f"{site.key} row {i + 1} feature cells", ",".join(row[:4]).encode())]
        vectors = {"raw numbers": np.array([float(row[0]), float(row[1])]),
                   "encoded": encoded[i], "standardised": standardised[i]}
        for name, vector in vectors.items():
            for dtype in ("<f4", "<f8"):
                patterns.append((f"{site.key} row {i + 1} {name} as {dtype}",
                                 np.asarray(vector, dtype=dtype).tobytes()))
    return patterns


def _leaks(blob: bytes, patterns: list[tuple[str, bytes]]) -> list[str]:
    return [label for label, pattern in patterns if pattern in blob]


def _serialised(message: Message) -> bytes:
    return message_to_proto(message).SerializeToString()  # type: ignore[no-any-return]


def test_the_federation_ran_with_every_site_and_evaluated_them(federation: dict[str, Any]) -> None:
    aggregates = [r for r in federation["records"] if r.kind is VersionKind.AGGREGATE]

    assert [a.round for a in aggregates] == list(range(1, ROUNDS + 1))
    assert not [r for r in federation["records"] if r.kind is VersionKind.REJECTED]
    assert sorted(federation["run"].config["site_evaluation"]["sites"]) == sorted(SITES)
    assert dict(federation["preprocessing"].vocabularies) == {
        "sex": ("F", "M", "X"), "smoker": ("former", "no", "yes")}


def test_no_row_of_any_site_crosses_the_wire_in_either_direction(federation: dict[str, Any]) -> None:
    patterns = [p for site in federation["sites"] for p in _row_patterns(site, federation["preprocessing"])]
    exchanged = federation["exchanged"]

    leaks = {f"{m.metadata.message_type} to {m.metadata.dst_node_id}": found
             for message, reply in exchanged for m in (message, reply)
             if (found := _leaks(_serialised(m), patterns))}

    # both directions of handshakes (twice: categorical values first), rounds and site evaluation
    assert len(exchanged) == 3 * 2 + 3 * ROUNDS + 3
    assert len(patterns) == 3 * 40 * (2 + 3 * 2)
    assert leaks == {}


def test_no_row_is_in_any_audit_file(federation: dict[str, Any]) -> None:
    patterns = [p for site in federation["sites"] for p in _row_patterns(site, federation["preprocessing"])]
    files = [f for site in federation["sites"] for f in sorted(site.audit.iterdir())]

    assert files
    assert {f.name: found for f in files if (found := _leaks(f.read_bytes(), patterns))} == {}


def test_the_row_detector_finds_a_row_wherever_it_is_put(federation: dict[str, Any]) -> None:
    site = federation["sites"][1]
    pre = federation["preprocessing"]
    encoded, _ = node_source({k: v for k, v in site.config.items() if k != "audit"}, None,
                             "binary").load(pre.vocabularies)
    smuggled = Message(RecordDict({
        "weights": ArrayRecord({"w": Array(np.concatenate([[0.5], encoded[6], [0.25]]).astype(np.float32))}),
        "note": ConfigRecord({"text": f"x{','.join(site.rows[11])}y"}),
    }), dst_node_id=1, message_type="train")

    found = _leaks(_serialised(smuggled), _row_patterns(site, pre))

    # the encoded vector starts with the raw numbers (age, bmi): both forms are found
    assert found == [f"{site.key} row 7 raw numbers as <f4", f"{site.key} row 7 encoded as <f4",
                     f"{site.key} row 12 as CSV text", f"{site.key} row 12 feature cells"]


def _json_value(value: Any) -> Any:
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode()}
    return value


def test_each_site_s_audit_log_holds_exactly_the_replies_it_sent(federation: dict[str, Any]) -> None:
    for site in federation["sites"]:
        sent = [(m, r) for m, r in federation["exchanged"] if m.metadata.dst_node_id == site.node_id]
        files = sorted(site.audit.glob("*.json"))

        assert [p.name for p in site.audit.iterdir() if p.name.startswith(".")] == []  # no temp files
        assert len(files) == len(sent) == 2 + ROUNDS + 1
        for path, (message, reply) in zip(files, sent, strict=True):
            record = json.loads(path.read_text())
            configs = {n: {k: _json_value(v) for k, v in r.items()}
                       for n, r in reply.content.items() if isinstance(r, ConfigRecord)}
            metrics = {n: dict(r) for n, r in reply.content.items() if isinstance(r, MetricRecord)}
            arrays = [(n, k, a) for n, r in reply.content.items() if isinstance(r, ArrayRecord)
                      for k, a in r.items()]

            assert record["audit"] == 1 and record["error"] is None
            assert record["message"]["type"] == reply.metadata.message_type == message.metadata.message_type
            assert record["message"]["reply_to_message_id"] == message.metadata.message_id
            assert record["message"]["src_node_id"] == site.node_id
            assert record["configs"] == configs
            assert record["metrics"] == metrics
            assert [(e["record"], e["name"], e["dtype"], e["shape"]) for e in record["arrays"]] == [
                (n, k, a.dtype, list(a.shape)) for n, k, a in arrays]
            for entry, (_, _, array) in zip(record["arrays"], arrays, strict=True):
                assert read_array(site.audit, entry) == bytes(array.data)
                np.testing.assert_array_equal(np.load(site.audit / entry["file"]), array.numpy())
        kinds = [json.loads(p.read_text())["message"]["type"] for p in files]
        assert kinds == ["query", "query", *["train"] * ROUNDS, "evaluate"]
