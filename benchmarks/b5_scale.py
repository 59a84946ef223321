"""B5 scale: many virtual clients, a share sampled per round, flonnx vs plain Flower, both on Ray.

Data: a seeded synthetic CSV (:func:`make_data`, numpy only): ``clients x rows`` rows, 20 Gaussian
features, 4 classes from a seeded Gaussian mixture, label column ``y``. Both sides read it through
flonnx's data sources (iid partition into ``clients`` parts, 20 % hold-out for central evaluation),
so they train on the same partitions.

* flonnx: ``flonnx.simulations.runner.simulate`` on the spec of
  ``flonnx simulate --data FILE --label y --clients N --fraction-train F --frameworks torch:N
  --rounds R --model mlp-20-16-4`` (torch nodes, FedAvg). ``Federation._handshake`` is timed: it
  asks *every* node, not only the sampled share.
* Flower: :mod:`benchmarks.plain_flower`'s apps on the same spec, with Flower's FedAvg sampling
  the same share (``fraction_train=F``, ``min_train_nodes=ceil(F N)``).

Each simulation runs in its own process (``python -m benchmarks.b5_scale child ...``) in its own
session; this process samples the summed RSS of that process tree (the driver, Ray's GCS, raylet
and workers: everything the simulation started) every 0.5 s from ``/proc``, and kills the tree if
it outlives the time cap. Round time = wall time between consecutive central evaluations.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROWS_PER_CLIENT, FEATURES, CLASSES, MODEL = 50, 20, 4, "mlp-20-16-4"


def make_data(path: Path, clients: int, rows_per_client: int = ROWS_PER_CLIENT, seed: int = 0) -> Path:
    """A seeded Gaussian-mixture classification CSV (features ``x0..x19``, label ``y``)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = clients * rows_per_client
    centres = rng.normal(0.0, 0.5, size=(CLASSES, FEATURES))
    y = rng.integers(0, CLASSES, size=n)
    x = centres[y] + rng.normal(0.0, 1.0, size=(n, FEATURES))
    header = ",".join([*(f"x{i}" for i in range(FEATURES)), "y"])
    data = np.column_stack([x.round(4), y])
    fmt = ["%.4f"] * FEATURES + ["%d"]
    np.savetxt(path, data, delimiter=",", header=header, comments="", fmt=fmt)
    return path


def command(data: str, clients: int, fraction: float, rounds: int) -> str:
    """The equivalent ``flonnx simulate`` command of the flonnx side."""
    return (f"flonnx simulate --data {data} --label y --clients {clients} --fraction-train {fraction:g} "
            f"--frameworks torch:{clients} --rounds {rounds} --model {MODEL}")


def _spec(data: str, clients: int, fraction: float, rounds: int) -> Any:
    from flonnx.api import spec

    return spec(data=data, label="y", task="classification", model=MODEL, clients=clients,
                frameworks=f"torch:{clients}", fraction_train=fraction, rounds=rounds)


# ---- child side: one simulation, prints one JSON line -------------------------------------------

