"""Data sources: where a node's rows come from, the same for a simulated node and a hospital's.

A hospital's node names a file in its node config (``data="/data/site-a.csv" label="diagnosis"``).
A simulated node has only ``partition-id``/``num-partitions`` from Flower; its source is "partition i
of N of the spec's dataset under the spec's partitioner, after the evaluation hold-out", computed
here from the spec, so the client code from the source on is the same for both. The server uses
this module for one thing only: the evaluation source the spec names (a hold-out or a file).

Everything is deterministic in the spec's seed; tables and partitions are cached per process (a
Ray actor serves many simulated nodes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from flonnx.exchange.data import FeatureSchema, read_table, to_arrays
from flonnx.exchange.errors import DataError
from flonnx.exchange.seeds import derive_seed
from flonnx.exchange.spec import BUILTIN_DATASETS, DataSpec, FederationSpec

__all__ = [
    "DataSource",
    "Vocabularies",
    "evaluation_source",
    "node_source",
    "partition_plan",
    "simulated_clients",
]

_NODE_KEYS = ("data", "label", "features", "categorical", "classes", "missing", "min-rows")


@dataclass(frozen=True)
class DataSource:
    """A node's (or the evaluation's) rows: a whole file, or a part of a dataset."""

    dataset: str  # built-in name or file path
    schema: FeatureSchema
    task: str
    rows: str = "all"  # "all", "holdout" (the evaluation split) or "partition"
    partition: str = "iid"
    partition_id: int = 0
    num_partitions: int = 1
    holdout: float | None = None
    seed: int = 0

    def describe(self) -> str:
        """One line for logs and refusals (no data values)."""
        name = self.dataset if self.dataset in BUILTIN_DATASETS else Path(self.dataset).name
        if self.rows == "partition":
            return f"partition {self.partition_id} of {self.num_partitions} of {name} ({self.partition})"
        return f"{name} (hold-out)" if self.rows == "holdout" else name

    def load(self, vocabularies: Vocabularies | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(x [N, F] float32 with NaN for imputable missing values, y)``; :class:`DataError` if bad.

        Categorical columns are one-hot encoded over ``vocabularies`` (agreed at the handshake).
        """
        if self.schema.categorical and vocabularies is None:
            raise DataError("categorical columns need the federation's vocabularies")
        index = self._index()
        x, y = _converted(self.dataset, self.schema, self.task, vocabularies or ())
        return x[index], y[index]

    def features(self) -> list[str]:
        """The raw feature columns in order.

        If the schema names none: every column but the label and the excluded ones.
        """
        features = self.schema.resolve(_table(self.dataset)).features
        return list(features or ())

    def groups(self, column: str) -> np.ndarray:
        """The text of ``column`` in each row :meth:`load` gives, in the same order (object array).

        Used to break metrics down by a sensitive column (:mod:`flonnx.exchange.groups`); an empty or
        missing cell is ``<missing>``; a column the data does not have is a :class:`DataError`.
        """
        from flonnx.exchange.data._cells import as_text, missing_mask

        values = _table(self.dataset).column(column, role="sensitive column")[self._index()]
        missing = missing_mask(values, numeric=values.dtype.kind == "f")
        return np.array(["<missing>" if gone else as_text(v)
                         for v, gone in zip(values, missing, strict=True)], dtype=object)

    def categories(self) -> dict[str, list[str]]:
        """This node's values of each categorical column (for the federated vocabulary)."""
        if not self.schema.categorical:
            return {}
        from flonnx.exchange.data import local_stats

        table = _table(self.dataset).take(self._index())
        found: dict[str, list[str]] = local_stats(table, self.schema)["categorical"]
        return found

    def _index(self) -> np.ndarray:
        _, y = _converted(self.dataset, self.schema, self.task, _empty(self.schema))
        if self.rows == "all":
            index = np.arange(len(y))
        else:
            train, test = _split(self.dataset, self.schema, self.task, self.holdout, self.seed)
            if self.rows == "holdout":
                index = test
            else:
                parts = _parts(self.dataset, self.schema, self.task, self.holdout, self.seed,
                               self.partition, self.num_partitions)
                if not 0 <= self.partition_id < len(parts):
                    raise DataError(f"partition-id {self.partition_id} is outside 0..{len(parts) - 1}")
                index = train[parts[self.partition_id]]
        if len(index) < self.schema.min_rows and self.rows != "holdout":
            raise DataError(f"{self.describe()} has {len(index)} rows; at least "
                            f"{self.schema.min_rows} are needed (min-rows)")
        return index


#: Categorical column -> its values in one-hot order (hashable, for caching).
Vocabularies = tuple[tuple[str, tuple[str, ...]], ...]


def _empty(schema: FeatureSchema) -> Vocabularies:
    """Empty vocabularies: every categorical value is ``<other>`` (enough to read labels)."""
    return tuple((column, ()) for column in schema.categorical)


