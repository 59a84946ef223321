"""Flower strategies by name (or ``module:Class``), with parameters parsed from ``key=value`` strings.

Every strategy in ``flwr.serverapp.strategy`` that aggregates arrays has a short name; the four
differential-privacy wrappers take the strategy they wrap as ``inner=NAME`` (default ``fedavg``) and
pass every parameter they do not know on to it. A researcher's own strategy is named
``package.module:Class`` (see docs/strategies.md); a module that is not importable otherwise is
looked up in the current directory, as ``python -m`` would. Unknown names and bad parameters raise
:class:`~flonnx.exchange.errors.FlonnxError` listing the valid choices, before any round runs;
:func:`check_parameters` adds the ranges of the built-in strategies' numbers (finite, not negative,
FedOpt's betas in [0, 1), Krum's and Bulyan's bound on the malicious nodes a round can tolerate).

The effective configuration (every settable parameter, defaults included, keys in ``dash-case``) is
what lineage records; :func:`build_strategy` accepts it back unchanged, which is how resume and
replay rebuild the recorded strategy.

Aggregation (:mod:`flonnx.server.streaming`): the strategies whose aggregate is a server step on a
weighted mean of the client arrays (:data:`STREAMING`) fold each update into an exact fixed-point
mean as it arrives (``aggregator=fixed-point-v1``, with ``aggregator-bound`` and
``aggregator-max-examples``), so the server holds O(model), not O(clients x model). The others
(median, trimmed mean, Krum, MultiKrum, Bulyan, QFedAvg, the DP wrappers, custom strategies) need
every update at once and keep the held path (``float-v0``). These keys sit in the recorded config;
a recorded config without them is a run from before streaming, aggregated the held way.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import math
import os
import sys
import types
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Union, get_args, get_origin

from flonnx.exchange import wire
from flonnx.exchange.errors import FlonnxError
from flonnx.server.streaming import (
    DEFAULT_BOUND,
    DEFAULT_MAX_EXAMPLES,
    FIXED_POINT,
    HELD,
    AggregatorSpec,
)

__all__ = [
    "AGGREGATOR_SCALE_BITS",
    "DP_CLIPPING_MODE",
    "DP_WRAPPERS",
    "STRATEGIES",
    "STREAMING",
    "AggregatorSpec",
    "BuiltStrategy",
    "aggregator_config",
    "recorded_aggregator",
    "build_strategy",
    "check_parameters",
    "strategy_names",
    "strategy_parameters",
]

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

#: Strategies whose arrays are (a server step on) the weighted mean FedAvg computes: FedAvg and
#: FedProx return it, FedAvgM and FedAdagrad/FedAdam/FedYogi apply their step to it.
STREAMING = ("fedavg", "fedprox", "fedavgm", "fedadagrad", "fedadam", "fedyogi")

#: Recorded-config keys of the aggregator; the scale is chosen per round and recorded per aggregate.
AGGREGATOR, AGGREGATOR_BOUND, AGGREGATOR_MAX_EXAMPLES = (
    "aggregator", "aggregator-bound", "aggregator-max-examples")
AGGREGATOR_SCALE_BITS = "aggregator-scale-bits"
_AGGREGATOR_KEYS = (AGGREGATOR, AGGREGATOR_BOUND, AGGREGATOR_MAX_EXAMPLES, AGGREGATOR_SCALE_BITS)

#: name -> (class in flwr.serverapp.strategy, client-side clipping mode or "" for server-side)
DP_WRAPPERS: dict[str, tuple[str, str]] = {
    "dp-server-fixed": ("DifferentialPrivacyServerSideFixedClipping", ""),
    "dp-server-adaptive": ("DifferentialPrivacyServerSideAdaptiveClipping", ""),
    "dp-client-fixed": ("DifferentialPrivacyClientSideFixedClipping", "fixed"),
    "dp-client-adaptive": ("DifferentialPrivacyClientSideAdaptiveClipping", "adaptive"),
}

#: Train-config key telling the client's clipping mod which client-side clipping to apply.
DP_CLIPPING_MODE = wire.CONFIG_DP_CLIPPING

#: Sampling is flonnx's (by stable client key); the inner strategy takes every node it is given.
_SAMPLING = {
    "fraction_train": 1.0,
    "fraction_evaluate": 0.0,
    "min_train_nodes": 1,
    "min_evaluate_nodes": 0,
    "min_available_nodes": 1,
}
_NOT_SETTABLE = {*_SAMPLING, "weighted_by_key", "arrayrecord_key", "configrecord_key", "strategy"}
_SCALARS = (bool, int, float, str)
_INNER = "inner"


@dataclass(frozen=True)
class _Range:
    """The values a number may take: ``low`` to ``high``, each end included or not."""

    low: float = 0.0
    high: float = math.inf
    low_open: bool = False
    high_open: bool = True

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below  # NaN is in no range, and no range includes infinity

    def __str__(self) -> str:
        return (f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
                f"{')' if self.high_open else ']'}")


#: Ranges of built-in strategies' parameters (dash-case); every other number is finite and >= 0.
_RANGES: dict[str, _Range] = {
    "beta-1": _Range(high=1.0),  # FedAdam/FedYogi moment decays; 1 would never forget
    "beta-2": _Range(high=1.0),
    "beta": _Range(high=0.5),  # FedTrimmedAvg cuts this fraction off each end
    "server-momentum": _Range(high=1.0),
    "tau": _Range(low_open=True),  # FedOpt divides by sqrt(v) + tau
    "target-clipped-quantile": _Range(high=1.0, high_open=False),
    "num-sampled-clients": _Range(low=1.0),
    "num-nodes-to-select": _Range(low=1.0),
}

#: Byzantine-robust strategies: a round with f malicious nodes needs at least a*f + b updates.
_ROBUST: dict[str, tuple[int, int]] = {"krum": (2, 3), "multikrum": (2, 3), "bulyan": (4, 3)}


@dataclass(frozen=True)
class BuiltStrategy:
    """A Flower strategy instance and the facts flonnx records about it."""

    name: str
    strategy: Any  # flwr.serverapp.strategy.Strategy
    config: dict[str, str]  # effective configuration, dash-case keys, recorded in lineage
    dp_clipping: str = ""  # "fixed" / "adaptive" when clients must clip, else ""
    aggregator: AggregatorSpec = AggregatorSpec()  # how its rounds are aggregated


def strategy_names() -> list[str]:
    """Every built-in name, in documentation order."""
    return [*STRATEGIES, *DP_WRAPPERS]


def _choices() -> str:
    return f"{', '.join(strategy_names())} or package.module:Class"


def _import(module_name: str) -> types.ModuleType:
    """``module_name`` from the installed packages, else (as ``python -m`` does) the current directory.

    The current directory is appended to ``sys.path`` (and stays there, so the module's own imports
    of its neighbours work later too) only when the module is not importable otherwise: it never
    shadows an installed package.
    """
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        here = os.getcwd()
        if exc.name != module_name.partition(".")[0] or here in sys.path or "" in sys.path:
            raise
    sys.path.append(here)
    importlib.invalidate_caches()
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name.partition(".")[0]:
            sys.path.remove(here)
        raise


def _resolve(name: str) -> type:
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            cls = getattr(_import(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise FlonnxError(f"cannot import strategy {name}: {exc}") from exc
        from flwr.serverapp.strategy import Strategy

        if not (isinstance(cls, type) and issubclass(cls, Strategy)):
            raise FlonnxError(
                f"strategy {name!r} must be a subclass of flwr.serverapp.strategy.Strategy, "
                f"got {cls!r}"
            )
        return cls
    module = importlib.import_module("flwr.serverapp.strategy")
    if name in STRATEGIES:
        return getattr(module, STRATEGIES[name])  # type: ignore[no-any-return]
    if name in DP_WRAPPERS:
        return getattr(module, DP_WRAPPERS[name][0])  # type: ignore[no-any-return]
    raise FlonnxError(f"unknown strategy {name!r}; choose one of {_choices()}")


def _scalar_type(param: inspect.Parameter) -> type | None:
    """The scalar type a parameter takes from the command line, or ``None`` if it takes objects."""
    annotation = param.annotation
    if annotation is inspect.Parameter.empty:
        default = param.default
        if default is inspect.Parameter.empty or default is None:
            return str
        return type(default) if isinstance(default, _SCALARS) else None
    if isinstance(annotation, str):  # postponed annotations (``from __future__ import annotations``)
        members_s = [a.strip() for a in annotation.split("|") if a.strip() != "None"]
        by_name = {t.__name__: t for t in _SCALARS}
        return by_name.get(members_s[0]) if len(members_s) == 1 else None
    if annotation in _SCALARS:
        return annotation  # type: ignore[no-any-return]
    if get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if len(members) == 1 and members[0] in _SCALARS:
            return members[0]  # type: ignore[no-any-return]
    return None


def strategy_parameters(cls: type) -> dict[str, inspect.Parameter]:
    """Constructor parameters a user may set: scalars only; sampling and record keys are flonnx's."""
    params = inspect.signature(cls.__init__).parameters  # type: ignore[misc]
    return {
        n: p for n, p in params.items()
        if n != "self" and n not in _NOT_SETTABLE
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and _scalar_type(p) is not None
    }


