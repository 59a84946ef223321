from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from flonnx.exchange.data import (
    FeatureSchema,
    Table,
    feature_names,
    local_stats,
    read_table,
    to_arrays,
)
from flonnx.exchange.errors import DataError

from .conftest import SECRET

HEADER = "age,bmi,sex,diagnosis,note\n"


def _rows(n: int) -> str:
    return "".join(f"{30 + i},{20 + i / 10},{'FM'[i % 2]},{i % 2},{SECRET}-note-{i}\n" for i in range(n))


def _table(write_csv: Callable[..., Path], body: str) -> Table:
    return read_table(write_csv(HEADER + body))


def _refusal(table: Table, schema: FeatureSchema, task: str = "classification", **kwargs: object) -> str:
    with pytest.raises(DataError) as caught:
        to_arrays(table, schema, task=task, **kwargs)  # type: ignore[arg-type]
    message = str(caught.value)
    assert "\n" not in message
    assert SECRET not in message
    return message


SCHEMA = FeatureSchema(label="diagnosis", features=("age", "bmi"))


def test_converts_numeric_features_in_schema_order(write_csv: Callable[..., Path]) -> None:
    table = _table(write_csv, _rows(12))

    x, y = to_arrays(table, FeatureSchema(label="diagnosis", features=("bmi", "age")), task="classification")

    assert x.dtype == np.float32 and x.shape == (12, 2)
    assert x[1].tolist() == pytest.approx([20.1, 31.0])
    assert y.dtype == np.int64 and y.tolist() == [i % 2 for i in range(12)]


def test_one_hot_over_vocabulary_with_other_bucket(write_csv: Callable[..., Path]) -> None:
    table = _table(write_csv, _rows(12).replace(",M,", ",X,", 1))
    schema = FeatureSchema(label="diagnosis", features=("age", "sex"), categorical=("sex",))
    vocabularies = {"sex": ["F", "M"]}

    x, _ = to_arrays(table, schema, task="binary", vocabularies=vocabularies)

    assert feature_names(schema, vocabularies) == ["age", "sex=F", "sex=M", "sex=<other>"]
    assert x.shape == (12, 4)
    assert x[:4, 1:].tolist() == [[1, 0, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0]]


def test_features_default_to_every_column_but_label_and_excluded(write_csv: Callable[..., Path]) -> None:
    table = _table(write_csv, _rows(12))
    schema = FeatureSchema(label="diagnosis", categorical=("sex",), exclude=("note",))

    resolved = schema.resolve(table)

    assert resolved.features == ("age", "bmi", "sex")
    assert resolved.numeric == ("age", "bmi")


def test_text_labels_map_to_classes_in_schema_order(write_csv: Callable[..., Path]) -> None:
    table = _table(write_csv, _rows(12))
    schema = FeatureSchema(label="sex", features=("age",), classes=("M", "F"))

    _, y = to_arrays(table, schema, task="binary")

    assert y.tolist() == [1, 0] * 6


def test_regression_labels_are_float32(write_csv: Callable[..., Path]) -> None:
    table = _table(write_csv, _rows(12))

    _, y = to_arrays(table, FeatureSchema(label="bmi", features=("age",)), task="regression")

    assert y.dtype == np.float32 and y[3] == pytest.approx(20.3)


def test_impute_mean_fills_missing_cells_with_given_means(write_csv: Callable[..., Path]) -> None:
    body = _rows(12).replace("33,20.3,", "33,NA,").replace("35,20.5,", "35,,")
    table = _table(write_csv, body)
    schema = FeatureSchema(label="diagnosis", features=("age", "bmi"), missing="impute-mean")

    by_position, _ = to_arrays(table, schema, task="classification", means=[0.0, 99.5])
    by_name, _ = to_arrays(table, schema, task="classification", means={"bmi": 99.5})
    deferred, _ = to_arrays(table, schema, task="classification")

    assert by_position[3, 1] == by_position[5, 1] == pytest.approx(99.5)
    assert np.array_equal(by_position, by_name)
    assert np.isnan(deferred[3, 1]) and np.isnan(deferred[5, 1])


