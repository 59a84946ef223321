from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from flonnx.exchange.data import Table, read_table
from flonnx.exchange.errors import DataError, FlonnxError

from .conftest import SECRET


def _refusal(path: Path | str) -> str:
    with pytest.raises(DataError) as caught:
        read_table(path)
    message = str(caught.value)
    assert "\n" not in message
    assert SECRET not in message
    return message


def test_reads_csv_columns_as_stripped_text_in_file_order(write_csv: Callable[..., Path]) -> None:
    path = write_csv("\ufeffage, sex ,label\n 41,F,1\n\n52,M,0\n")

    table = read_table(path)

    assert table.name == "site-a.csv"
    assert table.column_names == ("age", "sex", "label")
    assert table.num_rows == 2
    assert table.columns["age"].dtype == object
    assert table.columns["age"].tolist() == ["41", "52"]
    assert table.columns["sex"].tolist() == ["F", "M"]


def test_reads_tsv(write_csv: Callable[..., Path]) -> None:
    path = write_csv("a\tb\n1\t2\n", "site.tsv")

    assert read_table(path).columns["b"].tolist() == ["2"]


def test_data_error_is_a_flonnx_error() -> None:
    assert issubclass(DataError, FlonnxError)


def test_refuses_missing_file_showing_the_path_as_given(tmp_path: Path) -> None:
    path = tmp_path / "site-a.csv"

    assert _refusal(path) == f"data file {path} does not exist"
    assert _refusal("site-a.csv") == "data file site-a.csv does not exist"


def test_refuses_directory_and_unknown_format(tmp_path: Path) -> None:
    (tmp_path / "d.csv").mkdir()
    (tmp_path / "x.xlsx").write_bytes(b"PK")

    assert _refusal(tmp_path / "d.csv") == f"data file {tmp_path / 'd.csv'} is a directory, not a file"
    assert _refusal(tmp_path / "x.xlsx") == (
        f"data file {tmp_path / 'x.xlsx'} has the unsupported format '.xlsx'; "
        "use .csv, .tsv, .parquet or .npz"
    )


def test_refuses_empty_csv_and_header_without_rows(write_csv: Callable[..., Path]) -> None:
    empty = write_csv("\n\n", "empty.csv")
    header = write_csv("a,b\n", "header.csv")

    assert _refusal(empty) == f"data file {empty} is empty"
    assert _refusal(header) == f"data file {header} has a header but no data rows"


def test_refuses_ragged_row_naming_row_and_line(write_csv: Callable[..., Path]) -> None:
    path = write_csv(f"a,b,c\n1,2,3\n\n4,{SECRET}-5\n")

    assert _refusal(path) == f"data file {path}, row 2 (line 4): 2 values, the header has 3 columns"


def test_refuses_duplicate_and_empty_column_names(write_csv: Callable[..., Path]) -> None:
    duplicate = write_csv("age,bmi,age\n1,2,3\n", "dup.csv")
    unnamed = write_csv("age,,bmi\n1,2,3\n", "unnamed.csv")

    assert _refusal(duplicate) == f"data file {duplicate} has two columns named 'age' (columns 1 and 3)"
    assert _refusal(unnamed) == f"data file {unnamed}: column 2 of the header has no name"


def test_refuses_non_utf8_and_malformed_quoting(tmp_path: Path) -> None:
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"a,b\n1,\xff" + SECRET.encode() + b"\n")
    quoted = tmp_path / "quoted.csv"
    quoted.write_bytes(b'a,b\n1,2\n3,"4"' + SECRET.encode() + b"\n")

    assert _refusal(latin) == f"data file {latin} is not UTF-8 text (line 2)"
    assert _refusal(quoted) == f"data file {quoted}, line 3: not valid CSV (',' expected after '\"')"


def test_parquet_round_trip_keeps_numbers_text_and_nulls(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow", reason="Parquet needs pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "site.parquet"
    pq.write_table(pa.table({"age": [41, None, 60], "sex": ["F", "M", None], "y": [0.5, 1.5, 2.5]}), path)

    table = read_table(path)

    assert table.column_names == ("age", "sex", "y")
    assert table.columns["age"].dtype.kind == "f"
    assert np.isnan(table.columns["age"][1])
    assert table.columns["sex"].tolist() == ["F", "M", None]
    assert table.columns["y"].tolist() == [0.5, 1.5, 2.5]


def test_refuses_corrupt_parquet_without_library_text(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow", reason="Parquet needs pyarrow")
    path = tmp_path / "bad.parquet"
    path.write_bytes(SECRET.encode() * 10)

    assert _refusal(path) == f"data file {path} is not a readable Parquet file (ArrowInvalid)"


def test_npz_round_trip_with_feature_matrix(tmp_path: Path) -> None:
    path = tmp_path / "site.npz"
    np.savez(path, x=np.arange(6.0).reshape(3, 2), label=np.array([0, 1, 0]), sex=np.array(["F", "M", "F"]))

    table = read_table(path)

    assert table.column_names == ("x0", "x1", "label", "sex")
    assert table.columns["x1"].tolist() == [1.0, 3.0, 5.0]
    assert table.columns["sex"].dtype == object
    assert table.columns["sex"].tolist() == ["F", "M", "F"]


def test_refuses_npz_with_objects_bad_shapes_or_ragged_arrays(tmp_path: Path) -> None:
    objects, cube, ragged, corrupt, empty = (tmp_path / f"{n}.npz" for n in ("o", "c", "r", "z", "e"))
    np.savez(objects, a=np.array([SECRET, 1], dtype=object))
    np.savez(cube, img=np.zeros((2, 2, 2)))
    np.savez(ragged, a=np.zeros(3), b=np.zeros(2))
    corrupt.write_bytes(b"PK\x03\x04" + SECRET.encode())
    np.savez(empty)

    assert _refusal(objects) == (
        f"data file {objects}: array 'a' holds Python objects, which flonnx does not load "
        "(allow_pickle=False); store text with dtype 'U'"
    )
    assert _refusal(cube) == (
        f"data file {cube}: array 'img' has shape (2, 2, 2); use 1-D arrays (one per column) "
        "or a 2-D feature matrix named 'x' or 'features'"
    )
    assert _refusal(ragged) == f"data file {ragged}: array 'b' has 2 rows, array 'a' has 3"
    assert _refusal(corrupt).startswith(f"data file {corrupt} is not a readable .npz archive (")
    assert _refusal(empty) == f"data file {empty} is empty"


def test_npz_matrix_name_clash_is_a_duplicate_column(tmp_path: Path) -> None:
    path = tmp_path / "clash.npz"
    np.savez(path, x=np.zeros((2, 2)), x0=np.zeros(2))

    assert _refusal(path) == f"data file {path} has two columns named 'x0' (columns 1 and 3)"


def test_take_selects_rows_and_unknown_column_lists_columns() -> None:
    table = Table.from_columns("t", {"a": np.arange(5), "b": np.arange(5) * 2})

    part = table.take(np.array([1, 3]))

    assert part.num_rows == 2 and part.columns["b"].tolist() == [2, 6]
    with pytest.raises(DataError, match=r"^column 'z' is not in t; its columns are: a, b$"):
        table.column("z")
    with pytest.raises(TypeError):
        table.columns["c"] = np.arange(5)  # type: ignore[index]
