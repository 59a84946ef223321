"""The parity gate: a framework must compute what ONNX Runtime computes before it may train."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from flonnx.exchange.definition import Definition
from flonnx.exchange.errors import ParityError
from flonnx.exchange.ort import probe_inputs, run_definition

__all__ = ["DEFAULT_ATOL", "DEFAULT_RTOL", "ParityReport", "check_parity", "compare_outputs"]

DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-3


@dataclass(frozen=True)
class ParityReport:
    """Largest differences between a framework's outputs and the reference."""

    max_abs: float
    max_rel: float
    atol: float
    rtol: float

    @property
    def passed(self) -> bool:
        """Whether every element is within ``atol + rtol * |reference|``."""
        return self.max_abs <= self.atol or self.max_rel <= self.rtol

    def describe(self) -> str:
        """One line for logs and errors."""
        return (f"max abs diff {self.max_abs:.3g} (atol {self.atol:g}), max rel diff "
                f"{self.max_rel:.3g} (rtol {self.rtol:g})")


def compare_outputs(
    reference: Mapping[str, np.ndarray],
    actual: Mapping[str, np.ndarray],
    *,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
) -> ParityReport:
    """Compare outputs by name; a missing output or a shape mismatch is infinitely different."""
    max_abs = max_rel = 0.0
    for name, ref in reference.items():
        got = actual.get(name)
        if got is None or np.shape(got) != np.shape(ref):
            return ParityReport(float("inf"), float("inf"), atol, rtol)
        ref64, got64 = np.asarray(ref, np.float64), np.asarray(got, np.float64)
        diff = np.abs(ref64 - got64)
        if not np.all(np.isfinite(diff)):
            return ParityReport(float("inf"), float("inf"), atol, rtol)
        if diff.size:
            max_abs = max(max_abs, float(diff.max()))
            max_rel = max(max_rel, float((diff / np.maximum(np.abs(ref64), 1e-12)).max()))
    return ParityReport(max_abs, max_rel, atol, rtol)


def check_parity(
    definition: Definition,
    weights: Mapping[str, np.ndarray],
    run: Callable[[dict[str, np.ndarray]], Mapping[str, np.ndarray]],
    *,
    framework: str,
    seed: int = 0,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    transform_reference: Callable[[dict[str, np.ndarray]], Mapping[str, np.ndarray]] | None = None,
) -> ParityReport:
    """Run ``run`` and ONNX Runtime on seeded probes; raise :class:`ParityError` beyond tolerance.

    ONNX Runtime runs the definition with ``weights`` fed as inputs, on a session kept per
    definition (:func:`flonnx.exchange.ort.run_definition`): a node builds one per model, not one
    per round.

    ``transform_reference`` maps ONNX Runtime's outputs to what ``run`` returns when a framework
    only exposes a derived quantity (e.g. scikit-learn's probabilities instead of logits).
    """
    probes = probe_inputs(definition, seed=seed)
    reference = run_definition(definition, weights, probes)
    if transform_reference is not None:
        reference = dict(transform_reference(reference))
    report = compare_outputs(reference, run(probes), atol=atol, rtol=rtol)
    if not report.passed:
        raise ParityError(
            f"{framework} does not reproduce ONNX Runtime on definition {definition.id[:12]}: "
            f"{report.describe()}",
            report.max_abs,
            report.max_rel,
        )
    return report
