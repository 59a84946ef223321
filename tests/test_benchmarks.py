"""The benchmark harness (benchmarks/, issue #10) still runs and reports: B3 at a tiny size.

No timing is asserted: only that the JSON has its schema and the regenerated doc shows the numbers.
"""

from __future__ import annotations

import json
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


def test_the_hash_count_finds_every_update_hashed_on_both_sides(result: tuple[dict, Path]) -> None:
    count = result[0]["results"]["hash_count"]

    assert count["updates"] == count["clients"] * count["rounds"]
    assert count["hashes_per_update_client_side"] >= 1
    assert count["hashes_per_update_server_side"] >= 1
    assert any(k.startswith("server: ") for k in count["callers"])


def test_the_regenerated_doc_shows_the_machine_and_the_numbers(result: tuple[dict, Path]) -> None:
    doc, folder = result

    text = render(folder)

    size = doc["results"]["sizes"][0]
    assert doc["machine"]["cpu"] in text
    assert "## B3 exchange throughput" in text and "`pytest`" in text
    op = size["ops"]["weights_id"]
    assert f"{op['gb_per_s']:.2f} ({op['pct_of_raw']:.0f} %)" in text
    assert f"client side **{doc['results']['hash_count']['hashes_per_update_client_side']:g}**" in text
