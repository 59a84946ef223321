"""A Flower strategy's state between rounds, as arrays + JSON, and back.

Flower keeps strategy state (FedOpt's ``m_t``/``v_t``, FedAvgM's momentum, the adaptive clipping
norm, …) in instance attributes only. :func:`capture_state` walks those attributes — recursing into a
wrapped ``strategy`` — and splits them into named arrays and a JSON description;
:func:`restore_state` sets them on a freshly built strategy of the same kind. Callables
(metric-aggregation functions) are configuration, not state, and are left alone. An attribute of a
type not listed below raises :class:`StateError` naming it, so a custom strategy learns at its first
round, not at resume time, that its state cannot be saved.

Saved types: ``None``, ``bool``, ``int``, ``float``, ``str``, numpy scalars and arrays,
``ArrayRecord``, ``dict[str, ndarray]``, ``list``/``tuple`` of ndarrays, JSON-able dicts and lists,
and nested strategies.

:func:`seeded_global_rng` makes strategies that draw from numpy's or Python's global RNG (DP noise)
reproducible: flonnx seeds both from (run seed, round, phase) around every call into the strategy.
"""

from __future__ import annotations

import json
import random
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord
from flwr.serverapp.strategy import Strategy

from flonnx.exchange.errors import FlonnxError

__all__ = ["StateError", "capture_state", "restore_state", "seeded_global_rng"]

_CALLABLES = (types.FunctionType, types.MethodType, types.BuiltinFunctionType, type)


class StateError(FlonnxError):
    """A strategy's state cannot be saved or does not fit the strategy it is restored into."""


@contextmanager
def seeded_global_rng(seed: int) -> Iterator[None]:
    """Seed numpy's and Python's global RNGs for the block, then put their old states back."""
    np_state, py_state = np.random.get_state(), random.getstate()
    np.random.seed(seed)
    random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def capture_state(strategy: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Split a strategy's attributes into ``(arrays, description)``; see the module docstring."""
    arrays: dict[str, np.ndarray] = {}
    description: dict[str, Any] = {}
    _capture(strategy, "", arrays, description)
    return arrays, description


def _capture(obj: Any, prefix: str, arrays: dict[str, np.ndarray], out: dict[str, Any]) -> None:
    for name, value in sorted(vars(obj).items()):
        path = f"{prefix}{name}"
        if isinstance(value, _CALLABLES):
            continue
        if isinstance(value, np.str_):
            value = str(value)  # a str subclass: kept as the text it is
        if isinstance(value, np.generic) and value.dtype.kind in "biufc":
            # before the plain types: np.float64 is a float, and its type name restores as nothing
            arrays[path] = np.asarray(value)
            out[path] = {"t": "np-scalar"}
        elif value is None or isinstance(value, bool | int | float | str):
            out[path] = {"t": type(value).__name__, "v": value if value is None or not isinstance(
                value, float) else float.hex(value)}
        elif isinstance(value, np.ndarray):
            arrays[path] = value
            out[path] = {"t": "ndarray"}
        elif isinstance(value, ArrayRecord):
            keys = list(value.keys())
            arrays.update({f"{path}/{k}": value[k].numpy() for k in keys})
            out[path] = {"t": "ArrayRecord", "keys": keys}
        elif isinstance(value, dict) and value and all(
            isinstance(k, str) and isinstance(v, np.ndarray) for k, v in value.items()
        ):
            arrays.update({f"{path}/{k}": v for k, v in value.items()})
            out[path] = {"t": "dict-ndarray", "keys": list(value)}
        elif isinstance(value, list | tuple) and value and all(
            isinstance(v, np.ndarray) for v in value
        ):
            arrays.update({f"{path}/{i}": v for i, v in enumerate(value)})
            out[path] = {"t": f"{type(value).__name__}-ndarray", "n": len(value)}
        elif isinstance(value, Strategy):
            out[path] = {"t": "strategy", "class": type(value).__qualname__}
            _capture(value, f"{path}.", arrays, out)
        elif isinstance(value, dict | list) and _is_json(value):
            out[path] = {"t": "json", "v": value}
        else:
            raise StateError(
                f"strategy attribute {path!r} of {type(obj).__name__} holds a "
                f"{type(value).__name__}, which flonnx cannot save for resume/replay; keep state in "
                "numbers, strings, numpy arrays, ArrayRecords, or dicts/lists of them"
            )


def restore_state(strategy: Any, arrays: dict[str, np.ndarray], description: dict[str, Any]) -> None:
    """Set the attributes :func:`capture_state` described on ``strategy`` (a fresh instance)."""
    for path in sorted(description, key=lambda p: p.count(".")):
        entry = description[path]
        owner_path, _, name = path.rpartition(".")
        owner = strategy
        for part in filter(None, owner_path.split(".")):
            owner = getattr(owner, part)
        kind = entry["t"]
        if kind == "strategy":
            current = getattr(owner, name, None)
            if type(current).__qualname__ != entry["class"]:
                raise StateError(
                    f"state of {path!r} was saved from a {entry['class']}, but the strategy has "
                    f"a {type(current).__name__} there"
                )
            continue
        setattr(owner, name, _value(path, entry, arrays))


def _array(arrays: dict[str, np.ndarray], key: str) -> np.ndarray:
    if key not in arrays:
        raise StateError(f"saved strategy state lacks the array {key!r}")
    return np.array(arrays[key], copy=True)  # writable: strategies may update state in place


def _value(path: str, entry: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
    kind = entry["t"]
    if kind == "NoneType":
        return None
    if kind == "float":
        return float.fromhex(entry["v"])
    if kind in ("bool", "int", "str", "json"):
        return entry["v"]
    if kind == "np-scalar":
        return _array(arrays, path)[()]
    if kind == "ndarray":
        return _array(arrays, path)
    if kind == "ArrayRecord":
        return ArrayRecord({k: Array(_array(arrays, f"{path}/{k}")) for k in entry["keys"]})
    if kind == "dict-ndarray":
        return {k: _array(arrays, f"{path}/{k}") for k in entry["keys"]}
    if kind in ("list-ndarray", "tuple-ndarray"):
        items = [_array(arrays, f"{path}/{i}") for i in range(int(entry["n"]))]
        return items if kind == "list-ndarray" else tuple(items)
    raise StateError(f"saved strategy state of {path!r} has unknown type {kind!r}")
