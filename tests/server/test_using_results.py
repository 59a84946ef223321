"""Using a run's result: the best round by a metric, and predictions of any version on a table.

The registry is real and made in-process (:class:`Federation` on a :class:`LocalGrid`, no Ray): three
sites name their own CSV (a categorical ``sex`` column whose values differ per site, text labels
named as classes in the spec, missing ages imputed with the federated mean) and the server
evaluates every round on a file of its own; after training each site evaluates the final model.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from rich.console import Console
from sklearn.metrics import classification_report
from typer.testing import CliRunner

from flonnx import cli
from flonnx.cli import app
from flonnx.client.app import app as client_app
from flonnx.exchange import export as export_module
from flonnx.exchange.best import best_round
from flonnx.exchange.card import (
    MEASURED_PREFIX,
    card_from_metadata,
    estimated_flops,
    render_markdown,
    stable_card,
)
from flonnx.exchange.data import read_table
from flonnx.exchange.errors import FlonnxError
from flonnx.exchange.evaluation import served_model
from flonnx.exchange.export import PARITY_ATOL, PARITY_RTOL, check_parity, served_version
from flonnx.exchange.lineage import VersionKind, VersionRecord
from flonnx.exchange.ort import run_model
from flonnx.exchange.per_class import predicted_classes
from flonnx.exchange.predict import predict_table, run_spec
from flonnx.exchange.preprocess import METADATA_KEY, Preprocessing
from flonnx.exchange.quantize import (
    DERIVED_PREFIX,
    derived_definition_id,
    derived_version,
    to_float16,
    weight_bytes,
)
from flonnx.exchange.registry import Registry
from flonnx.exchange.sources import evaluation_source
from flonnx.exchange.spec import parse_spec
from flonnx.server.federation import Federation
from flonnx.server.progress import Reporter
from flonnx.server.settings import Settings
from tests.server.conftest import run_local
from tests.server.local_grid import LocalGrid
from tests.tiny_models import gemm_mlp

SITES = {"site-a": ("F", "M"), "site-b": ("F", "X"), "site-c": ("M",)}
CLASSES = ("benign", "malignant")
ROUNDS = 3


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
    tmp = tmp_path_factory.mktemp("results")
    files = {key: _write(tmp / f"{key}.csv", i, values) for i, (key, values) in enumerate(SITES.items())}
    nodes = [{"client-id": key, "framework": fw, "data": files[key], "label": "outcome",
              "categorical": "sex", "classes": ",".join(CLASSES), "missing": "impute-mean"}
             for key, fw in zip(SITES, ("torch", "jax", "sklearn"), strict=True)]
    spec = parse_spec({
        "model": "mlp-5-8-2", "task": "binary", "clients": 3, "rounds": ROUNDS, "min-train-nodes": 3,
        "evaluate": _write(tmp / "evaluation.csv", 9, ("F", "M", "X"), 40),
        "data": {"source": files["site-a"], "label": "outcome", "categorical": ["sex"],
                 "classes": list(CLASSES), "missing": "impute-mean"},
        "train": {"local-epochs": 1}})
    settings = Settings(spec=spec, registry=str(tmp / "runs"), min_available_nodes=3)
    run_id = Federation(LocalGrid(client_app, 3, node_configs=nodes), settings, Reporter()).run()
    return {"registry": tmp / "runs", "run_id": run_id, "tmp": tmp}


@pytest.fixture(autouse=True)
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "console", Console(highlight=False, width=400))
    monkeypatch.setattr(cli, "err", Console(highlight=False, width=400, stderr=True))


def _heads(federation: dict[str, Any]) -> list[VersionRecord]:
    with Registry(federation["registry"], create=False) as reg:
        heads = reg.heads(federation["run_id"])
        return [reg.record(heads[r]) for r in sorted(heads)]


def _invoke(federation: dict[str, Any], *args: str) -> Any:
    return CliRunner().invoke(app, [*args, "--registry", str(federation["registry"])])


def _tiny(reg: Registry) -> tuple[str, str]:
    """(definition id, weights id) of a small stored MLP."""
    definition, weights = gemm_mlp(4, 8, 2)
    return reg.put_definition(definition), reg.put_weights(weights)


# -- lineage best ----------------------------------------------------------------------------------
def _registry_with_rounds(tmp_path: Path, losses: list[float]) -> tuple[Path, str, list[str]]:
    """A registry whose run has one aggregate per loss (accuracy = 1 - loss), made by commit."""
    with Registry(tmp_path / "runs") as reg:
        run_id = reg.create_run("best", 0, {})
        definition, weights = _tiny(reg)
        initial = VersionRecord(VersionKind.INITIAL, 0, definition, weights, metrics={"loss": 0.0})
        reg.commit(run_id, [initial], head_round=0, head=initial.version_id)
        ids, parent = [], initial.version_id
        for rnd, loss in enumerate(losses, start=1):
            record = VersionRecord(VersionKind.AGGREGATE, rnd, definition, weights, parents=(parent,),
                                   metrics={"loss": loss, "accuracy": 1 - loss})
            reg.commit(run_id, [record], head_round=rnd, head=record.version_id)
            ids.append(parent := record.version_id)
    return tmp_path / "runs", run_id, ids


def test_best_takes_the_lowest_loss_and_the_earliest_round_of_a_tie(tmp_path: Path) -> None:
    registry, run_id, ids = _registry_with_rounds(tmp_path, [0.5, 0.2, 0.3, 0.2])

    with Registry(registry, create=False) as reg:
        by_loss = best_round(reg, run_id, "loss")
        by_accuracy = best_round(reg, run_id, "accuracy")

    assert (by_loss.round, by_loss.version_id, by_loss.value) == (2, ids[1], 0.2)
    assert (by_accuracy.round, by_accuracy.version_id) == (2, ids[1])  # higher is better; tie → round 2
    assert by_loss.rounds == 4  # the initial version (loss 0.0) is no round's result


def test_best_of_a_metric_the_run_lacks_lists_the_ones_it_has(tmp_path: Path) -> None:
    registry, run_id, _ = _registry_with_rounds(tmp_path, [0.5, 0.2])

    result = CliRunner().invoke(app, ["lineage", "best", run_id, "--metric", "r2",
                                      "--registry", str(registry)])

    assert result.exit_code == 1
    assert "no metric 'r2'; its rounds record: accuracy, loss" in result.output
    assert "Traceback" not in result.output


def test_best_names_the_version_of_a_real_run(federation: dict[str, Any]) -> None:
    heads = _heads(federation)
    expected = max(range(1, ROUNDS + 1), key=lambda r: (heads[r].metrics["roc-auc"], -r))

    result = _invoke(federation, "lineage", "best", federation["run_id"], "--metric", "roc-auc",
                     "--json")

    best = json.loads(result.output)
    assert best["round"] == expected
    assert best["version_id"] == heads[expected].version_id
    assert best["better"] == "higher"


# -- predict ----------------------------------------------------------------------------------------
def _predictions(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_predict_runs_the_final_version_on_raw_rows_with_text_labels(federation: dict[str, Any]) -> None:
    final = _heads(federation)[-1]
    table = federation["tmp"] / "new.csv"  # columns in another order, one more, no label
    table.write_text("id,sex,age\n7,F,61.5\n8,X,\n9,M,30\n10,Q,45\n")
    out = federation["tmp"] / "predictions.csv"

    result = _invoke(federation, "predict", final.version_id[:12], "--data", str(table), "-o", str(out))

    assert result.exit_code == 0, result.output
    rows = _predictions(out)
    assert [r["row"] for r in rows] == ["1", "2", "3", "4"]
    assert {r["prediction"] for r in rows} <= set(CLASSES)
    with Registry(federation["registry"], create=False) as reg:
        model = served_model(reg.get_definition(final.definition_id), reg.get_weights(final.weights_id))
    numeric = next(i.name for i in model.graph.input if i.name != "sex")
    raw = run_model(model, {numeric: np.array([[61.5], [np.nan], [30.0], [45.0]], np.float32),
                            "sex": np.array(["F", "X", "M", "Q"], dtype=object)})
    logits = next(iter(raw.values()))
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert [r["prediction"] for r in rows] == [CLASSES[i] for i in p.argmax(1)]
    np.testing.assert_allclose([[float(r[f"p({c})"]) for c in CLASSES] for r in rows], p, rtol=1e-5)


def _id(federation: dict[str, Any], index: int) -> str:
    return _heads(federation)[index].version_id


def test_predict_runs_the_initial_version_and_a_client_update(federation: dict[str, Any]) -> None:
    with Registry(federation["registry"], create=False) as reg:
        versions = reg.versions(federation["run_id"])
        initial = next(v.version_id for v in versions if v.record.kind is VersionKind.INITIAL)
        update = next(v.version_id for v in versions if v.record.kind is VersionKind.CLIENT_UPDATE)
        table = read_table(Path(federation["tmp"]) / "evaluation.csv")
        first = predict_table(reg, initial, table)
        second = predict_table(reg, update, table)

    assert len(first.predicted) == len(second.predicted) == 40
    assert first.scores is not None and second.scores is not None
    assert not np.allclose(first.scores, second.scores)  # two versions, two sets of weights


def test_predict_names_a_missing_column_in_one_line(federation: dict[str, Any]) -> None:
    table = federation["tmp"] / "no-sex.csv"
    table.write_text("age\n50\n")

    result = _invoke(federation, "predict", _id(federation, -1), "--data", str(table),
                     "-o", str(federation["tmp"] / "never.csv"))

    assert result.exit_code == 1
    assert "column 'sex' is not in no-sex.csv" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (federation["tmp"] / "never.csv").exists()


def test_predict_keeps_an_existing_file_unless_forced(federation: dict[str, Any]) -> None:
    out = federation["tmp"] / "kept.csv"
    out.write_text("mine\n")
    data = str(federation["tmp"] / "evaluation.csv")

    refused = _invoke(federation, "predict", _id(federation, -1), "--data", data, "-o", str(out))
    kept = out.read_text()
    forced = _invoke(federation, "predict", _id(federation, -1), "--data", data, "-o", str(out), "--force")

    assert refused.exit_code == 1 and "exists; not replaced (flonnx predict --force" in refused.output
    assert kept == "mine\n"
    assert forced.exit_code == 0 and len(_predictions(out)) == 40


def test_predict_of_a_rejected_reply_says_it_has_no_weights(tmp_path: Path) -> None:
    with Registry(tmp_path / "runs") as reg:
        run_id = reg.create_run("rejected", 0, {})
        definition, weights = _tiny(reg)
        initial = VersionRecord(VersionKind.INITIAL, 0, definition, weights)
        rejected = VersionRecord(VersionKind.REJECTED, 1, definition, weights, parents=(initial.version_id,),
                                 reason="too large")
        reg.commit(run_id, [initial, rejected], head_round=0, head=initial.version_id)
        table = read_table(_write_plain(tmp_path / "t.csv"))

        with pytest.raises(FlonnxError, match="rejected reply: it has no weights"):
            predict_table(reg, rejected.version_id, table)


def _write_plain(path: Path) -> Path:
    path.write_text("a\n1\n")
    return path


# -- the model card ---------------------------------------------------------------------------------
def _show_card(federation: dict[str, Any], version_id: str) -> str:
    result = _invoke(federation, "lineage", "show", version_id, "--card")
    assert result.exit_code == 0, result.output
    return str(result.output)


def test_an_exported_card_round_trips_to_lineage_show(federation: dict[str, Any]) -> None:
    final = _id(federation, -1)
    model_path, card_path = federation["tmp"] / "card" / "model.onnx", federation["tmp"] / "card" / "card.md"

    exported = _invoke(federation, "export", final, "-o", str(model_path), "--card", str(card_path))
    shown = _show_card(federation, final)

    assert exported.exit_code == 0, exported.output
    props = onnx.load(str(model_path)).metadata_props
    stored = card_from_metadata(props)
    with Registry(federation["registry"], create=False) as reg:
        assert stored == stable_card(reg, final, served_version(reg, final)[1])
    assert render_markdown(stored) == shown
    written = card_path.read_text()
    assert written.split("## Measured on this machine")[0] == shown.split("## Measured on this machine")[0]
    assert "- latency_ms: " in written and "- throughput: " in written
    assert any(p.key.startswith(MEASURED_PREFIX) for p in props)
    assert not any(k.startswith(MEASURED_PREFIX) for k in stored)


def test_the_card_is_the_same_bytes_every_time(federation: dict[str, Any]) -> None:
    first, second = _show_card(federation, _id(federation, -1)), _show_card(federation, _id(federation, -1))

    assert first == second


def test_the_card_states_performance_fairness_and_provenance(federation: dict[str, Any]) -> None:
    heads = _heads(federation)
    with Registry(federation["registry"], create=False) as reg:
        sites = reg.run(federation["run_id"]).config["site_evaluation"]["sites"]
        card = stable_card(reg, heads[-1].version_id, served_version(reg, heads[-1].version_id)[1])
    accuracy = {site: m["accuracy"] for site, m in sites.items()}
    worst = min(accuracy, key=lambda s: (accuracy[s], s))

    assert card["flonnx.card.performance.metric.accuracy"] == repr(heads[-1].metrics["accuracy"])
    assert card["flonnx.card.performance.evaluated_on"].startswith("evaluation file evaluation.csv")
    assert card["flonnx.card.fairness.worst_site"] == f"{worst} (accuracy={accuracy[worst]!r})"
    spread = max(accuracy.values()) - accuracy[worst]
    assert float(card["flonnx.card.fairness.spread"]) == pytest.approx(spread)
    assert card["flonnx.card.privacy.differential_privacy"] == "no (strategy fedavg)"
    assert card["flonnx.card.provenance.lineage_chain"] == " <- ".join(h.version_id for h in reversed(heads))
    assert card["flonnx.card.provenance.frameworks"] == f"jax x{ROUNDS}, sklearn x{ROUNDS}, torch x{ROUNDS}"
    assert card["flonnx.card.provenance.sites"] == ", ".join(f"{s} x{ROUNDS}" for s in sorted(SITES))


def test_a_card_without_an_evaluation_source_says_not_evaluated(tmp_path: Path) -> None:
    registry, _, ids = _registry_with_rounds(tmp_path, [0.5])  # its run recorded no spec to evaluate on

    result = CliRunner().invoke(app, ["lineage", "show", ids[0], "--card", "--registry", str(registry)])

    assert "- evaluated_on: not evaluated\n" in result.output
    assert "- sites: not recorded" in result.output


def test_flops_are_two_per_multiply_add_of_the_dense_layers() -> None:
    definition, weights = gemm_mlp(4, 8, 2)

    assert estimated_flops(definition.materialize(weights)) == 2 * (4 * 8 + 8 * 2)


# -- int8 export -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A digits-mixed registry (MLP 64→32→10, two rounds) and its final version."""
    registry = tmp_path_factory.mktemp("digits") / "runs"
    run_id = run_local(registry, spec="digits-mixed", **{"num-server-rounds": 2})
    with Registry(registry, create=False) as reg:
        heads = reg.heads(run_id)
        return registry, heads[max(heads)]


