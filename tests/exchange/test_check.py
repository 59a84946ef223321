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

from flonnx.exchange.check import check_model
from flonnx.exchange.export import write_model

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


# -- old opsets: a user's file is upgraded before the table; never an empty verdict with exit 0 --------

PYTORCH_CONVERTED = Path(onnx.__file__).parent / "backend" / "test" / "data" / "pytorch-converted"
OLD_OPSET_FILES = {  # backend-suite layer model -> the kernel ONNX Runtime 1.32 no longer has
    "test_Linear": "Gemm-6",
    "test_BatchNorm2d_eval": "BatchNormalization-6",
    "test_PReLU_2d": "PRelu-6",
    "test_AvgPool2d": "AveragePool-1",
}


def _save(model: onnx.ModelProto, path: Path) -> Path:
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize("name", sorted(OLD_OPSET_FILES))
def test_old_opset_file_is_upgraded_and_gets_a_framework_table(name) -> None:
    from typer.testing import CliRunner

    from flonnx.cli import app

    path = PYTORCH_CONVERTED / name / "model.onnx"

    report = check_model(path)
    result = CliRunner().invoke(app, ["check", str(path)])

    assert report.problems == [] and report.runnable and report.has_verdict
    assert report.conversion is not None
    assert (report.conversion["from_opset"], report.conversion["to_opset"]) == (6, 17)
    assert OLD_OPSET_FILES[name] in report.conversion["reason"]
    assert report.conversion["max_abs_diff"] <= 1e-4
    assert report.opsets == {"ai.onnx": 17}
    verdicts = _verdicts(report)
    assert verdicts["numpy"].installed and verdicts["numpy"].parity["passed"]
    assert result.exit_code == 0, result.output
    assert "upgraded from opset 6 to 17" in result.output
    assert "parity with onnx.reference max |diff|" in result.output
    assert "parity max abs / rel" in result.output and "│ numpy" in result.output
    assert "problem" not in result.output and "cannot run" not in result.output


def test_cli_json_records_the_conversion_and_keeps_its_fields(tmp_path) -> None:
    from typer.testing import CliRunner

    from flonnx.cli import app

    result = CliRunner().invoke(app, ["check", str(PYTORCH_CONVERTED / "test_Linear" / "model.onnx"),
                                      "--json"])

    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    for key in ("path", "valid", "problems", "definition_id", "opsets", "inputs", "outputs",
                "parameters", "frameworks"):
        assert key in data
    assert data["conversion"]["from_opset"] == 6 and data["conversion"]["checked_with"] == "onnx.reference"
    assert data["runnable"] and data["has_verdict"] and data["frameworks"]


def test_old_opset_file_that_cannot_be_upgraded_exits_non_zero() -> None:
    from typer.testing import CliRunner

    from flonnx.cli import app

    # opset-6 PRelu with a per-channel slope: the converter's result does not run in ONNX Runtime
    path = PYTORCH_CONVERTED / "test_PReLU_2d_multiparam" / "model.onnx"

    result = CliRunner().invoke(app, ["check", str(path)])

    assert result.exit_code == 1, result.output
    assert "opset 6 model: ONNX Runtime has no kernel for PRelu-6" in result.output
    assert "re-export the model with opset 17 or newer" in result.output
    assert "no verdict" in result.output and "parity max abs / rel" not in result.output


def test_model_the_converter_rejects_is_reported_not_raised(tmp_path) -> None:
    from tests.exchange.test_upgrade import lstm_at_opset_6

    path = _save(lstm_at_opset_6(), tmp_path / "lstm6.onnx")

    report = check_model(path)

    assert report.valid and not report.runnable and not report.has_verdict
    assert report.conversion is None and report.frameworks == []
    assert report.problems == [
        "opset 6 model: ONNX Runtime has no kernel for LSTM-1 and the ONNX version converter cannot "
        "upgrade it to opset 17: No Adapter From Version $6 for LSTM; re-export the model with opset 17 "
        "or newer"
    ]


def test_model_onnx_runtime_cannot_run_exits_non_zero(tmp_path) -> None:
    from onnx import TensorProto
    from onnx import helper as oh
    from typer.testing import CliRunner

    from flonnx.cli import app

    # valid ONNX, current opset, but ONNX Runtime has no int32 Gemm: used to print an empty table, exit 0
    graph = oh.make_graph(
        [oh.make_node("Gemm", ["a", "b"], ["y"])], "ints",
        [oh.make_tensor_value_info(n, TensorProto.INT32, [2, 2]) for n in ("a", "b")],
        [oh.make_tensor_value_info("y", TensorProto.INT32, [2, 2])],
    )
    path = _save(oh.make_model(graph, opset_imports=[oh.make_opsetid("", 13)]), tmp_path / "int.onnx")

    result = CliRunner().invoke(app, ["check", str(path), "--json"])

    assert result.exit_code == 1, result.output
    data = json.loads(result.output)
    assert data["valid"] and not data["runnable"] and not data["has_verdict"] and data["conversion"] is None
    assert data["problems"][0].startswith("ONNX Runtime cannot run the model: ")


def test_no_installed_framework_means_no_verdict_and_exit_1(monkeypatch) -> None:
    from typer.testing import CliRunner

    import flonnx.exchange.check
    from flonnx.cli import app

    monkeypatch.setattr(flonnx.exchange.check, "_FRAMEWORKS",
                        {"ghost": ("flonnx_test_no_such_package", "a framework that is not installed")})
    path = PYTORCH_CONVERTED / "test_Linear" / "model.onnx"

    report = check_model(path)
    result = CliRunner().invoke(app, ["check", str(path)])

    assert report.runnable and not report.has_verdict
    assert report.problems == ["no installed framework could be checked (see the notes per framework)"]
    assert result.exit_code == 1 and "no verdict" in result.output
