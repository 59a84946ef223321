"""Fairness across sites and groups, from a real in-process federation (LocalGrid, no Ray).

Three sites name their own CSV (features ``age`` and ``bmi``; a ``sex`` column that is not a
feature) and ``sensitive="sex"`` in node config, as a hospital's SuperNode does; the spec names the
same sensitive column for the server's evaluation file. After training each site evaluates the final
version and sends per-group metrics: site-b's group ``X`` has 3 rows and must not leave it, site-c's
policy does not share group metrics. The sites' evaluations are evaluation records of the final
version, and the model card shows the groups of the evaluation data and of each site.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from rich.console import Console
from sklearn.metrics import accuracy_score
from typer.testing import CliRunner

from flonnx import cli
from flonnx.cli import app
from flonnx.client.app import app as client_app
from flonnx.exchange.card import card_from_metadata, render_markdown, stable_card
from flonnx.exchange.data import read_table
from flonnx.exchange.export import served_version
from flonnx.exchange.per_class import predicted_classes
from flonnx.exchange.registry import Registry
from flonnx.exchange.sources import evaluation_source
from flonnx.exchange.spec import parse_spec
from flonnx.server.federation import Federation
from flonnx.server.progress import Reporter
from flonnx.server.settings import Settings
from tests.server.local_grid import LocalGrid

#: site -> (sex value of each row, in a cycle); site-b's "X" has 3 of its 30 rows
SITES = {"site-a": ("F", "M"), "site-b": ("F",) * 4 + ("M",) * 5 + ("X",), "site-c": ("F", "M", "M")}


def _write(path: Path, seed: int, values: tuple[str, ...], n: int = 30) -> str:
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        age, bmi = rng.normal(50, 10), rng.normal(25, 4)
        sex = values[i % len(values)]
        label = int(age + (6 if sex == "F" else 0) + bmi / 5 > 57)
        lines.append(f"{age:.2f},{bmi:.2f},{sex},{label}\n")
    path.write_text("age,bmi,sex,outcome\n" + "".join(lines))
    return str(path)


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("groups")
    files = {key: _write(tmp / f"{key}.csv", i, values) for i, (key, values) in enumerate(SITES.items())}
    (tmp / "policy.toml").write_text('min-rows = 5\nshare = ["label-histogram"]\n')
    nodes = [{"client-id": key, "framework": fw, "data": files[key], "label": "outcome",
              "features": "age,bmi", "sensitive": "sex",
              **({"policy": str(tmp / "policy.toml")} if key == "site-c" else {})}
             for key, fw in zip(SITES, ("torch", "sklearn", "torch"), strict=True)]
    spec = parse_spec({
        "model": "mlp-2-8-2", "task": "binary", "clients": 3, "rounds": 2, "min-train-nodes": 3,
        "evaluate": _write(tmp / "evaluation.csv", 9, ("F", "M", "X", "M"), 40), "standardize": True,
        "data": {"source": files["site-a"], "label": "outcome", "features": ["age", "bmi"],
                 "sensitive": "sex"},
        "train": {"local-epochs": 1}})
    settings = Settings(spec=spec, registry=str(tmp / "runs"), min_available_nodes=3)
    run_id = Federation(LocalGrid(client_app, 3, node_configs=nodes), settings, Reporter()).run()
    with Registry(tmp / "runs", create=False) as reg:
        heads = reg.heads(run_id)
        final = heads[max(heads)]
        return {"registry": tmp / "runs", "run_id": run_id, "final": final, "tmp": tmp, "spec": spec,
                "files": files, "evaluations": {e.source: e for e in reg.evaluations(final, run_id)},
                "record": reg.record(final)}


@pytest.fixture(autouse=True)
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "console", Console(highlight=False, width=400))


def _card(federation: dict[str, Any]) -> dict[str, str]:
    with Registry(federation["registry"], create=False) as reg:
        return stable_card(reg, federation["final"], served_version(reg, federation["final"])[1])


def _site_accuracy(federation: dict[str, Any], site: str, sex: str) -> tuple[float, int]:
    """(accuracy, rows) of the final version on one site's rows of one group, by hand."""
    with Registry(federation["registry"], create=False) as reg:
        record = federation["record"]
        definition, weights = reg.get_definition(record.definition_id), reg.get_weights(record.weights_id)
    table = read_table(federation["files"][site])
    x = np.stack([table.column("age").astype(float), table.column("bmi").astype(float)], axis=1)
    y = table.column("outcome").astype(int)
    rows = table.column("sex") == sex
    predicted = predicted_classes(definition, weights, x[rows].astype(np.float32), "binary")
    return float(accuracy_score(y[rows], predicted)), int(rows.sum())


