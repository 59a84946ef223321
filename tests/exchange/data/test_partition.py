from __future__ import annotations

import numpy as np
import pytest

from flonnx.exchange.data import Partitioning, Table, holdout, parse_partitioner, partition, partition_summary
from flonnx.exchange.errors import DataError

from .conftest import SECRET

pytest.importorskip("flwr_datasets", reason="partitioning uses Flower Datasets' partitioners")

LABELS = np.repeat(np.arange(5), 40)  # 200 rows, 5 balanced labels


def _check_cover(parts: list[np.ndarray], rows: int) -> None:
    every = np.concatenate(parts)
    assert len(every) == len(np.unique(every))
    assert every.min() >= 0 and every.max() < rows
    for part in parts:
        assert part.dtype == np.int64 and np.array_equal(part, np.sort(part))


def _identical(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_iid_partitions_are_even_shuffled_and_deterministic() -> None:
    parts = partition(LABELS, "iid", 6, 0)

    _check_cover(parts, 200)
    assert [len(p) for p in parts] == [34, 34, 33, 33, 33, 33]
    assert not np.array_equal(parts[0], np.arange(34))
    assert _identical(parts, partition(LABELS, "iid", 6, 0))
    assert not _identical(parts, partition(LABELS, "iid", 6, 1))


def test_dirichlet_skews_labels_and_is_deterministic() -> None:
    parts = partition(LABELS, "dirichlet:0.1", 4, 3)

    _check_cover(parts, 200)
    assert sum(len(p) for p in parts) == 200
    assert all(len(p) >= 10 for p in parts)
    shares = [np.bincount(LABELS[p], minlength=5) / len(p) for p in parts]
    assert max(float(s.max()) for s in shares) > 0.5  # an even mix would be 0.2 everywhere
    assert _identical(parts, partition(LABELS, "dirichlet:0.1", 4, 3))


def test_dirichlet_that_gives_up_says_why_and_what_to_do() -> None:
    with pytest.raises(DataError) as caught:
        partition(LABELS, "dirichlet:0.01", 10, 0, min_rows=15)

    assert str(caught.value) == (
        "dirichlet:0.01 could not give each of 10 partitions at least 15 rows (200 rows, 5 labels) "
        "in 11 tries; use fewer clients or a larger alpha"
    )


def test_shards_give_each_partition_k_label_sorted_shards() -> None:
    parts = partition(LABELS, "shards:2", 5, 0)

    _check_cover(parts, 200)
    assert [len(p) for p in parts] == [40] * 5
    assert all(len(np.unique(LABELS[p])) <= 2 for p in parts)
    assert _identical(parts, partition(LABELS, "shards:2", 5, 0))


def test_shards_refuse_too_few_rows() -> None:
    expected = r"^shards:3 with 4 partitions needs at least 12 rows; the data has 10$"
    with pytest.raises(DataError, match=expected):
        partition(np.arange(10), "shards:3", 4, 0)


def test_column_partitions_by_natural_id_in_sorted_order() -> None:
    sites = np.array(["site-b", "site-a", "site-c", "site-a"] * 5, dtype=object)
    table = Table.from_columns("t", {"site": sites, "label": np.arange(20) % 2})

    parts = partition(table, "column:site", None, 0)

    assert isinstance(parts, Partitioning)
    assert parts.ids == ("site-a", "site-b", "site-c")
    assert [p.tolist() for p in parts][1] == list(range(0, 20, 4))
    assert [len(p) for p in parts] == [10, 5, 5]
    expected = r"^column:site gives 3 partitions \(one per distinct value\); 4 were asked for$"
    with pytest.raises(DataError, match=expected):
        partition(table, "column:site", 4, 0)


def test_column_refuses_missing_ids_and_plain_labels() -> None:
    sites = np.array(["a", "", SECRET], dtype=object)
    table = Table.from_columns("t", {"site": sites, "label": np.arange(3)})

    with pytest.raises(DataError) as caught:
        partition(table, "column:site", None, 0)
    assert str(caught.value) == "column 'site': 1 missing value (first at row 2); every row needs an id"
    with pytest.raises(DataError, match=r"^column:site partitioning needs a table, not labels$"):
        partition(LABELS, "column:site", None, 0)


def test_partitions_a_table_by_its_label_or_by_given_labels() -> None:
    table = Table.from_columns("t", {"x": np.zeros(200), "y": LABELS.astype(str).astype(object)})

    by_column = partition(table, "shards:1", 5, 0, label="y")
    by_labels = partition(table, "shards:1", 5, 0, labels=LABELS)

    assert all(len(np.unique(LABELS[p])) == 1 for p in by_column)
    assert _identical(by_labels, partition(LABELS, "shards:1", 5, 0))


@pytest.mark.parametrize(("spec", "expected"), [
    ("random", "unknown partitioner 'random'; allowed: "),
    ("iid:2", "unknown partitioner 'iid:2'; allowed: "),
    ("dirichlet", "unknown partitioner 'dirichlet'; allowed: "),
    ("dirichlet:-1", "partitioner 'dirichlet:-1': ALPHA must be a number > 0; allowed: "),
    ("dirichlet:abc", "partitioner 'dirichlet:abc': ALPHA must be a number > 0; allowed: "),
    ("shards:0", "partitioner 'shards:0': K must be a whole number >= 1; allowed: "),
    ("shards:1.5", "partitioner 'shards:1.5': K must be a whole number >= 1; allowed: "),
    ("column:", "partitioner 'column:': NAME is empty; allowed: "),
])
def test_parse_refuses_bad_specs_listing_allowed_forms(spec: str, expected: str) -> None:
    with pytest.raises(DataError) as caught:
        parse_partitioner(spec)

    assert str(caught.value) == expected + (
        "iid, dirichlet:ALPHA (ALPHA > 0, e.g. dirichlet:0.5), shards:K (K >= 1 shards per partition, "
        "e.g. shards:2), column:NAME (one partition per distinct value of column NAME)"
    )


def test_parse_round_trips_through_text() -> None:
    for spec in ("iid", "dirichlet:0.5", "shards:2", "column:site"):
        assert str(parse_partitioner(spec)) == spec


def test_refuses_more_partitions_than_rows_and_missing_labels() -> None:
    labels = np.array([0.0, np.nan, 1.0, 1.0, 0.0])

    with pytest.raises(DataError, match=r"^cannot split 5 rows into 6 partitions$"):
        partition(np.arange(5), "iid", 6, 0)
    with pytest.raises(DataError, match=r"^the number of partitions must be at least 1, not 0$"):
        partition(np.arange(5), "iid", 0, 0)
    with pytest.raises(DataError, match=r"^label column 'label': 1 missing value \(first at row 2\); "
                                        r"partitioning by label needs every label$"):
        partition(labels, "dirichlet:1", 2, 0)


def test_holdout_is_stratified_deterministic_and_disjoint() -> None:
    train, test = holdout(LABELS, 0.2, 7, stratify=True)

    assert len(test) == 40 and np.bincount(LABELS[test]).tolist() == [8] * 5
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == 200
    again = holdout(LABELS, 0.2, 7, stratify=True)
    assert np.array_equal(train, again[0]) and np.array_equal(test, again[1])
    _, plain = holdout(LABELS, 0.25, 7, stratify=False)
    assert len(plain) == 50


def test_holdout_refuses_bad_fraction_and_empty_side() -> None:
    with pytest.raises(DataError, match=r"^the held-out fraction must be between 0 and 1, not 1.5$"):
        holdout(LABELS, 1.5, 0, stratify=True)
    expected = r"^holding out 0.01 of 20 rows leaves 0 test rows and 20 train rows$"
    with pytest.raises(DataError, match=expected):
        holdout(np.arange(20), 0.01, 0, stratify=False)


def test_summary_counts_labels_or_target_moments() -> None:
    parts = partition(LABELS, "shards:1", 5, 0)
    target = np.arange(200, dtype=np.float64)

    classes = partition_summary(LABELS, parts, "classification")
    moments = partition_summary(target, [np.array([0, 2]), np.array([], dtype=np.int64)], "regression")

    assert [entry["rows"] for entry in classes] == [40] * 5
    assert sorted(next(iter(entry["labels"])) for entry in classes) == [0, 1, 2, 3, 4]
    assert moments == [{"partition": 0, "rows": 2, "mean": 1.0, "std": 1.0},
                       {"partition": 1, "rows": 0, "mean": None, "std": None}]


def test_partitioning_reaches_no_network_and_draws_no_progress_bar(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    import socket

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access during partitioning")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    sites = np.array(["a", "b"] * 10, dtype=object)
    table = Table.from_columns("t", {"site": sites, "label": np.arange(20) % 2})

    for spec in ("iid", "dirichlet:1", "shards:1", "column:site"):
        partition(table, spec, 2, 0)

    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""