def test_int8_export_of_the_digits_mlp_takes_2x_fewer_weight_bytes_within_the_threshold(
        digits: tuple[Path, str], tmp_path: Path) -> None:
    registry, final = digits
    out = tmp_path / "model.int8.onnx"

    result = CliRunner().invoke(app, ["export", final, "--quantize", "int8", "-o", str(out),
                                      "--registry", str(registry)])

    assert result.exit_code == 0, result.output
    model = onnx.load(str(out))
    record = {p.key: p.value for p in model.metadata_props if p.key.startswith(DERIVED_PREFIX)}
    assert record["flonnx.derived.from_version"] == final
    assert int(record["flonnx.derived.weight_bytes_before"]) >= 2 * weight_bytes(model)
    assert int(record["flonnx.derived.weight_bytes_after"]) == weight_bytes(model)
    before = float(record["flonnx.derived.metric_before"])
    after = float(record["flonnx.derived.metric_after"])
    assert (before - after) * 100 <= 1.0
    assert any(n.op_type in ("MatMulInteger", "DynamicQuantizeLinear") for n in model.graph.node)
    with Registry(registry, create=False) as reg:
        assert before == reg.record(final).metrics["accuracy"]  # the server's evaluation, measured again


def test_an_int8_export_that_costs_too_much_is_refused_and_not_written(
        digits: tuple[Path, str], tmp_path: Path) -> None:
    registry, final = digits
    out = tmp_path / "model.int8.onnx"

    result = CliRunner().invoke(app, ["export", final, "--quantize", "int8", "--max-drop", "-100",
                                      "-o", str(out), "--registry", str(registry)])

    assert result.exit_code == 1
    assert "refused: accuracy drops" in result.output and "more than --max-drop -100" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_a_float16_export_of_the_digits_mlp_halves_the_weight_bytes_within_the_threshold(
        digits: tuple[Path, str], tmp_path: Path) -> None:
    registry, final = digits
    out, card = tmp_path / "model.fp16.onnx", tmp_path / "card.md"

    result = CliRunner().invoke(app, ["export", final, "--float16", "-o", str(out), "--card", str(card),
                                      "--registry", str(registry)])

    assert result.exit_code == 0, result.output
    model = onnx.load(str(out))
    record = {p.key: p.value for p in model.metadata_props if p.key.startswith(DERIVED_PREFIX)}
    assert record["flonnx.derived.transformation"].startswith("float16: ")
    assert int(record["flonnx.derived.weight_bytes_before"]) >= 1.9 * weight_bytes(model)
    assert int(record["flonnx.derived.weight_bytes_after"]) == weight_bytes(model)
    assert (float(record["flonnx.derived.metric_before"]) - float(record["flonnx.derived.metric_after"])) \
        * 100 <= 1.0
    assert {t.data_type for t in model.graph.initializer} == {onnx.TensorProto.FLOAT16}
    assert all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
               for v in [*model.graph.input, *model.graph.output])
    assert f"float16: weights {record['flonnx.derived.weight_bytes_before']} -> " in result.output
    with Registry(registry, create=False) as reg:
        version_definition = reg.record(final).definition_id
    # the card names both the version's definition and the file's own
    assert record["flonnx.derived.from_definition_id"] == version_definition
    assert record["flonnx.derived.definition_id"] == derived_definition_id(model) != version_definition
    text = card.read_text()
    assert f"- definition_id: {version_definition}" in text
    own = text.split("This file is derived")[1]
    assert f"- definition_id: {record['flonnx.derived.definition_id']}" in own


