"""The consortium as the registry saw it: one row per node that ever sent something recorded.

A node is known by its stable client key (a record's ``client``) as soon as one of its replies was
recorded: an accepted update or a refusal/rejection. Everything here is read from the registry's
public interface (:meth:`Registry.runs`, :meth:`Registry.versions`), so it works on any registry
back end and never touches Flower. Every string it returns comes from records that nodes influenced:
it is untrusted, and whoever prints it escapes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from flonnx.exchange.lineage import VersionKind
from flonnx.exchange.registry import Registry, RunInfo, StoredVersion

__all__ = ["Node", "known_nodes", "summarize_nodes"]


@dataclass(frozen=True)
class Node:
    """What the registry knows of one node, across the runs it was asked about."""

    client: str
    framework: str  # the latest non-empty one recorded ("" when none was)
    framework_version: str
    frameworks: tuple[str, ...]  # every framework it used, in order of first use
    flonnx_version: str | None  # from its latest update's environment; None when not recorded
    last_run: str
    last_round: int
    last_run_created_at: str | None
    updates: int
    refusals: int
    last_refusal: str | None

    @property
    def changed_framework(self) -> bool:
        """Whether the node trained with more than one framework over time."""
        return len(self.frameworks) > 1

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON form (``flonnx nodes --json``, docs/lineage.md)."""
        return {
            "client": self.client,
            "framework": self.framework,
            "framework_version": self.framework_version,
            "frameworks": list(self.frameworks),
            "flonnx_version": self.flonnx_version,
            "last_run": self.last_run,
            "last_round": self.last_round,
            "last_run_created_at": self.last_run_created_at,
            "updates": self.updates,
            "refusals": self.refusals,
            "last_refusal": self.last_refusal,
        }


@dataclass
class _Tally:
    framework: str = ""
    framework_version: str = ""
    frameworks: tuple[str, ...] = ()
    flonnx_version: str | None = None
    last: tuple[int, int] = (-1, -1)  # (position of the run, round)
    last_run: RunInfo | None = None
    updates: int = 0
    refusals: int = 0
    last_refusal: str | None = None


def summarize_nodes(history: Iterable[tuple[RunInfo, Sequence[StoredVersion]]]) -> list[Node]:
    """One :class:`Node` per client key in ``history``, sorted by client key.

    ``history`` is (run, its versions in recording order), oldest run first, as the registry lists
    them; "latest" means later in that order. Records without a client (initial versions,
    aggregates) belong to no node.
    """
    tallies: dict[str, _Tally] = {}
    for position, (run, versions) in enumerate(history):
        for version in versions:
            record = version.record
            if not record.client:
                continue
            tally = tallies.setdefault(record.client, _Tally())
            if (position, record.round) >= tally.last:
                tally.last, tally.last_run = (position, record.round), run
            # a refusal at the handshake names the framework but may not know its version
            if record.framework and (record.framework != tally.framework or record.framework_version):
                tally.framework, tally.framework_version = record.framework, record.framework_version
                if record.framework not in tally.frameworks:
                    tally.frameworks += (record.framework,)
            if record.kind is VersionKind.CLIENT_UPDATE:
                tally.updates += 1
                # rejections carry no environment; an update states the node's software as it ran
                tally.flonnx_version = record.environment.get("flonnx") or None
            elif record.kind is VersionKind.REJECTED:
                tally.refusals += 1
                tally.last_refusal = record.reason
    return [
        Node(
            client=client, framework=t.framework, framework_version=t.framework_version,
            frameworks=t.frameworks, flonnx_version=t.flonnx_version,
            last_run=t.last_run.run_id if t.last_run else "", last_round=t.last[1],
            last_run_created_at=(t.last_run.created_at or None) if t.last_run else None,
            updates=t.updates, refusals=t.refusals, last_refusal=t.last_refusal,
        )
        for client, t in sorted(tallies.items())
    ]


def known_nodes(registry: Registry, run_id: str | None = None) -> list[Node]:
    """Every node the registry recorded, over all runs or only run ``run_id`` (an exact id)."""
    runs = registry.runs() if run_id is None else [registry.run(run_id)]
    return summarize_nodes((run, registry.versions(run.run_id)) for run in runs)
