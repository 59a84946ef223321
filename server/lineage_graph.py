"""The version DAG of one run as SVG: initial → client updates → aggregate, round after round.

Layout: one column per round for the global versions (the initial version, then each round's
aggregate, on the middle line) and, half a column before it, that round's client replies, one row
per client for the whole run, so a client's history reads left to right. An update is a dot in its
framework's colour with an edge from the version it trained and an edge to the aggregate it went
into; a rejected reply is a red cross on a dashed edge, its reason in the tooltip. Refusals at the
handshake (round 0) sit just after the initial version.

Edges are drawn as one path per kind (a path per edge would double the file of a large run);
every version is one element with ``data-point`` and ``data-kind``. 100 rounds of 20 clients with
2 rejected replies a round (2,301 versions) read and draw in under 0.6 s into 0.66 MB
(docs/report.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from flonnx.exchange.lineage import VersionKind, VersionRecord
from flonnx.server._svg import FONT, INK, MUTED, REJECTED, _n, esc, fmt, palette

__all__ = ["LineageNode", "draw_lineage"]

_SHOWN_METRICS = ("accuracy", "r2", "loss", "train-loss")


@dataclass(frozen=True)
class LineageNode:
    """A version of the run: its id and its record."""

    version_id: str
    record: VersionRecord


def _tip(node: LineageNode) -> str:
    r = node.record
    parts = [f"{r.kind.value} · round {r.round}"]
    if r.client:
        parts.append(r.client)
    if r.framework:
        parts.append(" ".join(filter(None, (r.framework, r.framework_version))))
    parts.append(f"version {node.version_id[:12]}")
    if r.num_examples:
        parts.append(f"{r.num_examples} examples")
    parts += [f"{k} {fmt(r.metrics[k])}" for k in _SHOWN_METRICS if k in r.metrics]
    if r.reason:
        parts.append(f"reason: {r.reason if len(r.reason) <= 300 else r.reason[:299] + '…'}")
    return " · ".join(parts)


def _label(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def draw_lineage(nodes: Sequence[LineageNode], *, title: str = "lineage", standalone: bool = False,
                 attrs: dict[str, str] | None = None) -> str:
    """The DAG of ``nodes`` (one run's versions) as one ``<svg data-plot="lineage">``.

    ``standalone`` adds the XML declaration and a white background, for a ``.svg`` file.
    """
    clients = sorted({n.record.client for n in nodes
                      if n.record.kind in (VersionKind.CLIENT_UPDATE, VersionKind.REJECTED)})
    row = {c: i for i, c in enumerate(clients)}
    frameworks = palette([n.record.framework or "?" for n in nodes
                          if n.record.kind is VersionKind.CLIENT_UPDATE])
    last = max((n.record.round for n in nodes), default=0)
    step = max(24.0, min(90.0, 2400.0 / max(last, 1)))
    row_height = (18.0 if len(clients) <= 12 else 14.0 if len(clients) <= 40
                  else max(4.0, 560.0 / len(clients)))
    left, legend_height = 170.0, 30.0
    top = legend_height + 16
    rows_height = max(row_height * max(len(clients), 1), 40.0)
    middle = top + rows_height / 2 - row_height / 2 if clients else top + 12
    legend, legend_width = _legend(frameworks, 4)
    width = max(left + step * last + 40, legend_width)
    height = top + rows_height + 34

    def x_of(record: VersionRecord) -> float:
        if record.kind in (VersionKind.INITIAL, VersionKind.AGGREGATE):
            return left + step * record.round
        if record.round == 0:  # refused at the handshake: a child of the initial version
            return left + step * 0.25
        return left + step * (record.round - 0.5)

    def y_of(record: VersionRecord) -> float:
        if record.kind in (VersionKind.INITIAL, VersionKind.AGGREGATE):
            return middle
        return top + row_height * row.get(record.client, 0)

    where = {n.version_id: (x_of(n.record), y_of(n.record)) for n in nodes}
    edges: list[str] = []
    rejected_edges: list[str] = []
    for n in nodes:
        x, y = where[n.version_id]
        for parent in n.record.parents:
            if parent in where:
                px, py = where[parent]
                target = rejected_edges if n.record.kind is VersionKind.REJECTED else edges
                target.append(f"M{_n(px)} {_n(py)}L{_n(x)} {_n(y)}")

    body = [f'<rect width="{_n(width)}" height="{_n(height)}" fill="#fff"/>' if standalone else ""]
    body.append(legend)
    for client, i in row.items():
        y = top + row_height * i
        if row_height >= 9:
            body.append(f'<text x="{_n(left - 12)}" y="{_n(y + 4)}" text-anchor="end" fill="{INK}">'
                        f'{esc(_label(client))}<title>{esc(client)}</title></text>')
    label_every = max(1, round(40 / step))
    for rnd in range(0, last + 1):
        if rnd % label_every == 0 or rnd == last:
            body.append(f'<text x="{_n(left + step * rnd)}" y="{_n(height - 8)}" text-anchor="middle" '
                        f'fill="{MUTED}">{rnd}</text>')
    body.append(f'<text x="{_n(left - 12)}" y="{_n(height - 8)}" text-anchor="end" fill="{MUTED}">'
                f'round</text>')
    if edges:
        body.append(f'<path d="{"".join(edges)}" stroke="#b8b8b8" stroke-width="0.8" fill="none"/>')
    if rejected_edges:
        body.append(f'<path d="{"".join(rejected_edges)}" stroke="{REJECTED}" stroke-width="0.8" '
                    f'stroke-dasharray="3 2" fill="none" opacity="0.7"/>')
    radius = 4.0 if row_height >= 10 else max(row_height / 2.5, 1.5)
    for n in nodes:
        x, y = where[n.version_id]
        kind = n.record.kind
        tip = f"<title>{esc(_tip(n))}</title>"
        common = f'data-point="" data-kind="{kind.value}" data-version="{n.version_id[:12]}"'
        if kind is VersionKind.REJECTED:
            d = radius
            body.append(f'<path d="M{_n(x - d)} {_n(y - d)}L{_n(x + d)} {_n(y + d)}M{_n(x - d)} '
                        f'{_n(y + d)}L{_n(x + d)} {_n(y - d)}" stroke="{REJECTED}" stroke-width="2.2" '
                        f'{common}>{tip}</path>')
        elif kind is VersionKind.CLIENT_UPDATE:
            colour = frameworks[n.record.framework or "?"]
            body.append(f'<circle cx="{_n(x)}" cy="{_n(y)}" r="{_n(radius)}" fill="{colour}" '
                        f'{common}>{tip}</circle>')
        else:
            size = 7 if kind is VersionKind.INITIAL else 6
            body.append(f'<circle cx="{_n(x)}" cy="{_n(y)}" r="{size}" fill="{INK}" stroke="#fff" '
                        f'stroke-width="1.5" {common}>{tip}</circle>')
    extra = "".join(f' {k}="{esc(v)}"' for k, v in (attrs or {}).items())
    head = '<?xml version="1.0" encoding="UTF-8"?>\n' if standalone else ""
    return (f'{head}<svg xmlns="http://www.w3.org/2000/svg" data-plot="lineage" data-points="{len(nodes)}" '
            f'width="{_n(width)}" height="{_n(height)}" viewBox="0 0 {_n(width)} {_n(height)}" role="img" '
            f'{FONT} font-size="11"{extra}><title>{esc(title)}</title>{"".join(body)}</svg>')


def _legend(frameworks: dict[str, str], top: float) -> tuple[str, float]:
    """The legend's markup and width."""
    items = [(f'<circle cx="{{x}}" cy="{_n(top + 10)}" r="6" fill="{INK}"/>', "initial / aggregate")]
    items += [(f'<circle cx="{{x}}" cy="{_n(top + 10)}" r="4" fill="{colour}"/>', f"update · {name}")
              for name, colour in frameworks.items()]
    items.append((f'<path d="M{{a}} {_n(top + 6)}L{{b}} {_n(top + 14)}M{{a}} {_n(top + 14)}L{{b}} '
                  f'{_n(top + 6)}" stroke="{REJECTED}" stroke-width="2.2"/>', "rejected reply"))
    parts, x = [], 8.0
    for mark, label in items:
        parts.append(mark.format(x=_n(x + 4), a=_n(x), b=_n(x + 8)))
        parts.append(f'<text x="{_n(x + 14)}" y="{_n(top + 14)}" fill="{INK}">'
                     f'{esc(_label(label, 40))}</text>')
        x += 28 + 6.2 * len(_label(label, 40))
    return "".join(parts), x