def test_local_stats_are_counts_and_sums(write_csv: Callable[..., Path]) -> None:
    table = _table(write_csv, _rows(12).replace("33,20.3,", "33,,"))
    schema = FeatureSchema(label="diagnosis", features=("age", "bmi", "sex"), categorical=("sex",),
                           missing="impute-mean")
    ages = np.arange(30, 42, dtype=np.float64)

    stats = local_stats(table, schema)

    assert stats["rows"] == 12
    assert stats["numeric"]["age"] == {"count": 12, "sum": ages.sum(), "sum_sq": (ages**2).sum()}
    assert stats["numeric"]["bmi"]["count"] == 11
    assert stats["categorical"] == {"sex": ["F", "M"]}


def test_local_stats_refuse_a_table_under_min_rows(write_csv: Callable[..., Path]) -> None:
    table = _table(write_csv, _rows(4))

    with pytest.raises(DataError, match=r"^site-a.csv has 4 rows; at least 10 are needed \(min-rows\)$"):
        local_stats(table, SCHEMA)


@pytest.mark.parametrize(("schema", "expected"), [
    (FeatureSchema(label="diagnosis_"),
     "label column 'diagnosis_' is not in site-a.csv; its columns are: age, bmi, sex, diagnosis, note"),
    (FeatureSchema(label="diagnosis", features=("age", "bmi2")),
     "feature column 'bmi2' is not in site-a.csv; its columns are: age, bmi, sex, diagnosis, note"),
    (FeatureSchema(label="diagnosis", exclude=("id",)),
     "excluded column 'id' is not in site-a.csv; its columns are: age, bmi, sex, diagnosis, note"),
])
def test_refuses_unknown_columns(
    write_csv: Callable[..., Path], schema: FeatureSchema, expected: str
) -> None:
    assert _refusal(_table(write_csv, _rows(12)), schema) == expected


def test_column_list_is_truncated_when_long() -> None:
    table = Table.from_columns("wide.csv", {f"c{i}": np.zeros(12) for i in range(20)})

    message = _refusal(table, FeatureSchema(label="y"))

    assert message == ("label column 'y' is not in wide.csv; its columns are: "
                       "c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, … (8 more)")


def test_refuses_non_number_naming_row_and_column(write_csv: Callable[..., Path]) -> None:
    table = _table(write_csv, _rows(12).replace("46,", f"{SECRET}9,", 1).replace("31,", f"{SECRET}9,"))

    assert _refusal(table, SCHEMA) == "column 'age', row 2: not a number"
    implicit = FeatureSchema(label="diagnosis", exclude=("note",))
    assert _refusal(table, implicit) == (
        "column 'age', row 2: not a number; declare it categorical or exclude it"
    )


def test_refuses_missing_values_under_refuse_policy(write_csv: Callable[..., Path]) -> None:
    body = _rows(12).replace("34,20.4,", "34,,").replace("36,20.6,", "36,NaN,")
    body = body.replace("39,20.9,", "39,null,")
    table = _table(write_csv, body)

    assert _refusal(table, SCHEMA) == (
        "column 'bmi': 3 missing values (first at row 5); the missing-value policy is 'refuse'"
    )


def test_refuses_infinite_and_float32_overflow_always(write_csv: Callable[..., Path]) -> None:
    infinite = _table(write_csv, _rows(12).replace("32,20.2,", "32,inf,"))
    huge = _table(write_csv, _rows(12).replace("32,20.2,", "32,1e300,"))
    impute = FeatureSchema(label="diagnosis", features=("age", "bmi"), missing="impute-mean")

    assert _refusal(infinite, impute) == "column 'bmi', row 3: infinite value"
    message = _refusal(huge, SCHEMA)
    assert message == "column 'bmi', row 3: too large for float32"
    assert "1e300" not in message


def test_refuses_non_integer_negative_and_non_binary_labels(write_csv: Callable[..., Path]) -> None:
    fraction = _table(write_csv, _rows(12).replace(",M,1,", ",M,1.5,", 1))
    text = _table(write_csv, _rows(12).replace(",M,1,", f",M,{SECRET}yes,", 1))
    negative = _table(write_csv, _rows(12).replace(",M,1,", ",M,-1,", 1))
    three = _table(write_csv, _rows(12).replace(",M,1,", ",M,2,", 1))

    assert _refusal(fraction, SCHEMA) == (
        "label column 'diagnosis', row 2: not an integer class index; name the classes to use text labels"
    )
    assert _refusal(text, SCHEMA) == _refusal(fraction, SCHEMA)
    assert _refusal(negative, SCHEMA) == "label column 'diagnosis', row 2: negative class index"
    assert _refusal(three, SCHEMA, task="binary") == (
        "label column 'diagnosis', row 2: a binary label must be 0 or 1"
    )
    assert to_arrays(three, SCHEMA, task="classification")[1][1] == 2


