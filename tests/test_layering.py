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
def loaded(*packages):
    return sorted(m for m in sys.modules if any(m == p or m.startswith(p + ".") for p in packages))
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
                 for name in _imported_modules(path)
                 if name == "flonnx.simulations" or name.startswith("flonnx.simulations.")]

    assert files
    assert offenders == []


def test_importing_the_server_and_client_apps_loads_no_simulations_module() -> None:
    program = """
    import flonnx.server.app, flonnx.client.app
    assert not loaded("flonnx.simulations"), loaded("flonnx.simulations")
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
from flonnx.exchange.ort import evaluate_model
from flonnx.exchange.spec import parse_spec
from flonnx.server.federation import Federation, initial_model
from flonnx.server.progress import Reporter
from flonnx.server.settings import Settings

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
    from flonnx.client.trainers import TrainConfig, get_trainer
    from flonnx.exchange.definition import Definition
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
    import flonnx.client.app
    assert sorted(result.weights) == sorted(weights), sorted(result.weights)
    assert loaded({framework!r}), "the trainer did not import its own framework"
    assert not loaded(*BLOCKED), loaded(*BLOCKED)
    print("ok")
    """

    result = _run(program, blocked)

    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ok"


# ---------------------------------------------------------------------------------------------------
# One import name: the repository's folders install as flonnx.exchange, flonnx.server, … (pyproject's
# [tool.setuptools.package-dir]); nothing may import them by their folder names, which a site's
# machine does not have.

_FOLDERS = ("exchange", "server", "client", "simulations")


def test_no_code_or_test_imports_a_folder_by_its_generic_top_level_name() -> None:
    files = [path for folder in (*_FOLDERS, "flonnx", "tests")
             for path in sorted((ROOT / folder).rglob("*.py")) if "_proto" not in path.parts]

    offenders = [f"{path.relative_to(ROOT)}: {name}" for path in files
                 for name in _imported_modules(path) if name.split(".")[0] in _FOLDERS]

    assert len(files) > 100
    assert offenders == []


def test_the_folders_import_only_as_the_flonnx_namespace_outside_the_checkout(tmp_path: Path) -> None:
    # from a directory that is not the checkout, the generic names must not resolve at all
    program = """
    import importlib.util
    import flonnx.client.app, flonnx.exchange.spec, flonnx.server.app, flonnx.simulations.runner
    generic = ("exchange", "server", "client", "simulations")
    assert [importlib.util.find_spec(n) for n in generic] == [None] * 4
    from flonnx.exchange.spec import BUILTIN_SPEC_DIR
    assert (BUILTIN_SPEC_DIR / "digits-mixed.toml").is_file(), BUILTIN_SPEC_DIR
    print("ok")
    """
    source = _BLOCKER.format(blocked=()) + textwrap.dedent(program)
    result = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, cwd=tmp_path,
                            timeout=300)

    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ok"


def test_the_app_bundle_holds_no_python_so_it_cannot_shadow_the_sites_flonnx() -> None:
    # The FAB `flwr run` sends is built exactly as Flower builds it; its components must name modules
    # of the installed flonnx, and it must carry no Python that a SuperNode would put first on sys.path.
    import io
    import tomllib
    import zipfile

    from flwr.cli.build import build_fab_from_disk

    fab = zipfile.ZipFile(io.BytesIO(build_fab_from_disk(ROOT)))
    names = fab.namelist()
    components = tomllib.loads(fab.read("pyproject.toml").decode())["tool"]["flwr"]["app"]["components"]

    assert "pyproject.toml" in names
    assert [n for n in names if n.endswith(".py")] == []
    assert components == {"serverapp": "flonnx.server.app:app", "clientapp": "flonnx.client.app:app"}
