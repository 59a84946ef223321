"""B2 server memory: the aggregation step for N updates of P float32 parameters.

Three ways of aggregating the same updates (a Gemm MLP of ~P parameters, ``b3_exchange.mlp``;
update ``i`` is the model plus a small per-client offset, weight ``10 + i``):

* ``flonnx fixed-point-v1``: :class:`flonnx.server.aggregation.RoundAggregation` with FedAvg and
  the streaming aggregator; each update is made, folded and dropped in turn (the server's round
  loop does the same with each checked reply);
* ``Flower FedAvg (held)``: Flower's ``FedAvg.aggregate_train`` over N reply Messages, all held in
  memory at once (as a ServerApp receives them), in client order;
* ``flonnx float-v0 (held)``: :func:`flonnx.server.aggregation.aggregate_round` (flonnx before
  streaming, and the path of Median, Krum and Bulyan): N decoded updates held, rebuilt as Messages.

Memory is ``tracemalloc``'s peak above what was allocated before the step (the global model and
the definition), divided by the model's bytes; the updates themselves are counted (they are the
point). Every case runs in its own subprocess; ``ru_maxrss`` growth is reported beside it as a
cross-check. Time is the aggregation work only (folding + result for the streamed case,
``aggregate_train`` / ``aggregate_round`` for the held ones), not making the updates, as wall
seconds and as CPU seconds of the process (steadier on a shared machine). A held case
whose updates alone would exceed the memory budget (a share of ``MemAvailable``) is not run and
is reported with the memory it would need: that is the point of streaming.

The same comparison in real rounds (Flower's Simulation Engine, N = 100, the server process's RSS)
is :mod:`benchmarks.b2_round`; ``python -m benchmarks run --only B2`` runs both.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import ROOT

SIZES: dict[str, tuple[int, ...]] = {"1M": (512, 1024, 448, 10), "10M": (2048, 2816, 1408, 10)}
CLIENTS = (10, 100, 500)
METHODS = ("fixed-point-v1", "flower-fedavg-held", "float-v0-held")
#: held copies of each update a held method keeps (Flower: reply bytes; float-v0: decoded + message)
HELD_COPIES = {"flower-fedavg-held": 1.0, "float-v0-held": 2.0}
TARGET = 3.0  # flonnx's extra memory <= 3x the model, whatever N


def _available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def _update(weights: dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    offset = np.float32((i % 17 - 8) * 1e-3)
    return {k: v + offset for k, v in weights.items()}


def run_case(method: str, clients: int, size: str) -> dict[str, Any]:
    """One measurement, in this process (called in a fresh subprocess by :func:`run`)."""
    from benchmarks.b3_exchange import mlp
    from flonnx.server.aggregation import AggregationInput, RoundAggregation, aggregate_round, update_message
    from flonnx.server.strategies import build_strategy
    from flonnx.server.streaming import FIXED_POINT, AggregatorSpec

    definition, weights = mlp(SIZES[size])
    model_bytes = sum(a.nbytes for a in weights.values())
    strategy = build_strategy("fedavg", {"aggregator": "float-v0"}).strategy
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    seconds = cpu = 0.0
    if method == "fixed-point-v1":
        aggregation = RoundAggregation(strategy, AggregatorSpec(FIXED_POINT), 1, 0, definition,
                                       updates=clients)
        for i in range(clients):
            update = AggregationInput(f"c{i:04d}", _update(weights, i), 10 + i, {"loss": 1.0})
            start, start_cpu = time.perf_counter(), time.process_time()
            aggregation.add(update)
            seconds += time.perf_counter() - start
            cpu += time.process_time() - start_cpu
            del update
        start, start_cpu = time.perf_counter(), time.process_time()
        result, _ = aggregation.finish()
        seconds += time.perf_counter() - start
        cpu += time.process_time() - start_cpu
    elif method == "flower-fedavg-held":
        messages = []
        for i in range(clients):
            messages.append(update_message(
                AggregationInput(f"c{i:04d}", _update(weights, i), 10 + i, {"loss": 1.0}), i + 1))
        start, start_cpu = time.perf_counter(), time.process_time()
        arrays, _ = strategy.aggregate_train(1, messages)
        seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
        result = {k: a.numpy() for k, a in arrays.items()}
    else:
        updates = [AggregationInput(f"c{i:04d}", _update(weights, i), 10 + i, {"loss": 1.0})
                   for i in range(clients)]
        start, start_cpu = time.perf_counter(), time.process_time()
        result, _ = aggregate_round(strategy, 1, 0, updates, definition)
        seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    checksum = float(sum(float(np.abs(v).sum(dtype=np.float64)) for v in result.values()))
    return {"method": method, "clients": clients, "size": size,
            "parameters": sum(a.size for a in weights.values()), "model_bytes": model_bytes,
            "peak_above_model_bytes": peak - base, "peak_in_models": (peak - base) / model_bytes,
            "rss_growth_bytes": rss_after - rss_before, "seconds": seconds, "cpu_seconds": cpu,
            "checksum": checksum, "status": "ran"}


def _subprocess(method: str, clients: int, size: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "benchmarks.b2_memory", method, str(clients), size],
                          cwd=ROOT, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        return {"method": method, "clients": clients, "size": size, "status": "failed",
                "error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run(quick: bool, clients: tuple[int, ...] = CLIENTS, sizes: tuple[str, ...] = tuple(SIZES)
        ) -> dict[str, Any]:
    """Every (method, N, P) case: peak memory above one model, time; held cases beyond budget skipped."""
    available = _available_bytes()
    budget = min(4 * 2**30, available // 2) if quick else int(available * 0.7)
    cases = []
    for size in sizes:
        widths = SIZES[size]
        parameters = sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))
        for n in clients:
            for method in METHODS:
                need = HELD_COPIES.get(method, 0.0) * n * parameters * 4 + 4 * parameters * 4
                if method in HELD_COPIES and need > budget:
                    cases.append({"method": method, "clients": n, "size": size, "status": "skipped",
                                  "parameters": parameters, "needs_bytes": int(need),
                                  "reason": f"needs ~{need / 2**30:.1f} GiB held; budget "
                                            f"{budget / 2**30:.1f} GiB of {available / 2**30:.1f} "
                                            "GiB available"})
                    continue
                cases.append(_subprocess(method, n, size))
    return {"target_models": TARGET, "budget_bytes": budget, "available_bytes": available,
            "cases": cases}


if __name__ == "__main__":  # pragma: no cover - one case, for run()'s subprocesses
    print(json.dumps(run_case(sys.argv[1], int(sys.argv[2]), sys.argv[3])))
