"""A federation's starting model, from the spec's ``model``.

``model`` is a zoo name, an ``.onnx`` file, or ``module:callable`` returning a torch ``nn.Module``
(exported by flonnx) or an ONNX ``ModelProto``.

A model from a file needs no ML framework: ONNX Runtime checks it. A file whose opset is older than
ONNX Runtime supports is upgraded with ONNX's version converter and checked against
``onnx.reference`` (:mod:`flonnx.exchange.upgrade`); the conversion is returned so the run records it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from flonnx.exchange.definition import MAX_MODEL_BYTES, Definition, load_model_bytes
from flonnx.exchange.errors import InvalidModel
from flonnx.exchange.seeds import derive_seed

__all__ = [
    "StartingModel", "input_dims", "input_width", "load_starting_model", "read_user_model", "with_metadata",
]


@dataclass(frozen=True)
class StartingModel:
    """The initial definition and weights, and where they came from (recorded with the run)."""

    model: onnx.ModelProto
    origin: dict[str, Any] = field(default_factory=dict)


def input_dims(model: onnx.ModelProto) -> tuple[int, ...] | None:
    """One example's shape (the non-batch dims) of the single data input, if static."""
    inits = {t.name for t in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in inits]
    if len(inputs) != 1:
        raise InvalidModel(f"a federated model needs exactly one data input, this one has "
                           f"{[v.name for v in inputs]}")
    dims = inputs[0].type.tensor_type.shape.dim[1:]
    if not dims or any(not d.HasField("dim_value") or d.dim_value <= 0 for d in dims):
        return None
    return tuple(int(d.dim_value) for d in dims)


def input_width(model: onnx.ModelProto) -> int | None:
    """Features per example of the single data input (product of its non-batch dims), if static."""
    dims = input_dims(model)
    return None if dims is None else int(np.prod(dims))


def _export_torch(module: Any, shape: tuple[int, ...], name: str | None) -> onnx.ModelProto:
    import torch

    from flonnx.exchange.adapters.torch_native import export_module

    metadata = {"flonnx.model": name} if name else {}
    definition, weights = export_module(module, torch.zeros((2, *shape)), metadata=metadata)
    return definition.materialize(weights)


def load_starting_model(ref: str, *, seed: int, input_shape: tuple[int, ...] | None) -> StartingModel:
    """The model ``ref`` names, seeded by ``seed`` where flonnx initialises it."""
    if ref.endswith(".onnx"):
        path = Path(ref)
        model = read_user_model(path)
        from flonnx.exchange.upgrade import upgrade_user_model

        model, conversion = upgrade_user_model(model)
        origin: dict[str, Any] = {"kind": "file", "name": path.name}
        if conversion is not None:
            origin["conversion"] = conversion.to_json()
        return StartingModel(model, origin)
    from flonnx.exchange.zoo import MODELS, model_spec

    zoo = model_spec(ref)
    if zoo is not None:
        import torch

        torch.manual_seed(derive_seed(seed, "init"))
        model = _export_torch(zoo.builder(), zoo.input_shape, ref)
        return StartingModel(model, {"kind": "zoo", "name": ref})
    module_name, sep, attr = ref.partition(":")
    if not sep:
        raise InvalidModel(f"model {ref!r} is neither a zoo name ({', '.join(sorted(MODELS))}), an "
                           ".onnx file nor module:callable")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise InvalidModel(f"cannot import model factory {ref}: {exc}") from exc
    if "torch" in __import__("sys").modules:
        import torch

        torch.manual_seed(derive_seed(seed, "init"))
    built = factory()
    if isinstance(built, onnx.ModelProto):
        return StartingModel(built, {"kind": "callable", "name": ref})
    if type(built).__module__.startswith("torch") or hasattr(built, "state_dict"):
        if input_shape is None:
            raise InvalidModel(f"{ref} returned a torch module: give its per-example input shape "
                               "in the spec (input-shape = [30])")
        return StartingModel(_export_torch(built, input_shape, None), {"kind": "callable", "name": ref})
    raise InvalidModel(f"{ref} returned {type(built).__name__}; expected a torch nn.Module or an "
                       "onnx.ModelProto")


def read_user_model(path: Path) -> onnx.ModelProto:
    """A user's own ``.onnx`` file, self-contained.

    Exporters (``torch.onnx.export`` among them) may keep weights in a ``.data`` file beside the
    model. For the coordinator's own file those are read in, but only from plain files in the
    model's own folder (no path separators, no ``..``, no symlinks) and within the size cap; a
    definition received from elsewhere never has external data (:func:`load_model_bytes`).
    """
    try:
        size = path.stat().st_size
        if size > MAX_MODEL_BYTES:
            raise InvalidModel(f"model file {path} is {size} bytes; the limit is {MAX_MODEL_BYTES}")
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidModel(f"cannot read model file {path}: {exc.strerror or exc}") from exc
    try:
        return load_model_bytes(data)
    except InvalidModel as exc:
        if "external data" not in str(exc):
            raise
    model = onnx.load_model_from_string(data)
    folder = path.resolve().parent
    total = len(data)
    for tensor in model.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        target = folder / location
        if (not location or Path(location).name != location or location in (".", "..")
                or target.is_symlink() or not target.is_file()):
            raise InvalidModel(f"initializer {tensor.name!r} of {path.name} points to external data "
                               f"{location!r}: only a plain file beside the model is read")
        total += int(info.get("length", target.stat().st_size))
        if total > MAX_MODEL_BYTES:
            raise InvalidModel(f"{path.name} with its external data exceeds {MAX_MODEL_BYTES} bytes")
    try:
        onnx.load_external_data_for_model(model, str(folder))
    except (OSError, ValueError) as exc:
        raise InvalidModel(f"cannot read the external data of {path.name}: {exc}") from exc
    return load_model_bytes(model.SerializeToString())


def with_metadata(
    model: onnx.ModelProto, metadata: dict[str, str]
) -> tuple[Definition, dict[str, np.ndarray]]:
    """``model`` with ``flonnx.*`` metadata set, split into definition and weights."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    kept = [(p.key, p.value) for p in out.metadata_props if p.key not in metadata]
    out.ClearField("metadata_props")
    for key, value in [*kept, *sorted(metadata.items())]:
        out.metadata_props.add(key=key, value=value)
    return Definition.from_model(out)
