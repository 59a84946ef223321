"""Run settings: Flower run config (``[tool.flwr.app.config]`` + overrides) with flonnx defaults."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from exchange.errors import FlonnxError
from simulations.scenarios import get_scenario

__all__ = ["Settings"]

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

    @classmethod
    def from_run_config(cls, config: Mapping[str, Any]) -> Settings:
        """Parse Flower's run config; unknown keys are an error that lists the known ones."""
        known = {
            "scenario", "num-server-rounds", "seed", "registry", "strategy", "strategy-config",
            "fraction-train", "min-train-nodes", "min-available-nodes", "round-timeout", *_TRAIN_KEYS,
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
            )
        except (TypeError, ValueError) as exc:
            raise FlonnxError(f"invalid run config: {exc}") from exc

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form, stored with the run."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["strategy_config"] = dict(self.strategy_config)
        out["train"] = dict(self.train)
        return out


def _parse_pairs(text: str) -> dict[str, str]:
    """``"a=1 b=2"`` (or comma-separated) -> ``{"a": "1", "b": "2"}``."""
    pairs: dict[str, str] = {}
    for item in text.replace(",", " ").split():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise FlonnxError(f"strategy-config item {item!r} is not key=value")
        pairs[key] = value
    return pairs
