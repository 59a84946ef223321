"""The Python API for notebooks and scripts: build or load a spec, run it, read its history.

>>> import flonnx
>>> spec = flonnx.load_spec("hospitals", rounds=3)           # a preset, a .toml file, or
>>> spec = flonnx.spec(model="mlp-30-16-2", data="cancer.csv", label="target", task="binary",
...                    clients=3, frameworks="torch:1,jax:1,sklearn:1")
>>> run = flonnx.simulate(spec, registry="runs")             # Flower's Simulation Engine
>>> run.metric("accuracy")                                    # numpy array, one value per round
>>> run.rounds[-1].by_framework["jax"]["train-loss"]

The history holds the same facts as ``flonnx lineage ls --json``, read back (and verified) from
the registry: nothing is kept only in memory.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flonnx.exchange.lineage import VersionKind
from flonnx.exchange.spec import FederationSpec, parse_spec
from flonnx.exchange.spec import load_spec as _load_spec

__all__ = ["ClientResult", "RoundResult", "RunHistory", "history", "load_spec", "simulate", "spec"]

_TABLES = {"data": "data.source", "label": "data.label", "features": "data.features",
           "partition": "data.partition", "categorical": "data.categorical",
           "classes": "data.classes", "missing": "data.missing", "min_rows": "data.min-rows",
           "local_epochs": "train.local-epochs", "batch_size": "train.batch-size",
           "learning_rate": "train.learning-rate", "retention": "registry.retention",
           "compress": "registry.compress"}


def _keys(overrides: dict[str, Any]) -> dict[str, Any]:
    return {_TABLES.get(k, k.replace("_", "-")): v for k, v in overrides.items() if v is not None}


def load_spec(ref: str | Path, **overrides: Any) -> FederationSpec:
    """A preset name or spec file, with overrides as keyword arguments (``clients=3``)."""
    return _load_spec(ref, _keys(overrides))


def spec(**keys: Any) -> FederationSpec:
    """A spec from keyword arguments (``model=``, ``data=``, ``label=``, ``task=``, ``clients=``…)."""
    raw: dict[str, Any] = {}
    for key, value in _keys(keys).items():
        table, dot, sub = key.partition(".")
        if dot:
            raw.setdefault(table, {})[sub] = value
        else:
            raw[key] = value
    return parse_spec(raw, source="python")


@dataclass(frozen=True)
class ClientResult:
    """One client's part in a round: an accepted update or a rejection with its reason."""

    client: str
    framework: str
    version_id: str
    accepted: bool
    num_examples: int
    metrics: dict[str, float]
    reason: str = ""


@dataclass(frozen=True)
class RoundResult:
    """One committed round: the aggregate's version and metrics, and every client's part."""

    round: int
    version_id: str
    metrics: dict[str, float]
    clients: list[ClientResult]
    by_framework: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class RunHistory:
    """A run's id, spec and per-round history (plain Python and NumPy data)."""

    run_id: str
    status: str
    spec: dict[str, Any]
    initial_metrics: dict[str, float]
    rounds: list[RoundResult]
    site_evaluation: dict[str, Any] = field(default_factory=dict)

    def metric(self, name: str) -> np.ndarray:
        """``name`` of the aggregate per round (NaN where a round did not report it)."""
        return np.array([r.metrics.get(name, np.nan) for r in self.rounds], dtype=np.float64)

    @property
    def final_version(self) -> str:
        """The last committed aggregate's version id."""
        return self.rounds[-1].version_id if self.rounds else ""


def _by_framework(clients: list[ClientResult]) -> dict[str, dict[str, float]]:
    """Mean of each training metric over a framework's accepted updates, and their count."""
    groups: dict[str, list[ClientResult]] = defaultdict(list)
    for c in clients:
        if c.accepted:
            groups[c.framework].append(c)
    out: dict[str, dict[str, float]] = {}
    for framework, members in sorted(groups.items()):
        keys = sorted({k for m in members for k in m.metrics})
        out[framework] = {"updates": float(len(members)), **{
            k: float(np.mean([m.metrics[k] for m in members if k in m.metrics])) for k in keys}}
    return out


def history(run_id: str | None = None, registry: str | Path = "runs",
            blobs: str | Path | None = None) -> RunHistory:
    """The history of ``run_id`` (a unique prefix is enough; default: the newest run).

    ``registry`` is a directory or a database URL; a URL needs ``blobs`` (a directory or an fsspec
    URL).
    """
    from flonnx.exchange.registry import Registry

    with Registry(registry, create=False, blobs=blobs) as reg, reg.snapshot():
        run = reg.run(reg.resolve_run(run_id))
        versions = reg.versions(run.run_id)
        heads = reg.heads(run.run_id)
    head_ids = {v for r, v in heads.items() if r > 0}
    records = {v.version_id: v.record for v in versions}
    initial = next((v.record for v in versions if v.record.kind is VersionKind.INITIAL), None)
    rounds: list[RoundResult] = []
    for rnd in sorted(r for r in heads if r > 0):
        aggregate = records[heads[rnd]]
        clients = [
            ClientResult(
                client=v.record.client, framework=v.record.framework, version_id=v.version_id,
                accepted=v.record.kind is VersionKind.CLIENT_UPDATE,
                num_examples=v.record.num_examples, metrics=dict(v.record.metrics),
                reason=v.record.reason,
            )
            for v in versions
            if v.record.round == rnd and v.version_id not in head_ids
            and v.record.kind in (VersionKind.CLIENT_UPDATE, VersionKind.REJECTED)
        ]
        rounds.append(RoundResult(rnd, heads[rnd], dict(aggregate.metrics), clients,
                                  _by_framework(clients)))
    return RunHistory(
        run_id=run.run_id, status=run.status, spec=dict(run.config.get("spec", {})),
        initial_metrics=dict(initial.metrics) if initial else {}, rounds=rounds,
        site_evaluation=dict(run.config.get("site_evaluation", {})),
    )


def simulate(spec: FederationSpec | str, *, registry: str | Path = "runs",
             blobs: str | Path | None = None, verbose: bool = False, **overrides: Any) -> RunHistory:
    """Run ``spec`` on Flower's Simulation Engine; the history of its (first strategy's) run.

    A spec naming several strategies runs one registry run per strategy; use :func:`history` with
    the other run ids (printed, and listed by ``flonnx runs``) to read those.
    """
    from flonnx.simulations.runner import simulate as run

    fed = load_spec(spec, **overrides) if isinstance(spec, str) else (
        spec.with_overrides(_keys(overrides)) if overrides else spec)
    config = {"registry": str(registry), **({"blobs": str(blobs)} if blobs else {})}
    run_ids = run(fed, overrides=config, verbose=verbose)
    return history(run_ids[0], registry, blobs)