def _child_flonnx(data: str, clients: int, fraction: float, rounds: int) -> dict[str, Any]:
    from flonnx.server.federation import Federation
    from flonnx.server.progress import Reporter, RoundSummary
    from flonnx.simulations.runner import simulate

    marks: list[float] = []
    handshakes: list[float] = []
    accuracy: list[float] = []
    sampled: list[int] = []

    class Timing(Reporter):
        def start(self, *args: Any, **kwargs: Any) -> None:
            marks.append(time.perf_counter())
            print(json.dumps({"event": "start", "t": time.perf_counter()}), flush=True)

        def round(self, summary: RoundSummary) -> None:
            marks.append(time.perf_counter())
            accuracy.append(float(summary.metrics.get("accuracy", float("nan"))))
            sampled.append(len(getattr(summary, "clients", []) or []))
            print(json.dumps({"event": "round", "t": time.perf_counter()}), flush=True)

    original = Federation._handshake

    def timed(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            handshakes.append(time.perf_counter() - started)
            print(json.dumps({"event": "handshake", "s": handshakes[-1]}), flush=True)

    sites: list[float] = []
    evaluate_sites = Federation._evaluate_sites

    def timed_sites(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return evaluate_sites(self, *args, **kwargs)
        finally:
            sites.append(time.perf_counter() - started)

    Federation._handshake = timed  # type: ignore[method-assign]  # benchmark-only
    Federation._evaluate_sites = timed_sites  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as folder:
        simulate(_spec(data, clients, fraction, rounds), overrides={"registry": str(Path(folder) / "runs")},
                 reporter=Timing())
    return {"marks": marks, "handshake_s": handshakes, "sites_s": sites, "accuracy": accuracy,
            "sampled": sampled}


def _child_flower(data: str, clients: int, fraction: float, rounds: int) -> dict[str, Any]:
    import flwr.serverapp.strategy as strategies

    from benchmarks.plain_flower import Probe, make_apps, run_on_ray
    from flonnx.simulations.runner import offline_environment

    base = strategies.FedAvg

    class Sampled(base):  # type: ignore[misc,valid-type]
        """plain_flower's FedAvg, sampling ``fraction`` of the nodes as flonnx does."""

        def __init__(self, **kwargs: Any) -> None:
            kwargs.update(fraction_train=fraction, min_train_nodes=max(1, math.ceil(fraction * clients)),
                          min_available_nodes=clients)
            super().__init__(**kwargs)

    strategies.FedAvg = Sampled  # type: ignore[misc,assignment]  # benchmark-only, in this child process
    offline_environment()
    spec = _spec(data, clients, fraction, rounds)
    probe = Probe()
    server, client = make_apps(spec, probe)
    started = time.perf_counter()
    run_on_ray(server, client, clients)
    return {"marks": [started, *probe.evaluated_at][-(rounds + 1):], "handshake_s": [],
            "accuracy": probe.accuracy, "sampled": []}


# ---- parent side: run a child, sample its tree's RSS ---------------------------------------------

def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def _rss(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
    return total


@dataclass
class Child:
    """What :func:`run_child` saw of one child process."""

    status: str  # "ran", "stopped at the N s cap", "failed (exit N)"
    lines: list[dict[str, Any]]  # its JSON lines on stdout
    final: dict[str, Any] | None  # its ``result`` event, if it got that far
    wall_s: float
    error: str  # the end of its stderr when it failed


def run_child(args: list[str], cap_s: float, sample: Callable[[list[int], float], None]) -> Child:
    """Run ``args`` in its own session; call ``sample(pids of its tree, seconds)`` every 0.5 s.

    Past ``cap_s`` the whole session is killed. The child prints JSON lines, the last one an event
    ``result``; without it the child failed, and the end of its stderr says why.
    """
    out_path = Path(tempfile.mkstemp(suffix=".jsonl")[1])
    err_path = Path(tempfile.mkstemp(suffix=".log")[1])
    started = time.perf_counter()
    status = "ran"
    with out_path.open("w") as out, err_path.open("w") as err:
        proc = subprocess.Popen(args, cwd=Path(__file__).resolve().parent.parent, stdout=out, stderr=err,
                                start_new_session=True)
        while proc.poll() is None:
            sample(_tree(proc.pid), time.perf_counter() - started)
            if time.perf_counter() - started > cap_s:
                status = f"stopped at the {cap_s:.0f} s cap"
                os.killpg(proc.pid, signal.SIGKILL)  # the child's own session: what it started
                proc.wait()
                break
            time.sleep(0.5)
    wall = time.perf_counter() - started
    lines = [json.loads(line) for line in out_path.read_text().splitlines() if line.startswith("{")]
    final = next((d for d in lines if d.get("event") == "result"), None)
    error = ""
    if final is None and status == "ran":
        status = f"failed (exit {proc.returncode})"
        # the child's last words: the error a user would have seen (Ray's and Flower's logs before it)
        error = err_path.read_text(errors="replace").strip()[-1500:]
    out_path.unlink()
    err_path.unlink()
    return Child(status, lines, final, wall, error)


def run_side(side: str, data: str, clients: int, fraction: float, rounds: int,
             cap_s: float) -> dict[str, Any]:
    """One simulation in a child process: round times, handshake, peak RSS of its process tree."""
    args = [sys.executable, "-m", "benchmarks.b5_scale", "child", side, data, str(clients), str(fraction),
            str(rounds)]
    peak = [0, 0]  # bytes, processes
    timeline: list[tuple[float, int]] = []

    def sample(pids: list[int], seconds: float) -> None:
        rss = _rss(pids)
        if rss > peak[0]:
            peak[:] = [rss, len(pids)]
        timeline.append((round(seconds, 1), rss))

    child = run_child(args, cap_s, sample)
    lines, final, status, wall, error = child.lines, child.final, child.status, child.wall_s, child.error
    events = [d for d in lines if d.get("event") in ("start", "round")]
    marks = final["marks"] if final else [d["t"] for d in events]
    handshakes = final["handshake_s"] if final else [d["s"] for d in lines if d.get("event") == "handshake"]
    durations = [b - a for a, b in zip(marks[:-1], marks[1:], strict=True)]
    return {
        "side": side, "clients": clients, "fraction_train": fraction, "rounds": rounds, "status": status,
        **({"error": error} if error else {}),
        "rounds_done": len(durations), "round_s": durations,
        "first_round_s": durations[0] if durations else float("nan"),
        "median_round_s": statistics.median(durations[1:]) if len(durations) > 1 else float("nan"),
        "handshake_s": handshakes, "sites_s": final.get("sites_s", []) if final else [],
        "wall_s": wall, "peak_rss_bytes": peak[0], "peak_processes": peak[1],
        "final_accuracy": (final["accuracy"][-1] if final and final["accuracy"] else float("nan")),
        "rss_timeline": timeline[:: max(1, len(timeline) // 60)],
    }


def _plan(quick: bool) -> list[tuple[str, int, int, float]]:
    """(side, clients, rounds, cap seconds) of each simulation, in order."""
    if quick:
        return [("flonnx", 100, 3, 300.0), ("flower", 100, 3, 300.0)]
    return [("flonnx", 1000, 5, 480.0), ("flower", 1000, 5, 300.0), ("flonnx", 10000, 5, 2400.0),
            ("flower", 10000, 5, 900.0)]


def run(quick: bool, plan: list[tuple[str, int, int, float]] | None = None,
        fraction: float = 0.1) -> dict[str, Any]:
    """B5: each simulation of the plan, on synthetic data of ``clients x 50`` rows."""
    folder = Path(tempfile.mkdtemp(prefix="b5-"))
    runs = []
    for side, clients, rounds, cap in plan or _plan(quick):
        data = folder / f"synthetic-{clients}.csv"
        if not data.exists():
            make_data(data, clients)
        result = run_side(side, str(data), clients, fraction, rounds, cap)
        result["command"] = command(f"synthetic-{clients}.csv", clients, fraction, rounds)
        runs.append(result)
        print(f"  B5 {side} N={clients}: {result['status']}, rounds {result['rounds_done']}, median "
              f"{result['median_round_s']:.2f} s, peak RSS {result['peak_rss_bytes'] / 2**20:,.0f} MiB, "
              f"wall {result['wall_s']:.0f} s", flush=True)
    return {"runs": runs, "rows_per_client": ROWS_PER_CLIENT, "features": FEATURES, "classes": CLASSES,
            "model": MODEL, "fraction_train": fraction,
            "notes": ["data: benchmarks.b5_scale.make_data(path, clients), seed 0; iid partitions, "
                      "20 % hold-out for central evaluation (both sides)",
                      "peak RSS = summed VmRSS of the simulation's process tree (driver, Ray GCS, raylet, "
                      "workers), sampled every 0.5 s; shared pages are counted once per process"]}


def main(argv: list[str] | None = None) -> int:
    """``child SIDE DATA CLIENTS FRACTION ROUNDS``: run one simulation, print its JSON result."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.b5_scale")
    parser.add_argument("action", choices=["child"])
    parser.add_argument("side", choices=["flonnx", "flower"])
    parser.add_argument("data")
    parser.add_argument("clients", type=int)
    parser.add_argument("fraction", type=float)
    parser.add_argument("rounds", type=int)
    args = parser.parse_args(argv)
    child = _child_flonnx if args.side == "flonnx" else _child_flower
    result = child(args.data, args.clients, args.fraction, args.rounds)
    print(json.dumps({"event": "result", **result}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
