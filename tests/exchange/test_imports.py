"""exchange/ works without Flower or any ML framework: a client with one framework needs only that one."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BLOCKED = ("torch", "jax", "jaxlib", "optax", "sklearn", "flwr", "tensorflow", "keras", "ray")

PROGRAM = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ImportError("blocked for this test: " + name)
sys.meta_path.insert(0, Block())
import numpy as np
import flonnx.exchange.adapters.dense_chain, flonnx.exchange.check, flonnx.exchange.definition
import flonnx.exchange.export, flonnx.exchange.hashing, flonnx.exchange.lineage, flonnx.exchange.ort
import flonnx.exchange.parity, flonnx.exchange.registry, flonnx.exchange.serde, flonnx.exchange.seeds
import flonnx.exchange.wire, flonnx.exchange.interpreter
from onnx import TensorProto, helper
from flonnx.exchange.definition import Definition
from flonnx.exchange.interpreter import Program
w = helper.make_tensor("w", TensorProto.FLOAT, [2, 2], [1.0, 2.0, 3.0, 4.0])
g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], initializer=[w])
model = helper.make_model(g)
definition, weights = Definition.from_model(model)
out, _ = Program(model, backend="numpy").run(weights, {{"x": np.ones((1, 2), np.float32)}})
assert out["y"].tolist() == [[4.0, 6.0]], out
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {BLOCKED!r})
assert not loaded, loaded
print("ok", definition.id[:12])
"""


def test_exchange_imports_and_runs_with_frameworks_and_flower_blocked() -> None:
    result = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, cwd=ROOT,
                            timeout=120)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")


def test_no_exchange_module_imports_flower_or_a_framework_at_top_level() -> None:
    offenders = []
    for path in (ROOT / "exchange").rglob("*.py"):
        own_framework = next((f for f in BLOCKED if f in path.stem), None)
        for node in ast.parse(path.read_text()).body:
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top == "flwr" or (top in BLOCKED and top != own_framework):
                    offenders.append(f"{path.relative_to(ROOT)}: {name}")

    assert offenders == []
