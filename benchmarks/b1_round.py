"""B1 round overhead: the same torch federation as flonnx and as plain Flower, both on Ray.

Both sides: ``clients`` simulated nodes on Flower's Simulation Engine (one CPU per node), one zoo
model (the digits MLP, the digits CNN, a ~10 M-parameter MLP), the spec's partitions, local epochs,
batch size and learning rate, FedAvg, every node sampled every round, central evaluation on the
spec's hold-out after every round.

Breakdown of flonnx's round (server side): the functions that do flonnx's extra work are wrapped
with timers in this process (:class:`Timers`, benchmark-only): reply checks (of which hashing and
validation), registry writes, ONNX Runtime evaluation, configuring the round; the wait for the
nodes (training and transport, which plain Flower has too) is timed apart.

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

import functools
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.plain_flower import CountingGrid, Probe, make_apps, run_on_ray


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


class Timers:
    """Wraps named functions with timers; each call is kept as (name, start, seconds)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float, float]] = []

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn``, timed under ``name``."""
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.calls.append((name, started, time.perf_counter() - started))
        return timed

    @contextmanager
    def patched(self, targets: list[tuple[str, Any, str]]) -> Iterator[None]:
        """Wrap ``getattr(owner, attribute)`` as ``name`` for each (name, owner, attribute)."""
        saved = []
        for name, owner, attribute in targets:
            if hasattr(owner, attribute):
                saved.append((owner, attribute, owner.__dict__.get(attribute, getattr(owner, attribute))))
                setattr(owner, attribute, self.wrap(name, getattr(owner, attribute)))
        try:
            yield
        finally:
            for owner, attribute, original in reversed(saved):
                setattr(owner, attribute, original)

    def per_round(self, marks: list[float]) -> dict[str, float]:
        """Median seconds per round of each name, over rounds 2.. (the calls within their marks)."""
        out: dict[str, list[float]] = {}
        for a, b in zip(marks[1:-1], marks[2:], strict=True):
            sums: dict[str, float] = {}
            for name, started, seconds in self.calls:
                if a <= started < b:
                    sums[name] = sums.get(name, 0.0) + seconds
            for name in {n for n, _, _ in self.calls}:
                out.setdefault(name, []).append(sums.get(name, 0.0))
        return {name: statistics.median(values) for name, values in sorted(out.items()) if values}


def _flonnx_targets() -> list[tuple[str, Any, str]]:
    import flonnx.server.federation as federation
    import flonnx.server.replies as replies
    from flonnx.exchange.definition import Definition
    from flonnx.exchange.registry import Registry

    return [("wait for nodes (train + transport)", federation, "send_and_receive"),
            ("check replies", federation, "check_reply"),
            ("check replies: hashing", replies, "weights_id"),
            ("check replies: validation", Definition, "validate"),
            ("registry: put_weights", Registry, "put_weights"),
            ("registry: commit", Registry, "commit"),
            ("registry: put_state", Registry, "put_state"),
            ("configure round", federation, "configure_round")]


def run_flonnx(clients: int, rounds: int, epochs: int, model: str = "digits-mlp") -> dict[str, Any]:
    """One flonnx simulation; its round times, bytes and the breakdown of its round."""
    import flonnx.server.app as server_app
    from flonnx.api import load_spec
    from flonnx.server.federation import Federation
    from flonnx.server.progress import Reporter, RoundSummary
    from flonnx.simulations.runner import simulate

    probe = Probe()
    marks: list[float] = []
    accuracy: list[float] = []
    timers = Timers()

    class Timing(Reporter):
        def start(self, *args: Any, **kwargs: Any) -> None:
            marks.append(time.perf_counter())

        def round(self, summary: RoundSummary) -> None:
            marks.append(time.perf_counter())
            accuracy.append(float(summary.metrics.get("accuracy", float("nan"))))

    class Counted(Federation):
        def __init__(self, grid: Any, *args: Any, **kwargs: Any) -> None:
            super().__init__(CountingGrid(grid, probe), *args, **kwargs)  # type: ignore[arg-type]

        def evaluate(self, *args: Any, **kwargs: Any) -> Any:
            return timers.wrap("evaluation (ONNX Runtime)", super().evaluate)(*args, **kwargs)

    spec = load_spec("digits-mixed", clients=clients, frameworks=f"torch:{clients}", rounds=rounds,
                     model=model, local_epochs=epochs)
    original = server_app.Federation  # type: ignore[attr-defined]
    server_app.Federation = Counted  # type: ignore[attr-defined,misc]
    try:
        with tempfile.TemporaryDirectory() as folder, timers.patched(_flonnx_targets()):
            simulate(spec, overrides={"registry": str(Path(folder) / "runs")}, reporter=Timing())
    finally:
        server_app.Federation = original  # type: ignore[attr-defined,misc]
    result = _summary(marks, probe, rounds, accuracy[-1] if accuracy else float("nan"))
    result["breakdown_s"] = timers.per_round(marks)
    return result


def run_flower(clients: int, rounds: int, epochs: int, model: str = "digits-mlp") -> dict[str, Any]:
    """The plain Flower baseline on the same spec; its round times and bytes."""
    from flonnx.api import load_spec
    from flonnx.simulations.runner import offline_environment

    offline_environment()
    spec = load_spec("digits-mixed", clients=clients, frameworks=f"torch:{clients}", rounds=rounds,
                     model=model, local_epochs=epochs)
    probe = Probe()
    server, client = make_apps(spec, probe)
    run_on_ray(server, client, clients)
    return _summary(probe.evaluated_at, probe, rounds, probe.accuracy[-1] if probe.accuracy else float("nan"))


#: The models of B1: (zoo name, what it is). ``mlp-64-3100-3100-10`` has 9,845,610 parameters.
MODELS = (("digits-mlp", "digits MLP (64-32-10, 2,410 parameters)"),
          ("digits-cnn", "digits CNN (2 x conv3x3+BN+ReLU+pool, linear 128-10)"),
          ("mlp-64-3100-3100-10", "~10 M-parameter MLP (64-3100-3100-10, 9,845,610 parameters)"))


def _plan(model: str, quick: bool) -> tuple[int, int, int, int]:
    """(clients, rounds, local epochs, repeats) of one model's comparison."""
    if model.startswith("mlp-"):  # 40 MB per update: fewer rounds, one local epoch
        return (6, 4, 1, 1) if quick else (6, 6, 1, 2)
    if model == "digits-cnn":
        return (6, 5, 2, 1) if quick else (6, 10, 5, 2)
    return (6, 8, 5, 1) if quick else (6, 15, 5, 3)


