from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

for _variable in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
    os.environ.setdefault(_variable, "1")

#: Every distinctive cell value in the test tables starts with this; no message may contain it.
SECRET = "SECRET"


@pytest.fixture
def write_csv(tmp_path: Path) -> Callable[[str, str], Path]:
    def write(text: str, name: str = "site-a.csv") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write
