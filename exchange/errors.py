"""The flonnx exception hierarchy.

Every error a user can cause (a bad model file, an invalid client update, a broken registry) raises a
subclass of :class:`FlonnxError` whose message says what was expected and what arrived. The CLI prints
these without a traceback and exits non-zero.
"""

from __future__ import annotations

__all__ = [
    "DataError",
    "FlonnxError",
    "InvalidModel",
    "InvalidUpdate",
    "LineageError",
    "ParityError",
    "PolicyError",
    "RegistryError",
    "RunLocked",
    "UnsupportedOp",
]


class FlonnxError(Exception):
    """Base class of every error flonnx raises on purpose."""


class DataError(FlonnxError):
    """A data file or data set cannot be used: unreadable, malformed, or refused by its schema.

    Messages name the file, the row and the column, never the value of a cell: rows stay on the node.
    """


class InvalidModel(FlonnxError):
    """An ONNX model or definition is malformed, unsafe or not what was expected."""


class InvalidUpdate(FlonnxError):
    """Weights (e.g. a client's reply) do not match the definition they claim to follow."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems: list[str] = list(problems) if problems else [message]


class LineageError(FlonnxError):
    """A lineage record or id is inconsistent: wrong hash, unknown parent, ambiguous prefix."""


class RegistryError(FlonnxError):
    """The registry cannot be opened, read or written."""


class RunLocked(RegistryError):
    """Another live process is writing this run (it holds the run's lock)."""

    def __init__(self, message: str, run_id: str) -> None:
        super().__init__(message)
        self.run_id = run_id


class ParityError(FlonnxError):
    """A framework's execution of a definition differs from ONNX Runtime beyond tolerance."""

    def __init__(self, message: str, max_abs: float = float("inf"), max_rel: float = float("inf")) -> None:
        super().__init__(message)
        self.max_abs = max_abs
        self.max_rel = max_rel


class PolicyError(FlonnxError):
    """A site's policy file cannot be used: unreadable, not TOML, an unknown key or a wrong value.

    Messages name the file, the key and the values allowed; the node refuses with that line.
    """


class UnsupportedOp(InvalidModel):
    """The interpreter has no implementation of an ONNX operator (named with domain and opset)."""

    def __init__(self, op_type: str, domain: str, opset: int, backend: str) -> None:
        self.op_type = op_type
        self.domain = domain or "ai.onnx"
        self.opset = opset
        self.backend = backend
        super().__init__(
            f"operator {self.domain}::{op_type} (opset {opset}) is not supported by the "
            f"{backend} backend of the flonnx interpreter"
        )
