"""Feed one hostile file to one entry point, in a process with a bounded address space.

``python tests/hostile/_worker.py ENTRY MODEL [ANNOUNCED_ID]`` prints one JSON line:
``{"outcome": "ok" | "error", "type": ..., "flonnx": bool, "message": ...}``. The address space is
capped (``RLIMIT_AS``) before anything is imported, so an allocation bomb fails inside this process
instead of taking the machine down; the test then sees ``MemoryError`` or a signal, not ``InvalidModel``.
"""

from __future__ import annotations

import json
import resource
import sys

LIMIT_BYTES = 2 << 30  # 2 GiB of address space


def _tiny_inputs(model):  # type: ignore[no-untyped-def]
    import numpy as np
    import onnx

    inits = {t.name for t in model.graph.initializer}
    out = {}
    for value in model.graph.input:
        if value.name in inits:
            continue
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else 1 for d in tensor.shape.dim]
        out[value.name] = np.ones(dims, dtype=onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type))
    return out


def run(entry: str, path: str, announced: str | None) -> None:
    from pathlib import Path

    import onnx

    data = Path(path).read_bytes()
    if entry == "definition":  # what a client does with a received definition
        from flonnx.exchange.definition import Definition

        if announced is None:
            Definition.from_bytes(data)
        else:
            Definition.from_bytes(data, expected_id=announced)
    elif entry == "coordinator":  # a spec's model = "file.onnx"
        from flonnx.exchange.models import load_starting_model

        load_starting_model(path, seed=0, input_shape=None)
    elif entry == "interpreter":  # a client's trainer: compile, then one forward pass on tiny inputs
        from flonnx.exchange.interpreter import Program

        model = onnx.load_model_from_string(data)
        program = Program(model, "numpy")
        program.run({}, _tiny_inputs(model))
    elif entry == "ort":  # evaluation, parity and export checks: a session, then one run
        from flonnx.exchange.ort import run_model

        model = onnx.load_model_from_string(data)
        run_model(model, _tiny_inputs(model))
    else:
        raise SystemExit(f"unknown entry point {entry!r}")


def main() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT_BYTES, LIMIT_BYTES))
    entry, path = sys.argv[1], sys.argv[2]
    announced = sys.argv[3] if len(sys.argv) > 3 else None
    try:
        run(entry, path, announced)
    except BaseException as exc:  # noqa: BLE001 - reported to the test, which judges it
        from flonnx.exchange.errors import FlonnxError

        print(json.dumps({"outcome": "error", "type": type(exc).__name__,
                          "flonnx": isinstance(exc, FlonnxError), "message": str(exc)}))
        return
    print(json.dumps({"outcome": "ok", "type": "", "flonnx": False, "message": ""}))


if __name__ == "__main__":
    main()
