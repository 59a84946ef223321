"""Run the ONNX backend test suite shipped in the ``onnx`` wheel against the interpreter.

Categories:
    node: single-operator cases, generated in memory by ``onnx.backend.test.case.node`` (the
        wheel ships their generators, not their data); included when every operator is in
        ``NODE_OPS``.
    pytorch-converted, pytorch-operator, simple: model directories with input/output ``.pb``.
    light: the ``light_*`` models (real architectures, constant weights) with the dummy input
        the ONNX runner uses and the reference output stored beside them.

The ``real`` directory only points at the light models, so it is not run twice.

Usage::

    python -m flonnx.exchange.interpreter.conformance [--backend numpy|torch|jax|all] [--category ...]
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import functools
import io
import os
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from flonnx.exchange.interpreter._conformance_cases import (
    BACKEND_EXCLUDED,
    EXCLUDED,
    MODEL_CATEGORIES,
    NODE_OPS,
)
from flonnx.exchange.interpreter.backend import available_backends, load_backend
from flonnx.exchange.interpreter.program import Program

__all__ = ["CATEGORIES", "Case", "Result", "exclusion", "load_cases", "run_case", "main"]

CATEGORIES = ("node", *MODEL_CATEGORIES)
DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"


@dataclass(frozen=True)
class Case:
    """One test model with one data set."""

    name: str
    category: str
    model: onnx.ModelProto
    inputs: tuple[Any, ...]
    outputs: tuple[Any, ...]
    rtol: float = 1e-3
    atol: float = 1e-7


@dataclass(frozen=True)
class Result:
    """The outcome of one case on one backend."""

    case: str
    passed: bool
    detail: str = ""


@functools.cache
def _node_cases() -> tuple[Case, ...]:
    from onnx.backend.test.case import node

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        raw = node.collect_testcases()
    cases = []
    for tc in raw:
        model, data = tc.model, tc.data_sets
        if model is None or not data:
            continue
        ops = {n.op_type for n in model.graph.node}
        domains = {n.domain for n in model.graph.node}
        if not ops <= NODE_OPS or not domains <= {"", "ai.onnx"}:
            continue
        inputs, outputs = (tuple(_as_array(v) for v in values) for values in data[0])
        cases.append(Case(tc.name, "node", model, inputs, outputs, tc.rtol, tc.atol))
    return tuple(cases)


def _as_array(value: Any) -> Any:
    return numpy_helper.to_array(value) if isinstance(value, onnx.TensorProto) else value


def _read_tensor(path: Path) -> Any:
    tensor = onnx.TensorProto()
    tensor.ParseFromString(path.read_bytes())
    return numpy_helper.to_array(tensor)


def _dir_cases(category: str) -> Iterator[Case]:
    for directory in sorted((DATA / category).iterdir()):
        model = onnx.load(str(directory / "model.onnx"))
        data = sorted(directory.glob("test_data_set_*"))
        if not data:
            continue
        try:
            inputs = tuple(_read_tensor(p) for p in sorted(data[0].glob("input_*.pb")))
            outputs = tuple(_read_tensor(p) for p in sorted(data[0].glob("output_*.pb")))
        except Exception:  # noqa: BLE001 - sequence protos do not parse as tensors
            inputs, outputs = (), ()
        yield Case(directory.name, category, model, inputs, outputs)


def _light_cases() -> Iterator[Case]:
    for path in sorted((DATA / "light").glob("light_*.onnx")):
        name = path.stem.removeprefix("light_")
        model = onnx.load(str(path))
        inits = {i.name for i in model.graph.initializer}
        inputs = []
        for value in model.graph.input:
            if value.name in inits:
                continue
            shape = tuple(d.dim_value or 1 for d in value.type.tensor_type.shape.dim)
            n = int(np.prod(shape))
            # The ONNX runner's deterministic dummy input (runner.generate_dummy_data).
            inputs.append((np.arange(n).reshape(shape) / n).astype(np.float32))
        outputs = [
            _read_tensor(path.parent / f"light_{name}_output_{i}.pb") for i in range(len(model.graph.output))
        ]
        rtol = 2e-3 if name == "densenet121" else 1e-3
        yield Case(f"test_{name}", "light", model, tuple(inputs), tuple(outputs), rtol, 1e-7)


def load_cases(category: str) -> list[Case]:
    """All cases of a category (included or not)."""
    if category == "node":
        return list(_node_cases())
    if category == "light":
        return list(_light_cases())
    return list(_dir_cases(category))


def exclusion(case: str, backend: str) -> str | None:
    """Why ``case`` is not run on ``backend``, or None if it is included."""
    for pattern, reason in (EXCLUDED | BACKEND_EXCLUDED.get(backend, {})).items():
        if fnmatch.fnmatchcase(case, pattern):
            return reason
    return None


def _compare(name: str, ref: np.ndarray, out: np.ndarray, case: Case, backend: str) -> str | None:
    ref = np.asarray(ref)
    if ref.dtype != out.dtype:
        narrowed = {
            np.dtype(np.int64): np.int32,
            np.dtype(np.float64): np.float32,
            np.dtype(np.uint64): np.uint32,
        }
        if not (backend == "jax" and narrowed.get(ref.dtype) == out.dtype):
            return f"{name}: dtype {out.dtype}, expected {ref.dtype}"
    if ref.shape != out.shape:
        return f"{name}: shape {out.shape}, expected {ref.shape}"
    if ref.dtype.kind in "OSU":
        return None if np.array_equal(ref, out) else f"{name}: values differ"
    try:
        np.testing.assert_allclose(out, ref.astype(out.dtype), rtol=case.rtol, atol=case.atol)
    except AssertionError as exc:
        return f"{name}: {str(exc).strip().splitlines()[2] if len(str(exc).splitlines()) > 2 else exc}"
    return None


def run_case(case: Case, backend: str) -> Result:
    """Run one case on one backend and compare with the stored reference outputs."""
    be = load_backend(backend)
    try:
        program = Program(case.model, backend)
        feeds = {
            name: be.asarray(np.asarray(value))
            for name, value in zip(program.input_names, case.inputs, strict=False)
        }
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            outputs, _ = program.run({}, feeds)
        problems = []
        for name, ref in zip(program.output_names, case.outputs, strict=False):
            problem = _compare(name, ref, be.to_numpy(outputs[name]), case, backend)
            if problem:
                problems.append(problem)
        return Result(case.name, not problems, "; ".join(problems))
    except Exception as exc:  # noqa: BLE001 - a conformance run records every failure
        return Result(case.name, False, f"{type(exc).__name__}: {exc}".splitlines()[0][:300])


def run_category(category: str, backend: str, *, include_excluded: bool = False) -> tuple[list[Result], int]:
    """Run the included cases of a category; returns the results and the number excluded."""
    results, excluded = [], 0
    for case in load_cases(category):
        if exclusion(case.name, backend) and not include_excluded:
            excluded += 1
            continue
        results.append(run_case(case, backend))
    return results, excluded


def main(argv: list[str] | None = None) -> int:
    """Print pass/fail counts per backend and category; exit 1 if an included case fails."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="all", choices=["all", "numpy", "torch", "jax"])
    parser.add_argument("--category", default="all", choices=["all", *CATEGORIES])
    parser.add_argument("--verbose", "-v", action="store_true", help="list every failure")
    parser.add_argument("--include-excluded", action="store_true", help="also run the exclusions")
    args = parser.parse_args(argv)
    backends = available_backends() if args.backend == "all" else [args.backend]
    categories = CATEGORIES if args.category == "all" else (args.category,)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    failed = 0
    print(f"{'backend':8} {'category':18} {'pass':>5} {'fail':>5} {'excluded':>8} {'seconds':>8}")
    for backend in backends:
        for category in categories:
            start = time.perf_counter()
            results, excluded = run_category(category, backend, include_excluded=args.include_excluded)
            bad = [r for r in results if not r.passed]
            failed += len(bad)
            elapsed = time.perf_counter() - start
            passed = len(results) - len(bad)
            print(f"{backend:8} {category:18} {passed:5d} {len(bad):5d} {excluded:8d} {elapsed:8.1f}")
            if args.verbose:
                for r in bad:
                    print(f"    FAIL {r.case}: {r.detail}")
            sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