def _dash(name: str) -> str:
    return name.replace("_", "-")


def _parse(value: str, param: inspect.Parameter, label: str) -> Any:
    kind = _scalar_type(param)
    if value == "None" and (param.default is None or kind is None):
        return None
    try:
        if kind is bool:
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(value)
            return value.lower() in ("true", "1")
        if kind is int:
            return int(value)
        if kind is float:
            return float(value)
        return value
    except ValueError:
        raise FlonnxError(
            f"strategy parameter {label}={value!r}: expected {getattr(kind, '__name__', kind)}"
        ) from None


def _kwargs(
    name: str, cls: type, config: Mapping[str, str], defaults: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Constructor keyword arguments and the effective (recorded) config for ``cls``."""
    params = strategy_parameters(cls)
    kwargs: dict[str, Any] = {}
    for raw_key, value in config.items():
        key = raw_key.replace("-", "_")
        if key not in params:
            valid = ", ".join(sorted(_dash(p) for p in params)) or "(none)"
            raise FlonnxError(f"strategy {name!r} has no parameter {raw_key!r}; valid: {valid}")
        kwargs[key] = _parse(str(value), params[key], raw_key)
    for key, value in defaults.items():
        if key in params and key not in kwargs:
            kwargs[key] = value
    missing = [_dash(n) for n, p in params.items() if p.default is inspect.Parameter.empty
               and n not in kwargs]
    if missing:
        raise FlonnxError(
            f"strategy {name!r} needs {', '.join(missing)} (pass --strategy-config "
            f"{missing[0]}=VALUE)"
        )
    effective = {_dash(k): str(kwargs.get(k, p.default)) for k, p in params.items()}
    return kwargs, effective


def _instantiate(name: str, cls: type, kwargs: dict[str, Any]) -> Any:
    flwr_logger = logging.getLogger("flwr")
    level = flwr_logger.level
    # Flower warns that fraction_evaluate=0 skips federated evaluation: flonnx evaluates on the
    # server by design, so that warning would only confuse.
    flwr_logger.setLevel(max(level, logging.ERROR))
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise FlonnxError(f"strategy {name!r} rejected its parameters: {exc}") from exc
    finally:
        flwr_logger.setLevel(level)


def build_strategy(
    name: str, config: Mapping[str, str], defaults: Mapping[str, Any] | None = None
) -> BuiltStrategy:
    """Instantiate the strategy called ``name`` with ``config``.

    Args:
        name: A name from :func:`strategy_names` or ``package.module:Class``.
        config: ``key=value`` parameters (dash- or snake-case keys, string values), and for the
            :data:`STREAMING` strategies the aggregator's keys (module docstring);
            ``aggregator-scale-bits``, recorded per round, is accepted and ignored.
        defaults: Values for parameters the user did not set, derived from the run (e.g.
            ``num_sampled_clients``); ignored where the strategy has no such parameter.

    Returns:
        The strategy with its effective configuration, which rebuilds the same strategy.

    Raises:
        FlonnxError: unknown name, unknown parameter, unparsable value, the strategy rejected
            its parameters, or an aggregator it cannot use.
    """
    given = {k.replace("_", "-"): str(v) for k, v in config.items()
             if k.replace("_", "-") in _AGGREGATOR_KEYS}
    rest = {k: v for k, v in config.items() if k.replace("_", "-") not in _AGGREGATOR_KEYS}
    built = _build(name, rest, dict(defaults or {}))
    aggregator = _aggregator(name, given)
    if aggregator is None:
        return built
    return replace(built, config={**built.config, **aggregator_config(aggregator)},
                   aggregator=aggregator)


def aggregator_config(aggregator: AggregatorSpec) -> dict[str, str]:
    """The recorded-config keys of ``aggregator``."""
    if not aggregator.streams:
        return {AGGREGATOR: aggregator.name}
    return {AGGREGATOR: aggregator.name, AGGREGATOR_BOUND: repr(aggregator.bound),
            AGGREGATOR_MAX_EXAMPLES: str(aggregator.max_examples)}


def _aggregator(name: str, given: Mapping[str, str]) -> AggregatorSpec | None:
    """The aggregator ``name`` uses with the ``given`` keys; ``None``: held, nothing to record."""
    chosen = given.get(AGGREGATOR, FIXED_POINT if name in STREAMING else HELD)
    if chosen not in (FIXED_POINT, HELD):
        raise FlonnxError(f"unknown aggregator {chosen!r}; choose {FIXED_POINT} (streamed, exact) "
                          f"or {HELD} (every update held, the strategy's own float arithmetic)")
    settings = sorted(set(given) & {AGGREGATOR_BOUND, AGGREGATOR_MAX_EXAMPLES})
    if name not in STREAMING:
        if chosen == FIXED_POINT or settings:
            raise FlonnxError(
                f"strategy {name!r} cannot aggregate as replies arrive: its aggregate needs every "
                f"update at once (only {', '.join(STREAMING)} stream); it uses {HELD}")
        return None
    if chosen == HELD:
        if settings:
            raise FlonnxError(f"{', '.join(settings)} applies to aggregator={FIXED_POINT} only")
        return AggregatorSpec(HELD)
    return _fixed_point(given)


def _fixed_point(given: Mapping[str, str]) -> AggregatorSpec:
    try:
        bound = float(given.get(AGGREGATOR_BOUND, DEFAULT_BOUND))
        max_examples = int(given.get(AGGREGATOR_MAX_EXAMPLES, DEFAULT_MAX_EXAMPLES))
    except ValueError as exc:
        raise FlonnxError(f"aggregator settings: {exc} (aggregator-bound is a number, "
                          "aggregator-max-examples an integer)") from None
    if not 0 < bound < math.inf:
        raise FlonnxError(f"aggregator-bound={given[AGGREGATOR_BOUND]} is out of range; "
                          "allowed: (0, inf)")
    if not 1 <= max_examples < 2**31:
        raise FlonnxError(f"aggregator-max-examples={given[AGGREGATOR_MAX_EXAMPLES]} is out of "
                          "range; allowed: 1 to 2**31 - 1")
    return AggregatorSpec(FIXED_POINT, bound, max_examples)


def recorded_aggregator(config: Mapping[str, str]) -> tuple[AggregatorSpec, int | None]:
    """The aggregator an aggregate's recorded config names, and the round's scale exponent.

    A config without the ``aggregator`` key was aggregated the held way (runs from before
    streaming, and strategies that cannot stream).

    Raises:
        FlonnxError: an unknown aggregator, or a fixed-point round without its scale.
    """
    given = {k: str(v) for k, v in config.items() if k in _AGGREGATOR_KEYS}
    chosen = given.get(AGGREGATOR, HELD)
    if chosen == HELD:
        return AggregatorSpec(HELD), None
    if chosen != FIXED_POINT:
        raise FlonnxError(f"recorded aggregator {chosen!r} is not known to this flonnx "
                          f"({FIXED_POINT}, {HELD})")
    try:
        bits = int(given[AGGREGATOR_SCALE_BITS])
    except (KeyError, ValueError):
        raise FlonnxError(f"a {FIXED_POINT} aggregate must record {AGGREGATOR_SCALE_BITS}") from None
    return _fixed_point(given), bits


def _build(name: str, config: Mapping[str, str], defaults: dict[str, Any]) -> BuiltStrategy:
    cls = _resolve(name)
    if name not in DP_WRAPPERS:
        kwargs, effective = _kwargs(name, cls, config, defaults)
        all_params = inspect.signature(cls.__init__).parameters  # type: ignore[misc]
        kwargs.update({k: v for k, v in _SAMPLING.items() if k in all_params})
        return BuiltStrategy(name, _instantiate(name, cls, kwargs), effective)
    own = strategy_parameters(cls)
    wrapper_config = {k: v for k, v in config.items() if k.replace("-", "_") in own}
    inner_name = str(config.get(_INNER, "fedavg"))
    if inner_name in DP_WRAPPERS:
        raise FlonnxError(f"{name} cannot wrap another DP wrapper ({inner_name})")
    inner_config = {k: v for k, v in config.items()
                    if k != _INNER and k.replace("-", "_") not in own}
    inner = _build(inner_name, inner_config, defaults)
    kwargs, effective = _kwargs(name, cls, wrapper_config, defaults)
    clash = sorted(set(effective) & set(inner.config))
    if clash:
        raise FlonnxError(f"{name} and its inner {inner_name} both take {clash}")
    strategy = _instantiate(name, cls, {"strategy": inner.strategy, **kwargs})
    return BuiltStrategy(name, strategy, {_INNER: inner_name, **effective, **inner.config},
                         DP_WRAPPERS[name][1])


def check_parameters(name: str, config: Mapping[str, str], sampled: int | None) -> None:
    """Check the numbers given to a built-in strategy against their ranges, before any round runs.

    Every number is finite and not negative unless :data:`_RANGES` says otherwise; Krum, MultiKrum
    and Bulyan need ``2f+3``, ``2f+3`` and ``4f+3`` updates a round for ``f = num-malicious-nodes``.
    A custom strategy checks its own parameters (its constructor may raise ``ValueError``); unknown
    names, keys and unparsable values are left to :func:`build_strategy`, which reports them.

    Args:
        name: The strategy's name, as for :func:`build_strategy`.
        config: ``key=value`` parameters as given (dash- or snake-case keys, string values).
        sampled: Clients sampled per round, or ``None`` when the federation's size is not known
            before nodes connect (then the bounds that depend on it are not checked).

    Raises:
        FlonnxError: naming the strategy, the parameter, its value and the allowed range.
    """
    given = {k.replace("-", "_"): str(v) for k, v in config.items()}
    names = [name, given.get(_INNER, "fedavg")] if name in DP_WRAPPERS else [name]
    for strategy in names:
        if strategy not in STRATEGIES and strategy not in DP_WRAPPERS:
            continue
        params = strategy_parameters(_resolve(strategy))
        for key, param in params.items():
            if key not in given or _scalar_type(param) not in (int, float):
                continue
            try:
                number = float(given[key])
            except ValueError:
                continue
            allowed = _RANGES.get(_dash(key), _Range())
            if number not in allowed:
                raise FlonnxError(f"strategy {strategy}: {_dash(key)}={given[key]} is out of range; "
                                  f"allowed: {allowed}")
        if strategy in _ROBUST and sampled is not None:
            per, base = _ROBUST[strategy]
            try:
                malicious = int(given.get("num_malicious_nodes", params["num_malicious_nodes"].default))
            except ValueError:
                continue
            if sampled < per * malicious + base:
                allowed_text = (f"0 to {(sampled - base) // per}" if sampled >= base
                                else f"none: {strategy} needs at least {base} clients a round")
                raise FlonnxError(
                    f"strategy {strategy}: num-malicious-nodes={malicious} needs at least "
                    f"{per}*{malicious}+{base} = {per * malicious + base} updates a round, but "
                    f"{sampled} clients are sampled a round; allowed: {allowed_text}")
