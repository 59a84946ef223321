"""Per-group metrics for a sensitive column: the model card's fairness across groups.

A spec's ``[data] sensitive = "COLUMN"`` (at a real node, node config ``sensitive="COLUMN"``) names a
column whose distinct values (as text; an empty cell is ``<missing>``) split the rows into groups.
The task's metrics (:func:`flonnx.exchange.metrics.task_metrics`) are computed on each group's rows
from the same model outputs, with the group's support (its number of rows):

* on the server's evaluation data, when the card is built (every group, however small: these rows
  are the coordinator's own);
* at each site, in the site evaluation of the final version, sent as metrics only under the keys
  ``group.VALUE.METRIC`` and ``group.VALUE.support``. A group with fewer than
  :data:`MIN_SITE_GROUP_ROWS` rows (or the site policy's ``min-rows``, if larger) is suppressed:
  its metrics would describe a handful of patients, so nothing of it leaves the site, and the
  number of suppressed groups is sent instead (``groups.suppressed``).

At most :data:`MAX_GROUPS` groups are reported, the largest ones (ties: by value); the number left
out is reported (``groups.left-out``). ``VALUE`` in a key is escaped (:func:`group_key`): a value
is arbitrary text and a key must stay one readable, bounded token.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import numpy as np

from flonnx.exchange.metrics import task_metrics
from flonnx.exchange.task import HEADLINE_METRIC, OutputKind, Task

__all__ = [
    "GROUP_PREFIX", "MAX_GROUPS", "MIN_SITE_GROUP_ROWS", "GroupMetrics", "GroupReport", "group_key",
    "group_metrics", "groups_from_metrics", "metrics_of_groups", "worst_and_spread",
]

#: The most groups a report holds; larger groups are kept first.
MAX_GROUPS = 50
#: The fewest rows of a group whose metrics a site sends.
MIN_SITE_GROUP_ROWS = 5
#: Prefix of a group's metric keys in a site's evaluation reply.
GROUP_PREFIX = "group."
_SUPPRESSED = "groups.suppressed"
_LEFT_OUT = "groups.left-out"
#: The longest escaped value in a key; a longer one is cut and ends in ``~`` + 8 hex of its hash.
_MAX_KEY = 40


@dataclass(frozen=True)
class GroupMetrics:
    """One group's metrics and support."""

    value: str  # the group's value as text (escaped, for a group read back from a site's metrics)
    support: int
    metrics: dict[str, float]


@dataclass(frozen=True)
class GroupReport:
    """The groups of one evaluation, by value; how many were suppressed or left out by the cap."""

    groups: tuple[GroupMetrics, ...]
    suppressed: int = 0
    left_out: int = 0


def group_key(value: str) -> str:
    """A group value as one token of a metric key: percent-escaped (``.`` too), at most 40 chars.

    A longer value is cut and ends in ``~`` and 8 hex digits of its SHA-256, so two long values
    that share a beginning stay apart.
    """
    escaped = quote(value, safe="").replace(".", "%2E").replace("~", "%7E")  # quote keeps both
    if len(escaped) <= _MAX_KEY:
        return escaped
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:8]
    return f"{escaped[: _MAX_KEY - 9]}~{digest}"


def group_metrics(outputs: np.ndarray, y: np.ndarray, groups: np.ndarray, task: Task | str,
                  kind: OutputKind | str, *, min_rows: int = 1, max_groups: int = MAX_GROUPS) -> GroupReport:
    """The task's metrics of ``outputs`` against ``y`` on each group of rows (``groups[i]``: row i's value).

    Groups with fewer than ``min_rows`` rows are suppressed; of the rest, the ``max_groups``
    largest are kept.
    """
    groups = np.asarray(groups, dtype=object).reshape(-1)
    if len(groups) != len(y):
        raise ValueError(f"{len(groups)} group values for {len(y)} rows")
    values, counts = np.unique(groups.astype(str), return_counts=True)
    large = [(str(v), int(c)) for v, c in zip(values, counts, strict=True) if c >= min_rows]
    kept = sorted(sorted(large, key=lambda vc: (-vc[1], vc[0]))[:max_groups])
    text = groups.astype(str)
    out = []
    for value, count in kept:
        mask = text == value
        out.append(GroupMetrics(value, count, task_metrics(outputs[mask], y[mask], task, kind)))
    return GroupReport(tuple(out), suppressed=len(values) - len(large), left_out=len(large) - len(kept))


def metrics_of_groups(report: GroupReport) -> dict[str, float]:
    """A report as flat metrics a site sends: ``group.VALUE.METRIC``, ``group.VALUE.support``, counts."""
    out: dict[str, float] = {}
    for group in report.groups:
        key = f"{GROUP_PREFIX}{group_key(group.value)}."
        out[f"{key}support"] = float(group.support)
        out.update({f"{key}{name}": float(v) for name, v in group.metrics.items()})
    if report.suppressed:
        out[_SUPPRESSED] = float(report.suppressed)
    if report.left_out:
        out[_LEFT_OUT] = float(report.left_out)
    return out


def groups_from_metrics(metrics: Mapping[str, float]) -> tuple[dict[str, float], GroupReport | None]:
    """Split a site's metrics into its own and its groups (``None``: it sent no group metrics).

    The groups' values stay escaped, as the keys have them (:func:`group_key`).
    """
    own: dict[str, float] = {}
    found: dict[str, dict[str, float]] = {}
    for name, value in metrics.items():
        if name.startswith(GROUP_PREFIX) and name.count(".") >= 2:
            escaped, metric = name[len(GROUP_PREFIX):].rsplit(".", 1)
            found.setdefault(escaped, {})[metric] = float(value)
        elif name not in (_SUPPRESSED, _LEFT_OUT):
            own[name] = float(value)
    if not found and _SUPPRESSED not in metrics and _LEFT_OUT not in metrics:
        return own, None
    groups = tuple(GroupMetrics(v, int(m.pop("support", 0)), m) for v, m in sorted(found.items()))
    return own, GroupReport(groups, int(metrics.get(_SUPPRESSED, 0)), int(metrics.get(_LEFT_OUT, 0)))


def worst_and_spread(metrics: Mapping[str, Mapping[str, float]], task: str) -> dict[str, Any]:
    """The headline metric's worst member, mean and spread (max - min) across sites or groups.

    ``metrics``: name -> its metrics. The headline metric is accuracy, or R² for regression; the
    worst member has the lowest value (ties: the first name). Returns ``{"metric"}`` alone when no
    member has the metric, else also ``worst``, ``worst_value``, ``mean`` and ``spread``.
    """
    metric = HEADLINE_METRIC[task]
    values = {k: float(m[metric]) for k, m in metrics.items() if metric in m}
    if not values:
        return {"metric": metric}
    worst = min(values, key=lambda k: (values[k], k))
    return {"metric": metric, "worst": worst, "worst_value": values[worst],
            "mean": float(np.mean(list(values.values()))),
            "spread": float(max(values.values()) - min(values.values()))}
