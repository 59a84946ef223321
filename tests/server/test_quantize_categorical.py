"""Derived exports (int8, float16) of a model that takes a categorical text column.

Three sites with a categorical ``sex`` column (each a different subset of values), text labels and
missing ages imputed with the federated mean train an MLP 5→32→2 (torch and scikit-learn) in-process
(:class:`LocalGrid`, no Ray); the server evaluates on a file of its own. The exported model takes
the numbers and the text of ``sex``; its int8 file must too, and the metric change it records must
be the one measured on the evaluation file's raw rows, which this test reads itself with the csv
module.
"""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from flonnx.cli import app
from flonnx.client.app import app as client_app
from flonnx.exchange.errors import FlonnxError
from flonnx.exchange.preprocess import METADATA_KEY, Preprocessing
from flonnx.exchange.quantize import DERIVED_PREFIX, measured_metrics, raw_columns, weight_bytes
from flonnx.exchange.registry import Registry
from flonnx.exchange.spec import parse_spec
from flonnx.server.federation import Federation
from flonnx.server.progress import Reporter
from flonnx.server.settings import Settings
from tests.server.local_grid import LocalGrid

SITES = {"site-a": ("F", "M"), "site-b": ("F", "X"), "site-c": ("M",)}
CLASSES = ("benign", "malignant")


def _write(path: Path, seed: int, values: tuple[str, ...], n: int = 30) -> str:
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        age = rng.normal(50, 10)
        sex = values[i % len(values)]
        label = CLASSES[int(age + (8 if sex == "F" else 0) > 52)]
        lines.append(f"{'' if i in (3, 17) else f'{age:.2f}'},{sex},{label}\n")
    path.write_text("age,sex,outcome\n" + "".join(lines))
    return str(path)


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("categorical-int8")
    files = {key: _write(tmp / f"{key}.csv", i, values) for i, (key, values) in enumerate(SITES.items())}
    nodes = [{"client-id": key, "framework": fw, "data": files[key], "label": "outcome",
              "categorical": "sex", "classes": ",".join(CLASSES), "missing": "impute-mean"}
             for key, fw in zip(SITES, ("torch", "sklearn", "torch"), strict=True)]
    # "Z" and an empty cell are outside the sites' vocabulary: the model encodes them as <other>
    evaluation = _write(tmp / "evaluation.csv", 9, ("F", "M", "X", "Z", ""), 60)
    spec = parse_spec({
        "model": "mlp-5-32-2", "task": "binary", "clients": 3, "rounds": 3, "min-train-nodes": 3,
        "evaluate": evaluation,
        "data": {"source": files["site-a"], "label": "outcome", "categorical": ["sex"],
                 "classes": list(CLASSES), "missing": "impute-mean"},
        "train": {"local-epochs": 1}})
    settings = Settings(spec=spec, registry=str(tmp / "runs"), min_available_nodes=3)
    run_id = Federation(LocalGrid(client_app, 3, node_configs=nodes), settings, Reporter()).run()
    with Registry(tmp / "runs", create=False) as reg:
        heads = reg.heads(run_id)
        final = heads[max(heads)]
        accuracy = reg.record(final).metrics["accuracy"]
    return {"registry": tmp / "runs", "final": final, "accuracy": accuracy, "evaluation": evaluation}


def _export(federation: dict[str, Any], out: Path, *args: str) -> Any:
    return CliRunner().invoke(app, ["export", federation["final"], "-o", str(out), *args,
                                    "--registry", str(federation["registry"])])


def _raw_rows(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ages [N, 1] float32 with NaN, sex [N] text, labels [N]) read straight from the CSV."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    ages = np.asarray([[float(r["age"]) if r["age"] else np.nan] for r in rows], np.float32)
    sex = np.asarray([r["sex"] for r in rows], dtype=object)
    labels = np.asarray([CLASSES.index(r["outcome"]) for r in rows])
    return ages, sex, labels


def _accuracy(model: onnx.ModelProto, ages: np.ndarray, sex: np.ndarray, labels: np.ndarray) -> float:
    from flonnx.exchange.ort import run_model

    (float_input,) = [v.name for v in model.graph.input if v.name != "sex"]
    (logits,) = run_model(model, {float_input: ages, "sex": sex}).values()
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def _record(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key[len(DERIVED_PREFIX):]: p.value for p in model.metadata_props
            if p.key.startswith(DERIVED_PREFIX)}


