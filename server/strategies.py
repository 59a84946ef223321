"""Flower strategies by name, with their parameters parsed from ``key=value`` strings."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from exchange.errors import FlonnxError

__all__ = ["STRATEGIES", "build_strategy", "strategy_parameters"]

#: name -> class in flwr.serverapp.strategy
STRATEGIES: dict[str, str] = {
    "fedavg": "FedAvg",
    "fedavgm": "FedAvgM",
    "fedprox": "FedProx",
    "fedadagrad": "FedAdagrad",
    "fedadam": "FedAdam",
    "fedyogi": "FedYogi",
    "fedmedian": "FedMedian",
    "fedtrimmedavg": "FedTrimmedAvg",
    "krum": "Krum",
    "multikrum": "MultiKrum",
    "bulyan": "Bulyan",
    "qfedavg": "QFedAvg",
}

#: Sampling is flonnx's (by stable client key); the inner strategy takes every node it is given.
_SAMPLING = {
    "fraction_train": 1.0,
    "fraction_evaluate": 0.0,
    "min_train_nodes": 1,
    "min_evaluate_nodes": 0,
    "min_available_nodes": 1,
}
_NOT_SETTABLE = {*_SAMPLING, "weighted_by_key", "arrayrecord_key", "configrecord_key",
                 "train_metrics_aggr_fn", "evaluate_metrics_aggr_fn"}


def _resolve(name: str) -> type:
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            return getattr(importlib.import_module(module_name), attr)  # type: ignore[no-any-return]
        except (ImportError, AttributeError) as exc:
            raise FlonnxError(f"cannot load strategy {name!r}: {exc}") from exc
    if name not in STRATEGIES:
        raise FlonnxError(
            f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)} or module:Class"
        )
    module = importlib.import_module("flwr.serverapp.strategy")
    return getattr(module, STRATEGIES[name])  # type: ignore[no-any-return]


def strategy_parameters(cls: type) -> dict[str, inspect.Parameter]:
    """The constructor parameters a user may set (sampling and record keys belong to flonnx)."""
    params = inspect.signature(cls.__init__).parameters
    return {n: p for n, p in params.items() if n != "self" and n not in _NOT_SETTABLE
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def _parse(value: str, default: Any, name: str) -> Any:
    try:
        if isinstance(default, bool):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(value)
            return value.lower() in ("true", "1")
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if default is None or default is inspect.Parameter.empty:
            for kind in (int, float):
                try:
                    return kind(value)
                except ValueError:
                    continue
        return value
    except ValueError:
        raise FlonnxError(
            f"strategy parameter {name}={value!r}: expected {type(default).__name__}"
        ) from None


def build_strategy(name: str, config: Mapping[str, str]) -> tuple[Any, dict[str, str]]:
    """Instantiate the strategy; returns it and its full effective config (for lineage)."""
    cls = _resolve(name)
    params = strategy_parameters(cls)
    kwargs: dict[str, Any] = {}
    for raw_key, value in config.items():
        key = raw_key.replace("-", "_")
        if key not in params:
            raise FlonnxError(
                f"strategy {name!r} has no parameter {raw_key!r}; valid: {', '.join(sorted(params))}"
            )
        kwargs[key] = _parse(value, params[key].default, raw_key)
    all_params = inspect.signature(cls.__init__).parameters
    kwargs.update({k: v for k, v in _SAMPLING.items() if k in all_params})
    try:
        strategy = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise FlonnxError(f"strategy {name!r} rejected its parameters: {exc}") from exc
    effective = {
        k: str(kwargs.get(k, p.default)) for k, p in params.items()
        if p.default is not inspect.Parameter.empty or k in kwargs
    }
    return strategy, effective
