"""Built-in data that ships inside packages (no downloads): scikit-learn's digits.

The split into a server-held test set and client partitions depends only on the scenario's data
seed, so every run and every strategy of a scenario sees the same data.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from exchange.errors import FlonnxError

__all__ = ["Split", "client_partition", "load_split"]


@dataclass(frozen=True)
class Split:
    """Train pool (to be partitioned among clients) and the server's held-out test set."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def _stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    test: list[np.ndarray] = []
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        test.append(idx[: round(len(idx) * test_fraction)])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(len(y)), test_idx)
    return train_idx, test_idx


@lru_cache(maxsize=8)
def load_split(dataset: str, *, image: bool = False, data_seed: int = 0) -> Split:
    """Load a built-in dataset, scaled to [0, 1] as float32, split 80/20 stratified.

    ``image=True`` shapes digits as ``[N, 1, 8, 8]`` instead of ``[N, 64]``.
    """
    if dataset != "digits":
        raise FlonnxError(f"unknown built-in dataset {dataset!r}; available: digits")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    if image:
        x = x.reshape(-1, 1, 8, 8)
    train_idx, test_idx = _stratified_split(y, 0.2, data_seed)
    return Split(x[train_idx], y[train_idx], x[test_idx], y[test_idx])


def client_partition(
    split: Split, partition_id: int, num_partitions: int, *, data_seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The IID partition ``partition_id`` of ``num_partitions`` of the train pool."""
    if not 0 <= partition_id < num_partitions:
        raise FlonnxError(f"partition-id {partition_id} is outside 0..{num_partitions - 1}")
    order = np.random.default_rng(data_seed + 1).permutation(len(split.y_train))
    part = np.array_split(order, num_partitions)[partition_id]
    part = np.sort(part)
    return split.x_train[part], split.y_train[part]
