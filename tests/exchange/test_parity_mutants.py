"""The parity gate's arithmetic, on hand-made outputs and a one-MatMul definition (fast, no framework).

``tests/exchange/test_check.py`` runs the gate through ``flonnx check`` on real exports; these tests
pin what it computes: the differences, the tolerances it passes at, and what it calls a failure.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from flonnx.exchange.definition import Definition
from flonnx.exchange.errors import ParityError
from flonnx.exchange.ort import probe_inputs
from flonnx.exchange.parity import DEFAULT_ATOL, DEFAULT_RTOL, ParityReport, check_parity, compare_outputs
from tests.tiny_models import matmul_definition

INF = float("inf")


def _matmul() -> tuple[Definition, dict[str, np.ndarray]]:
    return matmul_definition()


def test_differences_are_the_largest_absolute_and_relative_ones_over_every_output() -> None:
    reference = {"a": np.array([2.0, -4.0, 8.0]), "b": np.array([[-0.5]], np.float32)}
    actual = {"a": np.array([2.5, -3.0, 8.0]), "b": np.array([[-0.25]], np.float32)}

    report = compare_outputs(reference, actual, atol=0.1, rtol=0.2)

    # a: |diff| 0.5 and 1.0, relative 0.25 and 0.25; b: |diff| 0.25, relative 0.5
    assert (report.max_abs, report.max_rel, report.atol, report.rtol) == (1.0, 0.5, 0.1, 0.2)


def test_the_largest_difference_is_kept_whichever_output_has_it() -> None:
    small, large = np.array([1.0]), np.array([3.0])

    first = compare_outputs({"a": np.array([2.0]), "b": small}, {"a": large, "b": small})
    last = compare_outputs({"a": small, "b": np.array([2.0])}, {"a": small, "b": large})

    assert (first.max_abs, first.max_rel) == (last.max_abs, last.max_rel) == (1.0, 0.5)


def test_a_zero_reference_divides_by_a_tiny_floor_not_by_one() -> None:
    report = compare_outputs({"y": np.array([0.0, 1.0])}, {"y": np.array([1e-9, 1.0])})

    assert report.max_abs == pytest.approx(1e-9)
    assert report.max_rel == pytest.approx(1e3)


def test_identical_or_empty_outputs_differ_by_nothing_and_pass() -> None:
    same = compare_outputs({"y": np.arange(3.0)}, {"y": np.arange(3.0)})
    empty = compare_outputs({"y": np.zeros((0, 3))}, {"y": np.zeros((0, 3))})
    none = compare_outputs({}, {"extra": np.ones(2)})

    for report in (same, empty, none):
        assert (report.max_abs, report.max_rel) == (0.0, 0.0) and report.passed
    assert (same.atol, same.rtol) == (DEFAULT_ATOL, DEFAULT_RTOL) == (1e-4, 1e-3)


@pytest.mark.parametrize("actual", [
    {},  # the output is missing
    {"y": np.ones((2, 1))},  # broadcastable, but not the same shape
    {"y": np.ones(3)},
    {"y": np.ones(1)},  # broadcastable the other way
    {"y": np.array([1.0, np.nan])},
    {"y": np.array([np.inf, 1.0])},
], ids=["missing", "broadcastable-shape", "longer", "shorter", "nan", "inf"])
def test_a_missing_misshapen_or_non_finite_output_is_infinitely_different(actual) -> None:  # type: ignore[no-untyped-def]
    report = compare_outputs({"y": np.ones(2)}, actual, atol=1.0, rtol=1.0)

    assert (report.max_abs, report.max_rel, report.atol, report.rtol) == (INF, INF, 1.0, 1.0)
    assert not report.passed


@pytest.mark.parametrize(("max_abs", "max_rel", "passed"), [
    (1e-4, 1.0, True),  # absolute difference exactly at atol
    (1.0, 1e-3, True),  # relative difference exactly at rtol
    (5e-5, 1e3, True),  # an absolute difference within atol passes near a zero reference
    (1e3, 5e-4, True),  # a relative difference within rtol passes on large values
    (1.1e-4, 1.1e-3, False),  # both just beyond
    (INF, INF, False),
])
def test_a_report_passes_when_either_difference_is_within_its_tolerance(max_abs, max_rel, passed) -> None:  # type: ignore[no-untyped-def]
    assert ParityReport(max_abs, max_rel, 1e-4, 1e-3).passed is passed


def test_a_report_cannot_be_edited_after_the_check() -> None:
    report = ParityReport(INF, INF, 1e-4, 1e-3)

    with pytest.raises(dataclasses.FrozenInstanceError):
        report.max_abs = 0.0  # type: ignore[misc]
    assert not report.passed


def test_default_tolerances_pass_float32_rounding_and_fail_a_real_difference() -> None:
    reference = {"y": np.array([100.0, -3.0])}

    rounding = compare_outputs(reference, {"y": np.array([100.0 + 5e-3, -3.0])})  # rel 5e-5
    wrong = compare_outputs(reference, {"y": np.array([100.0, -3.01])})  # abs 1e-2, rel 3.3e-3

    assert rounding.passed and not wrong.passed


def test_describe_names_both_differences_and_tolerances() -> None:
    report = ParityReport(0.5, 0.25, 1e-4, 1e-3)

    assert report.describe() == "max abs diff 0.5 (atol 0.0001), max rel diff 0.25 (rtol 0.001)"


def test_check_parity_passes_a_framework_that_computes_what_onnx_runtime_computes() -> None:
    definition, weights = _matmul()
    seen: list[dict[str, np.ndarray]] = []

    def run(probes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        seen.append(probes)
        return {"y": probes["x"].astype(np.float64) @ weights["w"].astype(np.float64)}

    report = check_parity(definition, weights, run, framework="numpy")

    assert report.passed and report.max_abs < 1e-5
    assert (report.atol, report.rtol) == (DEFAULT_ATOL, DEFAULT_RTOL)
    (probes,) = seen
    assert np.array_equal(probes["x"], probe_inputs(definition, seed=0)["x"])  # seed 0 by default


def test_check_parity_probes_with_the_given_seed() -> None:
    definition, weights = _matmul()
    seen: list[np.ndarray] = []

    def run(probes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        seen.append(probes["x"])
        return {"y": probes["x"] @ weights["w"]}

    check_parity(definition, weights, run, framework="numpy", seed=3)

    assert np.array_equal(seen[0], probe_inputs(definition, seed=3)["x"])
    assert not np.array_equal(seen[0], probe_inputs(definition, seed=0)["x"])


def test_check_parity_raises_naming_the_framework_the_definition_and_the_differences() -> None:
    definition, weights = _matmul()

    def run(probes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": probes["x"] @ weights["w"] + 0.5}

    with pytest.raises(ParityError) as raised:
        check_parity(definition, weights, run, framework="ghost", atol=0.1, rtol=1e-9)

    message = str(raised.value)
    assert message.startswith(f"ghost does not reproduce ONNX Runtime on definition {definition.id[:12]}: "
                              "max abs diff 0.5 (atol 0.1), max rel diff ")
    assert message.endswith("(rtol 1e-09)")
    assert raised.value.max_abs == pytest.approx(0.5, abs=1e-6) and 0 < raised.value.max_rel < INF


def test_check_parity_compares_against_the_transformed_reference() -> None:
    definition, weights = _matmul()

    def run(probes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"total": (probes["x"] @ weights["w"]).sum(axis=1)}

    report = check_parity(definition, weights, run, framework="derived",
                          transform_reference=lambda ref: {"total": ref["y"].sum(axis=1)})

    assert report.passed and report.max_abs < 1e-5
