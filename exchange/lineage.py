"""Lineage records: what a model version is, where it came from, and its content id.

A version record names its definition, its weights and its parents, so its id — the SHA-256 of the
record's canonical JSON — makes the lineage a tamper-evident DAG (``v_r -> u_{r,k} -> v_{r+1}``).
The record holds only what determines the version; when and in which run it was made is kept by the
registry beside it, so two runs with the same seed produce the same version ids.

Records are plain dataclasses; :mod:`flonnx.exchange.serde` converts them to the protobuf schema in
``protos/`` and back.
"""

from __future__ import annotations

import enum
import platform
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from importlib import metadata as importlib_metadata
from typing import Any

from flonnx.exchange.errors import LineageError
from flonnx.exchange.hashing import canonical_json, sha256_hex

__all__ = [
    "SCHEMA_VERSION",
    "VersionKind",
    "VersionRecord",
    "environment",
    "flonnx_version",
]

#: Bumped whenever the meaning of a record field changes.
SCHEMA_VERSION = 1


class VersionKind(enum.StrEnum):
    """How a version came to be."""

    INITIAL = "initial"
    CLIENT_UPDATE = "client_update"
    AGGREGATE = "aggregate"
    REJECTED = "rejected"  # a client's reply that was excluded from aggregation; ``reason`` says why


@dataclass(frozen=True)
class VersionRecord:
    """One model version's lineage record. Every field takes part in the version id."""

    kind: VersionKind
    round: int
    definition_id: str
    weights_id: str
    parents: tuple[str, ...] = ()
    framework: str = ""
    framework_version: str = ""
    client: str = ""
    num_examples: int = 0
    metrics: Mapping[str, float] = field(default_factory=dict)
    seed: int = 0
    strategy: str = ""
    strategy_config: Mapping[str, str] = field(default_factory=dict)
    environment: Mapping[str, str] = field(default_factory=dict)
    reason: str = ""
    schema: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; the documented ``--json`` form of a record."""
        return {
            "schema": self.schema,
            "kind": self.kind.value,
            "round": self.round,
            "parents": list(self.parents),
            "definition_id": self.definition_id,
            "weights_id": self.weights_id,
            "framework": self.framework,
            "framework_version": self.framework_version,
            "client": self.client,
            "num_examples": self.num_examples,
            "metrics": {k: float(v) for k, v in sorted(self.metrics.items())},
            "seed": self.seed,
            "strategy": self.strategy,
            "strategy_config": {k: str(v) for k, v in sorted(self.strategy_config.items())},
            "environment": {k: str(v) for k, v in sorted(self.environment.items())},
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VersionRecord:
        """Inverse of :meth:`to_dict`; raises :class:`LineageError` on a malformed record."""
        try:
            return cls(
                schema=int(data["schema"]),
                kind=VersionKind(data["kind"]),
                round=int(data["round"]),
                parents=tuple(str(p) for p in data["parents"]),
                definition_id=str(data["definition_id"]),
                weights_id=str(data["weights_id"]),
                framework=str(data.get("framework", "")),
                framework_version=str(data.get("framework_version", "")),
                client=str(data.get("client", "")),
                num_examples=int(data.get("num_examples", 0)),
                metrics={str(k): float(v) for k, v in data.get("metrics", {}).items()},
                seed=int(data.get("seed", 0)),
                strategy=str(data.get("strategy", "")),
                strategy_config={str(k): str(v) for k, v in data.get("strategy_config", {}).items()},
                environment={str(k): str(v) for k, v in data.get("environment", {}).items()},
                reason=str(data.get("reason", "")),
            )
        except (KeyError, ValueError, TypeError, AttributeError, OverflowError) as exc:  # a list; int(inf)
            raise LineageError(f"malformed version record: {exc!r}") from exc

    def canonical_bytes(self) -> bytes:
        """The canonical JSON the version id is computed over."""
        return canonical_json(self.to_dict())

    @property
    def version_id(self) -> str:
        """SHA-256 of :meth:`canonical_bytes`."""
        return sha256_hex(self.canonical_bytes())

    def with_metrics(self, metrics: Mapping[str, float]) -> VersionRecord:
        """A copy with ``metrics`` merged in (changes the id)."""
        return replace(self, metrics={**self.metrics, **metrics})


_ENV_PACKAGES = ("flonnx", "numpy", "onnx", "onnxruntime", "flwr", "torch", "scikit-learn", "jax")


def flonnx_version() -> str:
    """The installed flonnx distribution's version (``"unknown"`` when run from an uninstalled tree)."""
    try:
        return importlib_metadata.version("flonnx")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` knows), one line."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return " ".join(value.split())[:200]
    except OSError:
        pass
    return " ".join((platform.processor() or platform.machine() or "unknown").split())[:200]


def cpu_simd() -> str:
    """The SIMD instruction sets NumPy dispatches to on this CPU (baseline, then the extra targets found).

    The numeric kernels of the frameworks pick their code paths from the same CPU features, so two
    machines that differ here may round local training differently: the environment records it so
    that a record explains a difference in ids. ``"unknown"`` when NumPy does not expose the list.
    """
    try:
        from numpy._core import _multiarray_umath as umath  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - NumPy < 2 or a changed private module
        return "unknown"
    features = getattr(umath, "__cpu_features__", {})
    baseline = list(getattr(umath, "__cpu_baseline__", []))
    found = [t for t in getattr(umath, "__cpu_dispatch__", []) if features.get(t)]
    return " ".join(baseline + found) or "unknown"


def environment(packages: Iterable[str] = _ENV_PACKAGES) -> dict[str, str]:
    """The environment a version was produced in: Python, platform, CPU and its SIMD, package versions.

    Version ids hash it: a run reproduces bit for bit on the same CPU features and package versions.
    """
    env = {
        "python": ".".join(str(p) for p in sys.version_info[:3]),
        "platform": f"{platform.system()}-{platform.machine()}",
        "cpu": cpu_model(),
        "cpu-simd": cpu_simd(),
    }
    for name in packages:
        try:
            env[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return env
