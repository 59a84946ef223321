"""Categorical columns, text labels and mean imputation across sites that hold different values.

Three sites name their own CSV in node config with a categorical ``sex`` column (each site has a
different subset of values), text labels mapped to classes, and missing ages imputed with the
federated mean. The vocabulary is the union of the sites' values, agreed at the handshake; the
exported model takes the raw columns (numbers, and strings for ``sex``) and computes exactly what
the nodes trained on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flonnx.client.app import app as client_app
from flonnx.exchange.evaluation import evaluate_rows, served_model
from flonnx.exchange.lineage import VersionKind
from flonnx.exchange.ort import run_model
from flonnx.exchange.preprocess import METADATA_KEY, Preprocessing
from flonnx.exchange.registry import Registry
from flonnx.exchange.spec import parse_spec
from flonnx.server.federation import Federation
from flonnx.server.progress import Reporter
from flonnx.server.settings import Settings
from tests.server.local_grid import LocalGrid

SITES = {"site-a": ("F", "M"), "site-b": ("F", "X"), "site-c": ("M",)}
CLASSES = "benign,malignant"


def _write(path: Path, seed: int, values: tuple[str, ...]) -> tuple[str, list[list[str]]]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(30):
        age = rng.normal(50, 10)
        sex = values[i % len(values)]
        label = "malignant" if age + (8 if sex == "F" else 0) > 52 else "benign"
        rows.append(["" if i in (3, 17) else f"{age:.2f}", sex, label])
    path.write_text("age,sex,outcome\n" + "".join(",".join(r) + "\n" for r in rows))
    return str(path), rows


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("categorical")
    files = {key: _write(tmp / f"{key}.csv", i, values) for i, (key, values) in enumerate(SITES.items())}
    nodes = [{"client-id": key, "framework": fw, "data": files[key][0], "label": "outcome",
              "categorical": "sex", "classes": CLASSES, "missing": "impute-mean"}
             for key, fw in zip(SITES, ("torch", "jax", "sklearn"), strict=True)]
    spec = parse_spec({"model": "mlp-5-8-2", "task": "binary", "clients": 3, "evaluate": "none",
                       "rounds": 3, "min-train-nodes": 3})
    settings = Settings(spec=spec, registry=str(tmp / "runs"), min_available_nodes=3)
    run_id = Federation(LocalGrid(client_app, 3, node_configs=nodes), settings, Reporter()).run()
    return {"registry": tmp / "runs", "run_id": run_id, "files": files}


def _final(federation: dict[str, Any]) -> tuple[Any, Any, dict[str, np.ndarray]]:
    with Registry(federation["registry"]) as reg:
        heads = reg.heads(federation["run_id"])
        record = reg.record(heads[max(heads)])
        updates = [reg.record(p) for p in record.parents]
        definition = reg.get_definition(record.definition_id)
        weights = reg.get_weights(record.weights_id)
    return updates, definition, weights


def test_every_site_trains_on_the_union_of_their_categories(federation: dict[str, Any]) -> None:
    updates, definition, _ = _final(federation)

    pre = Preprocessing.from_json(definition.metadata[METADATA_KEY])
    assert dict(pre.vocabularies) == {"sex": ("F", "M", "X")}
    assert pre.features == ("age", "sex")
    assert len(pre.mean) == 1 + 3 + 1  # age, then sex=F, sex=M, sex=X, sex=<other>
    assert sorted(u.client for u in updates) == sorted(SITES)
    assert {u.kind for u in updates} == {VersionKind.CLIENT_UPDATE}


def test_missing_ages_take_the_mean_of_every_site_s_present_ages(federation: dict[str, Any]) -> None:
    _, definition, _ = _final(federation)
    # the nodes read the ages as float32, then sum in float64
    ages = [float(np.float32(r[0])) for _, rows in federation["files"].values() for r in rows if r[0]]

    pre = Preprocessing.from_json(definition.metadata[METADATA_KEY])

    assert pre.mean[0] == pytest.approx(np.mean(ages), rel=1e-12)


def test_the_exported_model_takes_raw_columns_and_matches_what_the_nodes_trained_on(
    federation: dict[str, Any],
) -> None:
    _, definition, weights = _final(federation)
    path, rows = federation["files"]["site-b"]
    ages = np.array([[float(r[0]) if r[0] else np.nan] for r in rows], np.float32)
    sex = np.array([r[1] for r in rows] + [], dtype=object)
    labels = np.array([CLASSES.split(",").index(r[2]) for r in rows])
    model = served_model(definition, weights)
    input_name = definition.input_names[0]

    raw = run_model(model, {input_name: ages, "sex": sex})

    from flonnx.exchange.sources import DataSource, node_source

    source: DataSource = node_source({"data": path, "label": "outcome", "categorical": "sex",
                                      "classes": CLASSES, "missing": "impute-mean"}, None, "binary")
    pre = Preprocessing.from_json(definition.metadata[METADATA_KEY])
    x, y = source.load(pre.vocabularies)
    encoded = run_model(definition.materialize(weights), {input_name: pre.apply(x)})
    (output,) = raw
    np.testing.assert_allclose(raw[output], encoded[output], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(y, labels)
    assert evaluate_rows(definition, weights, x, y, "binary")["accuracy"] >= 0.5


def test_an_unseen_category_goes_to_other_in_the_exported_model(federation: dict[str, Any]) -> None:
    _, definition, weights = _final(federation)
    model = served_model(definition, weights)
    name = definition.input_names[0]
    ages = np.array([[50.0], [50.0]], np.float32)

    unseen = run_model(model, {name: ages, "sex": np.array(["Q", ""], dtype=object)})

    (output,) = unseen
    np.testing.assert_allclose(unseen[output][0], unseen[output][1], rtol=1e-6)