def _schema(data: DataSpec, overrides: Mapping[str, Any] | None = None) -> FeatureSchema:
    o = dict(overrides or {})

    def names(key: str, default: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if key not in o:
            return default
        return tuple(v.strip() for v in str(o[key]).split(",") if v.strip())

    exclude = (data.partition_column,) if data.partition_column else ()
    try:
        min_rows = int(o.get("min-rows", data.min_rows))
    except (TypeError, ValueError):
        raise DataError(f"node config min-rows={o['min-rows']!r} is not an integer") from None
    return FeatureSchema(
        label=str(o.get("label", data.label)), features=names("features", data.features),
        categorical=names("categorical", data.categorical) or (),
        classes=names("classes", data.classes), missing=str(o.get("missing", data.missing)),
        min_rows=min_rows, exclude=exclude,
    )


@lru_cache(maxsize=8)
def _table(dataset: str):  # type: ignore[no-untyped-def]
    if dataset in BUILTIN_DATASETS:
        from flonnx.exchange.data import builtin_table

        return builtin_table(dataset)
    return read_table(dataset)


@lru_cache(maxsize=8)
def _converted(dataset: str, schema: FeatureSchema, task: str, vocabularies: Vocabularies
               ) -> tuple[np.ndarray, np.ndarray]:
    # no means: under impute-mean a missing numeric cell stays NaN, and the federated mean
    # replaces it later (flonnx.exchange.preprocess), the same constant at every node
    return to_arrays(_table(dataset), schema, task=task, vocabularies=dict(vocabularies))


@lru_cache(maxsize=8)
def _split(dataset: str, schema: FeatureSchema, task: str, holdout: float | None, seed: int
           ) -> tuple[np.ndarray, np.ndarray]:
    from flonnx.exchange.data import holdout as split

    _, y = _converted(dataset, schema, task, _empty(schema))
    if not holdout:
        return np.arange(len(y)), np.arange(0)
    train, test = split(y, holdout, derive_seed(seed, "holdout"), stratify=task != "regression")
    return np.asarray(train), np.asarray(test)


@lru_cache(maxsize=8)
def _parts(dataset: str, schema: FeatureSchema, task: str, holdout: float | None, seed: int,
           partition: str, num_partitions: int) -> list[np.ndarray]:
    from flonnx.exchange.data import partition as split

    train, _ = _split(dataset, schema, task, holdout, seed)
    table = _table(dataset).take(train)
    return split(table, partition, num_partitions or None, derive_seed(seed, "partition"),  # type: ignore[no-any-return]
                 label=schema.label, min_rows=schema.min_rows)


def _data_seed(spec: FederationSpec) -> int:
    """The split and the partitions follow the data's own seed, not the run's: pinned per spec."""
    return spec.data.seed if spec.data is not None else 0


def _spec_source(spec: FederationSpec) -> DataSpec:
    if spec.data is None:
        raise DataError(f"spec {spec.name} has no [data] table: a simulated node needs one")
    return spec.data


def simulated_clients(spec: FederationSpec) -> int:
    """Number of simulated nodes: ``clients``, or the ids of a ``column:NAME`` partitioning."""
    data = _spec_source(spec)
    if data.partition_column is None:
        assert spec.clients is not None
        return spec.clients
    schema = _schema(data)
    return len(_parts(data.source, schema, spec.task, spec.holdout, _data_seed(spec), data.partition, 0))


def partition_plan(spec: FederationSpec) -> list[dict[str, Any]]:
    """Per simulated client: its source and a summary (rows, label histogram or target moments)."""
    from flonnx.exchange.data import partition_summary

    data = _spec_source(spec)
    n = simulated_clients(spec)
    schema = _schema(data)
    train, _ = _split(data.source, schema, spec.task, spec.holdout, _data_seed(spec))
    parts = _parts(data.source, schema, spec.task, spec.holdout, _data_seed(spec), data.partition,
                   0 if data.partition_column else n)
    _, y = _converted(data.source, schema, spec.task, _empty(schema))
    return list(partition_summary(y[train], parts, spec.task))


def node_source(node_config: Mapping[str, Any], spec: FederationSpec | None, task: str) -> DataSource:
    """The data source a node's config names.

    ``data=...`` (a file; ``label``, ``features``, ``categorical``, ``classes``, ``missing`` and
    ``min-rows`` override the spec's schema) wins; otherwise ``partition-id``/``num-partitions``
    with the spec's ``[data]`` table (simulation); otherwise a :class:`DataError` that says how to
    name the data.
    """
    overrides = {k: node_config[k] for k in _NODE_KEYS if k in node_config}
    if "data" in node_config:
        path = str(node_config["data"])
        base = spec.data if spec is not None and spec.data is not None else DataSpec(source=path)
        return DataSource(dataset=path, schema=_schema(base, overrides), task=task)
    if "partition-id" in node_config:
        if spec is None or spec.data is None:
            raise DataError("this simulated node has a partition-id but the run's spec has no "
                            "[data] table to partition")
        data = spec.data
        num = 0 if data.partition_column else int(node_config.get("num-partitions", 1))
        return DataSource(
            dataset=data.source, schema=_schema(data, overrides), task=task, rows="partition",
            partition=data.partition, partition_id=int(node_config["partition-id"]),
            num_partitions=num, holdout=spec.holdout, seed=_data_seed(spec),
        )
    raise DataError(
        "this node names no data: start its SuperNode with --node-config 'data=\"/path/site.csv\" "
        "label=\"COLUMN\"' (a simulated node gets partition-id from Flower instead)"
    )


def evaluation_source(spec: FederationSpec) -> DataSource | None:
    """The server's evaluation data: the spec's hold-out, an evaluation file, or ``None``."""
    if spec.evaluate == "none":
        return None
    data = spec.data or DataSpec(source=spec.evaluate)
    if spec.evaluate_file:
        return DataSource(dataset=spec.evaluate_file, schema=_schema(data, {"min-rows": 1}),
                          task=spec.task)
    return DataSource(dataset=data.source, schema=_schema(data, {"min-rows": 1}), task=spec.task,
                      rows="holdout", holdout=spec.holdout, seed=_data_seed(spec))