def test_refuses_text_label_outside_classes_and_missing_labels(write_csv: Callable[..., Path]) -> None:
    table = _table(write_csv, _rows(12).replace(",M,", f",{SECRET}x,", 1))
    unlabeled = _table(write_csv, _rows(12).replace(",M,1,", ",M,,"))
    schema = FeatureSchema(label="sex", features=("age",), classes=("F", "M"))

    assert _refusal(table, schema) == "label column 'sex', row 2: not one of the 2 classes (F, M)"
    assert _refusal(unlabeled, SCHEMA) == (
        "label column 'diagnosis': 6 missing values (first at row 2); rows without a label cannot be used"
    )


def test_refuses_too_few_rows(write_csv: Callable[..., Path]) -> None:
    table = _table(write_csv, _rows(4))

    assert _refusal(table, SCHEMA) == "site-a.csv has 4 rows; at least 10 are needed (min-rows)"
    assert to_arrays(table, FeatureSchema(label="diagnosis", features=("age",), min_rows=4),
                     task="binary")[0].shape == (4, 1)


def test_refuses_categorical_without_vocabulary_and_missing_category(write_csv: Callable[..., Path]) -> None:
    table = _table(write_csv, _rows(12).replace(",F,", ",,", 1))
    schema = FeatureSchema(label="diagnosis", features=("sex",), categorical=("sex",))

    assert _refusal(table, schema) == (
        "categorical column 'sex' has no vocabulary; "
        "pass vocabularies (the union of every site's local_stats)"
    )
    assert _refusal(table, schema, vocabularies={"sex": ["F", "M"]}) == (
        "column 'sex': 1 missing value (first at row 1); the missing-value policy is 'refuse'"
    )
    imputing = FeatureSchema(label="diagnosis", features=("sex",), categorical=("sex",),
                             missing="impute-mean")
    x, _ = to_arrays(table, imputing, task="binary", vocabularies={"sex": ["F", "M"]})
    assert x[0].tolist() == [0, 0, 1]


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"missing": "drop"}, "unknown missing-value policy 'drop'; use 'refuse' or 'impute-mean'"),
    ({"min_rows": 0}, "min-rows must be at least 1, not 0"),
    ({"features": ("age", "y")}, "column 'y' is both the label and a feature"),
    ({"features": ("age", "age")}, "feature column 'age' is listed twice"),
    ({"features": ("age",), "categorical": ("sex",)}, "categorical column 'sex' is not among the features"),
    ({"features": ("age",), "exclude": ("age",)}, "column 'age' is both excluded and a feature"),
    ({"exclude": ("y",)}, "the label column 'y' is excluded"),
    ({"classes": ("a", "a")}, "class 'a' is listed twice"),
])
def test_refuses_inconsistent_schema(kwargs: dict[str, object], expected: str) -> None:
    with pytest.raises(DataError) as caught:
        FeatureSchema(label="y", **kwargs)  # type: ignore[arg-type]

    assert str(caught.value) == expected


def test_refuses_bad_task_and_binary_with_three_classes(write_csv: Callable[..., Path]) -> None:
    table = _table(write_csv, _rows(12))

    assert _refusal(table, SCHEMA, task="ranking") == (
        "unknown task 'ranking'; use classification, binary or regression"
    )
    three = FeatureSchema(label="sex", features=("age",), classes=("F", "M", "X"))
    assert _refusal(table, three, task="binary") == (
        "a binary task needs exactly 2 classes; the schema names 3"
    )


def test_schema_from_node_config() -> None:
    config = {"label": "diagnosis", "features": "age, bmi,sex", "categorical": "sex",
              "missing": "impute-mean", "min-rows": "20", "data": "/x.csv"}

    schema = FeatureSchema.from_config(config)


    assert schema == FeatureSchema(label="diagnosis", features=("age", "bmi", "sex"), categorical=("sex",),
                                   missing="impute-mean", min_rows=20)
