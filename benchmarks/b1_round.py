"""B1 round overhead: the same torch federation as flonnx and as plain Flower, both on Ray.

Both sides: ``clients`` simulated nodes on Flower's Simulation Engine (one CPU per node), the
digits MLP, the spec's partitions, local epochs, batch size and learning rate, FedAvg, every node
sampled every round, central evaluation on the spec's hold-out after every round.

* flonnx: ``flonnx.simulations.runner.simulate`` (what ``flonnx.api.simulate`` calls; used directly
  for its ``reporter``), spec ``digits-mixed`` with ``frameworks=torch:N``. Round ends are the
  reporter's round events; the round-0 mark is its start event (after the initial evaluation).
* Flower: :mod:`benchmarks.plain_flower` (``run_simulation`` with FedAvg); round ends are the
  central evaluations.

Bytes: each side's Grid is wrapped in :class:`benchmarks.plain_flower.CountingGrid` in this process
(flonnx's by substituting ``Federation`` in ``flonnx.server.app`` with a subclass that wraps the grid
- a benchmark-only monkeypatch), which sizes every message with Flower's protobuf serialization.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from benchmarks.plain_flower import CountingGrid, Probe, make_apps


def _rounds(marks: list[float]) -> list[float]:
    return [b - a for a, b in zip(marks[:-1], marks[1:], strict=True)]


def _summary(marks: list[float], probe: Probe, rounds: int, accuracy: float) -> dict[str, Any]:
    durations = _rounds(marks)
    train_sent, train_received = probe.sent.get("train", 0), probe.received.get("train", 0)
    return {
        "round_s": durations,
        "first_round_s": durations[0] if durations else float("nan"),
        "median_round_s": statistics.median(durations[1:]) if len(durations) > 1 else float("nan"),
        "bytes_sent_per_round": train_sent / rounds, "bytes_received_per_round": train_received / rounds,
        "bytes_by_type": {"sent": dict(probe.sent), "received": dict(probe.received),
                          "messages": dict(probe.messages), "array_data": dict(probe.arrays),
                          "records": {k: dict(v) for k, v in probe.records.items()}},
        "final_accuracy": accuracy,
    }


def run_flonnx(clients: int, rounds: int, epochs: int) -> dict[str, Any]:
    """One flonnx simulation; its round times and bytes."""
    import flonnx.server.app as server_app
    from flonnx.api import load_spec
    from flonnx.server.federation import Federation
    from flonnx.server.progress import Reporter, RoundSummary
    from flonnx.simulations.runner import simulate

    probe = Probe()
    marks: list[float] = []
    accuracy: list[float] = []

    class Timing(Reporter):
        def start(self, *args: Any, **kwargs: Any) -> None:
            marks.append(time.perf_counter())

        def round(self, summary: RoundSummary) -> None:
            marks.append(time.perf_counter())
            accuracy.append(float(summary.metrics.get("accuracy", float("nan"))))

    class Counted(Federation):
        def __init__(self, grid: Any, *args: Any, **kwargs: Any) -> None:
            super().__init__(CountingGrid(grid, probe), *args, **kwargs)  # type: ignore[arg-type]

    spec = load_spec("digits-mixed", clients=clients, frameworks=f"torch:{clients}", rounds=rounds,
                     model="digits-mlp", local_epochs=epochs)
    original = server_app.Federation  # type: ignore[attr-defined]
    server_app.Federation = Counted  # type: ignore[attr-defined,misc]
    try:
        with tempfile.TemporaryDirectory() as folder:
            simulate(spec, overrides={"registry": str(Path(folder) / "runs")}, reporter=Timing())
    finally:
        server_app.Federation = original  # type: ignore[attr-defined,misc]
    return _summary(marks, probe, rounds, accuracy[-1] if accuracy else float("nan"))


def run_flower(clients: int, rounds: int, epochs: int) -> dict[str, Any]:
    """The plain Flower baseline on the same spec; its round times and bytes."""
    from flwr.simulation import run_simulation

    from flonnx.api import load_spec
    from flonnx.simulations.runner import _quiet_flower, _start_ray, _stop_ray, offline_environment

    offline_environment()
    spec = load_spec("digits-mixed", clients=clients, frameworks=f"torch:{clients}", rounds=rounds,
                     model="digits-mlp", local_epochs=epochs)
    probe = Probe()
    server, client = make_apps(spec, probe)
    init_args: dict[str, Any] = {"logging_level": "ERROR", "log_to_driver": False}
    with warnings.catch_warnings(), _quiet_flower(False):
        warnings.simplefilter("ignore")
        _start_ray(init_args)  # as flonnx starts it, so both sides pay the same start-up
        try:
            run_simulation(server_app=server, client_app=client, num_supernodes=clients,
                           backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                           "init_args": init_args})
        finally:
            _stop_ray()
    return _summary(probe.evaluated_at, probe, rounds, probe.accuracy[-1] if probe.accuracy else float("nan"))


def run(quick: bool) -> dict[str, Any]:
    """B1 (digits MLP only, for now)."""
    clients, rounds, epochs = (6, 8, 5) if quick else (6, 15, 5)
    repeats = 2 if quick else 3
    runs: dict[str, list[dict[str, Any]]] = {"flonnx": [], "flower": []}
    for _ in range(repeats):  # alternate the sides, so a busy spell of the machine hits both
        runs["flonnx"].append(run_flonnx(clients, rounds, epochs))
        runs["flower"].append(run_flower(clients, rounds, epochs))
    pooled = {}
    for side, results in runs.items():
        rest = [t for r in results for t in r["round_s"][1:]]
        pooled[side] = {**results[0], "repeats": results,
                        "first_round_s": statistics.median(r["first_round_s"] for r in results),
                        "median_round_s": statistics.median(rest) if rest else float("nan")}
    flonnx, flower = pooled["flonnx"], pooled["flower"]

    def ratio(a: float, b: float) -> float:
        return a / b if b else float("nan")

    return {
        "description": f"digits MLP (64-32-10), {clients} torch clients, {rounds} rounds, "
                       f"{epochs} local epochs, FedAvg, iid partitions, 20 % hold-out.",
        "clients": clients, "rounds": rounds, "local_epochs": epochs, "repeats": repeats,
        "flonnx": flonnx, "flower": flower,
        "ratios": {"time": ratio(flonnx["median_round_s"], flower["median_round_s"]),
                   "first_round": ratio(flonnx["first_round_s"], flower["first_round_s"]),
                   "bytes_sent": ratio(flonnx["bytes_sent_per_round"], flower["bytes_sent_per_round"]),
                   "bytes_received": ratio(flonnx["bytes_received_per_round"],
                                           flower["bytes_received_per_round"])},
        "notes": [
            f"round times pooled over {repeats} simulations per side (alternating), "
            "rounds 2.. of each; bytes from the first simulation (they do not vary)",
            "bytes per round count the train messages only; handshake (query) bytes are in "
            "bytes_by_type of the JSON",
            "first round: Flower's includes starting the node actors and their imports; flonnx's "
            "handshake (before its round-0 mark) already did that, so the two are not comparable",
            "flonnx runs through flonnx.simulations.runner.simulate (what flonnx.api.simulate calls) "
            "for its reporter; Federation is wrapped in this process to size messages",
        ],
    }