def test_each_sites_evaluation_is_a_record_of_the_final_version(federation: dict[str, Any]) -> None:
    evaluations = federation["evaluations"]

    assert sorted(evaluations) == [f"site:{s}" for s in sorted(SITES)]
    assert all(e.version_id == federation["final"] and e.failed_reason is None
               for e in evaluations.values())
    with Registry(federation["registry"], create=False) as reg:
        assert reg.verify(federation["run_id"])[1] == []
        assert reg.record(federation["final"]) == federation["record"]


def test_a_site_sends_each_groups_metrics_equal_to_computing_them_by_hand(federation: dict[str, Any]) -> None:
    metrics = federation["evaluations"]["site:site-a"].metrics

    for sex in ("F", "M"):
        accuracy, rows = _site_accuracy(federation, "site-a", sex)
        assert metrics[f"group.{sex}.support"] == rows
        assert metrics[f"group.{sex}.accuracy"] == pytest.approx(accuracy)


def test_a_group_of_too_few_rows_never_leaves_its_site(federation: dict[str, Any]) -> None:
    metrics = federation["evaluations"]["site:site-b"].metrics

    assert not any(k.startswith("group.X.") for k in metrics)
    assert metrics["groups.suppressed"] == 1.0
    assert metrics["group.M.support"] == 15.0


def test_a_site_whose_policy_does_not_share_group_metrics_sends_none(federation: dict[str, Any]) -> None:
    metrics = federation["evaluations"]["site:site-c"].metrics

    assert not any(k.startswith("group") for k in metrics)
    assert "accuracy" in metrics


def test_the_card_shows_the_groups_of_the_evaluation_data_and_of_each_site(
    federation: dict[str, Any],
) -> None:
    card = _card(federation)
    source = evaluation_source(federation["spec"])
    assert source is not None
    groups = source.groups("sex")
    with Registry(federation["registry"], create=False) as reg:
        record = federation["record"]
        x, y = source.load()
        predicted = predicted_classes(reg.get_definition(record.definition_id),
                                      reg.get_weights(record.weights_id), x, "binary")
    accuracy = {g: float(accuracy_score(y[groups == g], predicted[groups == g])) for g in ("F", "M", "X")}
    worst = min(accuracy, key=lambda g: (accuracy[g], g))
    fairness = {k.split("fairness.", 1)[1]: v for k, v in card.items() if ".fairness." in k}

    assert fairness["groups"].startswith("by column sex on evaluation.csv: 40 rows, 3 groups")
    assert fairness["group.M"].endswith(" support=20")
    assert f"accuracy={accuracy['M']!r}" in fairness["group.M"]
    assert fairness["worst_group"] == f"{worst} (accuracy={accuracy[worst]!r})"
    assert float(fairness["group_spread"]) == pytest.approx(max(accuracy.values()) - accuracy[worst])
    assert fairness["site_group.site-b.M"].endswith(" support=15")
    assert fairness["site_groups_suppressed.site-b"].startswith("1 ")
    assert not any(k.startswith("site_group.site-c.") for k in fairness)
    assert "group." not in fairness["site.site-a"]  # a site's own line holds its own metrics
    assert card["flonnx.card.compute.peak_activation_bytes"].split(" ")[0].isdigit()


def test_the_exported_card_is_the_card_lineage_show_prints(federation: dict[str, Any]) -> None:
    path = federation["tmp"] / "model.onnx"
    runner = CliRunner()
    exported = runner.invoke(app, ["export", federation["final"], "-o", str(path),
                                   "--registry", str(federation["registry"])])
    shown = runner.invoke(app, ["lineage", "show", federation["final"], "--card",
                                "--registry", str(federation["registry"])])
    assert exported.exit_code == 0 and shown.exit_code == 0, exported.output + shown.output

    stored = card_from_metadata(onnx.load(str(path)).metadata_props)

    assert stored == _card(federation) == _card(federation)
    assert render_markdown(stored) == shown.output
    assert "## Fairness across sites and groups" in shown.output


def test_without_a_sensitive_column_the_card_says_groups_are_not_recorded(tmp_path: Path) -> None:
    files = {key: _write(tmp_path / f"{key}.csv", i, values) for i, (key, values) in enumerate(SITES.items())}
    nodes = [{"client-id": key, "framework": "sklearn", "data": files[key], "label": "outcome",
              "features": "age,bmi"} for key in SITES]
    spec = parse_spec({"model": "mlp-2-8-2", "task": "binary", "clients": 3, "rounds": 1,
                       "min-train-nodes": 3, "evaluate": files["site-a"],
                       "data": {"source": files["site-a"], "label": "outcome", "features": ["age", "bmi"]}})
    settings = Settings(spec=spec, registry=str(tmp_path / "runs"), min_available_nodes=3)
    run_id = Federation(LocalGrid(client_app, 3, node_configs=nodes), settings, Reporter()).run()
    with Registry(tmp_path / "runs", create=False) as reg:
        heads = reg.heads(run_id)
        card = stable_card(reg, heads[1], served_version(reg, heads[1])[1])
        evaluations = reg.evaluations(heads[1], run_id)

    assert card["flonnx.card.fairness.groups"] == "not recorded (the spec names no sensitive column)"
    assert not any(k.startswith("group") for e in evaluations for k in e.metrics)
    assert len(evaluations) == 3


