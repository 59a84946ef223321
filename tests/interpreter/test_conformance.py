"""The ONNX backend test suite's included cases pass on every installed backend.

The include list and its exclusions live in ``exchange/interpreter/_conformance_cases.py``; the
same run is available as ``python -m flonnx.exchange.interpreter.conformance``.
"""

from __future__ import annotations

import numpy as np
import pytest

from flonnx.exchange.interpreter import Program
from flonnx.exchange.interpreter._conformance_cases import NODE_OPS
from flonnx.exchange.interpreter._registry import GENERIC
from flonnx.exchange.interpreter.conformance import CATEGORIES, Case, exclusion, load_cases, run_case
from tests.interpreter.conftest import ALL_BACKENDS, require_backend

#: Lower bounds on the number of included cases, so a broken loader cannot pass vacuously.
MINIMUM_INCLUDED = {"node": 900, "pytorch-converted": 80, "pytorch-operator": 35, "simple": 7, "light": 9}

#: JAX compiles every eager op for each new shape (about 0.1 s per node case), so pytest runs a
#: subset there; the CLI runs everything. Reason per category:
JAX_SUBSET_REASON = {
    "node": "only the single-op cases; the *_expanded function bodies reuse the same ops",
    "light": "only squeezenet and shufflenet; the other seven take ~10 s each in eager jax",
}
JAX_LIGHT_SUBSET = ("test_squeezenet", "test_shufflenet")


def _is_expanded(name: str) -> bool:
    return name.endswith("_expanded") or "_expanded_ver" in name


def _included(category: str, backend: str) -> list[Case]:
    cases = [c for c in load_cases(category) if exclusion(c.name, backend) is None]
    if backend == "jax" and category == "node":
        cases = [c for c in cases if not _is_expanded(c.name)]
    if backend == "jax" and category == "light":
        cases = [c for c in cases if c.name in JAX_LIGHT_SUBSET]
    return cases


@pytest.mark.parametrize("category", CATEGORIES)
@pytest.mark.parametrize("backend_name", ALL_BACKENDS)
def test_included_conformance_cases_match_reference_outputs(backend_name: str, category: str) -> None:
    require_backend(backend_name)
    cases = _included(category, backend_name)
    if backend_name != "jax" or category not in JAX_SUBSET_REASON:
        assert len(cases) >= MINIMUM_INCLUDED[category]

    failures = [r for r in (run_case(c, backend_name) for c in cases) if not r.passed]

    assert not failures, "\n".join(f"{r.case}: {r.detail}" for r in failures)


#: Operators whose node cases are also run under jax.jit (the ones exported training graphs use).
JIT_OPS = (
    "Gemm MatMul Add Sub Mul Div Relu Sigmoid Tanh Softmax LogSoftmax Conv MaxPool AveragePool "
    "GlobalAveragePool BatchNormalization Flatten Reshape Shape Gather Squeeze Unsqueeze Concat "
    "Transpose Identity Cast ReduceMean ReduceSum"
).split()


def _jit_cases() -> list[Case]:
    chosen, per_op = [], dict.fromkeys(JIT_OPS, 0)
    for case in load_cases("node"):
        ops = {n.op_type for n in case.model.graph.node}
        if len(ops) != 1 or _is_expanded(case.name) or exclusion(case.name, "jax"):
            continue
        (op_type,) = ops
        if op_type in per_op and per_op[op_type] < 3:
            per_op[op_type] += 1
            chosen.append(case)
    return chosen


def test_node_cases_of_training_ops_match_reference_under_jax_jit() -> None:
    require_backend("jax")
    import jax
    import jax.numpy as jnp

    cases = _jit_cases()
    assert len(cases) >= 60
    failures = []
    for case in cases:
        program = Program(case.model, "jax")
        feeds = {n: np.asarray(v) for n, v in zip(program.input_names, case.inputs, strict=False)}
        # Float inputs are traced; integer ones (shapes, indices) stay concrete, as in a model.
        traced = {n: v for n, v in feeds.items() if v.dtype.kind == "f"}
        fixed = {n: jnp.asarray(v) for n, v in feeds.items() if v.dtype.kind != "f"}
        run = jax.jit(lambda t, fixed=fixed, program=program: program.run({}, {**t, **fixed})[0])
        outputs = run(traced)
        for name, ref in zip(program.output_names, case.outputs, strict=False):
            try:
                np.testing.assert_allclose(np.asarray(outputs[name]), ref, rtol=case.rtol, atol=case.atol)
            except AssertionError as exc:
                failures.append(f"{case.name}: {exc}")
    assert not failures, "\n".join(failures)


def test_every_listed_node_op_has_an_implementation() -> None:
    registered = {op_type for domain, op_type in GENERIC.op_types() if domain == ""}

    assert NODE_OPS - registered == set()
