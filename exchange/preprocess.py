"""The fixed preprocessing of a federation: federated feature (and target) standardisation.

Nodes report per-feature counts, sums and sums of squares of their own data at the handshake (never
a row); the server adds them up in client-key order (float64) into :class:`Preprocessing`. It
travels inside the definition as ``flonnx.preprocess`` metadata (JSON), so it is part of the
definition's id and every node applies exactly the same constants. It is never trained or averaged.

Nodes apply it to their arrays before training; :func:`wrap_model` turns it into ONNX nodes around
the model (``(x - mean) / std`` before the input; ``y * std + mean`` after a regression output), which
is what the server evaluates and what ``flonnx export`` writes: the exported model takes raw features
and predicts in the target's own units. A zero-variance feature gets ``std = 1`` (it becomes 0).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from flonnx.exchange.errors import FlonnxError, InvalidModel

__all__ = ["METADATA_KEY", "LocalStats", "Preprocessing", "combine_stats", "local_stats", "wrap_model"]

METADATA_KEY = "flonnx.preprocess"


@dataclass(frozen=True)
class LocalStats:
    """What one node reports: per feature count/sum/sum of squares of present values; target too."""

    count: np.ndarray  # float64 [F]
    total: np.ndarray  # float64 [F]
    squares: np.ndarray  # float64 [F]
    target: tuple[float, float, float] = (0.0, 0.0, 0.0)  # count, sum, sum of squares

    def arrays(self) -> dict[str, np.ndarray]:
        """As named float64 arrays (for a Flower ArrayRecord)."""
        return {"count": self.count, "sum": self.total, "squares": self.squares,
                "target": np.asarray(self.target, np.float64)}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], num_features: int) -> LocalStats:
        """From :meth:`arrays` as received from a node (untrusted: shapes and values checked)."""
        try:
            parts = [np.asarray(arrays[k], np.float64) for k in ("count", "sum", "squares")]
            target = np.asarray(arrays["target"], np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise FlonnxError(f"malformed feature statistics: {exc}") from exc
        if any(p.shape != (num_features,) for p in parts) or target.shape != (3,):
            raise FlonnxError(
                f"feature statistics have shapes {[list(p.shape) for p in parts]} and "
                f"{list(target.shape)}; expected [{num_features}] and [3]"
            )
        if not all(np.isfinite(p).all() for p in [*parts, target]) or (parts[0] < 0).any():
            raise FlonnxError("feature statistics hold negative counts or non-finite values")
        return cls(parts[0], parts[1], parts[2], (float(target[0]), float(target[1]), float(target[2])))


def local_stats(x: np.ndarray, y: np.ndarray | None = None) -> LocalStats:
    """A node's statistics of ``x`` ``[N, F]`` (NaN = missing, skipped) and of a regression ``y``."""
    values = np.asarray(x, np.float64).reshape(len(x), -1)
    present = ~np.isnan(values)
    filled = np.where(present, values, 0.0)
    target = (0.0, 0.0, 0.0)
    if y is not None:
        t = np.asarray(y, np.float64)
        target = (float(len(t)), float(t.sum()), float((t * t).sum()))
    return LocalStats(present.sum(axis=0).astype(np.float64), filled.sum(axis=0),
                      (filled * filled).sum(axis=0), target)


def _moments(count: np.ndarray, total: np.ndarray, squares: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    safe = np.maximum(count, 1.0)
    mean = total / safe
    var = np.maximum(squares / safe - mean * mean, 0.0)
    std = np.sqrt(var)
    # zero (or numerically zero) variance: leave the feature centred but unscaled
    std = np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, 1.0)
    return mean, std


