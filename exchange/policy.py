"""A site's policy: what its node agrees to train, and on how little data.

A node names its policy file in its node config (``policy="/etc/flonnx/policy.toml"``) and refuses,
before any training or evaluation, a definition or a round the policy does not allow. The refusal is
one line naming the rule and the offending value; the coordinator records it as a ``rejected``
version like any other refusal (docs/site-policy.md)::

    definitions = ["3fa1c2d4e5f6a7b8"]   # approved definition ids (full or prefixes of >= 12
                                         # hex chars), or "any" (the default)
    max-parameters = 1_000_000           # the largest total count of trainable parameters
    operators = ["Gemm", "Relu"]         # ONNX op types allowed anywhere in the graph, or "any"
    min-rows = 50                        # the fewest local rows behind an update or a metric
    share = ["label-histogram"]          # optional facts that may leave the site (default none)

The file is read again for every message, so an edit takes effect at the next round. A file that
cannot be used raises :class:`PolicyError` naming the file, the key and the values allowed.

Which definition a site approves: the id of the definition *as the coordinator announces it at the
handshake*, i.e. before the federation's own preprocessing constants (``flonnx.preprocess``
metadata: the federated means, deviations and vocabularies) are folded in. Those constants exist
only once every node has reported its statistics, so no site could name the final id in advance;
they are not operators and not trainable. So a listed id (or prefix) is matched against
:func:`approval_id`, at the handshake and in every round alike, and a refusal names that id.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from flonnx.exchange.definition import Definition
from flonnx.exchange.errors import PolicyError
from flonnx.exchange.preprocess import METADATA_KEY

__all__ = ["SHAREABLE", "SitePolicy", "approval_id", "graph_operators", "parameter_count"]

#: Optional facts a policy may let leave the site (``share``): ``group-metrics`` gates the site
#: evaluation's per-group metrics (:mod:`flonnx.exchange.groups`); nothing sends label histograms.
SHAREABLE = ("label-histogram", "group-metrics")

#: The shortest definition-id prefix a policy may list (as ``flonnx lineage`` prints ids).
MIN_PREFIX = 12
#: Bytes of a policy file (a policy is a few lines).
MAX_POLICY_BYTES = 1 << 20

_KEYS = ("definitions", "max-parameters", "operators", "min-rows", "share")
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class SitePolicy:
    """One site's rules; ``None`` means the rule does not restrict (``"any"`` or absent)."""

    path: str
    definitions: tuple[str, ...] | None = None
    max_parameters: int | None = None
    operators: frozenset[str] | None = None
    min_rows: int | None = None
    share: frozenset[str] = frozenset()

    @classmethod
    def load(cls, path: str | Path) -> SitePolicy:
        """The policy in TOML file ``path``; :class:`PolicyError` if it cannot be used."""
        try:
            size = Path(path).stat().st_size
            if size > MAX_POLICY_BYTES:
                raise PolicyError(f"policy {path} is {size} bytes; the limit is {MAX_POLICY_BYTES}")
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PolicyError(f"policy {path} does not exist") from None
        except IsADirectoryError:
            raise PolicyError(f"policy {path} is a directory, not a file") from None
        except UnicodeDecodeError:
            raise PolicyError(f"policy {path} is not UTF-8 text") from None
        except OSError as exc:
            raise PolicyError(f"policy {path} cannot be read: {exc.strerror or exc}") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(f"policy {path} is not valid TOML: {_line(str(exc))}") from None
        except RecursionError:  # tomllib recurses once per nested array or inline table
            raise PolicyError(f"policy {path} is not valid TOML: values nested too deeply") from None
        return cls.from_mapping(data, str(path))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], path: str) -> SitePolicy:
        """The policy of parsed TOML ``data`` read from ``path`` (named in every error)."""
        unknown = sorted(str(k) for k in data if k not in _KEYS)
        if unknown:
            raise PolicyError(f"policy {path}: unknown key {unknown[0]!r}; the keys are "
                              f"{', '.join(_KEYS)}")
        reader = _Reader(data, path)
        return cls(
            path=path,
            definitions=reader.definitions(),
            max_parameters=reader.count("max-parameters"),
            operators=reader.operators(),
            min_rows=reader.count("min-rows"),
            share=reader.share(),
        )

    def allows(self, fact: str) -> bool:
        """Whether the optional fact ``fact`` (one of :data:`SHAREABLE`) may leave the site."""
        return fact in self.share

    def check(self, definition: Definition | None = None, rows: int | None = None) -> str | None:
        """``None`` if the policy allows ``definition`` trained on ``rows`` rows, else why not.

        Each rule is checked only when its input is given, so a node can check the definition
        before it reads any data and the rows once it has them. The reason is one line.
        """
        if definition is not None:
            for reason in self._definition_reasons(definition):
                return reason
        if rows is not None and self.min_rows is not None and rows < self.min_rows:
            noun = "row is" if rows == 1 else "rows are"
            return f"site policy: {rows:,} {noun} fewer than min-rows {self.min_rows:,}"
        return None

    def _definition_reasons(self, definition: Definition) -> Iterator[str]:
        if self.definitions is not None:
            announced = approval_id(definition)
            if not any(announced.startswith(prefix) for prefix in self.definitions):
                count = len(self.definitions)
                yield (f"site policy: definition {announced[:MIN_PREFIX]} is not approved (policy "
                       f"{self.path} approves {count} definition{'' if count == 1 else 's'})")
        if self.max_parameters is not None:
            count = parameter_count(definition)
            if count > self.max_parameters:
                yield f"site policy: {count:,} parameters exceed max-parameters {self.max_parameters:,}"
        if self.operators is not None:
            refused = sorted(graph_operators(definition.proto) - self.operators)
            if refused:
                if len(refused) == 1:
                    yield f"site policy: operator {refused[0]} is not allowed"
                else:
                    yield f"site policy: operators {', '.join(refused)} are not allowed"