def compare(model: str, description: str, quick: bool) -> dict[str, Any]:
    """Compare flonnx with the plain Flower baseline on one model: times, bytes, ratios, breakdown."""
    clients, rounds, epochs, repeats = _plan(model, quick)
    runs: dict[str, list[dict[str, Any]]] = {"flonnx": [], "flower": []}
    for _ in range(repeats):  # alternate the sides, so a busy spell of the machine hits both
        runs["flonnx"].append(run_flonnx(clients, rounds, epochs, model))
        runs["flower"].append(run_flower(clients, rounds, epochs, model))
    pooled = {}
    for side, results in runs.items():
        rest = [t for r in results for t in r["round_s"][1:]]
        pooled[side] = {**results[0], "repeats": results,
                        "first_round_s": statistics.median(r["first_round_s"] for r in results),
                        "median_round_s": statistics.median(rest) if rest else float("nan")}
    flonnx, flower = pooled["flonnx"], pooled["flower"]
    breakdowns = [r["breakdown_s"] for r in runs["flonnx"]]
    flonnx["breakdown_s"] = {k: statistics.median(b.get(k, 0.0) for b in breakdowns)
                             for k in sorted({k for b in breakdowns for k in b})}

    def ratio(a: float, b: float) -> float:
        return a / b if b else float("nan")

    return {
        "model": model,
        "description": f"{description}, {clients} torch clients, {rounds} rounds, {epochs} local "
                       "epoch(s), FedAvg, iid partitions, 20 % hold-out.",
        "clients": clients, "rounds": rounds, "local_epochs": epochs, "repeats": repeats,
        "flonnx": flonnx, "flower": flower,
        "ratios": {"time": ratio(flonnx["median_round_s"], flower["median_round_s"]),
                   "first_round": ratio(flonnx["first_round_s"], flower["first_round_s"]),
                   "bytes_sent": ratio(flonnx["bytes_sent_per_round"], flower["bytes_sent_per_round"]),
                   "bytes_received": ratio(flonnx["bytes_received_per_round"],
                                           flower["bytes_received_per_round"])},
    }


def run(quick: bool, models: tuple[str, ...] | None = None) -> dict[str, Any]:
    """B1 for each model of :data:`MODELS` (or those named)."""
    chosen = [(m, d) for m, d in MODELS if models is None or m in models]
    results = []
    for model, description in chosen:
        try:
            results.append(compare(model, description, quick))
        except Exception as exc:  # noqa: BLE001 - one model's failure must not lose the others
            results.append({"model": model, "error": f"{type(exc).__name__}: {exc}"[:500]})
    return {
        "models": results,
        "notes": [
            "round times pooled over the simulations of each side (alternating), rounds 2.. of "
            "each; bytes from the first simulation (they do not vary)",
            "bytes per round count the train messages only; handshake (query) and final site "
            "evaluation bytes are in bytes_by_type of the JSON",
            "first round: Flower's includes starting the node actors and their imports; flonnx's "
            "handshake (before its round-0 mark) already did that, so the two are not comparable",
            "flonnx runs through flonnx.simulations.runner.simulate (what flonnx.api.simulate calls) "
            "for its reporter; Federation is wrapped in this process to size messages and time "
            "its steps",
        ],
    }
