"""`flonnx check-data`: a site checks its file exactly as its node will read it, before joining."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from flonnx.cli import app


def _csv(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join(["age,bp,site,label", *rows]) + "\n")
    return path


def test_a_good_file_prints_rows_columns_categories_and_classes(tmp_path: Path) -> None:
    data = _csv(tmp_path / "site.csv", [f"{40 + i},{120 + i},{'north' if i % 2 else 'south'},{i % 3}"
                                        for i in range(12)])

    result = CliRunner().invoke(app, ["check-data", str(data), "--label", "label", "--categorical", "site"])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    # 5 model inputs: age, bp, and site one-hot over its 2 values plus an "other" slot
    assert lines[0] == "site.csv: 12 rows, 3 feature columns (5 model inputs), task classification"
    assert lines[1:] == ["features: age, bp, site", "categorical site: 2 values", "classes: 3",
                         "ok: a node with this file and label would join"]


def test_a_bad_file_gets_the_nodes_one_line_refusal_without_cell_values(tmp_path: Path) -> None:
    rows = [f"{40 + i},{120 + i},north,{i % 2}" for i in range(12)]
    rows[4] = "44,SECRET-VALUE,north,0"
    data = _csv(tmp_path / "site.csv", rows)

    result = CliRunner().invoke(app, ["check-data", str(data), "--label", "label", "--categorical", "site"])

    assert result.exit_code == 1
    assert "Traceback" not in result.output and "SECRET-VALUE" not in result.output
    assert result.output.startswith("error: ") and "row 5" in result.output and "'bp'" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_missing_label_column_names_the_columns(tmp_path: Path) -> None:
    data = _csv(tmp_path / "site.csv", [f"{40 + i},{120 + i},north,{i % 2}" for i in range(12)])

    result = CliRunner().invoke(app, ["check-data", str(data), "--label", "outcome"])

    assert result.exit_code == 1
    assert "label column 'outcome' is not in site.csv; its columns are: age, bp, site, label" in result.output
