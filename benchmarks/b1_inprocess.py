"""B1 without Ray: where flonnx's extra round time goes, node side and coordinator side.

On the Simulation Engine the nodes train in parallel on the two cores while the coordinator works,
so a round's wall time mixes flonnx's extra work with scheduling and Ray's transport. Here both
sides run their real ServerApp and ClientApp in this one process, on an in-process grid
(:class:`tests.server.local_grid.LocalGrid`, which calls each node's ClientApp in turn): a round's
time is the sum of its work, and it splits into

* node time: every ClientApp call of the round (the whole handler, Flower's mods included), of which
  the training epochs (``run_epochs`` on flonnx's side: the batches both sides run) and the parity
  check with ONNX Runtime (flonnx only);
* coordinator time: the rest of the round (reply checks, aggregation, evaluation, registry writes
  on flonnx's side; FedAvg and the central evaluation on Flower's).

Every figure is CPU time of this process (``time.process_time``), not wall time: the two sides run
one after the other, so on a shared machine a busy spell would otherwise land on one side only.
Same spec, data partitions, model, local epochs and seeds as :mod:`benchmarks.b1_round`.
Run: ``python -m benchmarks.b1_inprocess [--model digits-mlp] [--rounds 6]``.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.b1_round import MODELS, Timers, _flonnx_targets
from benchmarks.plain_flower import Probe, make_apps

CLIENTS = 6
#: per model: (rounds, local epochs), the B1 Ray runs' settings
PLAN = {"digits-mlp": (8, 5), "digits-cnn": (5, 2), "mlp-64-3100-3100-10": (4, 1)}


def _spec(model: str, rounds: int, epochs: int) -> Any:
    from flonnx.api import load_spec

    return load_spec("digits-mixed", clients=CLIENTS, frameworks=f"torch:{CLIENTS}", rounds=rounds,
                     model=model, local_epochs=epochs)


class CpuTimers(Timers):
    """:class:`Timers` that keep each call's CPU seconds (its start stays on the wall clock)."""

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn``, its CPU time kept under ``name``."""
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started, cpu = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.calls.append((name, started, time.process_time() - cpu))
        return timed


def _mark() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _per_round(timers: Timers, marks: list[tuple[float, float]]) -> list[dict[str, float]]:
    """CPU seconds of each timed name within each round (rounds 2..: round 1 pays imports)."""
    rounds = []
    for (a, cpu_a), (b, cpu_b) in zip(marks[1:-1], marks[2:], strict=True):
        sums = {"round": cpu_b - cpu_a}
        for name, started, seconds in timers.calls:
            if a <= started < b:
                sums[name] = sums.get(name, 0.0) + seconds
        rounds.append(sums)
    return rounds


def _grid_targets() -> list[tuple[str, Any, str]]:
    from tests.server.local_grid import LocalGrid

    return [("node", LocalGrid, "_deliver")]


def run_flonnx(model: str, rounds: int, epochs: int) -> list[dict[str, float]]:
    """One in-process flonnx federation; the timed names per round."""
    from flwr.app import Context, RecordDict

    import flonnx.client.trainers._loop as loop
    import flonnx.server.federation as federation
    from flonnx.client.app import make_client_app
    from flonnx.server.app import make_server_app
    from flonnx.server.progress import Reporter, RoundSummary
    from tests.server.local_grid import LocalGrid

    marks: list[tuple[float, float]] = []

    class Marks(Reporter):
        def start(self, *args: Any, **kwargs: Any) -> None:
            marks.append(_mark())

        def round(self, summary: RoundSummary) -> None:
            marks.append(_mark())

    timers = CpuTimers()
    targets = [t for t in _flonnx_targets() if t[2] != "send_and_receive"] + _grid_targets() + [
        ("node: training epochs", loop, "run_epochs"), ("node: parity check", loop, "check_parity"),
        ("coordinator: evaluation", federation.Federation, "evaluate")]
    spec = _spec(model, rounds, epochs)
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder, timers.patched(targets):
        server = make_server_app({"min-available-nodes": CLIENTS, "registry": f"{folder}/runs"},
                                 Marks(), result, spec=spec)
        server(LocalGrid(make_client_app(spec), CLIENTS),
               Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={}))
    if result.get("errors"):
        raise RuntimeError(f"flonnx run failed: {result['errors']}")
    return _per_round(timers, marks)


class _Marks(list):  # type: ignore[type-arg]
    """The baseline appends ``time.perf_counter()`` at each central evaluation; keep CPU time too."""

    def __init__(self, marks: list[tuple[float, float]]) -> None:
        super().__init__()
        self._marks = marks

    def append(self, _: Any) -> None:
        """Mark both clocks now."""
        self._marks.append(_mark())


def run_flower(model: str, rounds: int, epochs: int) -> list[dict[str, float]]:
    """The plain Flower baseline on the same in-process grid; the timed names per round."""
    from flwr.app import Context, RecordDict

    import benchmarks.plain_flower as plain
    from tests.server.local_grid import LocalGrid

    probe = Probe()
    server, client = make_apps(_spec(model, rounds, epochs), probe)
    timers = CpuTimers()
    marks: list[tuple[float, float]] = []
    probe.evaluated_at = _Marks(marks)  # type: ignore[assignment]
    # The baseline's grid sizes every message with protobuf for B1's byte counts (2 x 236 MB a
    # round for the 10 M MLP); flonnx's grid is not wrapped here, so neither side pays for sizing.
    sizing = (plain.message_bytes, plain._array_bytes, plain._record_bytes)
    plain.message_bytes, plain._array_bytes, plain._record_bytes = (  # type: ignore[assignment]
        lambda m: 0, lambda m: 0, lambda m: {})
    try:
        with timers.patched(_grid_targets()):
            server(LocalGrid(client, CLIENTS),
                   Context(run_id=1, node_id=0, node_config={}, state=RecordDict(),
                           run_config={"num-nodes": CLIENTS}))
    finally:
        plain.message_bytes, plain._array_bytes, plain._record_bytes = sizing  # type: ignore[assignment]
    return _per_round(timers, marks)


def _median(rounds: list[dict[str, float]], name: str) -> float:
    return statistics.median(r.get(name, 0.0) for r in rounds) if rounds else float("nan")


def compare(model: str, rounds: int, epochs: int) -> dict[str, Any]:
    """Median seconds per round of each part, both sides, and flonnx's extra time by part."""
    flonnx, flower = run_flonnx(model, rounds, epochs), run_flower(model, rounds, epochs)
    names = sorted({n for r in flonnx for n in r})
    ours = {n: _median(flonnx, n) for n in names}
    theirs = {"round": _median(flower, "round"), "node": _median(flower, "node")}
    ours["coordinator"] = ours["round"] - ours["node"]
    theirs["coordinator"] = theirs["round"] - theirs["node"]
    return {"model": model, "clients": CLIENTS, "rounds": rounds, "local_epochs": epochs,
            "flonnx": ours, "flower": theirs,
            "ratio": ours["round"] / theirs["round"] if theirs["round"] else float("nan"),
            "extra_s": {"node": ours["node"] - theirs["node"],
                        "coordinator": ours["coordinator"] - theirs["coordinator"]}}


