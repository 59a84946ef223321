"""Run settings: Flower run config (``[tool.flwr.app.config]`` + overrides) with flonnx defaults."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from exchange.errors import FlonnxError
from simulations.scenarios import get_scenario

__all__ = ["Settings", "plan_runs"]

_TRAIN_KEYS = ("local-epochs", "batch-size", "learning-rate")


@dataclass(frozen=True)
class Settings:
    """Everything the server needs to run (or resume) a federation."""

    scenario: str = "digits-mixed"
    rounds: int = 5
    seed: int = 0
    registry: str = "runs"
    strategy: str = "fedavg"
    strategy_config: Mapping[str, str] = field(default_factory=dict)
    fraction_train: float = 1.0
    min_train_nodes: int = 2
    min_available_nodes: int = 2
    round_timeout: float = 600.0
    train: Mapping[str, float | int] = field(default_factory=dict)
    resume: str = ""  # run id to continue instead of starting a new run

    @classmethod
    def from_run_config(cls, config: Mapping[str, Any]) -> Settings:
        """Parse Flower's run config; unknown keys are an error that lists the known ones."""
        known = {
            "scenario", "num-server-rounds", "seed", "registry", "strategy", "strategy-config",
            "fraction-train", "min-train-nodes", "min-available-nodes", "round-timeout", "resume",
            *_TRAIN_KEYS,
        }
        unknown = sorted(set(config) - known)
        if unknown:
            raise FlonnxError(f"unknown run-config keys {unknown}; known: {sorted(known)}")
        scenario = get_scenario(str(config.get("scenario", cls.scenario)))
        train = dict(scenario.train)
        train.update({k: config[k] for k in _TRAIN_KEYS if k in config})  # type: ignore[misc]
        try:
            return cls(
                scenario=scenario.name,
                rounds=int(config.get("num-server-rounds", scenario.rounds)),
                seed=int(config.get("seed", cls.seed)),
                registry=str(config.get("registry", cls.registry)),
                strategy=str(config.get("strategy", scenario.strategy)),
                strategy_config=_parse_pairs(str(config.get("strategy-config", ""))),
                fraction_train=float(config.get("fraction-train", cls.fraction_train)),
                min_train_nodes=int(config.get("min-train-nodes", cls.min_train_nodes)),
                min_available_nodes=int(config.get("min-available-nodes", cls.min_available_nodes)),
                round_timeout=float(config.get("round-timeout", cls.round_timeout)),
                train=train,
                resume=str(config.get("resume", "")),
            )
        except (TypeError, ValueError) as exc:
            raise FlonnxError(f"invalid run config: {exc}") from exc

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Settings:
        """Inverse of :meth:`to_json` (the form stored with a run), for resume and replay."""
        names = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in names})
        except TypeError as exc:
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
        """JSON-ready form, stored with the run."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["strategy_config"] = dict(self.strategy_config)
        out["train"] = dict(self.train)
        out.pop("resume")
        return out


def plan_runs(config: Mapping[str, Any]) -> list[Settings]:
    """One :class:`Settings` per strategy named in run config ``strategy`` (space/comma separated).

    ``strategy-config`` items ``key=value`` apply to every listed strategy; ``NAME.key=value``
    only to strategy ``NAME``. The same strategy may not be listed twice.
    """
    base = Settings.from_run_config(config)
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
    return [replace(base, strategy=name, strategy_config={**shared, **scoped.get(name, {})})
            for name in names]


def _parse_pairs(text: str) -> dict[str, str]:
    """``"a=1 b=2"`` (or comma-separated) -> ``{"a": "1", "b": "2"}``."""
    pairs: dict[str, str] = {}
    for item in text.replace(",", " ").split():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise FlonnxError(f"strategy-config item {item!r} is not key=value")
        pairs[key] = value
    return pairs