# -- the report reads the records, and an older registry's annotation ------------------------------
def test_the_report_reads_the_site_records_and_falls_back_to_the_run_annotation(tmp_path: Path) -> None:
    from flonnx.server.report import collect_run
    from tests.exchange.registry_worker import write_rounds

    with Registry(tmp_path / "r") as reg:
        recorded, annotated = reg.create_run("new", 1, {}), reg.create_run("old", 1, {})
        for run_id in (recorded, annotated):
            write_rounds(reg, run_id, 1, 2)
        final = reg.heads(recorded)[1]
        reg.add_evaluation(recorded, final, "site:a", {"accuracy": 0.75})
        reg.add_evaluation(recorded, final, "site:b", {"accuracy": 0.5})
        reg.add_evaluation(recorded, final, "site:c", {}, "site policy: 3 rows are fewer than min-rows 5")
        old = {"version_id": reg.heads(annotated)[1], "sites": {"a": {"accuracy": 1.0}}, "failed": {},
               "summary": {"metric": "accuracy", "worst_site": "a"}}
        reg.annotate_run(annotated, "site_evaluation", old)
        new_facts, old_facts = collect_run(reg, recorded), collect_run(reg, annotated)

    assert new_facts.site_evaluation == {
        "sites": {"a": {"accuracy": 0.75}, "b": {"accuracy": 0.5}},
        "failed": {"c": "site policy: 3 rows are fewer than min-rows 5"},
        "summary": {"metric": "accuracy", "worst_site": "b", "worst_value": 0.5, "mean": 0.625,
                    "spread": 0.25}}
    assert old_facts.site_evaluation == old


def test_a_node_takes_its_sensitive_column_from_node_config_else_from_the_spec(tmp_path: Path) -> None:
    from flonnx.client.app import _sensitive

    data = _write(tmp_path / "d.csv", 0, ("F", "M"))
    spec = parse_spec({"model": "mlp-2-8-2", "task": "binary", "clients": 2,
                       "data": {"source": data, "label": "outcome", "features": ["age", "bmi"],
                                "sensitive": "sex"}})
    plain = parse_spec({"model": "mlp-2-8-2", "task": "binary", "clients": 2,
                        "data": {"source": data, "label": "outcome", "features": ["age", "bmi"]}})

    assert _sensitive({"partition-id": 0}, spec) == "sex"
    assert _sensitive({"sensitive": "age"}, spec) == "age"
    assert _sensitive({"sensitive": "sex"}, None) == "sex"
    assert _sensitive({"data": data}, None) is None
    assert _sensitive({"partition-id": 0}, plain) is None


def test_an_evaluation_file_without_the_sensitive_column_leaves_groups_not_evaluated(tmp_path: Path) -> None:
    from flonnx.exchange.lineage import VersionKind, VersionRecord
    from tests.tiny_models import gemm_mlp

    data = _write(tmp_path / "d.csv", 0, ("F", "M"))
    evaluation = tmp_path / "e.csv"
    evaluation.write_text("age,bmi,outcome\n" + "".join(f"{40 + i},{20 + i},{i % 2}\n" for i in range(12)))
    spec = parse_spec({"model": "mlp-2-8-2", "task": "binary", "clients": 2, "evaluate": str(evaluation),
                       "data": {"source": data, "label": "outcome", "features": ["age", "bmi"],
                                "sensitive": "sex"}})
    definition, weights = gemm_mlp(2, 8, 2)
    with Registry(tmp_path / "r") as reg:
        run_id = reg.create_run("no-column", 0, {"spec": spec.to_toml_dict()})
        record = VersionRecord(VersionKind.INITIAL, 0, reg.put_definition(definition),
                               reg.put_weights(weights))
        reg.commit(run_id, [record], head_round=0, head=record.version_id)
        card = stable_card(reg, record.version_id, definition.materialize(weights))

    assert card["flonnx.card.fairness.groups"] == (
        "by column sex: not evaluated (sensitive column 'sex' is not in e.csv; its columns are: age, bmi, "
        "outcome)")
