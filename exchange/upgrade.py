"""Old opsets: upgrade a user's own ONNX file so ONNX Runtime runs it; refuse a received one.

ONNX Runtime drops kernels for very old operator versions (opset-6 ``Gemm``, ``BatchNormalization``,
``PRelu``, opset-1 ``AveragePool``...): such a file fails with NOT_IMPLEMENTED although it is valid.

- :func:`upgrade_user_model` is for a file the user brought (``flonnx check``, or a coordinator turning
  its own file into a definition). It upgrades with ``onnx.version_converter`` and accepts the result
  only if ONNX Runtime runs it, every initializer keeps its name and value (weights are federated by
  initializer name), and ONNX Runtime on the upgraded model matches ``onnx.reference`` on the original
  on seeded probes. Anything else raises :class:`~flonnx.exchange.errors.InvalidModel`.
- :func:`refuse_old_opset` is for a definition received from a coordinator. ``onnx.reference`` is not
  hardened for untrusted input and converting is the coordinator's job, so it only asks ONNX Runtime
  to build a session and refuses an old-opset model; it never converts and never runs ``onnx.reference``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from flonnx.exchange.definition import Definition
from flonnx.exchange.errors import InvalidModel
from flonnx.exchange.ort import probe_inputs, session
from flonnx.exchange.parity import DEFAULT_ATOL, DEFAULT_RTOL, compare_outputs

__all__ = [
    "DEFAULT_TARGET_OPSET",
    "Conversion",
    "OrtStatus",
    "default_opset",
    "ort_status",
    "refuse_old_opset",
    "upgrade_user_model",
]

#: Opset a user's old file is upgraded to. ONNX Runtime 1.32 implements every opset-17 kernel, the
#: flonnx interpreter covers it, and stopping before 18 avoids the converter's 17→18 adapters (axes of
#: ``Reduce*``/``Pad``, ``Split``'s ``num_outputs``) that an old file never needs.
DEFAULT_TARGET_OPSET = 17

#: Recorded in :attr:`Conversion.checked_with`.
REFERENCE_NAME = "onnx.reference"

_MISSING_KERNEL = re.compile(r"Could not find an implementation for (\w+)\((\d+)\)")


@dataclass(frozen=True)
class Conversion:
    """How a user's model was upgraded, and how the upgrade was checked (recorded with a run)."""

    from_opset: int
    to_opset: int
    checked_with: str
    max_abs_diff: float
    max_rel_diff: float = 0.0
    reason: str = ""
    probe_batch: int = 0
    probe_seed: int = 0

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (ints, floats, strings) for ``flonnx check --json`` and run records."""
        return {
            "from_opset": self.from_opset,
            "to_opset": self.to_opset,
            "checked_with": self.checked_with,
            "max_abs_diff": self.max_abs_diff,
            "max_rel_diff": self.max_rel_diff,
            "reason": self.reason,
            "probe_batch": self.probe_batch,
            "probe_seed": self.probe_seed,
        }

    def describe(self) -> str:
        """One line, e.g. ``upgraded from opset 6 to 17 (...); parity with onnx.reference ...``."""
        why = f" ({self.reason})" if self.reason else ""
        return (f"upgraded from opset {self.from_opset} to {self.to_opset}{why}; parity with "
                f"{self.checked_with} max |diff| {self.max_abs_diff:.2g}")


@dataclass(frozen=True)
class OrtStatus:
    """Whether ONNX Runtime can build a session for a model, and if not, why.

    Attributes:
        ok: A session was created.
        old_opset: The failure is a missing kernel for an operator version older than the one a newer
            opset defines (upgrading the opset can help).
        kernel: The missing kernel as ``Op-version`` (e.g. ``Gemm-6``), if ONNX Runtime named one.
        error: ONNX Runtime's message, first line.
    """

    ok: bool
    old_opset: bool = False
    kernel: str = ""
    error: str = ""


def default_opset(model: onnx.ModelProto) -> int:
    """The model's ``ai.onnx`` opset (0 if it imports none)."""
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    # onnx's C++ assertions read "<file>:<line>: <function>: Assertion `...` failed: <message>".
    return line.split(" failed: ", 1)[1] if " failed: " in line else line


def _newer_version_exists(op_type: str, version: int, target_opset: int) -> bool:
    try:
        return bool(onnx.defs.get_schema(op_type, target_opset, "").since_version > version)
    except onnx.defs.SchemaError:
        return False


def ort_status(
    model: onnx.ModelProto | Definition, *, target_opset: int = DEFAULT_TARGET_OPSET
) -> OrtStatus:
    """Try an ONNX Runtime session (nothing is run) and classify a failure.

    A :class:`Definition` (weights stripped) is filled with zeros first, since only the kernels matter.
    """
    if isinstance(model, Definition):
        model = model.materialize({n: np.zeros(s.shape, s.dtype) for n, s in model.specs.items()})
    try:
        session(model)
    except Exception as exc:  # onnxruntime raises its own exception types
        message = _first_line(exc)
        found = _MISSING_KERNEL.search(str(exc))
        if "NOT_IMPLEMENTED" in str(exc) and found:
            op_type, version = found.group(1), int(found.group(2))
            old = _newer_version_exists(op_type, version, target_opset)
            return OrtStatus(False, old_opset=old, kernel=f"{op_type}-{version}", error=message)
        return OrtStatus(False, error=message)
    return OrtStatus(True)


