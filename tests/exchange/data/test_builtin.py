from __future__ import annotations

import numpy as np
import pytest

from flonnx.exchange.data import BUILTIN_DATASETS, FeatureSchema, builtin_table, to_arrays
from flonnx.exchange.errors import DataError

pytest.importorskip("sklearn", reason="the built-in data sets ship with scikit-learn")


@pytest.mark.parametrize(("name", "rows", "features"), [
    ("digits", 1797, 64), ("breast-cancer", 569, 30), ("wine", 178, 13), ("diabetes", 442, 10),
])
def test_builtin_loads_with_expected_shape(name: str, rows: int, features: int) -> None:
    info = BUILTIN_DATASETS[name]

    table = builtin_table(name)
    x, y = to_arrays(table, FeatureSchema(label=info.label), task=info.task)

    assert (info.rows, info.features) == (rows, features)
    assert table.num_rows == rows and table.column_names[-1] == info.label
    assert x.shape == (rows, features) and x.dtype == np.float32
    assert y.dtype == (np.float32 if info.task == "regression" else np.int64)


def test_digits_pixels_are_scaled_to_unit_range_and_named() -> None:
    from sklearn.datasets import load_digits

    table = builtin_table("digits")
    x, y = to_arrays(table, FeatureSchema(label="label"), task="classification")

    assert table.column_names[:2] == ("px0", "px1")
    assert np.array_equal(x, (load_digits().data / 16.0).astype(np.float32))
    assert sorted(set(y.tolist())) == list(range(10))


def test_unknown_builtin_lists_the_available_ones() -> None:
    with pytest.raises(DataError, match=r"^unknown built-in dataset 'mnist'; available: "
                                        r"breast-cancer, diabetes, digits, wine$"):
        builtin_table("mnist")
