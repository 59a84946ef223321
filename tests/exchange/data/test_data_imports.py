"""``import flonnx.exchange.data`` loads numpy only: readers, sklearn, partitioners are imported lazily."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
HEAVY = ("flwr", "flwr_datasets", "datasets", "pyarrow", "pandas", "sklearn", "torch", "jax", "tensorflow")

PROGRAM = f"""
import sys
import flonnx.exchange.data
from flonnx.exchange.data import FeatureSchema, Table, to_arrays
import numpy as np
table = Table.from_columns("t", {{"a": np.arange(10.0), "y": np.arange(10) % 2}})
to_arrays(table, FeatureSchema(label="y"), task="binary")
print(sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r}))
"""


def test_importing_exchange_data_loads_no_framework_flower_or_arrow() -> None:
    result = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, cwd=ROOT,
                            timeout=120)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