def refuse_old_opset(model: onnx.ModelProto | Definition) -> OrtStatus:
    """For a definition received from a coordinator: refuse it if its opset is too old for ONNX Runtime.

    Never converts and never runs ``onnx.reference`` (not hardened for untrusted input). Returns the
    :class:`OrtStatus` for any other outcome, so a caller can still report other failures.

    Raises:
        InvalidModel: ONNX Runtime has no kernel for an operator version older than a current one.
    """
    proto = model.proto if isinstance(model, Definition) else model
    status = ort_status(model)
    if status.old_opset:
        import onnxruntime

        raise InvalidModel(
            f"received definition uses ai.onnx opset {default_opset(proto)} and ONNX Runtime "
            f"{onnxruntime.__version__} has no kernel for {status.kernel}; flonnx does not convert "
            "received definitions: the coordinator must upgrade the model (flonnx check upgrades a "
            "user's file) and send the upgraded definition"
        )
    return status


def _run_quietly(model: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Like :func:`flonnx.exchange.ort.run_model`, but a failure is only raised, not also logged to stderr."""
    import onnxruntime

    sess = session(model)
    options = onnxruntime.RunOptions()
    options.log_severity_level = 4
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, inputs, options), strict=True))


def _initializer_problems(original: onnx.ModelProto, upgraded: onnx.ModelProto) -> list[str]:
    before = {t.name: t for t in original.graph.initializer}
    after = {t.name: t for t in upgraded.graph.initializer}
    problems = []
    missing = sorted(set(before) - set(after))
    if missing:
        problems.append(f"dropped or renamed {missing}")
    added = sorted(n for n in set(after) - set(before)
                   if after[n].data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE,
                                             onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16))
    if added:
        problems.append(f"added floating-point initializers {added}")
    for name in sorted(set(before) & set(after)):
        old, new = numpy_helper.to_array(before[name]), numpy_helper.to_array(after[name])
        if old.dtype != new.dtype or old.shape != new.shape or not np.array_equal(old, new):
            problems.append(f"changed {name!r}")
    return problems


def upgrade_user_model(
    model: onnx.ModelProto,
    *,
    target_opset: int = DEFAULT_TARGET_OPSET,
    batch: int = 4,
    seed: int = 0,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
) -> tuple[onnx.ModelProto, Conversion | None]:
    """Upgrade a user's own model to ``target_opset`` if ONNX Runtime cannot run its old opset.

    Only for a file the user brought: it runs ``onnx.reference`` on the original.

    Returns:
        ``(model, None)`` when ONNX Runtime runs the model as it is, else the upgraded model and how it
        was checked.

    Raises:
        InvalidModel: ONNX Runtime cannot run the model and upgrading cannot fix it, or the upgrade
            fails, changes the initializers, or changes what the model computes.
    """
    from onnx import reference, version_converter

    status = ort_status(model, target_opset=target_opset)
    if status.ok:
        return model, None
    if not status.old_opset:
        raise InvalidModel(f"ONNX Runtime cannot run the model: {status.error}")
    from_opset = default_opset(model)
    prefix = f"opset {from_opset} model: ONNX Runtime has no kernel for {status.kernel}"
    advice = f"re-export the model with opset {target_opset} or newer"
    try:
        upgraded = version_converter.convert_version(model, target_opset)
    except Exception as exc:  # the converter raises RuntimeError from C++ assertions
        raise InvalidModel(
            f"{prefix} and the ONNX version converter cannot upgrade it to opset {target_opset}: "
            f"{_first_line(exc)}; {advice}"
        ) from exc
    problems = _initializer_problems(model, upgraded)
    if problems:
        raise InvalidModel(
            f"{prefix} and upgrading it to opset {target_opset} changed its initializers "
            f"({'; '.join(problems)}); flonnx federates weights by initializer name; {advice}"
        )
    definition, _ = Definition.from_model(model)
    probes = probe_inputs(definition, batch=batch, seed=seed)
    try:
        onnx.checker.check_model(upgraded, full_check=True)
        got = _run_quietly(upgraded, probes)
    except Exception as exc:  # checker and onnxruntime raise their own exception types
        raise InvalidModel(
            f"{prefix}; the ONNX version converter upgraded it to opset {target_opset} but ONNX "
            f"Runtime cannot run the result: {_first_line(exc)}; {advice}"
        ) from exc
    try:
        values = reference.ReferenceEvaluator(model).run(None, probes)
    except Exception as exc:  # onnx.reference raises whatever the op implementation raises
        raise InvalidModel(
            f"{prefix}; it was upgraded to opset {target_opset} but {REFERENCE_NAME} cannot run the "
            f"original to check the upgrade: {_first_line(exc)}; {advice}"
        ) from exc
    expected = dict(zip(definition.output_names, values, strict=True))
    parity = compare_outputs(expected, got, atol=atol, rtol=rtol)
    if not parity.passed:
        raise InvalidModel(
            f"{prefix}; the upgrade to opset {target_opset} computes something other than the original "
            f"({REFERENCE_NAME}): {parity.describe()}; {advice}"
        )
    conversion = Conversion(
        from_opset=from_opset, to_opset=target_opset, checked_with=REFERENCE_NAME,
        max_abs_diff=parity.max_abs, max_rel_diff=parity.max_rel,
        reason=f"ONNX Runtime has no kernel for {status.kernel}", probe_batch=batch, probe_seed=seed,
    )
    return upgraded, conversion