@dataclass(frozen=True)
class Preprocessing:
    """Constants applied before the model (features) and after it (regression target)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    standardize: bool = True
    target_mean: float | None = None
    target_std: float | None = None
    features: tuple[str, ...] = ()  # the raw feature columns in order (with categorical ones)
    vocabularies: tuple[tuple[str, tuple[str, ...]], ...] = ()  # categorical column -> its values

    # -- applying ---------------------------------------------------------------------------------
    def apply(self, x: np.ndarray) -> np.ndarray:
        """Impute missing values (NaN) with the federated mean, then standardise (if on)."""
        flat = np.asarray(x, np.float64).reshape(len(x), -1)
        if flat.shape[1] != len(self.mean):
            raise FlonnxError(f"data has {flat.shape[1]} features; the federation's preprocessing "
                              f"has {len(self.mean)}")
        mean = np.asarray(self.mean)
        flat = np.where(np.isnan(flat), mean, flat)
        if self.standardize:
            flat = (flat - mean) / np.asarray(self.std)
        return flat.astype(np.float32).reshape(np.shape(x))

    def apply_target(self, y: np.ndarray) -> np.ndarray:
        """Standardise a regression target (identity when no target statistics)."""
        if self.target_mean is None or self.target_std is None:
            return np.asarray(y, np.float32)
        return ((np.asarray(y, np.float64) - self.target_mean) / self.target_std).astype(np.float32)

    # -- serialisation ----------------------------------------------------------------------------
    def to_json(self) -> str:
        """Canonical JSON (``repr`` of floats round-trips exactly)."""
        return json.dumps({
            "mean": list(self.mean), "std": list(self.std), "standardize": self.standardize,
            "target_mean": self.target_mean, "target_std": self.target_std,
            "features": list(self.features),
            "vocabularies": {column: list(values) for column, values in self.vocabularies},
        }, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Preprocessing:
        """Parse the metadata value (it arrived inside a definition: checked)."""
        try:
            data = json.loads(text)
            mean = tuple(float(v) for v in data["mean"])
            std = tuple(float(v) for v in data["std"])
            vocab = data.get("vocabularies", {})
            out = cls(mean, std, bool(data["standardize"]),
                      None if data["target_mean"] is None else float(data["target_mean"]),
                      None if data["target_std"] is None else float(data["target_std"]),
                      tuple(str(f) for f in data.get("features", [])),
                      tuple((str(c), tuple(str(v) for v in vocab[c])) for c in sorted(vocab)))
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidModel(f"malformed {METADATA_KEY} metadata: {exc}") from exc
        numbers = [*mean, *std] + [v for v in (out.target_mean, out.target_std) if v is not None]
        if len(mean) != len(std) or not all(math.isfinite(v) for v in numbers) or min(std, default=1) <= 0:
            raise InvalidModel(f"{METADATA_KEY} metadata holds inconsistent or non-finite constants")
        return out


def combine_stats(
    stats: Sequence[LocalStats], *, standardize: bool, regression: bool,
    features: Sequence[str] = (), vocabularies: Mapping[str, Sequence[str]] | None = None,
) -> Preprocessing:
    """Add the nodes' statistics (in the given order, which the caller fixes) into constants.

    ``features`` and ``vocabularies`` (categorical columns, agreed at the handshake) are carried
    along so the served model can take the raw columns.
    """
    if not stats:
        raise FlonnxError("no node reported feature statistics")
    count = np.sum([s.count for s in stats], axis=0)
    total = np.sum([s.total for s in stats], axis=0)
    squares = np.sum([s.squares for s in stats], axis=0)
    empty = np.flatnonzero(count == 0)
    if empty.size:
        raise FlonnxError(f"feature(s) {empty.tolist()} have no value at any node")
    mean, std = _moments(count, total, squares)
    target_mean = target_std = None
    if regression and standardize:
        t = np.sum([s.target for s in stats], axis=0)
        tm, ts = _moments(t[:1], t[1:2], t[2:3])
        target_mean, target_std = float(tm[0]), float(ts[0])
    return Preprocessing(tuple(float(v) for v in mean), tuple(float(v) for v in std),
                         standardize, target_mean, target_std, tuple(features),
                         tuple((c, tuple(v)) for c, v in sorted((vocabularies or {}).items())))


def wrap_model(model: onnx.ModelProto, pre: Preprocessing) -> onnx.ModelProto:
    """``model`` with the preprocessing as ONNX nodes: it then takes raw features (NaN imputed).

    Only a rank-2 ``[batch, features]`` input is wrapped; the regression suffix goes on the first
    output.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inits = {t.name for t in graph.initializer}
    data_inputs = [v for v in graph.input if v.name not in inits]
    if len(data_inputs) != 1:
        raise InvalidModel("preprocessing needs a model with exactly one data input")
    value = data_inputs[0]
    dims = value.type.tensor_type.shape.dim
    if len(dims) != 2:
        raise InvalidModel(f"feature standardisation needs a [batch, features] input; "
                           f"{value.name!r} has rank {len(dims)}")
    if value.type.tensor_type.elem_type not in (TensorProto.FLOAT, TensorProto.DOUBLE):
        raise InvalidModel("feature standardisation needs a float32 or float64 input")
    dtype = helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
    raw, inner = value.name, "flonnx_pre/standardised"
    encoding: list[onnx.NodeProto] = []
    if pre.vocabularies:
        encoding = _encode_categorical(out, value, pre, "flonnx_pre/encoded")
        raw = "flonnx_pre/encoded"
    mean = np.asarray(pre.mean, dtype)
    std = np.asarray(pre.std if pre.standardize else np.ones(len(pre.std)), dtype)
    nodes = [
        helper.make_node("IsNaN", [raw], ["flonnx_pre/missing"]),
        helper.make_node("Where", ["flonnx_pre/missing", "flonnx_pre/mean", raw], ["flonnx_pre/imputed"]),
        helper.make_node("Sub", ["flonnx_pre/imputed", "flonnx_pre/mean"], ["flonnx_pre/centred"]),
        helper.make_node("Div", ["flonnx_pre/centred", "flonnx_pre/std"], [inner]),
    ]
    constants = [numpy_helper.from_array(mean, "flonnx_pre/mean"),
                 numpy_helper.from_array(std, "flonnx_pre/std")]
    for node in graph.node:
        node.input[:] = [inner if name == value.name else name for name in node.input]
    suffix: list[onnx.NodeProto] = []
    if pre.target_mean is not None and pre.target_std is not None:
        target = graph.output[0]
        scaled = "flonnx_post/standardised"
        for node in graph.node:
            node.output[:] = [scaled if name == target.name else name for name in node.output]
        out_dtype = helper.tensor_dtype_to_np_dtype(target.type.tensor_type.elem_type)
        constants += [numpy_helper.from_array(np.asarray(pre.target_std, out_dtype), "flonnx_post/std"),
                      numpy_helper.from_array(np.asarray(pre.target_mean, out_dtype), "flonnx_post/mean")]
        suffix = [helper.make_node("Mul", [scaled, "flonnx_post/std"], ["flonnx_post/scaled"]),
                  helper.make_node("Add", ["flonnx_post/scaled", "flonnx_post/mean"], [target.name])]
    nodes_all = [*encoding, *nodes, *graph.node, *suffix]
    graph.ClearField("node")
    graph.node.extend(nodes_all)
    graph.initializer.extend(constants)
    return out


