"""The best round of a run by one recorded metric (``flonnx lineage best``).

Only the aggregates a run committed as its rounds' heads compete (the initial version is no round's
result). The metric is the one recorded with each aggregate (the server's evaluation); loss-like
metrics are better lower, every other one higher, and a tie goes to the earliest round, so the
answer is the same on every reading of the same registry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from flonnx.exchange.errors import FlonnxError
from flonnx.exchange.lineage import VersionKind
from flonnx.exchange.registry import Registry

__all__ = ["LOWER_IS_BETTER", "BestRound", "best_round", "lower_is_better"]

#: Metrics where a smaller value is better; every other metric is better higher.
LOWER_IS_BETTER = frozenset({"loss", "mse", "mae"})


def lower_is_better(metric: str) -> bool:
    """Whether a smaller ``metric`` is better (loss, mse, mae)."""
    return metric in LOWER_IS_BETTER


@dataclass(frozen=True)
class BestRound:
    """The round whose aggregate has the best ``metric``, and its value."""

    run_id: str
    metric: str
    round: int
    version_id: str
    value: float
    lower_is_better: bool
    rounds: int  # how many aggregates competed

    def to_dict(self) -> dict[str, Any]:
        """The documented ``--json`` form."""
        return {"run_id": self.run_id, "metric": self.metric, "round": self.round,
                "version_id": self.version_id, "value": self.value,
                "better": "lower" if self.lower_is_better else "higher", "rounds": self.rounds}


def best_round(registry: Registry, run_id: str, metric: str) -> BestRound:
    """The best aggregate of ``run_id`` by ``metric`` (ties: the earliest round).

    Raises:
        FlonnxError: the run has no aggregate yet, or none of its aggregates recorded ``metric``
            (the message lists the metrics it has).
    """
    aggregates = []
    for rnd, version_id in sorted(registry.heads(run_id).items()):
        record = registry.record(version_id)
        if record.kind is VersionKind.AGGREGATE:
            aggregates.append((rnd, version_id, dict(record.metrics)))
    if not aggregates:
        raise FlonnxError(f"run {run_id} has no aggregated round yet")
    scored = [(rnd, vid, float(m[metric])) for rnd, vid, m in aggregates
              if metric in m and math.isfinite(float(m[metric]))]
    if not scored:
        known = sorted({name for _, _, m in aggregates for name in m})
        has = ", ".join(known) if known else "no metrics (it was run without an evaluation source)"
        raise FlonnxError(f"run {run_id} has no metric {metric!r}; its rounds record: {has}")
    lower = lower_is_better(metric)
    # min over (signed value, round): the best value, then the earliest round
    rnd, vid, value = min(scored, key=lambda s: (s[2] if lower else -s[2], s[0]))
    return BestRound(run_id, metric, rnd, vid, value, lower, len(aggregates))
