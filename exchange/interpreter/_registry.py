"""The operator table: ``(domain, op_type) -> {since_version: OpSpec}``.

An ONNX operator changes meaning between opsets (``Squeeze`` takes ``axes`` as an attribute before
opset 13 and as an input after), so each implementation is registered with the opset it was
introduced in, and :meth:`OpTable.resolve` picks the newest one not newer than the model's opset.
Backends keep their own small table of overrides that is consulted before the generic one.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["OpSpec", "OpTable", "GENERIC", "op"]

ONNX_DOMAIN = ""
ML_DOMAIN = "ai.onnx.ml"


def normalise_domain(domain: str) -> str:
    """Map the two spellings of the default domain to ``""``."""
    return "" if domain in ("", "ai.onnx") else domain


@dataclass(frozen=True)
class OpSpec:
    """One implementation of one operator version.

    Attributes:
        fn: ``fn(ctx, *inputs, **attributes)``; returns one array or a tuple of arrays.
        since: The opset version this implementation follows.
        static: Input positions that must be known without tracing (shapes, axes, pads): they are
            passed as numpy arrays so the graph stays jit-able.
        state: Output position -> input position of non-trainable state the op updates in training
            (BatchNormalization's running statistics).
        random: The op draws random numbers, so it is never constant-folded.
        shape_only: The outputs depend only on input shapes (``Shape``, ``Size``), so they are
            static even when the inputs are not.
        outputs: How many outputs ``fn`` can return (-1: as many as the node asks for).
        wants_output_count: ``fn`` takes ``_n_outputs``, the number of outputs the node declares.
        attributes: Attribute names ``fn`` accepts (from its signature).
    """

    fn: Callable[..., Any]
    since: int
    static: tuple[int, ...] = ()
    state: dict[int, int] = field(default_factory=dict)
    random: bool = False
    shape_only: bool = False
    outputs: int = 1
    wants_output_count: bool = False
    attributes: frozenset[str] = frozenset()


class OpTable:
    """A versioned map from ``(domain, op_type)`` to :class:`OpSpec`."""

    def __init__(self) -> None:
        self._ops: dict[tuple[str, str], dict[int, OpSpec]] = {}

    def register(
        self,
        op_type: str | Iterable[str],
        since: int = 1,
        *,
        domain: str = ONNX_DOMAIN,
        static: tuple[int, ...] = (),
        state: dict[int, int] | None = None,
        random: bool = False,
        shape_only: bool = False,
        outputs: int = 1,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator registering ``fn`` for one or more op types from opset ``since`` on."""
        names = [op_type] if isinstance(op_type, str) else list(op_type)

        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            signature = inspect.signature(fn).parameters
            params = signature.values()
            attrs = frozenset(
                p.name
                for p in params
                if p.kind is inspect.Parameter.KEYWORD_ONLY and not p.name.startswith("_")
            )
            spec = OpSpec(
                fn,
                since,
                tuple(static),
                dict(state or {}),
                random,
                shape_only,
                outputs,
                "_n_outputs" in signature,
                attrs,
            )
            for name in names:
                self._ops.setdefault((normalise_domain(domain), name), {})[since] = spec
            return fn

        return decorate

    def resolve(self, domain: str, op_type: str, opset: int) -> OpSpec | None:
        """Return the newest implementation with ``since <= opset``, or None."""
        versions = self._ops.get((normalise_domain(domain), op_type))
        if not versions:
            return None
        usable = [v for v in versions if v <= opset]
        return versions[max(usable)] if usable else None

    def op_types(self) -> list[tuple[str, str]]:
        """All ``(domain, op_type)`` pairs with at least one implementation, sorted."""
        return sorted(self._ops)


#: Operators written once against the array API; every backend uses these unless it overrides.
GENERIC = OpTable()

#: Shorthand decorator for :data:`GENERIC`.
op = GENERIC.register