def _encode_categorical(model: onnx.ModelProto, value: onnx.ValueInfoProto, pre: Preprocessing,
                        output: str) -> list[onnx.NodeProto]:
    """Replace the model's input by the raw columns.

    Numeric columns arrive in one float input (the model input's name), each categorical column as
    a string input ``[batch]`` named after it, one-hot encoded over its vocabulary with an
    ``<other>`` column (ai.onnx.ml OneHotEncoder); the blocks are concatenated in feature order.
    """
    graph = model.graph
    vocab = dict(pre.vocabularies)
    numeric = [f for f in pre.features if f not in vocab]
    elem = value.type.tensor_type.elem_type
    graph.input.remove(value)
    graph.input.append(helper.make_tensor_value_info(value.name, elem, ["batch", len(numeric)]))
    nodes: list[onnx.NodeProto] = []
    blocks: list[str] = []
    graph.initializer.append(numpy_helper.from_array(np.asarray([1], np.int64), "flonnx_pre/axis1"))
    for j, feature in enumerate(pre.features):
        tag = f"flonnx_pre/f{j}"
        if feature not in vocab:
            i = numeric.index(feature)
            graph.initializer.extend([numpy_helper.from_array(np.asarray([i], np.int64), f"{tag}/start"),
                                      numpy_helper.from_array(np.asarray([i + 1], np.int64), f"{tag}/end")])
            nodes.append(helper.make_node("Slice", [value.name, f"{tag}/start", f"{tag}/end",
                                                    "flonnx_pre/axis1"], [tag]))
        else:
            graph.input.append(helper.make_tensor_value_info(feature, TensorProto.STRING, ["batch"]))
            nodes += [
                helper.make_node("OneHotEncoder", [feature], [f"{tag}/hot"], domain="ai.onnx.ml",
                                 cats_strings=list(vocab[feature]) or ["\x00"], zeros=1),
                helper.make_node("Cast", [f"{tag}/hot"], [f"{tag}/hotf"], to=elem),
                helper.make_node("ReduceSum", [f"{tag}/hotf", "flonnx_pre/axis1"], [f"{tag}/sum"],
                                 keepdims=1),
                helper.make_node("Sub", ["flonnx_pre/one", f"{tag}/sum"], [f"{tag}/other"]),
            ]
            if vocab[feature]:
                nodes.append(helper.make_node("Concat", [f"{tag}/hotf", f"{tag}/other"], [tag], axis=1))
            else:
                nodes.append(helper.make_node("Identity", [f"{tag}/other"], [tag]))
        blocks.append(tag)
    graph.initializer.append(numpy_helper.from_array(
        np.asarray(1.0, helper.tensor_dtype_to_np_dtype(elem)), "flonnx_pre/one"))
    nodes.append(helper.make_node("Concat", blocks, [output], axis=1))
    if not any(o.domain == "ai.onnx.ml" for o in model.opset_import):
        model.opset_import.add(domain="ai.onnx.ml", version=3)
    return nodes
