"""Shared helpers: the machine's description, medians, JSON results."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PACKAGES = ("flonnx", "flwr", "numpy", "onnx", "onnxruntime", "torch", "ray", "flwr-datasets")
SCHEMA = 1


def machine() -> dict[str, Any]:
    """CPU model (``/proc/cpuinfo``), cores, RAM, load, Python and package versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = int(line.split()[1]) / 2**20
    except OSError:
        pass
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "cpu": cpu, "cores": os.cpu_count() or 0, "ram_gib": round(ram, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(), "platform": platform.platform(),
        "packages": versions,
        "note": "shared machine: other jobs may run at the same time; numbers are medians over repeats",
    }


def timed(fn: Callable[[], object], repeats: int, *, min_seconds: float = 0.0) -> list[float]:
    """Wall seconds of ``repeats`` calls of ``fn`` (after one warm-up call)."""
    fn()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def median(values: list[float]) -> float:
    """The median (NaN for no values)."""
    return statistics.median(values) if values else float("nan")


def write_result(name: str, mode: str, data: dict[str, Any], command: str,
                 folder: Path = RESULTS) -> Path:
    """``folder/name.json`` with the schema version, machine, mode and command."""
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"schema": SCHEMA, "benchmark": name, "mode": mode, "command": command,
           "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": machine(), "results": data}
    path = folder / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return path

