"""Built-in data sets that ship inside scikit-learn (nothing is downloaded), as :class:`Table` objects.

scikit-learn is imported only by :func:`builtin_table`. Feature columns keep scikit-learn's names
(``mean radius``, ``alcohol``, ``bmi``…), except digits, whose 64 pixels are ``px0`` … ``px63``,
scaled to [0, 1] by /16 as flonnx always did. Labels are int64 class indices (classification,
binary) or float64 (regression).

Errors: ``unknown built-in dataset 'mnist'; available: breast-cancer, diabetes, digits, wine`` and
``built-in dataset 'digits' ships with scikit-learn, which is not installed; install it with: pip
install scikit-learn``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from flonnx.exchange.data.tables import Table
from flonnx.exchange.errors import DataError

__all__ = ["BUILTIN_DATASETS", "BuiltinDataset", "builtin_table"]


@dataclass(frozen=True)
class BuiltinDataset:
    """One built-in data set: its natural task, label column, size and where it comes from."""

    name: str
    task: str
    label: str
    rows: int
    features: int
    description: str
    loader: str  # the sklearn.datasets function
    divisor: float = 1.0  # every feature is divided by it
    column_prefix: str | None = None  # name columns PREFIX0, PREFIX1… instead of scikit-learn's names


#: Name → data set; a new built-in is one entry here.
BUILTIN_DATASETS: Mapping[str, BuiltinDataset] = MappingProxyType({
    "digits": BuiltinDataset(
        "digits", "classification", "label", 1797, 64,
        "8×8 images of handwritten digits 0–9, pixels scaled to [0, 1]", "load_digits",
        divisor=16.0, column_prefix="px",
    ),
    "breast-cancer": BuiltinDataset(
        "breast-cancer", "binary", "target", 569, 30,
        "Wisconsin diagnostic breast cancer: 30 cell-nucleus measurements, 0 = malignant, 1 = benign",
        "load_breast_cancer",
    ),
    "wine": BuiltinDataset(
        "wine", "classification", "target", 178, 13,
        "13 chemical measurements of wines from 3 cultivars", "load_wine",
    ),
    "diabetes": BuiltinDataset(
        "diabetes", "regression", "target", 442, 10,
        "10 baseline measurements (scaled) → disease progression one year later", "load_diabetes",
    ),
})


def builtin_table(name: str) -> Table:
    """Load a built-in data set as a table (features first, the label column last).

    Raises:
        DataError: unknown name, or scikit-learn is not installed.
    """
    info = BUILTIN_DATASETS.get(name)
    if info is None:
        available = ", ".join(sorted(BUILTIN_DATASETS))
        raise DataError(f"unknown built-in dataset '{name}'; available: {available}")
    try:
        from sklearn import datasets as sklearn_datasets
    except ImportError:
        raise DataError(
            f"built-in dataset '{name}' ships with scikit-learn, which is not installed; "
            "install it with: pip install scikit-learn"
        ) from None
    bunch = getattr(sklearn_datasets, info.loader)()
    data = np.asarray(bunch.data, dtype=np.float64) / info.divisor
    if info.column_prefix is None:
        names = [str(column) for column in bunch.feature_names]
    else:
        names = [f"{info.column_prefix}{j}" for j in range(data.shape[1])]
    label_type = np.float64 if info.task == "regression" else np.int64
    columns = {column: data[:, j].copy() for j, column in enumerate(names)}
    columns[info.label] = np.asarray(bunch.target, dtype=label_type)
    return Table.from_columns(name, columns)
