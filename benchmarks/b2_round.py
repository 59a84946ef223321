"""B2 end-to-end: the server's memory in real rounds of N = 100 clients, flonnx vs plain Flower.

One Flower Simulation Engine run per side, each in its own process (``python -m benchmarks.b2_round
child SIDE DATA``), on :func:`benchmarks.b5_scale.make_data`'s synthetic table (100 clients x 50
rows, 20 features, 4 classes): model ``mlp-20-1000-1000-4`` (1,026,004 float32 parameters, 4.1 MB, so
100 held updates are ~410 MB), every client sampled in each of 2 rounds, 1 local epoch, FedAvg.

* flonnx: :func:`flonnx.simulations.runner.simulate` (the spec of ``flonnx simulate ... --clients 100
  --frameworks torch:100 --rounds 2 --model mlp-20-1000-1000-4``, site evaluation off). Its FedAvg
  uses the streaming aggregator (``server/streaming.py``) and folds each reply as it is pulled
  (``server/stopping.py``).
* Flower: :mod:`benchmarks.plain_flower`'s apps (Flower's ``FedAvg``, which gets all N replies from
  ``send_and_receive`` and aggregates them together), without its byte counting (a serialization of
  every message that is not Flower's own work).

The ServerApp runs in the simulation's driver process (Ray's workers, which train, are other
processes), so that process is the server: a thread samples its own ``VmRSS`` and ``RssAnon``
(``/proc/self/status``) every 5 ms. A round is the span between two central evaluations (flonnx:
its reporter's start and round events; Flower: ``evaluate_fn``); its peak above the level at its
start is reported. ``tracemalloc`` traces round 1 only (the Python heap, numpy included; its own
cost slows that round down), so round 2's time and RSS are untraced. glibc may keep memory freed
in round 1 for reuse, which lowers round 2's peak above its (higher) start: round 1 is the headline.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

from benchmarks.b5_scale import _rss, make_data, run_child

MODEL = "mlp-20-1000-1000-4"
CLIENTS, ROUNDS, EPOCHS = 100, 2, 1
SIDES = ("flonnx", "flower")
#: spec keys of both sides that ``flonnx simulate`` has no flag for
SPEC_KEYS = f"[train] local-epochs = {EPOCHS}; evaluate-sites = false"


def parameters(model: str = MODEL) -> int:
    """Parameters of an ``mlp-IN-…-OUT`` zoo model."""
    widths = [int(w) for w in model.split("-")[1:]]
    return sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))


def command(clients: int = CLIENTS, rounds: int = ROUNDS) -> str:
    """The equivalent ``flonnx simulate`` command of the flonnx side (with :data:`SPEC_KEYS` set)."""
    return (f"flonnx simulate --data synthetic-{clients}.csv --label y --clients {clients} "
            f"--frameworks torch:{clients} --rounds {rounds} --model {MODEL}")


def _spec(data: str, clients: int, rounds: int) -> Any:
    from flonnx.api import spec

    return spec(data=data, label="y", task="classification", model=MODEL, clients=clients,
                frameworks=f"torch:{clients}", fraction_train=1.0, rounds=rounds,
                local_epochs=EPOCHS, evaluate_sites=False)


# ---- child side: one simulation, its driver's memory per round -------------------------------------

def _status() -> tuple[int, int]:
    """This process's (VmRSS, RssAnon) in bytes."""
    rss = anon = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("RssAnon:"):
            anon = int(line.split()[1]) * 1024
    return rss, anon


class RoundMemory:
    """Samples this process's RSS in a thread; :meth:`mark` at each round boundary closes a round."""

    def __init__(self, interval: float = 0.005) -> None:
        self.samples: list[tuple[float, int, int]] = []
        self.rounds: list[dict[str, Any]] = []
        self._start: tuple[float, int, int] | None = None
        self._done = threading.Event()
        self._interval = interval
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.wait(self._interval):
            self.samples.append((time.perf_counter(), *_status()))

    def mark(self) -> None:
        """End the round in progress (if any) and start the next; round 1 is traced."""
        now = (time.perf_counter(), *_status())
        if self._start is not None:
            t0, rss0, anon0 = self._start
            window = [s for s in list(self.samples) if t0 <= s[0] <= now[0]] + [now]
            entry: dict[str, Any] = {
                "round": len(self.rounds) + 1, "seconds": now[0] - t0, "samples": len(window),
                "rss_before_bytes": rss0, "rss_after_bytes": now[1],
                "peak_rss_above_bytes": max(s[1] for s in window) - rss0,
                "anon_before_bytes": anon0,
                "peak_anon_above_bytes": max(s[2] for s in window) - anon0,
                "traced": tracemalloc.is_tracing(),
            }
            if tracemalloc.is_tracing():
                current, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                entry.update(tracemalloc_peak_bytes=peak, tracemalloc_end_bytes=current)
            self.rounds.append(entry)
            print(json.dumps({"event": "round", **entry}), flush=True)
        if not self.rounds:
            tracemalloc.start()
        self._start = (time.perf_counter(), *_status())

    def stop(self) -> None:
        """Stop sampling."""
        self._done.set()
        self._thread.join()


