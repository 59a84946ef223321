"""Reading a node's data file into a :class:`Table`: named 1-D columns, nothing converted yet.

Formats, chosen by the file's suffix (any case):

- ``.csv`` (comma) and ``.tsv`` (tab): UTF-8 text (a byte-order mark is ignored) read with the
  standard ``csv`` module. The first non-blank line is the header and names every column; blank lines
  are skipped; surrounding whitespace of names and cells is removed; every cell stays text (an object
  array of ``str``) until :func:`flonnx.exchange.data.to_arrays` converts it. **Row 1 is the first data line
  after the header** (blank lines not counted); messages about the file's structure also give the
  physical line number.
- ``.parquet``: read with pyarrow, imported only here (an optional dependency). Numeric columns stay
  numeric (an integer column with nulls becomes float with NaN), text columns become object arrays.
- ``.npz``: read with ``numpy.load(allow_pickle=False)``. Each 1-D array is a column named like the
  array. A 2-D array named ``x`` or ``features`` is a feature matrix: its column ``j`` becomes the
  column ``x0``, ``x1``, … (``features0``, …). Any other 2-D or higher array is refused, and so are
  object arrays (they would need pickle); store text as a fixed-width string array (dtype ``U``).

Errors are :class:`~flonnx.exchange.errors.DataError` with one-line messages that name the file as the user
gave it, the row and the column, never a cell's value. The texts are stable:

- ``data file PATH does not exist`` / ``data file PATH is a directory, not a file``
- ``data file PATH has the unsupported format '.xlsx'; use .csv, .tsv, .parquet or .npz``
- ``data file PATH cannot be read (permission denied)``
- ``data file PATH is empty`` / ``data file PATH has a header but no data rows`` (also: no columns,
  no arrays)
- ``data file PATH, row R (line L): N values, the header has M columns`` (ragged CSV)
- ``data file PATH: column J of the header has no name``
- ``data file PATH has two columns named 'age' (columns 2 and 5)``
- ``data file PATH is not UTF-8 text (line L)`` / ``data file PATH, line L: not valid CSV (REASON)`` (quoting
  is strict: ``1,"2"x`` is refused)
- ``data file PATH is not a readable Parquet file (ArrowInvalid)``; ``reading data file PATH needs
  pyarrow (Parquet support); install it with: pip install pyarrow``
- ``data file PATH is not a readable .npz archive (BadZipFile)``; ``data file PATH: array 'a' holds
  Python objects, which flonnx does not load (allow_pickle=False); store text with dtype 'U'``;
  ``data file PATH: array 'img' has shape (10, 8, 8); use 1-D arrays (one per column) or a 2-D
  feature matrix named 'x' or 'features'``; ``data file PATH: array 'b' has 9 rows, array 'a' has 10``
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

from flonnx.exchange.data._cells import name_list
from flonnx.exchange.errors import DataError

__all__ = ["FORMATS", "Table", "read_table"]

_MATRIX_NAMES = ("x", "features")
#: Bytes of one data file (CSV cells become Python strings, about ten times the file in memory).
MAX_DATA_FILE_BYTES = 4 << 30


@dataclass(frozen=True)
class Table:
    """Columns of one data set, in file order: name → 1-D array (object of ``str`` for text).

    Attributes:
        name: what messages call the data (the file's basename, or a built-in dataset's name).
        columns: read-only mapping, column name → 1-D array of ``num_rows`` cells.
        num_rows: number of data rows.
    """

    name: str
    columns: Mapping[str, np.ndarray]
    num_rows: int

    def __post_init__(self) -> None:
        for column, values in self.columns.items():
            if values.ndim != 1 or len(values) != self.num_rows:
                raise DataError(
                    f"{self.name}: column '{column}' has shape {values.shape}; expected ({self.num_rows},)"
                )
        object.__setattr__(self, "columns", MappingProxyType(dict(self.columns)))

    @classmethod
    def from_columns(cls, name: str, columns: Mapping[str, np.ndarray]) -> Table:
        """A table from 1-D arrays of equal length (the row count is taken from the first)."""
        arrays = {column: np.asarray(values) for column, values in columns.items()}
        num_rows = len(next(iter(arrays.values()))) if arrays else 0
        return cls(name, arrays, num_rows)

    @property
    def column_names(self) -> tuple[str, ...]:
        """Column names in file order."""
        return tuple(self.columns)

    def column(self, column: str, *, role: str = "column") -> np.ndarray:
        """One column; a :class:`DataError` listing the available columns if there is none by that name."""
        if column not in self.columns:
            raise DataError(
                f"{role} '{column}' is not in {self.name}; its columns are: {name_list(self.column_names)}"
            )
        return self.columns[column]

    def take(self, rows: np.ndarray) -> Table:
        """The table restricted to ``rows`` (0-based indices, e.g. one partition), same name."""
        index = np.asarray(rows, dtype=np.int64)
        return Table(self.name, {c: v[index] for c, v in self.columns.items()}, len(index))


def read_table(path: str | Path) -> Table:
    """Read a ``.csv``, ``.tsv``, ``.parquet`` or ``.npz`` file (see the module docstring).

    Raises:
        DataError: the file is missing, unreadable, corrupt, empty, ragged or has duplicate columns.
    """
    shown = str(path)
    file = Path(path)
    if not file.exists():
        raise DataError(f"data file {shown} does not exist")
    if file.is_dir():
        raise DataError(f"data file {shown} is a directory, not a file")
    size = file.stat().st_size
    if size > MAX_DATA_FILE_BYTES:
        raise DataError(f"data file {shown} is {size} bytes; the limit is {MAX_DATA_FILE_BYTES} "
                        "(split it, or read a sample)")
    reader = FORMATS.get(file.suffix.lower())
    if reader is None:
        raise DataError(
            f"data file {shown} has the unsupported format '{file.suffix}'; use {_format_list()}"
        )
    try:
        columns = reader(file, shown)
    except PermissionError:
        raise DataError(f"data file {shown} cannot be read (permission denied)") from None
    _check_names(list(columns), shown)
    table = Table.from_columns(file.name, columns)
    if table.num_rows == 0:
        raise DataError(f"data file {shown} has a header but no data rows")
    return table


def _format_list() -> str:
    suffixes = list(FORMATS)
    return f"{', '.join(suffixes[:-1])} or {suffixes[-1]}"


def _check_names(names: list[str], shown: str) -> None:
    seen: dict[str, int] = {}
    for position, column in enumerate(names, start=1):
        if column in seen:
            raise DataError(
                f"data file {shown} has two columns named '{column}' (columns {seen[column]} and {position})"
            )
        seen[column] = position


# -- CSV / TSV -----------------------------------------------------------------------------------------
def _undecodable_line(file: Path) -> int:
    """The line of the first byte that is not UTF-8 (decoding reads in blocks, so the reader cannot tell)."""
    try:
        file.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        return file.read_bytes().count(b"\n", 0, exc.start) + 1
    return 0


def _records(reader: Iterator[list[str]], shown: str, line: Callable[[], int],
             file: Path) -> Iterator[list[str]]:
    """Non-blank records; decoding and CSV syntax errors as one-line DataErrors with the line number."""
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except UnicodeDecodeError:
            raise DataError(f"data file {shown} is not UTF-8 text (line {_undecodable_line(file)})") from None
        except csv.Error as exc:
            raise DataError(f"data file {shown}, line {line()}: not valid CSV ({exc})") from None
        if record and not (len(record) == 1 and not record[0].strip()):
            yield record


def _read_delimited(file: Path, shown: str, delimiter: str) -> dict[str, np.ndarray]:
    with file.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, delimiter=delimiter, strict=True)
        records = _records(reader, shown, lambda: reader.line_num, file)
        header = next(records, None)
        if header is None:
            raise DataError(f"data file {shown} is empty")
        names = [name.strip() for name in header]
        for position, column in enumerate(names, start=1):
            if not column:
                raise DataError(f"data file {shown}: column {position} of the header has no name")
        _check_names(names, shown)
        rows: list[list[str]] = []
        for record in records:
            if len(record) != len(names):
                raise DataError(
                    f"data file {shown}, row {len(rows) + 1} (line {reader.line_num}): "
                    f"{len(record)} values, the header has {len(names)} columns"
                )
            rows.append([cell.strip() for cell in record])
    columns: dict[str, np.ndarray] = {}
    for j, column in enumerate(names):
        values = np.empty(len(rows), dtype=object)
        values[:] = [row[j] for row in rows]
        columns[column] = values
    return columns


def _read_csv(file: Path, shown: str) -> dict[str, np.ndarray]:
    return _read_delimited(file, shown, ",")


def _read_tsv(file: Path, shown: str) -> dict[str, np.ndarray]:
    return _read_delimited(file, shown, "\t")


# -- Parquet -------------------------------------------------------------------------------------------
def _read_parquet(file: Path, shown: str) -> dict[str, np.ndarray]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(
            f"reading data file {shown} needs pyarrow (Parquet support); install it with: pip install pyarrow"
        ) from None
    try:
        arrow = pq.read_table(file)
    except PermissionError:
        raise
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise DataError(f"data file {shown} is not a readable Parquet file ({type(exc).__name__})") from None
    if arrow.num_columns == 0:
        raise DataError(f"data file {shown} is empty")
    _check_names(arrow.column_names, shown)
    return {column: _text_as_object(arrow.column(j).to_numpy())
            for j, column in enumerate(arrow.column_names)}


# -- NPZ -----------------------------------------------------------------------------------------------
def _read_npz(file: Path, shown: str) -> dict[str, np.ndarray]:
    try:
        archive = np.load(file, allow_pickle=False)
    except PermissionError:
        raise
    except Exception as exc:  # numpy raises many types for a file that is not an archive
        raise DataError(f"data file {shown} is not a readable .npz archive ({type(exc).__name__})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"data file {shown} is not a readable .npz archive (a single .npy array)")
    columns: dict[str, np.ndarray] = {}
    names: list[str] = []
    with archive:
        if not archive.files:
            raise DataError(f"data file {shown} is empty")
        first: tuple[str, int] | None = None
        for key in archive.files:
            array = _npz_array(archive, key, shown)
            if first is None:
                first = (key, len(array))
            elif len(array) != first[1]:
                raise DataError(
                    f"data file {shown}: array '{key}' has {len(array)} rows, "
                    f"array '{first[0]}' has {first[1]}"
                )
            if array.ndim == 1:
                pieces = [(key, array)]
            else:
                pieces = [(f"{key}{j}", array[:, j]) for j in range(array.shape[1])]
            for column, values in pieces:
                names.append(column)
                columns[column] = _text_as_object(values)
    _check_names(names, shown)
    return columns


def _npz_array(archive: np.lib.npyio.NpzFile, key: str, shown: str) -> np.ndarray:
    try:
        array = archive[key]
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise DataError(
                f"data file {shown}: array '{key}' holds Python objects, which flonnx does not load "
                "(allow_pickle=False); store text with dtype 'U'"
            ) from None
        raise DataError(f"data file {shown} is not a readable .npz archive (ValueError)") from None
    except Exception as exc:  # a damaged member raises zipfile, zlib or numpy format errors
        raise DataError(f"data file {shown} is not a readable .npz archive ({type(exc).__name__})") from None
    if array.ndim == 1 or (array.ndim == 2 and key in _MATRIX_NAMES):
        return np.asarray(array)
    raise DataError(
        f"data file {shown}: array '{key}' has shape {array.shape}; use 1-D arrays (one per column) "
        "or a 2-D feature matrix named 'x' or 'features'"
    )


def _text_as_object(values: np.ndarray) -> np.ndarray:
    """Fixed-width text (``U``/``S``) as an object array of ``str``, like CSV columns."""
    if values.dtype.kind == "U":
        return values.astype(object)
    if values.dtype.kind == "S":
        out = np.empty(len(values), dtype=object)
        out[:] = [cell.decode("utf-8", "replace") for cell in values]
        return out
    return values


#: Suffix → reader; a new format is one entry here.
FORMATS: Mapping[str, Callable[[Path, str], dict[str, np.ndarray]]] = MappingProxyType({
    ".csv": _read_csv,
    ".tsv": _read_tsv,
    ".parquet": _read_parquet,
    ".npz": _read_npz,
})