def run(quick: bool, models: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The in-process comparison for each B1 model (quick: fewer rounds)."""
    results = []
    for model, _ in MODELS:
        if models is not None and model not in models:
            continue
        rounds, epochs = PLAN[model]
        try:
            results.append(compare(model, max(3, rounds // 2) if quick else rounds, epochs))
        except Exception as exc:  # noqa: BLE001 - one model's failure must not lose the others
            results.append({"model": model, "error": f"{type(exc).__name__}: {exc}"[:500]})
    return {"models": results, "clients": CLIENTS}


def _s(x: float) -> str:
    return f"{x:.3f}"


def render(doc: dict[str, Any]) -> list[str]:
    """Markdown for docs/benchmarks.md: round time by part, both sides, per model."""
    lines = [
        "### B1 without Ray: where the extra time goes",
        "",
        f"Command: `{doc.get('command', 'python -m benchmarks.b1_inprocess')}` ({doc.get('mode', '')}, "
        f"{doc.get('created', '')}). Both sides' real ServerApp and ClientApp in one process on an "
        "in-process grid (`benchmarks/b1_inprocess.py`): the nodes train one after the other, so a "
        "round's time is the sum of its work (no Ray, no parallel nodes, no transport). Node = every "
        "ClientApp call of the round; coordinator = the rest. Median CPU seconds of the process per "
        "round (`time.process_time`, so that a busy spell of a shared machine does not land on one "
        "side only), rounds 2.. "
        f"({doc['results'].get('clients', CLIENTS)} torch clients, FedAvg).",
        "",
        "| model | side | round s | nodes s | of which training epochs s | of which parity s | "
        "coordinator s | of which evaluation s | of which reply checks s | of which registry s | "
        "time ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in doc["results"]["models"]:
        if "error" in m:
            lines.append(f"| {m['model']} | error: {m['error']} | | | | | | | | | |")
            continue
        ours, theirs = m["flonnx"], m["flower"]
        registry = sum(v for k, v in ours.items() if k.startswith("registry"))
        lines.append(
            f"| {m['model']} | flonnx | {_s(ours['round'])} | {_s(ours['node'])} | "
            f"{_s(ours.get('node: training epochs', 0.0))} | {_s(ours.get('node: parity check', 0.0))} | "
            f"{_s(ours['coordinator'])} | {_s(ours.get('coordinator: evaluation', 0.0))} | "
            f"{_s(ours.get('check replies', 0.0))} | {_s(registry)} | {m['ratio']:.2f}x |")
        lines.append(f"| {m['model']} | flower | {_s(theirs['round'])} | {_s(theirs['node'])} | | | "
                     f"{_s(theirs['coordinator'])} | | | | |")
    lines += ["", "Extra seconds per round, flonnx minus Flower: " + "; ".join(
        f"{m['model']}: nodes {m['extra_s']['node']:+.3f}, coordinator {m['extra_s']['coordinator']:+.3f}"
        for m in doc["results"]["models"] if "error" not in m) + ".", ""]
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run, print the table, write ``benchmarks/results/b1_inprocess.json``."""
    from benchmarks.common import write_result

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", action="append", choices=[m for m, _ in MODELS])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    from flonnx.simulations.runner import offline_environment

    offline_environment()
    data = run(args.quick, tuple(args.model) if args.model else None)
    command = "python -m benchmarks.b1_inprocess" + (" --quick" if args.quick else "") + "".join(
        f" --model {m}" for m in args.model or ())
    path = write_result("b1_inprocess", "quick" if args.quick else "full", data, command)
    print("\n".join(render(json.loads(Path(path).read_text()))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
