"""Fuzzing of flonnx's parsers of untrusted input (docs/reliability.md, "Fuzzing and size limits").

Each entry point of ``tests/hostile/_fuzz.py`` runs in its own process with a 3 GiB address-space
limit: every generated or mutated input must be accepted or refused with flonnx's typed error, within
the hypothesis deadline and the memory cap. ``FLONNX_FUZZ_EXAMPLES`` sets the inputs per entry point
(default 300, the CI count; the documented run uses 10,000).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hostile._fuzz import ENTRIES

pytestmark = pytest.mark.reliability

FUZZER = Path(__file__).with_name("_fuzz.py")
ROOT = Path(__file__).resolve().parents[2]
#: Inputs per entry point in CI; the full run sets FLONNX_FUZZ_EXAMPLES=10000.
CI_EXAMPLES = 300


@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_parser_raises_only_typed_errors_on_hostile_input(entry: str) -> None:
    examples = int(os.environ.get("FLONNX_FUZZ_EXAMPLES", CI_EXAMPLES))
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

    done = subprocess.run([sys.executable, str(FUZZER), entry, str(examples)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": path}, cwd=ROOT)

    assert done.returncode == 0, f"fuzzer died ({done.returncode}): {done.stderr[-3000:]}"
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(report))  # the figures of docs/reliability.md (shown with -s)
    assert report["failure"] is None, json.dumps(report, indent=1)
