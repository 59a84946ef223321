"""The dependency direction of docs/ARCHITECTURE.md, checked on the code and on a running interpreter.

- ``server`` and ``client`` never import ``simulations`` (a hospital's node runs the simulated
  node's code, without the presets);
- a coordinator whose model is an ONNX file and whose evaluation data is a file needs no ML
  framework;
- a node imports only the framework it trains with.

The runtime checks run in a subprocess whose import system refuses the blocked packages, so an import
of one anywhere on the path fails loudly instead of passing because the package happens to be installed.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = ("torch", "jax", "jaxlib", "optax", "sklearn", "tensorflow", "keras")

# A blocked package is found but cannot be loaded: importing it raises ModuleNotFoundError, and a probe
# with importlib.util.find_spec gets a spec without origin and moves on (torch probes optional packages
# that way; a finder that raises, or None in sys.modules, breaks torch's and scipy's probes, which an
# uninstalled package does not).
_BLOCKER = """
import importlib.abc, importlib.machinery, sys
BLOCKED = {blocked!r}
class Absent(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            return importlib.machinery.ModuleSpec(name, self)
        return None
    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named {{spec.name!r}} (blocked for this test)", name=spec.name)
    def exec_module(self, module):
        pass
sys.meta_path.insert(0, Absent())
def loaded(*tops):
    return sorted(m for m in sys.modules if m.split(".")[0] in tops)
"""


def _run(program: str, blocked: tuple[str, ...], *args: str) -> subprocess.CompletedProcess[str]:
    """``program`` in a fresh interpreter with ``blocked`` packages unimportable; it prints ``ok``."""
    source = _BLOCKER.format(blocked=blocked) + textwrap.dedent(program)
    return subprocess.run([sys.executable, "-c", source, *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def _imported_modules(path: Path) -> list[str]:
    """Every absolute module an ``import`` statement of ``path`` names, at any depth (lazy ones too)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


@pytest.mark.parametrize("package", ["server", "client"])
def test_no_module_of_server_or_client_imports_simulations(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))

    offenders = [f"{path.relative_to(ROOT)}: {name}" for path in files
                 for name in _imported_modules(path) if name.split(".")[0] == "simulations"]

    assert files
    assert offenders == []


def test_importing_the_server_and_client_apps_loads_no_simulations_module() -> None:
    program = """
    import server.app, client.app
    assert not loaded("simulations"), loaded("simulations")
    print("ok")
    """

    result = _run(program, ())

    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ok"


_COORDINATOR = """
import sys
from pathlib import Path
import numpy as np
from onnx import TensorProto, helper, save
from exchange.ort import evaluate_model
from exchange.spec import parse_spec
from server.federation import Federation, initial_model
from server.progress import Reporter
from server.settings import Settings

folder = Path(sys.argv[1])
rng = np.random.default_rng(0)
w = helper.make_tensor("w", TensorProto.FLOAT, [3, 4], rng.normal(size=12).astype(np.float32).tolist())
b = helper.make_tensor("b", TensorProto.FLOAT, [3], [0.0, 0.1, -0.1])
graph = helper.make_graph([helper.make_node("Gemm", ["x", "w", "b"], ["logits"], transB=1)], "mlp",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
    [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])], initializer=[w, b])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 8
save(model, folder / "m.onnx")
x = rng.normal(size=(20, 4)).round(3)
y = rng.integers(0, 3, size=20)
lines = ["a,b,c,d,label", *(",".join(map(str, [*row, int(label)])) for row, label in zip(x, y))]
(folder / "eval.csv").write_text("\\n".join(lines) + "\\n")

spec = parse_spec({"model": str(folder / "m.onnx"), "evaluate": str(folder / "eval.csv"),
                   "task": "classification", "clients": 2, "rounds": 1})
settings = Settings(spec=spec, registry=str(folder / "registry"))
definition, weights, origin = initial_model(settings)
direct = evaluate_model(definition.materialize(weights), x.astype(np.float32), y, "classification")
served = Federation(grid=None, settings=settings, reporter=Reporter()).evaluate(definition, weights)
assert set(direct) == set(served) and "accuracy" in served, (direct, served)
assert abs(direct["accuracy"] - served["accuracy"]) < 1e-6, (direct, served)
assert not loaded(*BLOCKED), loaded(*BLOCKED)
print("ok")
"""


def test_a_coordinator_of_an_onnx_file_with_an_evaluation_file_needs_no_ml_framework(
    tmp_path: Path,
) -> None:
    result = _run(_COORDINATOR, FRAMEWORKS, str(tmp_path))

    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ok"


@pytest.mark.parametrize(("framework", "blocked"), [
    ("torch", ("jax", "jaxlib", "optax", "sklearn", "tensorflow", "keras")),
    ("sklearn", ("torch", "jax", "jaxlib", "optax", "tensorflow", "keras")),
])
def test_a_node_imports_only_its_own_framework(framework: str, blocked: tuple[str, ...]) -> None:
    program = f"""
    import numpy as np
    from onnx import TensorProto, helper
    from client.trainers import TrainConfig, get_trainer
    from exchange.definition import Definition
    rng = np.random.default_rng(0)
    def dense(name, rows, cols):
        values = rng.normal(scale=0.5, size=rows * cols).astype(np.float32).tolist()
        return [helper.make_tensor(name + ".weight", TensorProto.FLOAT, [rows, cols], values),
                helper.make_tensor(name + ".bias", TensorProto.FLOAT, [rows], [0.0] * rows)]
    nodes = [helper.make_node("Gemm", ["x", "fc1.weight", "fc1.bias"], ["h"], transB=1),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "fc2.weight", "fc2.bias"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
        initializer=[*dense("fc1", 8, 4), *dense("fc2", 3, 8)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    definition, weights = Definition.from_model(model)
    x = rng.normal(size=(32, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=32)

    trainer = get_trainer({framework!r})
    config = TrainConfig.from_config({{"local-epochs": 1, "task": "classification"}}, 0)
    result = trainer.train(definition, weights, x, y, config)
    import client.app

    assert sorted(result.weights) == sorted(weights), sorted(result.weights)
    assert loaded({framework!r}), "the trainer did not import its own framework"
    assert not loaded(*BLOCKED), loaded(*BLOCKED)
    print("ok")
    """

    result = _run(program, blocked)

    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ok"