def test_an_int8_file_names_its_own_definition_id(digits: tuple[Path, str], tmp_path: Path) -> None:
    registry, final = digits
    with Registry(registry, create=False) as reg:
        derived = derived_version(reg, final, "int8")
        version_definition = reg.record(final).definition_id
    record = {p.key: p.value for p in derived.model.metadata_props if p.key.startswith(DERIVED_PREFIX)}

    assert record["flonnx.derived.from_definition_id"] == version_definition
    assert record["flonnx.derived.definition_id"] == derived_definition_id(derived.model)
    assert record["flonnx.derived.definition_id"] != version_definition


def test_a_float16_export_that_costs_too_much_is_refused_and_not_written(
        digits: tuple[Path, str], tmp_path: Path) -> None:
    registry, final = digits
    out = tmp_path / "model.fp16.onnx"

    result = CliRunner().invoke(app, ["export", final, "--float16", "--max-drop", "-100", "-o", str(out),
                                      "--registry", str(registry)])

    assert result.exit_code == 1
    assert result.output.startswith(f"error: float16 export of {final[:12]} refused: accuracy drops")
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_float16_keeps_inputs_outputs_and_results_in_float32() -> None:
    definition, weights = gemm_mlp(4, 8, 3)
    model = definition.materialize(weights)
    x = {"x": np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)}

    half = to_float16(model)

    onnx.checker.check_model(half, full_check=True)
    assert sum(n.op_type == "Cast" for n in half.graph.node) == len(model.graph.initializer)
    np.testing.assert_allclose(run_model(half, x)["y"], run_model(model, x)["y"], rtol=1e-2, atol=1e-2)