def approval_id(definition: Definition) -> str:
    """The definition's id without the federation's preprocessing constants (as announced).

    The same as ``definition.id`` when the definition carries no ``flonnx.preprocess`` metadata.
    """
    if METADATA_KEY not in definition.metadata:
        return definition.id
    proto = definition.proto
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key != METADATA_KEY]
    proto.ClearField("metadata_props")
    for key, value in kept:
        proto.metadata_props.add(key=key, value=value)
    return Definition(proto).id


def parameter_count(definition: Definition) -> int:
    """The total number of trainable values: every weight tensor's element count, summed."""
    return sum(math.prod(spec.shape) for spec in definition.specs.values())


def graph_operators(model: onnx.ModelProto) -> frozenset[str]:
    """Every ONNX op type the model executes: its graph, every subgraph, every local function.

    A call of a model-local function counts as the operators of its body (what actually runs),
    not as an operator of its own name.
    """
    local = {(f.domain, f.name) for f in model.functions}
    found: set[str] = set()

    def visit(nodes: Any) -> None:
        for node in nodes:
            if (node.domain, node.op_type) not in local:
                found.add(node.op_type)
            for attribute in node.attribute:
                if attribute.HasField("g"):
                    visit(attribute.g.node)
                for graph in attribute.graphs:
                    visit(graph.node)

    visit(model.graph.node)
    for function in model.functions:
        visit(function.node)
    return frozenset(found)


class _Reader:
    """Typed access to a policy's keys; every error names the file, the key and what is allowed."""

    def __init__(self, data: Mapping[str, Any], path: str) -> None:
        self.data, self.path = data, path

    def _error(self, key: str, expected: str) -> PolicyError:
        value = _line(repr(self.data[key]))
        return PolicyError(f"policy {self.path}: key {key!r}: expected {expected}, got "
                           f"{value if len(value) <= 60 else value[:59] + '…'}")

    def _names(self, key: str, expected: str) -> tuple[str, ...] | None:
        """``"any"`` (or absent) as ``None``, else a list of non-empty strings."""
        value = self.data.get(key, "any")
        if value == "any":
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise self._error(key, expected)
        return tuple(v.strip() for v in value)

    def definitions(self) -> tuple[str, ...] | None:
        expected = (f'"any" or a list of definition ids (hexadecimal, {MIN_PREFIX} to 64 '
                    "characters: a full id or a prefix)")
        ids = self._names("definitions", expected)
        if ids is None:
            return None
        ids = tuple(i.lower() for i in ids)
        if not all(MIN_PREFIX <= len(i) <= 64 and set(i) <= _HEX for i in ids):
            raise self._error("definitions", expected)
        return ids

    def operators(self) -> frozenset[str] | None:
        ops = self._names("operators", '"any" or a list of ONNX operator types (e.g. ["Gemm", "Relu"])')
        return None if ops is None else frozenset(ops)

    def share(self) -> frozenset[str]:
        expected = f"a list of facts that may leave the site, each one of {', '.join(SHAREABLE)}"
        value = self.data.get("share", [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v in SHAREABLE for v in value):
            raise self._error("share", expected)
        return frozenset(value)

    def count(self, key: str) -> int | None:
        if key not in self.data:
            return None
        value = self.data[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self._error(key, "a positive integer")
        return value


def _line(text: str) -> str:
    return " ".join(text.split())
