"""``import flonnx.exchange.interpreter`` needs only numpy, onnx and array-api-compat."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import importlib.abc, sys

    BLOCKED = {"torch", "jax", "jaxlib", "sklearn", "skl2onnx", "onnxruntime", "flwr"}

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"blocked import of {name}")
            return None

    sys.meta_path.insert(0, Block())

    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    from flonnx.exchange.interpreter import Program, available_backends, missing_ops

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    out, state = Program(model, "numpy").run({}, {"x": np.array([[-1.0, 0.0, 2.0]] * 2, np.float32)})
    assert out["y"].tolist() == [[0.0, 0.0, 2.0]] * 2, out
    assert missing_ops(model, "numpy") == []
    assert available_backends() == ["numpy"], available_backends()
    print("loaded", sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED))
    """
)


def test_numpy_backend_runs_with_torch_jax_and_sklearn_unimportable() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 0, result.stderr
    assert "loaded []" in result.stdout
