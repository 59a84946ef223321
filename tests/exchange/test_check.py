"""`flonnx check`: validity, which framework can train the model, and parity with ONNX Runtime."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest

from exchange.check import check_model
from exchange.export import write_model

ROOT = Path(__file__).resolve().parents[2]
LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def _verdicts(report) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return {f.framework: f for f in report.frameworks}


def test_torch_export_is_trainable_everywhere_with_parity(mlp_model, tmp_path) -> None:
    definition, weights = mlp_model
    path = write_model(definition.materialize(weights), tmp_path / "mlp.onnx")

    report = check_model(path)

    assert report.valid and report.problems == []
    assert report.definition_id == definition.id
    verdicts = _verdicts(report)
    for framework in ("torch", "jax", "sklearn"):
        assert verdicts[framework].trainable, verdicts[framework]
        assert verdicts[framework].parity["passed"]
    assert verdicts["numpy"].parity["passed"] and not verdicts["numpy"].trainable


def test_skl2onnx_export_is_checked_for_every_backend(tmp_path) -> None:
    skl2onnx = pytest.importorskip("skl2onnx", reason="produces the model under test")
    from sklearn.neural_network import MLPClassifier

    rng = np.random.default_rng(0)
    x, y = rng.random((40, 6), dtype=np.float32), np.arange(40) % 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        native = MLPClassifier(hidden_layer_sizes=(5,), max_iter=3).fit(x, y)
    path = tmp_path / "skl.onnx"
    path.write_bytes(skl2onnx.to_onnx(native, x[:1], options={"zipmap": False}).SerializeToString())

    report = check_model(path)

    verdicts = _verdicts(report)
    for framework in ("numpy", "torch", "jax"):
        assert verdicts[framework].missing_ops == []
        assert verdicts[framework].parity["passed"]


@pytest.mark.parametrize("name", ["light_squeezenet"])
def test_backend_suite_light_model_reports_parity_or_missing_ops(name) -> None:
    report = check_model(LIGHT / f"{name}.onnx", batch=1)

    assert report.valid
    for verdict in report.frameworks:
        if verdict.framework in ("numpy", "torch", "jax"):
            assert verdict.missing_ops or verdict.parity["passed"], verdict


def test_invalid_file_is_reported_not_raised(tmp_path) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"definitely not protobuf \xff\xff")

    report = check_model(path)

    assert not report.valid
    assert "not a parseable ONNX model" in report.problems[0]


def test_cli_json_output_and_exit_codes(mlp_model, tmp_path) -> None:
    definition, weights = mlp_model
    good = write_model(definition.materialize(weights), tmp_path / "mlp.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"nope")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    ok = subprocess.run([sys.executable, "-m", "flonnx", "check", str(good), "--json"], env=env,
                        capture_output=True, text=True, timeout=300)
    fail = subprocess.run([sys.executable, "-m", "flonnx", "check", str(bad)], env=env,
                          capture_output=True, text=True, timeout=300)

    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["definition_id"] == definition.id
    assert fail.returncode == 1 and "invalid" in fail.stdout
