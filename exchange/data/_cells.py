"""Cell-level helpers shared by the data modules: missing values, text of a cell, numeric conversion.

Every message built here names a column and a 1-based data row, never the value of a cell.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real

import numpy as np

from flonnx.exchange.errors import DataError

__all__ = ["MISSING_TEXT", "as_text", "first_row", "missing_mask", "name_list", "plural", "to_numbers"]

#: Texts that mean "missing" in a numeric column (compared after stripping, in any case).
MISSING_TEXT = frozenset({"", "na", "n/a", "nan", "null"})
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def plural(count: int, noun: str) -> str:
    """``1 row``, ``4 rows``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def name_list(names: Sequence[str], limit: int = 12) -> str:
    """Column names for a message, truncated after ``limit`` with the count of the rest."""
    shown = ", ".join(names[:limit])
    rest = len(names) - limit
    return f"{shown}, … ({rest} more)" if rest > 0 else shown


def _is_missing_cell(value: object, numeric: bool) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        text = value.strip()
        return text.lower() in MISSING_TEXT if numeric else text == ""
    return isinstance(value, float | np.floating) and math.isnan(value)


def missing_mask(values: np.ndarray, *, numeric: bool) -> np.ndarray:
    """Boolean mask of missing cells: None, NaN, empty text; in numeric columns also NA, N/A, null."""
    if values.dtype.kind == "f":
        return np.isnan(values)
    if values.dtype.kind == "O":
        return np.fromiter((_is_missing_cell(v, numeric) for v in values), dtype=bool, count=len(values))
    return np.zeros(len(values), dtype=bool)


def as_text(value: object) -> str:
    """A cell as category text: stripped text; integral numbers without a fraction (1 and 1.0 agree)."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").strip()
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, Integral):
        return str(int(value))
    if isinstance(value, Real) and float(value).is_integer():
        return str(int(float(value)))
    return str(value)


def first_row(mask: np.ndarray) -> int:
    """The 1-based row of the first ``True`` in ``mask``."""
    return int(np.flatnonzero(mask)[0]) + 1


def _fast_numbers(values: np.ndarray) -> np.ndarray | None:
    """Let numpy convert when every cell parses (None and "nan" become NaN); else None."""
    try:
        return values.astype(np.float64)
    except (TypeError, ValueError):
        return None


def to_numbers(values: np.ndarray, column: str, *, what: str = "column",
               not_a_number: str = "not a number") -> tuple[np.ndarray, np.ndarray]:
    """Convert a column to float64; returns the values (NaN where missing) and the missing mask.

    Raises:
        DataError: a present cell is not a number (``column 'age', row 17: not a number``), is infinite,
            does not fit float32, or the column's type holds neither numbers nor text.
    """
    kind = values.dtype.kind
    out: np.ndarray | None
    if kind in "biuf":
        out = values.astype(np.float64)
    elif kind == "O":
        out = _fast_numbers(values)
    else:
        raise DataError(f"{what} '{column}' has type {values.dtype}, which holds neither numbers nor text")
    if out is None:
        missing = missing_mask(values, numeric=True)
        out = np.full(len(values), np.nan)
        for row in np.flatnonzero(~missing):
            cell = values[row]
            try:
                if isinstance(cell, str | bytes | Real):
                    out[row] = float(cell)
                else:
                    raise TypeError
            except (TypeError, ValueError):
                raise DataError(f"{what} '{column}', row {row + 1}: {not_a_number}") from None
    infinite = np.isinf(out)
    if infinite.any():
        raise DataError(f"{what} '{column}', row {first_row(infinite)}: infinite value")
    too_large = np.abs(np.nan_to_num(out)) > _FLOAT32_MAX
    if too_large.any():
        raise DataError(f"{what} '{column}', row {first_row(too_large)}: too large for float32")
    return out, np.isnan(out)
