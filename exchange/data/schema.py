"""What a node trains on: a :class:`FeatureSchema` over a :class:`Table`, and its conversion to arrays.

:func:`to_arrays` gives ``x`` float32 ``[N, F']`` and ``y`` (int64 class indices for ``classification``
and ``binary``, float32 for ``regression``). The features are taken in schema order; a numeric column is
one column of ``x``, a categorical column is expanded where it stands into a one-hot block over its
vocabulary plus one ``<other>`` column for values outside the vocabulary (:func:`feature_names` gives
the expanded names: ``sex=F``, ``sex=M``, ``sex=<other>``). The vocabularies and, for the
``impute-mean`` policy, the means are federated values the caller passes in, so every site encodes the
same way; :func:`local_stats` is what a site contributes to them (counts and sums, never rows); the server's
side is :mod:`flonnx.exchange.preprocess` (statistics of the encoded arrays) and the handshake in
:mod:`flonnx.server.federation` (the union of the categorical values).

A cell is missing when it is None, NaN or empty text; in a numeric column the texts ``NA``, ``N/A``,
``NaN`` and ``null`` (any case) are missing too. Under ``missing="impute-mean"`` a missing numeric cell
takes the federated mean of its column (or stays NaN when no ``means`` are passed, for a caller that
imputes later) and a missing categorical cell goes to ``<other>``. A missing
label is always refused. Row numbers are 1-based data rows (for CSV, row 1 is the first line after
the header).

Refusals are :class:`~flonnx.exchange.errors.DataError` with one-line messages that name the data, the column
and the row, never a cell's value:

- ``label column 'diagnosis' is not in site-a.csv; its columns are: age, bmi, sex`` (also ``feature
  column``, ``categorical column``, ``excluded column``; a long list is truncated: ``…, (12 more)``)
- ``site-a.csv has no feature columns besides the label 'diagnosis'``
- ``site-a.csv has 4 rows; at least 10 are needed (min-rows)``
- ``column 'age', row 17: not a number`` (``… not a number; declare it categorical or exclude it`` when
  the schema took every column), ``column 'age', row 17: infinite value``, ``column 'age', row 17:
  too large for float32``, ``column 'when' has type datetime64[s], which holds neither numbers nor
  text``
- ``column 'bmi': 3 missing values (first at row 5); the missing-value policy is 'refuse'``
- ``column 'bmi': 3 missing values (first at row 5); means has no value for it``; ``means has 2
  values; the schema has 3 numeric features``; ``the mean given for column 'bmi' is not a finite
  number``
- ``categorical column 'sex' has no vocabulary; pass vocabularies (the union of every site's
  local_stats)``; ``the vocabulary of column 'sex' lists a value twice``
- ``label column 'y': 2 missing values (first at row 5); rows without a label cannot be used``
- ``label column 'y', row 7: not an integer class index; name the classes to use text labels``,
  ``label column 'y', row 7: negative class index``, ``label column 'y', row 7: a binary label must be
  0 or 1``, ``label column 'y', row 7: not one of the 2 classes (benign, malignant)``, ``label column
  'y', row 7: not a number`` (regression)
- schema errors: ``unknown missing-value policy 'drop'; use 'refuse' or 'impute-mean'``, ``min-rows
  must be at least 1, not 0``, ``column 'y' is both the label and a feature``, ``feature column 'age'
  is listed twice``, ``categorical column 'sex' is not among the features``, ``column 'id' is both
  excluded and a feature``, ``the label column 'y' is excluded``, ``class 'a' is listed twice``,
  ``a binary task needs exactly 2 classes; the schema names 3``, ``unknown task 'ranking'; use
  classification, binary or regression``
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from flonnx.exchange.data._cells import as_text, first_row, missing_mask, name_list, plural, to_numbers
from flonnx.exchange.data.tables import Table
from flonnx.exchange.errors import DataError

__all__ = [
    "MISSING_POLICIES",
    "OTHER",
    "TASKS",
    "FeatureSchema",
    "feature_names",
    "local_stats",
    "to_arrays",
]

TASKS = ("classification", "binary", "regression")
MISSING_POLICIES = ("refuse", "impute-mean")
#: The name of the one-hot column that takes values outside a categorical column's vocabulary.
OTHER = "<other>"


def _names(value: object) -> tuple[str, ...]:
    """A tuple of names from a tuple/list, or from comma-separated text (node config)."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return tuple(str(part) for part in value)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class FeatureSchema:
    """Which columns a node trains on and how they are read.

    Attributes:
        label: the label column.
        features: feature columns in order; ``None`` means every column except the label and
            ``exclude``, in file order (see :meth:`resolve`).
        categorical: feature columns holding categories, one-hot encoded over a vocabulary.
        classes: text labels in class-index order; ``None`` means labels are integer class indices.
        missing: ``"refuse"`` or ``"impute-mean"``.
        min_rows: fewer rows than this are refused (also by :func:`local_stats`).
        exclude: columns never used as features (ids, dates, free text).
    """

    label: str
    features: tuple[str, ...] | None = None
    categorical: tuple[str, ...] = ()
    classes: tuple[str, ...] | None = None
    missing: str = "refuse"
    min_rows: int = 10
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for attribute in ("features", "categorical", "classes", "exclude"):
            value = getattr(self, attribute)
            if value is not None:
                object.__setattr__(self, attribute, _names(value))
        if not self.label:
            raise DataError("the label column is not named (label=...)")
        if self.missing not in MISSING_POLICIES:
            raise DataError(f"unknown missing-value policy '{self.missing}'; use 'refuse' or 'impute-mean'")
        if self.min_rows < 1:
            raise DataError(f"min-rows must be at least 1, not {self.min_rows}")
        if self.label in self.exclude:
            raise DataError(f"the label column '{self.label}' is excluded")
        if self.label in self.categorical or (self.features and self.label in self.features):
            raise DataError(f"column '{self.label}' is both the label and a feature")
        _no_repeats(self.features or (), "feature column '{}' is listed twice")
        _no_repeats(self.categorical, "categorical column '{}' is listed twice")
        _no_repeats(self.classes or (), "class '{}' is listed twice")
        for column in self.exclude:
            if column in self.categorical or (self.features and column in self.features):
                raise DataError(f"column '{column}' is both excluded and a feature")
        if self.features is not None:
            for column in self.categorical:
                if column not in self.features:
                    raise DataError(f"categorical column '{column}' is not among the features")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> FeatureSchema:
        """A schema from node config.

        Keys: ``label``, ``features``, ``categorical``, ``classes``, ``exclude`` (comma-separated text),
        ``missing``, ``min-rows``. Other keys are ignored.
        """
        kwargs: dict[str, Any] = {"label": str(config.get("label", ""))}
        for key in ("features", "classes"):
            if config.get(key) not in (None, ""):
                kwargs[key] = _names(config[key])
        for key in ("categorical", "exclude"):
            kwargs[key] = _names(config.get(key, ""))
        if "missing" in config:
            kwargs["missing"] = str(config["missing"])
        if "min-rows" in config:
            kwargs["min_rows"] = int(config["min-rows"])
        return cls(**kwargs)

    def resolve(self, table: Table) -> FeatureSchema:
        """The schema with its feature list made explicit and every named column checked in ``table``."""
        table.column(self.label, role="label column")
        named = (("feature column", self.features or ()), ("categorical column", self.categorical),
                 ("excluded column", self.exclude))
        for role, columns in named:
            for column in columns:
                table.column(column, role=role)
        if self.features is not None:
            return self
        skip = {self.label, *self.exclude}
        features = tuple(c for c in table.column_names if c not in skip)
        if not features:
            raise DataError(f"{table.name} has no feature columns besides the label '{self.label}'")
        return replace(self, features=features)

    @property
    def numeric(self) -> tuple[str, ...]:
        """The numeric (non-categorical) features in order (needs an explicit feature list)."""
        return tuple(c for c in _explicit(self) if c not in self.categorical)


