"""Splitting one data set among simulated clients with Flower Datasets' partitioners, and holding out.

:func:`partition` turns a partitioner spec into row indices per partition. The partitioners are Flower
Datasets' own, run on an in-memory ``datasets.Dataset`` holding the key column (labels, or the id
column) and the row numbers, which are read back from each partition; nothing is re-implemented here.

====================  ============================================================================
spec                  partitions
====================  ============================================================================
``iid``               rows shuffled with the seed, then ``IidPartitioner``'s contiguous shards
``dirichlet:ALPHA``   ``DirichletPartitioner`` on the label (``self_balancing=True``): the smaller
                      ALPHA, the more skewed each partition's label mix. Each partition gets at
                      least ``min_rows`` rows (default: a quarter of an even share, at most 10)
``shards:K``          ``ShardPartitioner`` with K shards per partition: rows sorted by label, cut
                      into ``num_partitions × K`` equal shards, K drawn for each partition; the
                      ``N mod (num_partitions × K)`` rows past the last whole shard are left out
``column:NAME``       ``NaturalIdPartitioner``: one partition per distinct value of column NAME, in
                      sorted order (text sorts as text); :attr:`Partitioning.ids` names them
====================  ============================================================================

Same inputs and seed ⇒ the same indices (on the same package versions). Indices are 0-based and
sorted within each partition.

flwr-datasets, HF ``datasets`` and pyarrow are imported only when a partitioning is computed (1–3.5 s here,
measured), never by ``import flonnx.exchange.data``. Before that import, ``HF_DATASETS_OFFLINE``,
``HF_HUB_OFFLINE`` and ``HF_HUB_DISABLE_TELEMETRY`` are set to ``1`` unless the environment already
sets them, so nothing here can reach the Hub.

Errors (:class:`~flonnx.exchange.errors.DataError`, one line, no cell values):

- ``unknown partitioner 'foo'; allowed: iid, dirichlet:ALPHA (…), shards:K (…), column:NAME (…)``
  and ``partitioner 'dirichlet:x': ALPHA must be a number > 0; allowed: …``, ``partitioner
  'shards:0': K must be a whole number >= 1; allowed: …``, ``partitioner 'column:': NAME is empty;
  allowed: …``
- ``the number of partitions must be at least 1, not 0``; ``cannot split 5 rows into 6 partitions``
- ``dirichlet:0.05 could not give each of 10 partitions at least 10 rows (178 rows, 3 labels) in 11
  tries; use fewer clients or a larger alpha``
- ``shards:2 with 10 partitions needs at least 20 rows; the data has 15``
- ``column:site gives 3 partitions (one per distinct value); 4 were asked for``;
  ``column:site partitioning needs a table, not labels``
- ``label column 'y': 2 missing values (first at row 5); partitioning by label needs every label``
  (``column 'site': … every row needs an id`` for ``column:NAME``)
- ``labels has 9 values; the data has 10 rows``
- ``the held-out fraction must be between 0 and 1, not 1.5``; ``holding out 0.01 of 20 rows leaves
  0 test rows and 20 train rows``
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from flonnx.exchange.data._cells import as_text, first_row, missing_mask, plural
from flonnx.exchange.data.tables import Table
from flonnx.exchange.errors import DataError

__all__ = [
    "PARTITIONERS",
    "PartitionerSpec",
    "Partitioning",
    "holdout",
    "parse_partitioner",
    "partition",
    "partition_summary",
]

_ALLOWED = (
    "iid, dirichlet:ALPHA (ALPHA > 0, e.g. dirichlet:0.5), shards:K (K >= 1 shards per partition, "
    "e.g. shards:2), column:NAME (one partition per distinct value of column NAME)"
)
_OFFLINE = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
_DIRICHLET_TRIES = 11  # DirichletPartitioner samples once, then retries 10 times


@dataclass(frozen=True)
class PartitionerSpec:
    """A parsed partitioner spec: ``kind`` and its one argument (``alpha``, ``shards`` or ``column``)."""

    kind: str
    alpha: float | None = None
    shards: int | None = None
    column: str | None = None

    def __str__(self) -> str:
        argument = {"dirichlet": self.alpha, "shards": self.shards, "column": self.column}.get(self.kind)
        return self.kind if argument is None else f"{self.kind}:{argument}"


class Partitioning(list[np.ndarray]):
    """Row indices per partition (a list of sorted int64 arrays), with ``ids`` for ``column:NAME``."""

    def __init__(self, parts: Sequence[np.ndarray], ids: Sequence[str] | None = None) -> None:
        super().__init__(parts)
        self.ids: tuple[str, ...] | None = tuple(ids) if ids is not None else None


def parse_partitioner(spec: str) -> PartitionerSpec:
    """Parse ``iid``, ``dirichlet:ALPHA``, ``shards:K`` or ``column:NAME``.

    Raises:
        DataError: an unknown form or a bad argument; the message lists the allowed forms.
    """
    kind, colon, argument = spec.strip().partition(":")
    if kind not in PARTITIONERS or (kind == "iid") == bool(colon):
        raise DataError(f"unknown partitioner '{spec}'; allowed: {_ALLOWED}")
    if kind == "dirichlet":
        try:
            alpha = float(argument)
        except ValueError:
            alpha = float("nan")
        if not alpha > 0 or alpha == float("inf"):
            raise DataError(f"partitioner '{spec}': ALPHA must be a number > 0; allowed: {_ALLOWED}")
        return PartitionerSpec(kind, alpha=alpha)
    if kind == "shards":
        if not argument.strip().isdigit() or int(argument) < 1:
            raise DataError(f"partitioner '{spec}': K must be a whole number >= 1; allowed: {_ALLOWED}")
        return PartitionerSpec(kind, shards=int(argument))
    if kind == "column":
        if not argument.strip():
            raise DataError(f"partitioner '{spec}': NAME is empty; allowed: {_ALLOWED}")
        return PartitionerSpec(kind, column=argument.strip())
    return PartitionerSpec(kind)


def partition(
    data: Table | np.ndarray | Sequence[Any],
    spec: str | PartitionerSpec,
    num_partitions: int | None,
    seed: int,
    label: str = "label",
    *,
    labels: np.ndarray | Sequence[Any] | None = None,
    min_rows: int | None = None,
) -> Partitioning:
    """Row indices of each partition of ``data`` (see the module docstring for the specs).

    Args:
        data: a table (its ``label`` column, or the ``column:NAME`` column, is used) or the labels.
        spec: the partitioner, as text or parsed.
        num_partitions: how many partitions; for ``column:NAME`` ``None`` or 0 (as many as ids) or
            exactly the number of ids.
        seed: seeds the shuffle (iid) and the partitioner's random draws.
        label: the label column of a table (dirichlet and shards partition by it).
        labels: the labels to partition by instead of the table's label column (e.g. the converted
            class indices), one per row of ``data``.
        min_rows: the fewest rows a dirichlet partition may get (align it with the schema's min-rows).

    Raises:
        DataError: see the module docstring.
    """
    parsed = parse_partitioner(spec) if isinstance(spec, str) else spec
    if parsed.kind == "column":
        if not isinstance(data, Table):
            raise DataError(f"{parsed} partitioning needs a table, not labels")
        assert parsed.column is not None
        keys = _keys(data.column(parsed.column), f"column '{parsed.column}'", "every row needs an id")
    else:
        if labels is not None:
            values = _array(labels)
            rows = data.num_rows if isinstance(data, Table) else len(_array(data))
            if len(values) != rows:
                raise DataError(f"labels has {len(values)} values; the data has {rows} rows")
        elif isinstance(data, Table):
            values = data.column(label, role="label column")
        else:
            values = _array(data)
        keys = _keys(values, f"label column '{label}'", "partitioning by label needs every label")
        if num_partitions is None or num_partitions < 1:
            raise DataError(f"the number of partitions must be at least 1, not {num_partitions}")
        if num_partitions > len(keys):
            raise DataError(f"cannot split {plural(len(keys), 'row')} into {num_partitions} partitions")
    datasets, partitioners = _flower_datasets()
    # In the arrow format a column is one pyarrow array; in the default format datasets 4 hands the
    # partitioners a lazy column that numpy converts row by row (100k rows: seconds instead of ms).
    dataset = datasets.Dataset.from_dict({"key": keys, "row": np.arange(len(keys), dtype=np.int64)})
    dataset = dataset.with_format("arrow")
    with warnings.catch_warnings():
        # DirichletPartitioner warns on every retry; pyarrow warns about a sort option datasets uses.
        warnings.simplefilter("ignore")
        return PARTITIONERS[parsed.kind](partitioners, dataset, parsed, num_partitions, seed, min_rows)


def _array(labels: np.ndarray | Sequence[Any]) -> np.ndarray:
    values = np.asarray(labels)
    if values.ndim != 1:
        raise DataError(f"labels must be 1-D, not of shape {values.shape}")
    return values


def _keys(values: np.ndarray, what: str, why: str) -> np.ndarray | list[str]:
    """A column as a key the partitioners can group by: numbers stay numbers, anything else text."""
    missing = missing_mask(values, numeric=False)
    if missing.any():
        raise DataError(
            f"{what}: {plural(int(missing.sum()), 'missing value')} "
            f"(first at row {first_row(missing)}); {why}"
        )
    if values.dtype.kind in "biuf":
        return values
    return [as_text(value) for value in values]


def _flower_datasets() -> tuple[Any, Any]:
    for variable, value in _OFFLINE.items():
        os.environ.setdefault(variable, value)
    try:
        import datasets
        from flwr_datasets import partitioner
    except ImportError:
        raise DataError(
            "partitioning needs flwr-datasets; install it with: pip install flwr-datasets"
        ) from None
    return datasets, partitioner


def _rows(partitioner: Any, count: int) -> list[np.ndarray]:
    rows = (partitioner.load_partition(i)[:]["row"] for i in range(count))
    return [np.sort(np.asarray(column, dtype=np.int64)) for column in rows]


def _iid(partitioners: Any, dataset: Any, spec: PartitionerSpec, count: int, seed: int,
         min_rows: int | None) -> Partitioning:
    # IidPartitioner cuts contiguous shards, so the rows are shuffled first.
    order = np.random.default_rng(seed).permutation(len(dataset))
    iid = partitioners.IidPartitioner(num_partitions=count)
    iid.dataset = dataset.select(order)
    return Partitioning(_rows(iid, count))


def _dirichlet(partitioners: Any, dataset: Any, spec: PartitionerSpec, count: int, seed: int,
               min_rows: int | None) -> Partitioning:
    assert spec.alpha is not None
    least = min_rows if min_rows is not None else max(1, min(10, len(dataset) // (4 * count)))
    dirichlet = partitioners.DirichletPartitioner(
        num_partitions=count, partition_by="key", alpha=spec.alpha, min_partition_size=least,
        self_balancing=True, shuffle=False, seed=seed,
    )
    dirichlet.dataset = dataset
    try:
        return Partitioning(_rows(dirichlet, count))
    except ValueError as exc:
        if "max number of attempts" not in str(exc):
            raise DataError(f"{spec}: {exc}") from None
        labels = len(dataset.unique("key"))
        raise DataError(
            f"{spec} could not give each of {count} partitions at least {plural(least, 'row')} "
            f"({len(dataset)} rows, {plural(labels, 'label')}) in {_DIRICHLET_TRIES} tries; "
            "use fewer clients or a larger alpha"
        ) from None


def _shards(partitioners: Any, dataset: Any, spec: PartitionerSpec, count: int, seed: int,
            min_rows: int | None) -> Partitioning:
    assert spec.shards is not None
    if len(dataset) < count * spec.shards:
        raise DataError(
            f"{spec} with {count} partitions needs at least {count * spec.shards} rows; "
            f"the data has {len(dataset)}"
        )
    shards = partitioners.ShardPartitioner(
        num_partitions=count, partition_by="key", num_shards_per_partition=spec.shards,
        shuffle=False, seed=seed,
    )
    shards.dataset = dataset
    return Partitioning(_rows(shards, count))


def _column(partitioners: Any, dataset: Any, spec: PartitionerSpec, count: int | None, seed: int,
            min_rows: int | None) -> Partitioning:
    natural = partitioners.NaturalIdPartitioner(partition_by="key")
    natural.dataset = dataset
    found = natural.num_partitions
    if count and count != found:
        raise DataError(f"{spec} gives {found} partitions (one per distinct value); {count} were asked for")
    # NaturalIdPartitioner draws a tqdm bar on stderr while it groups the rows; nothing else is written.
    with contextlib.redirect_stderr(io.StringIO()):
        parts = _rows(natural, found)
    ids = [as_text(natural.partition_id_to_natural_id[i]) for i in range(found)]
    return Partitioning(parts, ids)


_Partitioner = Callable[[Any, Any, PartitionerSpec, Any, int, "int | None"], Partitioning]
#: Partitioner kind → how it is computed; a new kind is one entry here (and a line in the docstring).
PARTITIONERS: Mapping[str, _Partitioner] = MappingProxyType({
    "iid": _iid,
    "dirichlet": _dirichlet,
    "shards": _shards,
    "column": _column,
})


def holdout(labels: np.ndarray | Sequence[Any], fraction: float, seed: int,
            stratify: bool) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic train/test split of row indices (each sorted).

    Stratified (for classification labels): within each label, ``round(count × fraction)`` rows drawn
    with ``numpy.random.default_rng(seed)``, labels in sorted order; this is the split flonnx has
    always used for digits, so the held-out rows do not change. Unstratified: the first
    ``round(N × fraction)`` rows of a seeded permutation.

    Raises:
        DataError: ``fraction`` not in (0, 1), or a split that leaves one side empty.
    """
    if not 0 < fraction < 1:
        raise DataError(f"the held-out fraction must be between 0 and 1, not {fraction}")
    values = _array(labels)
    if values.dtype.kind == "O":
        values = np.asarray([as_text(value) for value in values])
    rng = np.random.default_rng(seed)
    if stratify:
        picked = [rng.permutation(np.flatnonzero(values == value)) for value in np.unique(values)]
        test = np.concatenate([idx[: round(len(idx) * fraction)] for idx in picked])
    else:
        test = rng.permutation(len(values))[: round(len(values) * fraction)]
    test_idx = np.sort(test).astype(np.int64)
    train_idx = np.setdiff1d(np.arange(len(values), dtype=np.int64), test_idx)
    if len(test_idx) == 0 or len(train_idx) == 0:
        raise DataError(
            f"holding out {fraction} of {plural(len(values), 'row')} leaves {len(test_idx)} test rows "
            f"and {len(train_idx)} train rows"
        )
    return train_idx, test_idx


def partition_summary(labels: np.ndarray | Sequence[Any], parts: Sequence[np.ndarray],
                      task: str) -> list[dict[str, Any]]:
    """Rows and label mix of each partition, for a table of who got what.

    Each entry has ``partition`` and ``rows``, then the label histogram ``labels`` (classification,
    binary) or the target's ``mean`` and ``std`` (regression; ``None`` for an empty partition), and
    ``id`` when ``parts`` is a :class:`Partitioning` with ids.
    """
    values = _array(labels)
    ids = parts.ids if isinstance(parts, Partitioning) else None
    summary: list[dict[str, Any]] = []
    for i, rows in enumerate(parts):
        entry: dict[str, Any] = {"partition": i, "rows": len(rows)}
        if ids is not None:
            entry["id"] = ids[i]
        chosen = values[rows]
        if task == "regression":
            numbers = chosen.astype(np.float64)
            entry["mean"] = float(numbers.mean()) if len(numbers) else None
            entry["std"] = float(numbers.std()) if len(numbers) else None
        else:
            found, counts = np.unique(chosen, return_counts=True)
            entry["labels"] = {value.item() if hasattr(value, "item") else value: int(n)
                               for value, n in zip(found, counts, strict=True)}
        summary.append(entry)
    return summary
