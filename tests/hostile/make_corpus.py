"""The hostile ONNX corpus of docs/reliability.md ("Hostile input"), built with ``onnx.helper``.

``python -m tests.hostile.make_corpus DIR`` writes every case into ``DIR`` (each in a folder of its
own, with whatever files its external data points at); the tests build it into a temporary folder.
Every file is a few KB at most: the bombs are small graphs that *ask* for terabytes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["CASES", "ENTRY_POINTS", "Case", "build"]

#: Where a client or coordinator reads an ONNX graph (tests/hostile/_worker.py runs each).
ENTRY_POINTS = ("definition", "coordinator", "interpreter", "ort")

TERA = 1 << 40


@dataclass(frozen=True)
class Case:
    """One hostile file and what each entry point must do with it."""

    name: str
    make: Callable[[Path], Path]
    #: entry point -> error class it must raise ("" = accepted: valid ONNX flonnx can run or store)
    expected: dict[str, str]
    #: a substring of the one-line message, per entry point (default: any)
    message: dict[str, str] = field(default_factory=dict)
    #: the id announced with the definition (the id-mismatch case)
    announced_id: str | None = None


def _model(nodes: list[onnx.NodeProto], inits: list[TensorProto] | None = None, *,
           inputs: list[onnx.ValueInfoProto] | None = None, outputs: list[onnx.ValueInfoProto] | None = None,
           opsets: dict[str, int] | None = None) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "hostile",
        inputs if inputs is not None else [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        outputs if outputs is not None else [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=inits or [],
    )
    imports = [helper.make_opsetid(d, v) for d, v in (opsets or {"": 17}).items()]
    model = helper.make_model(graph, opset_imports=imports)
    model.ir_version = 8
    return model


def _write(folder: Path, model: onnx.ModelProto) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def _i64(name: str, values: list[int]) -> TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)


def _f32(name: str, values: list[float]) -> TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=np.float32), name)


def _external(folder: Path, location: str) -> Path:
    """A Gemm whose weight is external data at ``location`` (a secret beside the folder exists)."""
    (folder.parent / "secret.bin").write_bytes(np.arange(16, dtype=np.float32).tobytes())
    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4, 4])
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "64")):
        w.external_data.add(key=key, value=value)
    return _write(folder, _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [w]))


def _symlink(folder: Path) -> Path:
    path = _external(folder, "weights.bin")
    os.symlink(folder.parent / "secret.bin", folder / "weights.bin")
    return path


def _huge_dims(folder: Path) -> Path:
    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4, 1 << 38])  # 4 TiB, no data
    return _write(folder, _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [w]))


def _deep(folder: Path) -> Path:
    n = 100_000
    nodes = [helper.make_node("Relu", ["x" if i == 0 else f"h{i}"], ["y" if i == n - 1 else f"h{i + 1}"])
             for i in range(n)]
    return _write(folder, _model(nodes))


def _cycle(folder: Path) -> Path:
    nodes = [helper.make_node("Add", ["x", "b"], ["a"]), helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Identity", ["b"], ["y"])]
    return _write(folder, _model(nodes))


def _if(folder: Path) -> Path:
    def branch(name: str, op: str) -> onnx.GraphProto:
        return helper.make_graph([helper.make_node(op, ["x"], [f"{name}_y"])], name, [],
                                 [helper.make_tensor_value_info(f"{name}_y", TensorProto.FLOAT, [1, 4])])
    nodes = [helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.array(True), "c")),
             helper.make_node("If", ["c"], ["y"], then_branch=branch("then", "Relu"),
                              else_branch=branch("else", "Neg"))]
    return _write(folder, _model(nodes))


def _loop_bomb(folder: Path) -> Path:
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("ConstantOfShape", ["big"], ["z"]),
         helper.make_node("ReduceSum", ["z"], ["s"], keepdims=0),
         helper.make_node("Add", ["acc_in", "s"], ["acc_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [])],
        initializer=[_i64("big", [TERA])],
    )
    nodes = [helper.make_node("Loop", ["n", "", "acc0"], ["y"], body=body)]
    return _write(folder, _model(nodes, [_i64("n", [1]), _f32("acc0", [0.0])]))


def _unknown_domain(folder: Path) -> Path:
    return _write(folder, _model([helper.make_node("Steal", ["x"], ["y"], domain="evil.corp")],
                                 opsets={"": 17, "evil.corp": 1}))


def _custom_op(folder: Path) -> Path:
    return _write(folder, _model([helper.make_node("StealWeights", ["x"], ["y"])]))


def _duplicate_output(folder: Path) -> Path:
    nodes = [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Neg", ["x"], ["y"])]
    return _write(folder, _model(nodes))


def _output_shadows_initializer(folder: Path) -> Path:
    nodes = [helper.make_node("Neg", ["x"], ["b"]), helper.make_node("Add", ["x", "b"], ["y"])]
    return _write(folder, _model(nodes, [_f32("b", [1.0, 2.0, 3.0, 4.0])]))


def _duplicate_initializer(folder: Path) -> Path:
    nodes = [helper.make_node("Add", ["x", "b"], ["y"])]
    return _write(folder, _model(nodes, [_f32("b", [1.0] * 4), _f32("b", [2.0] * 4)]))


def _initializer_shadows_input(folder: Path) -> Path:
    # ONNX semantics (IR >= 4): an initializer named like an input is that input's default value.
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
              helper.make_tensor_value_info("b", TensorProto.FLOAT, [4])]
    nodes = [helper.make_node("Add", ["x", "b"], ["y"])]
    return _write(folder, _model(nodes, [_f32("b", [1.0] * 4)], inputs=inputs))


def _bomb(op: str) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        if op == "ConstantOfShape":
            nodes = [helper.make_node("ConstantOfShape", ["s"], ["y"])]
            inits = [_i64("s", [1 << 20, 1 << 20])]
        elif op == "ConstantOfShape-computed":  # shape = Mul of two constants: no literal terabyte
            nodes = [helper.make_node("Constant", [], ["a"], value_ints=[1 << 20, 1 << 20]),
                     helper.make_node("Mul", ["a", "k"], ["s"]),
                     helper.make_node("ConstantOfShape", ["s"], ["y"])]
            inits = [_i64("k", [1])]
        elif op == "ConstantOfShape-runtime":  # shape from the input's shape: only known at run time
            nodes = [helper.make_node("Shape", ["x"], ["sx"]), helper.make_node("Mul", ["sx", "k"], ["s"]),
                     helper.make_node("ConstantOfShape", ["s"], ["y"])]
            inits = [_i64("k", [1 << 20, 1 << 18])]
        elif op == "Expand":
            nodes, inits = [helper.make_node("Expand", ["x", "s"], ["y"])], [_i64("s", [1 << 38, 4])]
        elif op == "Tile":
            nodes, inits = [helper.make_node("Tile", ["x", "r"], ["y"])], [_i64("r", [1 << 20, 1 << 20])]
        elif op == "Range":
            nodes = [helper.make_node("Range", ["a", "b", "d"], ["y"])]
            inits = [numpy_helper.from_array(np.array(0, np.int64), "a"),
                     numpy_helper.from_array(np.array(TERA, np.int64), "b"),
                     numpy_helper.from_array(np.array(1, np.int64), "d")]
        else:  # Pad
            nodes, inits = [helper.make_node("Pad", ["x", "p"], ["y"])], [_i64("p", [0, 0, 0, TERA])]
        out = TensorProto.INT64 if op == "Range" else TensorProto.FLOAT
        return _write(folder, _model(nodes, inits, outputs=[helper.make_tensor_value_info("y", out, None)]))
    return make


def _valid(folder: Path) -> Path:
    w = numpy_helper.from_array(np.full((4, 4), 0.5, np.float32), "w")
    return _write(folder, _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [w]))


def _garbage(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    path.write_bytes(b"\x0a\xff\xff\xff\xff\x0f" + b"\x00" * 64)
    return path


_INVALID = "InvalidModel"
_UNSUPPORTED = "UnsupportedOp"


def _all(error: str = _INVALID, **override: str) -> dict[str, str]:
    return {entry: override.get(entry, error) for entry in ENTRY_POINTS}


CASES: tuple[Case, ...] = (
    Case("external-traversal", lambda f: _external(f, "../secret.bin"), _all(),
         {"coordinator": "only a plain file beside the model", "definition": "external data"}),
    Case("external-absolute", lambda f: _external(f, str(f.parent.resolve() / "secret.bin")), _all(),
         {"coordinator": "only a plain file beside the model", "definition": "external data"}),
    Case("external-symlink", _symlink, _all(),
         {"coordinator": "only a plain file beside the model", "definition": "external data"}),
    Case("huge-dims", _huge_dims, _all(), {"definition": "the limit is"}),
    Case("deep-100k-nodes", _deep, _all(), {"definition": "nodes"}),
    Case("cycle", _cycle, _all(), {"definition": "before it is produced"}),
    Case("control-flow-if", _if, _all("", interpreter=_UNSUPPORTED)),
    Case("control-flow-loop-bomb", _loop_bomb, _all(), {"definition": "would produce"}),
    Case("unknown-domain", _unknown_domain, _all(interpreter=_UNSUPPORTED), {"definition": "evil.corp"}),
    Case("custom-op", _custom_op, _all(interpreter=_UNSUPPORTED), {"definition": "StealWeights"}),
    Case("duplicate-output", _duplicate_output, _all(), {"definition": "writes 'y'"}),
    Case("output-shadows-initializer", _output_shadows_initializer, _all(), {"definition": "writes 'b'"}),
    Case("duplicate-initializer", _duplicate_initializer, _all(), {"definition": "used twice"}),
    Case("initializer-shadows-input", _initializer_shadows_input, _all("")),
    Case("bomb-constantofshape", _bomb("ConstantOfShape"), _all(), {"interpreter": "would produce"}),
    Case("bomb-constantofshape-computed", _bomb("ConstantOfShape-computed"), _all(),
         {"interpreter": "would produce"}),
    Case("bomb-constantofshape-runtime", _bomb("ConstantOfShape-runtime"),
         {"definition": "", "interpreter": _INVALID}, {"interpreter": "ConstantOfShape would produce"}),
    Case("bomb-expand", _bomb("Expand"), _all(), {"interpreter": "would produce"}),
    Case("bomb-tile", _bomb("Tile"), _all(), {"interpreter": "would produce"}),
    Case("bomb-range", _bomb("Range"), _all(), {"interpreter": "would produce"}),
    Case("bomb-pad", _bomb("Pad"), _all(), {"interpreter": "would produce"}),
    Case("not-onnx", _garbage, {"definition": _INVALID, "coordinator": _INVALID},
         {"definition": "not a parseable ONNX model"}),
    Case("id-mismatch", _valid, {"definition": _INVALID}, {"definition": "the sender announced"},
         announced_id="0" * 64),
)


def build(root: Path) -> dict[str, Path]:
    """Write every case under ``root``; case name -> its model file."""
    return {case.name: case.make(root / case.name) for case in CASES}


if __name__ == "__main__":
    for name, path in build(Path(sys.argv[1] if len(sys.argv) > 1 else "hostile-corpus")).items():
        print(f"{name}: {path} ({path.stat().st_size} bytes)")
