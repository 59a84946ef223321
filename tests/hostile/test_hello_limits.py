"""The bounds on what a node reports at the handshake, at the limit and one past it.

A hello reply is untrusted: its categorical values and feature names are JSON that the coordinator
bounds in count and length before keeping anything (``server/federation.py``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from flonnx.exchange.errors import FlonnxError
from flonnx.server.federation import (
    MAX_CATEGORY_COLUMNS,
    MAX_CATEGORY_VALUES,
    MAX_FEATURE_NAMES,
    MAX_HELLO_NAME,
    _categories,
    _names,
)

pytestmark = pytest.mark.reliability

DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
NAME = "n" * MAX_HELLO_NAME


def test_categories_at_every_limit_are_kept_and_one_past_any_is_refused() -> None:
    at_limit = {f"c{i}": ["v"] for i in range(MAX_CATEGORY_COLUMNS - 1)}
    at_limit["long"] = [NAME] * MAX_CATEGORY_VALUES
    kept = _categories(json.dumps(at_limit))
    assert len(kept) == MAX_CATEGORY_COLUMNS and kept["long"] == [NAME] * MAX_CATEGORY_VALUES
    refused = [
        {**at_limit, "one-more": ["v"]},  # columns
        {**at_limit, "long": [NAME] * (MAX_CATEGORY_VALUES + 1)},  # values of a column
        {**at_limit, "long": [NAME + "n"]},  # characters of a value
        {"c": [1]}, {"c": "v"}, ["c"],  # types
    ]
    for data in refused:
        with pytest.raises(FlonnxError, match=rf"^categories must map at most {MAX_CATEGORY_COLUMNS} "):
            _categories(json.dumps(data))


def test_a_long_column_name_is_cut_to_the_limit_not_kept_whole() -> None:
    kept = _categories(json.dumps({NAME + "tail": ["a"], "b": []}))
    assert list(kept) == [NAME, "b"]


def test_feature_names_at_the_limit_are_kept_and_one_past_is_refused() -> None:
    assert _names(json.dumps([NAME] * 3)) == [NAME] * 3
    assert len(_names(json.dumps(["f"] * MAX_FEATURE_NAMES))) == MAX_FEATURE_NAMES
    for data in (["f"] * (MAX_FEATURE_NAMES + 1), [NAME + "n"], [1], {"f": 1}):
        with pytest.raises(FlonnxError, match="^feature names must be a list of short strings$"):
            _names(json.dumps(data))


def test_the_documented_hello_limits_are_the_constants() -> None:
    rows = [line for line in DOC.read_text(encoding="utf-8").splitlines() if "federation.MAX_" in line]
    assert len(rows) == 2
    categories, names = rows
    numbers = [int(n.replace(",", "")) for n in re.findall(r"\b\d[\d,]*\b", categories.split("|")[3])]
    assert numbers == [MAX_CATEGORY_COLUMNS, MAX_CATEGORY_VALUES, MAX_HELLO_NAME]
    numbers = [int(n.replace(",", "")) for n in re.findall(r"\b\d[\d,]*\b", names.split("|")[3])]
    assert numbers == [MAX_FEATURE_NAMES, MAX_HELLO_NAME]
