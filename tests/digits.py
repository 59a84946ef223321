"""The digits-mixed preset's data as tests use it: a node's partition and the server's hold-out."""

from __future__ import annotations

import numpy as np

from flonnx.exchange.sources import evaluation_source, node_source
from flonnx.exchange.spec import load_spec

__all__ = ["digits_holdout", "digits_partition"]


def digits_partition(partition_id: int = 0, num_partitions: int = 6,
                     image: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Partition ``partition_id`` of the digits-mixed preset (x ``[N, 64]`` or ``[N, 1, 8, 8]``)."""
    spec = load_spec("digits-mixed")
    x, y = node_source({"partition-id": partition_id, "num-partitions": num_partitions}, spec,
                       spec.task).load()
    return (x.reshape(-1, 1, 8, 8) if image else x), y


def digits_holdout(image: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The server's held-out rows of the digits-mixed preset."""
    source = evaluation_source(load_spec("digits-mixed"))
    assert source is not None
    x, y = source.load()
    return (x.reshape(-1, 1, 8, 8) if image else x), y
