"""The benchmark harness (benchmarks/, issue #10) still runs and reports: B3 at a tiny size.

No timing is asserted: only that the JSON has its schema and the regenerated doc shows the numbers.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from benchmarks import b3_exchange
from benchmarks.common import SCHEMA, write_result
from benchmarks.run import render

OPS = {"raw_sha256", "weights_id", "encode_weights", "validate", "check", "flower_array_numpy",
       "flower_arrayrecord_from_numpy", "streamed_id_prototype"}


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    folder = tmp_path_factory.mktemp("bench")
    data = b3_exchange.run(quick=True, sizes=("16-32-8",), repeats=2)
    path = write_result("b3_exchange", "quick", data, "pytest", folder)
    return json.loads(path.read_text()), folder


def test_the_b3_result_has_its_schema(result: tuple[dict, Path]) -> None:
    doc, _ = result

    assert doc["schema"] == SCHEMA and doc["benchmark"] == "b3_exchange" and doc["command"] == "pytest"
    assert {"cpu", "cores", "ram_gib", "python", "packages"} <= set(doc["machine"])
    (size,) = doc["results"]["sizes"]
    assert size["parameters"] == 16 * 32 + 32 + 32 * 8 + 8 and size["tensors"] == 4
    assert set(size["ops"]) == OPS
    for op in size["ops"].values():
        assert len(op["seconds"]) == 2 and op["gb_per_s"] > 0 and op["pct_of_raw"] > 0
    assert {"weights_id", "validate"} == set(size["profile"])


def test_the_hash_count_finds_every_update_hashed_once_per_side(result: tuple[dict, Path]) -> None:
    count = result[0]["results"]["hash_count"]

    assert count["updates"] == count["clients"] * count["rounds"]
    assert count["hashes_per_update_client_side"] == 1
    assert count["hashes_per_update_server_side"] == 1
    assert any(k.startswith("server: ") for k in count["callers"])
    for side in ("client", "server"):  # every update, not only the median one: one hash per side each
        assert sum(n for k, n in count["callers"].items() if k.startswith(f"{side}: ")) == count["updates"]


def test_the_regenerated_doc_shows_the_machine_and_the_numbers(result: tuple[dict, Path]) -> None:
    doc, folder = result

    text = render(folder)

    size = doc["results"]["sizes"][0]
    assert doc["machine"]["cpu"] in text
    assert "## B3 exchange throughput" in text and "`pytest`" in text
    op = size["ops"]["weights_id"]
    assert f"{op['gb_per_s']:.2f} ({op['pct_of_raw']:.0f} %)" in text
    assert f"client side **{doc['results']['hash_count']['hashes_per_update_client_side']:g}**" in text


def test_client_side_clipping_still_hashes_each_update_once_per_side(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """dp_clipping_mod replaces the update and hashes it; the train handler does not hash it too."""
    import flonnx.client.app as client_app

    callers: list[str] = []
    real = client_app.weights_id

    def counted(weights):  # type: ignore[no-untyped-def]
        callers.append(sys._getframe(1).f_code.co_name)
        return real(weights)

    monkeypatch.setattr(client_app, "weights_id", counted)

    count = b3_exchange.count_hashes(overrides={
        "strategy": "dp-client-fixed",
        "strategy-config": {"noise-multiplier": "0.01", "clipping-norm": "5.0"}})

    assert count["updates"] == count["clients"] * count["rounds"]
    for side in ("client", "server"):
        assert sum(n for k, n in count["callers"].items() if k.startswith(f"{side}: ")) == count["updates"]
    assert any("client/mods.py" in k for k in count["callers"])
    assert callers and set(callers) == {"_received"}  # the app only checks the global weights it gets