def _no_repeats(names: Sequence[str], message: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DataError(message.format(name))
        seen.add(name)


def _explicit(schema: FeatureSchema) -> tuple[str, ...]:
    if schema.features is None:
        raise DataError(
            "the schema lists no features; resolve it against a table first (FeatureSchema.resolve)"
        )
    return schema.features


def _check_task(task: str, schema: FeatureSchema) -> None:
    if task not in TASKS:
        raise DataError(f"unknown task '{task}'; use classification, binary or regression")
    if task == "binary" and schema.classes is not None and len(schema.classes) != 2:
        raise DataError(f"a binary task needs exactly 2 classes; the schema names {len(schema.classes)}")


def _check_rows(table: Table, schema: FeatureSchema) -> None:
    if table.num_rows < schema.min_rows:
        needed = "1 is" if schema.min_rows == 1 else f"{schema.min_rows} are"
        rows = plural(table.num_rows, "row")
        raise DataError(f"{table.name} has {rows}; at least {needed} needed (min-rows)")


def _missing_message(column: str, mask: np.ndarray, *, what: str = "column") -> str:
    return f"{what} '{column}': {plural(int(mask.sum()), 'missing value')} (first at row {first_row(mask)})"


def feature_names(
    schema: FeatureSchema, vocabularies: Mapping[str, Sequence[str]] | None = None
) -> list[str]:
    """The names of the columns of ``x``: numeric features as is, categorical ones as ``name=value``."""
    names: list[str] = []
    for column in _explicit(schema):
        if column in schema.categorical:
            values = [*_vocabulary(column, vocabularies), OTHER]
            names += [f"{column}={value}" for value in values]
        else:
            names.append(column)
    return names


def _vocabulary(column: str, vocabularies: Mapping[str, Sequence[str]] | None) -> tuple[str, ...]:
    if vocabularies is None or column not in vocabularies:
        raise DataError(
            f"categorical column '{column}' has no vocabulary; pass vocabularies "
            "(the union of every site's local_stats)"
        )
    vocabulary = tuple(str(value) for value in vocabularies[column])
    if len(set(vocabulary)) != len(vocabulary):
        raise DataError(f"the vocabulary of column '{column}' lists a value twice")
    return vocabulary


def _numeric_hint(original: FeatureSchema) -> str:
    """Under an implicit feature list, a text column is probably a category the user did not name."""
    if original.features is None:
        return "not a number; declare it categorical or exclude it"
    return "not a number"


def _means_by_column(
    schema: FeatureSchema, means: Mapping[str, float] | Sequence[float] | None
) -> dict[str, float]:
    if means is None:
        return {}
    numeric = schema.numeric
    if isinstance(means, Mapping):
        by_column = {str(c): float(m) for c, m in means.items()}
    else:
        if len(means) != len(numeric):
            raise DataError(f"means has {len(means)} values; the schema has {len(numeric)} numeric features")
        by_column = {c: float(m) for c, m in zip(numeric, means, strict=True)}
    for column, mean in by_column.items():
        if not math.isfinite(mean):
            raise DataError(f"the mean given for column '{column}' is not a finite number")
    return by_column


def to_arrays(
    table: Table,
    schema: FeatureSchema,
    *,
    task: str,
    vocabularies: Mapping[str, Sequence[str]] | None = None,
    means: Mapping[str, float] | Sequence[float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Convert ``table`` to ``x`` float32 ``[N, F']`` and ``y`` (see the module docstring).

    Args:
        table: the node's data.
        schema: which columns, and how.
        task: ``classification``, ``binary`` or ``regression``.
        vocabularies: categorical column → its federated values, in one-hot order.
        means: federated means of the numeric features, by name or in schema order; used only to
            impute missing cells under ``missing="impute-mean"``; without them those cells stay NaN.

    Raises:
        DataError: one of the refusals listed in the module docstring.
    """
    resolved = schema.resolve(table)
    _check_task(task, resolved)
    _check_rows(table, resolved)
    by_column = _means_by_column(resolved, means)
    blocks: list[np.ndarray] = []
    for column in _explicit(resolved):
        values = table.columns[column]
        if column in resolved.categorical:
            blocks.append(_one_hot(values, column, _vocabulary(column, vocabularies), resolved.missing))
            continue
        numbers, missing = to_numbers(values, column, not_a_number=_numeric_hint(schema))
        if missing.any():
            if resolved.missing == "refuse":
                raise DataError(f"{_missing_message(column, missing)}; the missing-value policy is 'refuse'")
            if means is not None:
                if column not in by_column:
                    raise DataError(f"{_missing_message(column, missing)}; means has no value for it")
                numbers[missing] = by_column[column]
        blocks.append(numbers[:, None])
    x = np.concatenate(blocks, axis=1).astype(np.float32)
    return x, _labels(table, resolved, task)


def _one_hot(values: np.ndarray, column: str, vocabulary: tuple[str, ...], policy: str) -> np.ndarray:
    missing = missing_mask(values, numeric=False)
    if missing.any() and policy == "refuse":
        raise DataError(f"{_missing_message(column, missing)}; the missing-value policy is 'refuse'")
    position = {value: j for j, value in enumerate(vocabulary)}
    other = len(vocabulary)
    index = np.fromiter(
        (other if gone else position.get(as_text(cell), other)
         for cell, gone in zip(values, missing, strict=True)),
        dtype=np.int64, count=len(values),
    )
    block = np.zeros((len(values), other + 1), dtype=np.float64)
    block[np.arange(len(values)), index] = 1.0
    return block


def _labels(table: Table, schema: FeatureSchema, task: str) -> np.ndarray:
    column = schema.label
    values = table.columns[column]
    missing = missing_mask(values, numeric=schema.classes is None)
    if missing.any():
        raise DataError(
            f"{_missing_message(column, missing, what='label column')}; rows without a label cannot be used"
        )
    if task == "regression":
        numbers, _ = to_numbers(values, column, what="label column")
        return numbers.astype(np.float32)
    if schema.classes is not None:
        position = {name: j for j, name in enumerate(schema.classes)}
        labels = np.empty(len(values), dtype=np.int64)
        for row, cell in enumerate(values):
            index = position.get(as_text(cell))
            if index is None:
                raise DataError(
                    f"label column '{column}', row {row + 1}: not one of the "
                    f"{len(schema.classes)} classes ({name_list(schema.classes)})"
                )
            labels[row] = index
        return labels
    numbers, _ = to_numbers(
        values, column, what="label column",
        not_a_number="not an integer class index; name the classes to use text labels",
    )
    checks = [
        (numbers != np.round(numbers), "not an integer class index; name the classes to use text labels"),
        (numbers < 0, "negative class index"),
    ]
    if task == "binary":
        checks.append((numbers > 1, "a binary label must be 0 or 1"))
    for bad, message in checks:
        if bad.any():
            raise DataError(f"label column '{column}', row {first_row(bad)}: {message}")
    return numbers.astype(np.int64)


def local_stats(table: Table, schema: FeatureSchema) -> dict[str, Any]:
    """What a site contributes to federated means, variances and vocabularies: counts, never rows.

    Returns:
        ``{"rows": N, "numeric": {column: {"count": present cells, "sum": float, "sum_sq": float}},
        "categorical": {column: sorted values seen}}``, sums in float64. Missing cells are not
        counted. A table under ``min_rows`` is refused, so a sum never describes a handful of patients.
    """
    resolved = schema.resolve(table)
    _check_rows(table, resolved)
    numeric: dict[str, dict[str, float | int]] = {}
    for column in resolved.numeric:
        numbers, missing = to_numbers(table.columns[column], column,
                                      not_a_number=_numeric_hint(schema))
        present = numbers[~missing]
        numeric[column] = {"count": int(present.size), "sum": float(present.sum()),
                           "sum_sq": float(np.square(present).sum())}
    categorical: dict[str, list[str]] = {}
    for column in resolved.categorical:
        values = table.columns[column]
        missing = missing_mask(values, numeric=False)
        categorical[column] = sorted({as_text(cell) for cell in values[~missing]})
    return {"rows": table.num_rows, "numeric": numeric, "categorical": categorical}
