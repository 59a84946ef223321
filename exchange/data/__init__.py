"""Neutral data building blocks: read a node's table, convert it by a schema, built-ins, partitioning.

- :mod:`flonnx.exchange.data.tables`: :func:`read_table` (``.csv``, ``.tsv``, ``.parquet``, ``.npz``) →
  :class:`Table`
- :mod:`flonnx.exchange.data.schema`: :class:`FeatureSchema`, :func:`to_arrays`, :func:`feature_names`,
  :func:`local_stats` (what a site contributes to the federated vocabularies)
- :mod:`flonnx.exchange.data.builtin`: :data:`BUILTIN_DATASETS`, :func:`builtin_table` (scikit-learn's sets)
- :mod:`flonnx.exchange.data.partition`: :func:`partition` (Flower Datasets' partitioners), :func:`holdout`,
  :func:`partition_summary`

Importing this package imports numpy only; pyarrow, scikit-learn, flwr-datasets and HF ``datasets``
are imported inside the one function that needs them. Every refusal is a
:class:`~flonnx.exchange.errors.DataError` whose one-line message names file, row and column, never a cell's
value: rows of patient data never leave a node, not even in an error message.
"""

from __future__ import annotations

from flonnx.exchange.data.builtin import BUILTIN_DATASETS, BuiltinDataset, builtin_table
from flonnx.exchange.data.partition import (
    PartitionerSpec,
    Partitioning,
    holdout,
    parse_partitioner,
    partition,
    partition_summary,
)
from flonnx.exchange.data.schema import FeatureSchema, feature_names, local_stats, to_arrays
from flonnx.exchange.data.tables import Table, read_table

__all__ = [
    "BUILTIN_DATASETS",
    "BuiltinDataset",
    "FeatureSchema",
    "PartitionerSpec",
    "Partitioning",
    "Table",
    "builtin_table",
    "feature_names",
    "holdout",
    "local_stats",
    "parse_partitioner",
    "partition",
    "partition_summary",
    "read_table",
    "to_arrays",
]