# -- validation before writing -----------------------------------------------------------------------
def _corrupt_a_weight(model: onnx.ModelProto) -> onnx.ModelProto:
    tensor = model.graph.initializer[0]
    values = onnx.numpy_helper.to_array(tensor).copy()
    values.flat[0] += 0.5
    tensor.CopyFrom(onnx.numpy_helper.from_array(values, tensor.name))
    return model


def test_an_export_whose_weights_differ_from_the_registry_is_refused_and_not_written(
        digits: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry, final = digits
    built = export_module.served_model
    monkeypatch.setattr(export_module, "served_model", lambda d, w: _corrupt_a_weight(built(d, w)))
    out = tmp_path / "model.onnx"

    result = CliRunner().invoke(app, ["export", final, "-o", str(out), "--registry", str(registry)])

    assert result.exit_code == 1
    assert result.output.startswith(f"error: export of {final[:12]} refused: its outputs differ from "
                                    "the registry's weights (output ")
    assert f"tolerance {PARITY_ATOL:g} + {PARITY_RTOL:g}" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.iterdir())


def test_an_export_that_fails_the_checker_is_refused_and_not_written(
        digits: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry, final = digits
    built = export_module.served_model

    def broken(definition: Any, weights: Any) -> onnx.ModelProto:
        model = built(definition, weights)
        model.graph.output[0].type.tensor_type.elem_type = onnx.TensorProto.DOUBLE  # it computes float
        return model

    monkeypatch.setattr(export_module, "served_model", broken)
    out = tmp_path / "model.onnx"

    result = CliRunner().invoke(app, ["export", final, "-o", str(out), "--registry", str(registry)])

    assert result.exit_code == 1
    assert result.output.startswith(f"error: export of {final[:12]} refused: onnx.checker full check "
                                    "failed: ")
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_a_faithful_export_passes_parity_with_the_registry(digits: tuple[Path, str]) -> None:
    registry, final = digits
    with Registry(registry, create=False) as reg:
        model = export_module.export_version(reg, final)
        check_parity(model, reg, final)  # raises if not
        with pytest.raises(FlonnxError, match="its outputs differ from the registry's weights"):
            check_parity(_corrupt_a_weight(model), reg, final)


# -- per-class metrics on the card -------------------------------------------------------------------
def _card_classes(card: dict[str, str]) -> dict[str, dict[str, float]]:
    prefix = "flonnx.card.performance.class."
    return {k[len(prefix):]: {f: float(v) for f, v in (part.split("=") for part in text.split())}
            for k, text in card.items() if k.startswith(prefix)}


def _report_matches(card: dict[str, str], reg: Registry, version_id: str, labels: list[str]) -> None:
    spec = run_spec(reg, version_id)
    source = evaluation_source(spec)
    assert source is not None
    record = reg.record(version_id)
    definition = reg.get_definition(record.definition_id)
    vocabularies = None
    if source.schema.categorical:
        vocabularies = Preprocessing.from_json(definition.metadata[METADATA_KEY]).vocabularies
    x, y = source.load(vocabularies)
    predicted = predicted_classes(definition, reg.get_weights(record.weights_id), x, spec.task)
    assert float(np.mean(predicted == y)) == pytest.approx(record.metrics["accuracy"])  # the server's
    report = classification_report(y, predicted, labels=list(range(len(labels))), target_names=labels,
                                   output_dict=True, zero_division=0)
    classes = _card_classes(card)
    assert list(classes) == labels
    for label in labels:
        assert classes[label] == pytest.approx({
            "precision": report[label]["precision"], "recall": report[label]["recall"],
            "f1": report[label]["f1-score"], "support": report[label]["support"]}, abs=1e-12)
    assert card["flonnx.card.performance.per_class"].endswith(f": {len(y)} rows (server-side, ONNX Runtime)")


def test_the_card_has_per_class_metrics_of_the_evaluation_data(federation: dict[str, Any]) -> None:
    final = _id(federation, -1)
    with Registry(federation["registry"], create=False) as reg:
        card = stable_card(reg, final, served_version(reg, final)[1])
        _report_matches(card, reg, final, list(CLASSES))
    assert card["flonnx.card.performance.per_class"].startswith("on evaluation.csv: 40 rows")


def test_the_digits_card_has_per_class_metrics_of_ten_digits(digits: tuple[Path, str]) -> None:
    registry, final = digits
    with Registry(registry, create=False) as reg:
        card = stable_card(reg, final, served_version(reg, final)[1])
        _report_matches(card, reg, final, [str(d) for d in range(10)])


def test_a_card_without_an_evaluation_source_has_no_per_class_metrics(tmp_path: Path) -> None:
    registry, _, ids = _registry_with_rounds(tmp_path, [0.5])

    result = CliRunner().invoke(app, ["lineage", "show", ids[0], "--card", "--registry", str(registry)])

    assert "- per_class: not evaluated\n" in result.output
    assert "- class." not in result.output