def _child_flonnx(data: str, clients: int, rounds: int, memory: RoundMemory) -> list[float]:
    from flonnx.server.progress import Reporter, RoundSummary
    from flonnx.simulations.runner import simulate

    accuracy: list[float] = []

    class Marks(Reporter):
        def start(self, *args: Any, **kwargs: Any) -> None:
            memory.mark()

        def round(self, summary: RoundSummary) -> None:
            memory.mark()
            accuracy.append(float(summary.metrics.get("accuracy", float("nan"))))

    with tempfile.TemporaryDirectory() as folder:
        simulate(_spec(data, clients, rounds), overrides={"registry": str(Path(folder) / "runs")},
                 reporter=Marks())
    return accuracy


class _Marks(list[float]):
    """``Probe.evaluated_at`` that marks a round boundary at each central evaluation."""

    def __init__(self, memory: RoundMemory) -> None:
        super().__init__()
        self._memory = memory

    def append(self, value: float) -> None:
        super().append(value)
        self._memory.mark()


def _child_flower(data: str, clients: int, rounds: int, memory: RoundMemory) -> list[float]:


    from benchmarks import plain_flower
    from flonnx.simulations.runner import offline_environment

    def uncounted(grid: Any, probe: Any) -> Any:
        return grid

    plain_flower.CountingGrid = uncounted  # type: ignore[assignment,misc]  # benchmark-only, this child
    offline_environment()
    probe = plain_flower.Probe()
    probe.evaluated_at = _Marks(memory)
    server, client = plain_flower.make_apps(_spec(data, clients, rounds), probe)
    plain_flower.run_on_ray(server, client, clients)
    return probe.accuracy


# ---- parent side -----------------------------------------------------------------------------------

def run_side(side: str, data: str, clients: int, rounds: int, cap_s: float) -> dict[str, Any]:
    """One simulation in its own process (and session); also samples its whole tree's RSS."""
    args = [sys.executable, "-m", "benchmarks.b2_round", "child", side, data, str(clients), str(rounds)]
    tree_peak = [0]

    def sample(pids: list[int], seconds: float) -> None:
        tree_peak[0] = max(tree_peak[0], _rss(pids))

    child = run_child(args, cap_s, sample)
    lines, final, status, wall = child.lines, child.final, child.status, child.wall_s
    rounds_done = final["rounds"] if final else [d for d in lines if d.get("event") == "round"]
    for r in rounds_done:
        r.pop("event", None)
    return {"side": side, "clients": clients, "status": status, "rounds": rounds_done,
            "rounds_planned": rounds, "wall_s": wall, "tree_peak_rss_bytes": tree_peak[0],
            **({"error": child.error} if child.error else {}),
            "final_accuracy": final["accuracy"][-1] if final and final["accuracy"] else float("nan")}


def run(quick: bool = True, clients: int = CLIENTS, rounds: int = ROUNDS, cap_s: float = 600.0
        ) -> dict[str, Any]:
    """Both sides, one simulation each (the same for --quick and --full)."""
    folder = Path(tempfile.mkdtemp(prefix="b2-round-"))
    data = make_data(folder / f"synthetic-{clients}.csv", clients)
    runs = []
    for side in SIDES:
        result = run_side(side, str(data), clients, rounds, cap_s)
        runs.append(result)
        first = result["rounds"][0] if result["rounds"] else {}
        print(f"  B2 end-to-end {side} N={clients}: {result['status']}, round 1 peak RSS above start "
              f"{first.get('peak_rss_above_bytes', float('nan')) / 2**20:,.0f} MiB, "
              f"{first.get('seconds', float('nan')):.1f} s; wall {result['wall_s']:.0f} s", flush=True)
    (folder / data.name).unlink()
    folder.rmdir()
    p = parameters()
    return {"model": MODEL, "parameters": p, "model_bytes": 4 * p, "clients": clients,
            "rounds": rounds, "local_epochs": EPOCHS, "fraction_train": 1.0,
            "sampling_interval_s": 0.005, "flonnx_command": command(clients, rounds),
            "spec_keys": SPEC_KEYS, "runs": runs}


def merge(path: Path, data: dict[str, Any], command_line: str, mode: str) -> Path:
    """Put ``data`` as ``results.end_to_end`` of the B2 result at ``path``, keeping the rest."""
    doc = json.loads(path.read_text())
    doc["results"]["end_to_end"] = {**data, "command": command_line, "mode": mode,
                                    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    """``child SIDE DATA CLIENTS ROUNDS`` (one simulation), or ``run [--merge]`` (both sides)."""
    from benchmarks.common import RESULTS

    parser = argparse.ArgumentParser(prog="python -m benchmarks.b2_round")
    sub = parser.add_subparsers(dest="action", required=True)
    child = sub.add_parser("child")
    child.add_argument("side", choices=SIDES)
    child.add_argument("data")
    child.add_argument("clients", type=int)
    child.add_argument("rounds", type=int)
    both = sub.add_parser("run", help="both sides; print the JSON, or merge it into b2_memory.json")
    both.add_argument("--merge", action="store_true",
                      help="add it to benchmarks/results/b2_memory.json (keeping the aggregation step)")
    args = parser.parse_args(argv)
    if args.action == "child":
        memory = RoundMemory()
        run_child = _child_flonnx if args.side == "flonnx" else _child_flower
        accuracy = run_child(args.data, args.clients, args.rounds, memory)
        memory.stop()
        print(json.dumps({"event": "result", "rounds": memory.rounds, "accuracy": accuracy}), flush=True)
        return 0
    data = run()
    if args.merge:
        path = merge(RESULTS / "b2_memory.json", data, "python -m benchmarks.b2_round run --merge", "quick")
        print(f"wrote {path}")
    else:
        print(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
