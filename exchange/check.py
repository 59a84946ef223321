"""``flonnx check``: can this ONNX file be federated, and which installed framework can train it?

For a model file: safe loading (size cap, no external data, allowed domains), ``onnx.checker`` (full
check), an opset upgrade when ONNX Runtime has no kernels for the file's old opset (the file is the
user's own, so :func:`~flonnx.exchange.upgrade.upgrade_user_model` may check the upgrade with
``onnx.reference``),
then for every framework flonnx knows whether it is installed, whether it can train the graph (missing
operators listed) and its parity with ONNX Runtime on seeded random probes.

A report *has a verdict* when the file is valid, ONNX Runtime runs it (upgraded if needed) and at
least one installed framework was checked; ``flonnx check`` exits non-zero otherwise.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from flonnx.exchange.definition import MAX_MODEL_BYTES, Definition, load_model_bytes
from flonnx.exchange.errors import FlonnxError, InvalidModel
from flonnx.exchange.frameworks import FRAMEWORKS
from flonnx.exchange.ort import probe_inputs, run_model
from flonnx.exchange.parity import DEFAULT_ATOL, DEFAULT_RTOL, ParityReport, compare_outputs
from flonnx.exchange.upgrade import upgrade_user_model

__all__ = ["CheckReport", "FrameworkCheck", "check_model"]

#: framework -> (package to detect, how it executes the graph): numpy (the interpreter's reference
#: backend) and every framework of flonnx.exchange.frameworks
_FRAMEWORKS = {
    "numpy": ("numpy", "interpreter, numpy backend (reference; inference only)"),
    **{f.name: (f.package, f.how) for f in FRAMEWORKS.values()},
}


@dataclass
class FrameworkCheck:
    """One framework's verdict."""

    framework: str
    how: str
    installed: bool
    trainable: bool = False
    missing_ops: list[str] = field(default_factory=list)
    parity: dict[str, Any] | None = None
    note: str = ""


