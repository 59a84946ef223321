"""The presets and a user's own data and model, end to end on Flower's Simulation Engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.e2e.conftest import simulated

pytestmark = pytest.mark.e2e


def _aggregates(versions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [v for v in versions if v["kind"] == "aggregate"]


def _frameworks_per_aggregate(versions: list[dict[str, Any]]) -> list[set[str]]:
    by_id = {v["version_id"]: v for v in versions}
    return [{by_id[p]["framework"] for p in a["parents"]} for a in _aggregates(versions)]


@pytest.fixture(scope="module")
def own_data_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A new user's run: breast cancer as a CSV file and an MLP 30->16->2 exported by torch."""
    torch = pytest.importorskip("torch", reason="the user's model is exported with torch here")
    from sklearn.datasets import load_breast_cancer

    work = tmp_path_factory.mktemp("own-data")
    load_breast_cancer(as_frame=True).frame.to_csv(work / "cancer.csv", index=False)
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(30, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    torch.onnx.export(mlp.eval(), (torch.zeros(2, 30),), str(work / "mlp.onnx"), dynamo=True,
                      optimize=False, dynamic_shapes=({0: torch.export.Dim("batch")},))
    return simulated(work / "runs", "--data", "cancer.csv", "--label", "target", "--model", "mlp.onnx",
                     "--task", "binary", "--clients", "3", "--frameworks", "torch:1,jax:1,sklearn:1",
                     "--partition", "dirichlet:0.5", "--rounds", "5", cwd=work)


def test_own_csv_and_onnx_file_reach_093_with_every_framework_in_every_aggregate(
    own_data_run: dict[str, Any],
) -> None:
    aggregates = _aggregates(own_data_run["versions"])

    assert [a["round"] for a in aggregates] == [1, 2, 3, 4, 5]
    assert aggregates[-1]["metrics"]["accuracy"] >= 0.93
    assert {"roc-auc", "macro-f1"} <= set(aggregates[-1]["metrics"])
    assert _frameworks_per_aggregate(own_data_run["versions"]) == [{"torch", "jax", "sklearn"}] * 5


def test_the_run_records_its_spec_by_content_and_its_partitions(own_data_run: dict[str, Any]) -> None:
    config = own_data_run["run"].config

    assert config["spec_canonical"]["data"]["source"]["suffix"] == ".csv"
    assert len(config["spec_canonical"]["data"]["source"]["sha256"]) == 64
    clients = config["simulation"]["clients"]
    labels = np.asarray(pd.read_csv(own_data_run["registry"].parent / "cancer.csv")["target"])
    held_out = sum(round(int(np.sum(labels == c)) * 0.2) for c in (0, 1))  # stratified 20 %
    assert sum(c["rows"] for c in clients) == len(labels) - held_out
    assert sorted(c["framework"] for c in clients) == ["jax", "sklearn", "torch"]
    assert "partitions" in own_data_run["stdout"]


def test_hospitals_beats_the_mean_local_only_accuracy(hospitals_run: dict[str, Any]) -> None:
    final = _aggregates(hospitals_run["versions"])[-1]
    config = hospitals_run["run"].config

    baseline = config["local_baseline"]
    assert baseline["metric"] == "accuracy" and len(baseline["clients"]) == 5
    assert final["metrics"]["accuracy"] > baseline["mean"]
    assert "vs mean local-only" in hospitals_run["stdout"]
    sites = config["site_evaluation"]
    assert set(sites["sites"]) == {f"partition-{i}" for i in range(5)} and sites["version_id"] == \
        final["version_id"]
    assert sites["summary"]["worst"] == min(s["accuracy"] for s in sites["sites"].values())


def test_hospitals_are_standardised_federatedly_and_export_takes_raw_features(
    hospitals_run: dict[str, Any], tmp_path: Path,
) -> None:
    import onnx
    from sklearn.datasets import load_breast_cancer

    from flonnx.exchange.ort import evaluate_model
    from tests.e2e.conftest import flonnx

    final = _aggregates(hospitals_run["versions"])[-1]
    path = tmp_path / "hospitals.onnx"
    flonnx("export", final["version_id"], "-o", str(path), "--registry", str(hospitals_run["registry"]))
    model = onnx.load(str(path))
    data = load_breast_cancer()

    metrics = evaluate_model(model, data.data.astype(np.float32), data.target, "binary")

    assert "flonnx.preprocess" in {p.key for p in model.metadata_props}
    assert metrics["accuracy"] > 0.95  # raw features, as a hospital has them


def test_diabetes_regression_reaches_r2_040(tmp_path: Path) -> None:
    run = simulated(tmp_path, "diabetes")

    final = _aggregates(run["versions"])[-1]
    assert final["metrics"]["r2"] >= 0.40
    assert {"mse", "mae"} <= set(final["metrics"])


def test_fleet_completes_with_dropouts_and_is_reproducible(tmp_path: Path) -> None:
    a = simulated(tmp_path / "a", "fleet", "--rounds", "6")
    b = simulated(tmp_path / "b", "fleet", "--rounds", "6")

    ids = [(v["round"], v["kind"], v["version_id"]) for v in a["versions"]]
    assert ids == [(v["round"], v["kind"], v["version_id"]) for v in b["versions"]]
    assert len(a["run"].config["simulation"]["clients"]) == 200
    dropped = [v for v in a["versions"] if "dropped out" in v.get("reason", "")]
    updates = [v for v in a["versions"] if v["kind"] == "client_update"]
    assert dropped and len(updates) + len(dropped) == 6 * 20
    assert a["run"].status == "completed"
