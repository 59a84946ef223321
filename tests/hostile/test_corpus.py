"""The hostile ONNX corpus against every entry point (docs/reliability.md, "Hostile input").

Each (file, entry point) runs in its own process with a 2 GiB address-space limit and a time limit:
the file must be refused with flonnx's typed error and a one-line message (or accepted, for the
valid ONNX that flonnx can run), never by a MemoryError, a signal, a hang or a foreign exception.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hostile.make_corpus import CASES, Case, build

pytestmark = pytest.mark.reliability

WORKER = Path(__file__).with_name("_worker.py")
ROOT = Path(__file__).resolve().parents[2]
#: Seconds one entry point may take on one file (the imports included).
TIME_LIMIT = 60

PARAMS = [pytest.param(case, entry, id=f"{case.name}-{entry}") for case in CASES for entry in case.expected]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build(tmp_path_factory.mktemp("hostile"))


@pytest.mark.parametrize(("case", "entry"), PARAMS)
def test_hostile_file_is_refused_with_a_typed_error(case: Case, entry: str, corpus: dict[str, Path]) -> None:
    args = [sys.executable, str(WORKER), entry, str(corpus[case.name])]
    if case.announced_id is not None:
        args.append(case.announced_id)
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    # cwd is the case's folder: nothing relative to it may be read that the model does not own
    done = subprocess.run(args, capture_output=True, text=True, timeout=TIME_LIMIT,
                          cwd=corpus[case.name].parent, env=env)

    assert done.returncode == 0, f"worker died ({done.returncode}): {done.stderr[-2000:]}"
    report = json.loads(done.stdout.strip().splitlines()[-1])
    expected = case.expected[entry]
    if not expected:
        assert report["outcome"] == "ok", report
        return
    assert report["outcome"] == "error", report
    assert report["flonnx"] and report["type"] == expected, report
    message = report["message"]
    assert message and "\n" not in message and len(message) < 300, message
    assert case.message.get(entry, "") in message, message