def test_int8_export_of_a_categorical_model_takes_text_and_records_the_measured_change(
        federation: dict[str, Any], tmp_path: Path) -> None:
    out, plain, card = tmp_path / "model.int8.onnx", tmp_path / "model.onnx", tmp_path / "card.md"

    result = _export(federation, out, "--quantize", "int8", "--card", str(card))
    exported = _export(federation, plain)

    assert result.exit_code == 0, result.output
    assert exported.exit_code == 0, exported.output
    model, original = onnx.load(str(out)), onnx.load(str(plain))
    inputs = {v.name: v.type.tensor_type.elem_type for v in model.graph.input}
    assert inputs["sex"] == onnx.TensorProto.STRING
    ops = {n.op_type for n in model.graph.node}
    assert "OneHotEncoder" in ops and "MatMulInteger" in ops  # the text encoding kept, the weights int8
    record = _record(model)
    assert int(record["weight_bytes_after"]) == weight_bytes(model)
    assert int(record["weight_bytes_before"]) == weight_bytes(original) > 2 * weight_bytes(model)
    ages, sex, labels = _raw_rows(federation["evaluation"])
    assert float(record["metric_before"]) == _accuracy(original, ages, sex, labels) == federation["accuracy"]
    assert float(record["metric_after"]) == _accuracy(model, ages, sex, labels)  # the int8 file, on text
    assert abs(float(record["metric_before"]) - float(record["metric_after"])) * 100 <= 1.0
    assert record["from_version"] == federation["final"]
    assert record["evaluated_on"] == "evaluation.csv"
    text = card.read_text()
    assert "## This file is derived" in text
    assert f"- metric_after: {record['metric_after']}" in text
    assert f"- weight_bytes_after: {record['weight_bytes_after']}" in text


def test_the_int8_file_runs_on_values_outside_the_vocabulary_like_the_original(
        federation: dict[str, Any], tmp_path: Path) -> None:
    from flonnx.exchange.ort import run_model

    out, plain = tmp_path / "model.int8.onnx", tmp_path / "model.onnx"
    _export(federation, out, "--quantize", "int8")
    _export(federation, plain)
    model, original = onnx.load(str(out)), onnx.load(str(plain))
    (float_input,) = [v.name for v in model.graph.input if v.name != "sex"]
    rows = {float_input: np.asarray([[40.0], [np.nan], [61.5], [55.0]], np.float32),
            "sex": np.asarray(["F", "M", "never-seen", ""], dtype=object)}

    (quantized,) = run_model(model, rows).values()
    (full,) = run_model(original, rows).values()

    assert quantized.shape == (4, 2) and np.isfinite(quantized).all()
    assert np.allclose(quantized, full, atol=0.1)  # int8 weights: close, not equal
    assert not np.array_equal(quantized, full)


def test_an_int8_export_of_a_categorical_model_that_costs_too_much_is_refused(
        federation: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "model.int8.onnx"

    result = _export(federation, out, "--quantize", "int8", "--max-drop", "-100")

    assert result.exit_code == 1
    assert "refused: accuracy drops" in result.output and "more than --max-drop -100" in result.output
    assert not out.exists()


def test_a_float16_export_of_a_categorical_model_keeps_its_text_input(
        federation: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "model.fp16.onnx"

    result = _export(federation, out, "--float16")

    assert result.exit_code == 0, result.output
    model = onnx.load(str(out))
    record = _record(model)
    assert {v.name: v.type.tensor_type.elem_type for v in model.graph.input}["sex"] == onnx.TensorProto.STRING
    ages, sex, labels = _raw_rows(federation["evaluation"])
    assert float(record["metric_after"]) == _accuracy(model, ages, sex, labels)
    assert int(record["weight_bytes_before"]) >= 1.9 * int(record["weight_bytes_after"])


def test_raw_columns_invert_the_one_hot_encoding(federation: dict[str, Any], tmp_path: Path) -> None:
    plain = tmp_path / "model.onnx"
    _export(federation, plain)
    model = onnx.load(str(plain))
    pre = Preprocessing.from_json({p.key: p.value for p in model.metadata_props}[METADATA_KEY])
    # age, then sex = F, M, X, <other>
    x = np.asarray([[30.0, 1, 0, 0, 0], [np.nan, 0, 0, 1, 0], [70.0, 0, 0, 0, 1]], np.float32)

    inputs = raw_columns(model, pre, x)
    holding_empty = raw_columns(model, replace(pre, vocabularies=(("sex", ("", "?", "F")),)), x)
    with pytest.raises(FlonnxError, match="encoded columns"):
        raw_columns(model, pre, x[:, :4])

    assert dict(pre.vocabularies) == {"sex": ("F", "M", "X")}
    assert list(inputs["sex"]) == ["F", "X", ""]
    assert list(holding_empty["sex"]) == ["", "F", "??"]  # <other> is a text outside the vocabulary
    np.testing.assert_array_equal(inputs[next(k for k in inputs if k != "sex")], x[:, :1])
    labels = np.asarray([0, 1, 1])
    assert set(measured_metrics(model, inputs, labels, "binary")) >= {"accuracy"}
