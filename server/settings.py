"""Run settings: a federation spec plus what only the coordinator needs (registry, timeouts, resume).

Flower's run config (``[tool.flwr.app.config]`` + ``--run-config``) names the spec (``spec``: a
preset name or a TOML file) and may override its keys (:data:`flonnx.exchange.spec.RUN_CONFIG_KEYS`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from flonnx.exchange.errors import FlonnxError
from flonnx.exchange.registry import mask_url
from flonnx.exchange.spec import (
    DEFAULT_SPEC,
    RUN_CONFIG_KEYS,
    FederationSpec,
    parse_spec,
    spec_from_json,
    spec_from_run_config,
)

__all__ = ["SERVER_KEYS", "Settings", "check_min_train_nodes", "plan_runs"]

#: Run-config keys only the coordinator reads.
SERVER_KEYS = ("spec", "registry", "blobs", "round-timeout", "min-available-nodes", "resume",
               "signing-key")

_EMPTY = parse_spec({"model": "digits-mlp", "clients": 2}, source="defaults")


@dataclass(frozen=True)
class Settings:
    """Everything the server needs to run (or resume) a federation."""

    spec: FederationSpec = field(default=_EMPTY)
    registry: str = "runs"  # a directory, or a database URL (postgresql://…) with ``blobs``
    blobs: str = ""  # where the blobs live: a directory or an fsspec URL ("" = registry/blobs)
    min_available_nodes: int = 2
    round_timeout: float = 600.0
    resume: str = ""  # run id to continue instead of starting a new run
    #: the coordinator's Ed25519 private key (a PEM file outside the registry; "" = unsigned run).
    #: Not stored with the run: a resume names it again.
    signing_key: str = ""

    # -- the spec's run-level facts ----------------------------------------------------------------
    @property
    def rounds(self) -> int:
        """Total rounds."""
        return self.spec.rounds

    @property
    def seed(self) -> int:
        """Run seed."""
        return self.spec.seed

    @property
    def strategy(self) -> str:
        """Strategy name (one per run after :func:`plan_runs`)."""
        return self.spec.strategy

    @property
    def strategy_config(self) -> dict[str, str]:
        """Strategy parameters as given."""
        return dict(self.spec.strategy_config)

    @property
    def fraction_train(self) -> float:
        """Share of the connected clients sampled per round."""
        return self.spec.fraction_train

    @property
    def min_train_nodes(self) -> int:
        """Fewest valid updates a round needs."""
        return self.spec.min_train_nodes

    @property
    def train(self) -> dict[str, float | int]:
        """Local training settings sent each round."""
        return self.spec.train_settings

    @classmethod
    def from_run_config(cls, config: Mapping[str, Any], spec: FederationSpec | None = None) -> Settings:
        """Parse Flower's run config; unknown keys are an error that lists the known ones.

        ``spec`` (in-process callers) replaces the spec the run config names; the run config's
        override keys still apply to it.
        """
        config = {k: v for k, v in config.items() if v != ""}  # "" = not given (pyproject.toml)
        known = {*SERVER_KEYS, *RUN_CONFIG_KEYS}
        unknown = sorted(set(config) - known)
        if unknown:
            raise FlonnxError(f"unknown run-config keys {unknown}; known: {sorted(known)}")
        if spec is None:
            spec = spec_from_run_config({"spec": DEFAULT_SPEC, **config})
        else:
            spec = spec.with_overrides({RUN_CONFIG_KEYS[k]: v for k, v in config.items()
                                        if k in RUN_CONFIG_KEYS})
        try:
            return cls(
                spec=spec,
                registry=str(config.get("registry", cls.registry)),
                blobs=str(config.get("blobs", "")),
                min_available_nodes=int(config.get("min-available-nodes", spec.clients or 2)),
                round_timeout=float(config.get("round-timeout", cls.round_timeout)),
                resume=str(config.get("resume", "")),
                signing_key=str(config.get("signing-key", "")),
            )
        except (TypeError, ValueError) as exc:
            raise FlonnxError(f"invalid run config: {exc}") from exc

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Settings:
        """Inverse of :meth:`to_json` (the form stored with a run), for resume and replay."""
        try:
            return cls(
                spec=spec_from_json(data["spec"]), registry=str(data.get("registry", "runs")),
                blobs=str(data.get("blobs", "")),
                min_available_nodes=int(data["min_available_nodes"]),
                round_timeout=float(data["round_timeout"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FlonnxError(f"unreadable stored run settings: {exc}") from exc

    @property
    def sampled_clients(self) -> int:
        """Clients sampled per round when ``min_available_nodes`` are connected."""
        n = self.min_available_nodes
        return min(n, max(self.min_train_nodes, math.ceil(self.fraction_train * n - 1e-9)))

    def strategy_defaults(self) -> dict[str, Any]:
        """Values for strategy parameters that have no useful Flower default, derived from the run."""
        return {
            "num_sampled_clients": self.sampled_clients,
            "client_learning_rate": float(self.train.get("learning-rate", 0.01)),
            "train_loss_key": "train-loss",
        }

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form, stored with the run (a password in a registry or blob URL masked)."""
        return {"spec": self.spec.to_toml_dict(), "registry": mask_url(self.registry),
                **({"blobs": mask_url(self.blobs)} if self.blobs else {}),
                "min_available_nodes": self.min_available_nodes, "round_timeout": self.round_timeout}

    def with_rounds(self, rounds: int) -> Settings:
        """The same settings with another total of rounds (resume)."""
        return replace(self, spec=replace(self.spec, rounds=rounds))


def check_min_train_nodes(value: Any, nodes: int | None) -> int:
    """``min-train-nodes`` as an integer from 1 to ``nodes``, the federation's size (``None``: unknown).

    Raises:
        FlonnxError: naming the key, the value and the allowed range.
    """
    allowed = "at least 1" if nodes is None else f"1 to {nodes}"
    text = str(value).strip()
    if isinstance(value, bool) or not text.lstrip("-").isdigit():
        raise FlonnxError(f"min-train-nodes={value!r} is not an integer; allowed: {allowed}")
    number = int(text)
    if number < 1 or (nodes is not None and number > nodes):
        size = "" if nodes is None or number < 1 else f": the federation has {nodes} nodes"
        raise FlonnxError(f"min-train-nodes={number} is out of range{size}; allowed: {allowed}")
    return number


def plan_runs(config: Mapping[str, Any], spec: FederationSpec | None = None) -> list[Settings]:
    """One :class:`Settings` per strategy named in the spec's ``strategy`` (space/comma separated).

    ``strategy-config`` items ``key=value`` apply to every listed strategy; ``NAME.key=value``
    only to strategy ``NAME``. The same strategy may not be listed twice.
    """
    base = Settings.from_run_config(config, spec)
    names = base.strategy.replace(",", " ").split() or ["fedavg"]
    if len(set(names)) != len(names):
        raise FlonnxError(f"strategy listed twice in {names}")
    shared = {k: v for k, v in base.strategy_config.items() if "." not in k}
    scoped: dict[str, dict[str, str]] = {}
    for key, value in base.strategy_config.items():
        if "." in key:
            name, _, param = key.rpartition(".")
            if name not in names:
                raise FlonnxError(
                    f"strategy-config {key}={value} names strategy {name!r}, which is not in the "
                    f"run's strategies {names}"
                )
            scoped.setdefault(name, {})[param] = value
    return [replace(base, spec=base.spec.for_strategy(name, {**shared, **scoped.get(name, {})}))
            for name in names]
