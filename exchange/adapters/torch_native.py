"""PyTorch ``nn.Module`` <-> a flonnx definition.

The definition is exported with ``torch.onnx.export(..., dynamo=True, optimize=False)``, which keeps
``state_dict`` names as initializer names and torch's layouts (Gemm ``transB=1``, Conv OIHW), so the
map between module and definition is the identity on names. torch is imported only in this module.
"""

from __future__ import annotations

import contextlib
import io
import logging
import threading
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from flonnx.exchange.definition import Definition
from flonnx.exchange.errors import InvalidModel

if TYPE_CHECKING:
    import torch

__all__ = ["export_module", "load_weights", "module_weights"]

#: Buffers torch keeps that the ONNX export leaves out on purpose.
_NOT_EXPORTED_SUFFIXES = ("num_batches_tracked",)

#: One export at a time per process. ``torch.onnx.export`` is not documented as thread-safe, and its
#: exporter parses onnxscript sources with ``ast.parse``, whose recursion bookkeeping CPython 3.11
#: keeps per interpreter: two threads parsing at once can fail with "SystemError: AST constructor
#: recursion depth mismatch" (seen with nodes run as threads in one process).
_EXPORT_LOCK = threading.Lock()


def export_module(
    module: torch.nn.Module,
    example_input: torch.Tensor,
    *,
    metadata: Mapping[str, str] | None = None,
) -> tuple[Definition, dict[str, np.ndarray]]:
    """Export ``module`` (in eval mode, dynamic batch dimension) to a definition and its weights."""
    import torch

    module = module.eval()
    batch = torch.export.Dim("batch")
    with _EXPORT_LOCK, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        program = torch.onnx.export(
            module,
            (example_input,),
            dynamo=True,
            optimize=False,
            verbose=False,
            input_names=["input"],
            output_names=["logits"],
            dynamic_shapes=({0: batch},),
        )
    if program is None:
        raise InvalidModel("torch.onnx.export returned no program")
    model = program.model_proto
    for key, value in sorted((metadata or {}).items()):
        model.metadata_props.add(key=key, value=value)
    definition, weights = Definition.from_model(model)
    native = module_weights(module, definition)
    for name, tensor in weights.items():
        if not np.array_equal(tensor, native[name]):
            raise InvalidModel(f"export changed tensor {name!r}; flonnx needs unoptimised exports")
    return definition, weights


def load_weights(module: torch.nn.Module, definition: Definition, weights: Mapping[str, np.ndarray]) -> None:
    """Copy definition weights into ``module`` by name; every name must match exactly."""
    import torch

    state = module.state_dict()
    expected = {k for k in state if not k.endswith(_NOT_EXPORTED_SUFFIXES)}
    if expected != set(definition.specs):
        raise InvalidModel(
            "module and definition disagree on tensor names: only in module "
            f"{sorted(expected - set(definition.specs))}, only in definition "
            f"{sorted(set(definition.specs) - expected)}"
        )
    with torch.no_grad():
        for name in expected:
            value = torch.from_numpy(np.array(weights[name], copy=True))
            if tuple(value.shape) != tuple(state[name].shape):
                raise InvalidModel(
                    f"tensor {name!r}: module has shape {list(state[name].shape)}, weights "
                    f"{list(value.shape)}"
                )
            state[name].copy_(value)


def module_weights(module: torch.nn.Module, definition: Definition) -> dict[str, np.ndarray]:
    """The module's tensors named in ``definition``, as numpy arrays of the definition's dtypes."""
    state = module.state_dict()
    return {
        name: state[name].detach().cpu().numpy().astype(spec.dtype, copy=True)
        for name, spec in definition.specs.items()
    }
