"""Local-only baseline: what each simulated client would reach training alone.

Each client starts from the run's initial version and trains, in its own framework, on its own
partition only, for as many epochs as it could have trained in the federation (rounds × local
epochs); the server's evaluation source then scores every local model. The mean of those scores is
the number a federation has to beat to be worth joining. Runs in this process, after the
simulation (no Ray), and is recorded with the run (``local_baseline``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from flonnx.exchange.evaluation import evaluate_rows
from flonnx.exchange.registry import Registry
from flonnx.exchange.seeds import derive_seed
from flonnx.exchange.sources import evaluation_source, node_source, simulated_clients
from flonnx.exchange.spec import FederationSpec, assign_frameworks
from flonnx.exchange.task import HEADLINE_METRIC

__all__ = ["local_baseline"]

def local_baseline(spec: FederationSpec, registry: str, run_id: str,
                   blobs: str | None = None) -> dict[str, Any]:
    """Per client: its framework and the metrics of its local-only model; and the mean."""
    from flonnx.client.app import prepare_data
    from flonnx.client.trainers import TrainConfig, get_trainer

    source = evaluation_source(spec)
    if source is None:
        return {}
    eval_x, eval_y = source.load()
    with Registry(registry, create=False, blobs=blobs) as reg:
        initial = reg.initial_versions(run_id)[0].record
        definition = reg.get_definition(initial.definition_id)
        weights = reg.get_weights(initial.weights_id)
    n = simulated_clients(spec)
    frameworks = assign_frameworks(spec, n)
    train = spec.train_settings
    base = TrainConfig.from_config({**train, "task": spec.task}, 0)
    epochs = int(train.get("local-epochs", base.local_epochs)) * spec.rounds
    clients: dict[str, Any] = {}
    for i in range(n):
        x, y = node_source({"partition-id": i, "num-partitions": n}, spec, spec.task).load()
        x, y = prepare_data(definition, spec.task, x, y)
        config = replace(base, local_epochs=epochs, seed=derive_seed(spec.seed, "local-only", i))
        result = get_trainer(frameworks[i]).train(definition, weights, x, y, config)
        clients[f"partition-{i}"] = {
            "framework": frameworks[i], "rows": len(y),
            "metrics": evaluate_rows(definition, result.weights, eval_x, eval_y, spec.task),
        }
    metric = HEADLINE_METRIC[spec.task]
    values = [c["metrics"][metric] for c in clients.values()]
    return {"metric": metric, "epochs": epochs, "clients": clients, "mean": float(np.mean(values))}