@dataclass
class CheckReport:
    """The whole verdict on one file."""

    path: str
    valid: bool
    problems: list[str]
    definition_id: str = ""
    opsets: dict[str, int] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    parameters: int = 0
    frameworks: list[FrameworkCheck] = field(default_factory=list)
    #: The opset upgrade the checked model went through (:meth:`Conversion.to_json`), or None.
    conversion: dict[str, Any] | None = None
    #: ONNX Runtime ran the checked model (after any upgrade) on the probes.
    runnable: bool = False
    #: A file ``flonnx export`` wrote: its model card's ``version_id`` and ``definition_id`` (the
    #: registry's id, the same as ``definition_id`` unless preprocessing was wrapped around the
    #: graph, which makes the file's graph one of its own), else None.
    exported_from: dict[str, str] | None = None

    @property
    def has_verdict(self) -> bool:
        """Valid, run by ONNX Runtime, and at least one installed framework checked."""
        return self.valid and self.runnable and any(
            f.installed and (f.parity is not None or bool(f.missing_ops)) for f in self.frameworks
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``flonnx check --json``)."""
        return {**asdict(self), "has_verdict": self.has_verdict}


def _parity_dict(report: ParityReport) -> dict[str, Any]:
    return {"max_abs": report.max_abs, "max_rel": report.max_rel, "atol": report.atol,
            "rtol": report.rtol, "passed": report.passed}


def _interpreter_check(
    framework: str, model: onnx.ModelProto, weights: dict[str, np.ndarray],
    probes: dict[str, np.ndarray], reference: dict[str, np.ndarray], atol: float, rtol: float,
) -> FrameworkCheck:
    from flonnx.exchange.interpreter import Program, missing_ops

    result = FrameworkCheck(framework, _FRAMEWORKS[framework][1], installed=True)
    missing = missing_ops(model, framework)
    if missing:
        result.missing_ops = [f"{d or 'ai.onnx'}::{op} (opset {v})" for d, op, v in missing]
        return result
    program = Program(model, backend=framework)
    outputs, _ = program.run({}, probes)
    got = {k: np.asarray(_to_numpy(v)) for k, v in outputs.items()}
    parity = compare_outputs(reference, got, atol=atol, rtol=rtol)
    result.parity = _parity_dict(parity)
    result.trainable = framework != "numpy" and parity.passed
    if framework == "numpy":
        result.note = "inference reference; trains through torch or jax"
    return result


def _to_numpy(value: Any) -> Any:
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return value


def _sklearn_check(definition: Definition, weights: dict[str, np.ndarray],
                   probes: dict[str, np.ndarray], reference: dict[str, np.ndarray],
                   atol: float, rtol: float) -> FrameworkCheck:
    from flonnx.exchange.adapters.sklearn_mlp import classifier_from_weights, read_dense_chain

    result = FrameworkCheck("sklearn", _FRAMEWORKS["sklearn"][1], installed=True)
    try:
        chain = read_dense_chain(definition)
        clf, _ = classifier_from_weights(definition, weights, random_state=np.random.RandomState(0))
    except InvalidModel as exc:
        result.note = str(exc)
        return result
    name = definition.output_names[0]
    ref = reference[name]
    if chain.output_activation is None:
        e = np.exp(ref - ref.max(axis=1, keepdims=True))
        ref = e / e.sum(axis=1, keepdims=True)
    parity = compare_outputs({name: ref}, {name: clf.predict_proba(probes[definition.input_names[0]])},
                             atol=atol, rtol=rtol)
    result.parity, result.trainable = _parity_dict(parity), parity.passed
    return result


def _describe(report: CheckReport, model: onnx.ModelProto, definition: Definition,
              weights: dict[str, np.ndarray]) -> None:
    report.definition_id = definition.id
    report.opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    report.inputs, report.outputs = definition.input_names, definition.output_names
    report.parameters = int(sum(np.size(w) for w in weights.values()))


def check_model(
    path: str | Path, *, batch: int = 4, seed: int = 0, atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
) -> CheckReport:
    """Check one ONNX file; never raises for a bad model (problems are in the report)."""
    path = Path(path)
    report = CheckReport(str(path), valid=False, problems=[])
    try:
        size = path.stat().st_size
        if size > MAX_MODEL_BYTES:
            raise InvalidModel(f"{size} bytes; the limit is {MAX_MODEL_BYTES}")
        model = load_model_bytes(path.read_bytes())
        onnx.checker.check_model(model, full_check=True)
        definition, weights = Definition.from_model(model)
    except (OSError, FlonnxError, onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        report.problems.append(f"{type(exc).__name__}: {exc}")
        return report
    report.valid = True
    card = {p.key: p.value for p in model.metadata_props}
    if "flonnx.version_id" in card:
        report.exported_from = {"version_id": card["flonnx.version_id"],
                                "definition_id": card.get("flonnx.definition_id", "")}
    _describe(report, model, definition, weights)
    try:
        model, conversion = upgrade_user_model(model, batch=batch, seed=seed, atol=atol, rtol=rtol)
    except InvalidModel as exc:
        report.problems.append(str(exc))
        return report
    if conversion is not None:  # everything below is about the model that would be federated
        report.conversion = conversion.to_json()
        definition, weights = Definition.from_model(model)
        _describe(report, model, definition, weights)
    probes = probe_inputs(definition, batch=batch, seed=seed)
    try:
        reference = run_model(model, probes)
    except Exception as exc:  # onnxruntime raises its own exception types
        report.problems.append(f"ONNX Runtime cannot run the model: {exc}")
        return report
    report.runnable = True
    for framework, (package, how) in _FRAMEWORKS.items():
        if importlib.util.find_spec(package) is None:
            report.frameworks.append(FrameworkCheck(framework, how, installed=False))
            continue
        try:
            if framework == "sklearn":
                check = _sklearn_check(definition, weights, probes, reference, atol, rtol)
            else:
                check = _interpreter_check(framework, model, weights, probes, reference, atol, rtol)
        except Exception as exc:  # report, don't crash: one framework failing is a finding
            check = FrameworkCheck(framework, how, installed=True, note=f"{type(exc).__name__}: {exc}")
        report.frameworks.append(check)
    if not report.has_verdict:
        report.problems.append("no installed framework could be checked (see the notes per framework)")
    return report
