"""Small SVG drawing for the report: escaping, scales, line charts, stacked bars, dot strips.

Every chart is one ``<svg data-plot=NAME data-points=N>`` in which each data point is one element
carrying a ``data-point`` attribute, so a browser test can count what was drawn. Colours and styles
are attributes, never CSS classes, so a chart is also a valid standalone SVG file. No script, no
external reference: a drawing opens offline.

Every string passed in may come from a client (ids, reasons, framework names): it is escaped here,
where the markup is written, and control characters become visible escapes (XML forbids most of
them, so a standalone SVG would not even parse).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "Band",
    "Series",
    "Stack",
    "dot_strip",
    "esc",
    "extent",
    "fmt",
    "line_chart",
    "palette",
    "stacked_bars",
]

#: Colour-blind-friendly categorical colours (Okabe-Ito, then Tableau), in order of assignment.
_COLOURS = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#4e79a7",
            "#59a14f", "#b07aa1", "#9c755f", "#76b7b2")
REJECTED = "#c0392b"
INK = "#222"
MUTED = "#888"
GRID = "#e6e6e6"
FONT = "font-family=\"system-ui, -apple-system, 'Segoe UI', sans-serif\""


def esc(text: object) -> str:
    r"""``text`` safe inside HTML and XML text or a quoted attribute.

    Characters XML cannot carry (C0/C1 controls other than tab and newline, lone surrogates) become
    visible escapes such as ``\x1b``, so two ids that differ only in them still look different.
    """
    cleaned = "".join(
        ch if (ch.isprintable() or ch in "\t\n ") and not 0xD800 <= ord(ch) <= 0xDFFF
        else ch.encode("unicode_escape", "backslashreplace").decode("ascii")
        for ch in str(text))
    return html.escape(cleaned, quote=True)


def fmt(value: float) -> str:
    """A number for a label or tooltip: 4 significant digits, integers plainly."""
    if not math.isfinite(value):
        return str(value)
    if value == int(value) and abs(value) < 1e9:
        return str(int(value))
    return f"{value:.4g}"


def palette(names: Sequence[str]) -> dict[str, str]:
    """A stable colour per name (the names' sorted order decides, so reports agree)."""
    return {name: _COLOURS[i % len(_COLOURS)] for i, name in enumerate(sorted(set(names)))}


def _n(value: float) -> str:
    """A coordinate, short."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0]
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 12))
    return ticks


@dataclass(frozen=True)
class Series:
    """One line: ``(x, y)`` points, each with an optional tooltip."""

    label: str
    colour: str
    points: Sequence[tuple[float, float]]
    tips: Sequence[str] = ()
    dashed: bool = False
    markers: bool = True


@dataclass(frozen=True)
class Band:
    """A shaded area between a lower and an upper line over the same x values."""

    colour: str
    lower: Sequence[tuple[float, float]]
    upper: Sequence[tuple[float, float]]


@dataclass(frozen=True)
class Stack:
    """One segment kind of a stacked bar chart: a value per x."""

    label: str
    colour: str
    values: dict[int, float] = field(default_factory=dict)


@dataclass(frozen=True)
class _Frame:
    """Plot area and scales of one chart."""

    width: float
    height: float
    left: float
    top: float
    right: float
    bottom: float
    x0: float
    x1: float
    y0: float
    y1: float

    def x(self, value: float) -> float:
        span = self.x1 - self.x0 or 1.0
        return self.left + (value - self.x0) / span * (self.width - self.left - self.right)

    def y(self, value: float) -> float:
        span = self.y1 - self.y0 or 1.0
        return self.height - self.bottom - (value - self.y0) / span * (self.height - self.top - self.bottom)


def _open(name: str, points: int, width: float, height: float, title: str, extra: str = "") -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" data-plot="{esc(name)}" data-points="{points}" '
            f'width="{_n(width)}" height="{_n(height)}" viewBox="0 0 {_n(width)} {_n(height)}" '
            f'role="img" {FONT} font-size="11"{extra}><title>{esc(title)}</title>')


def _legend(items: Sequence[tuple[str, str, bool]], left: float, top: float,
            width: float) -> tuple[str, float]:
    """Legend entries (label, colour, dashed) laid out in rows; returns markup and its height."""
    parts, x, y = [], left, top + 10
    for label, colour, dashed in items:
        text = label if len(label) <= 60 else label[:59] + "…"
        size = 26 + 6.2 * len(text)
        if x > left and x + size > width:
            x, y = left, y + 15
        dash = ' stroke-dasharray="5 3"' if dashed else ""
        parts.append(f'<line x1="{_n(x)}" y1="{_n(y - 4)}" x2="{_n(x + 16)}" y2="{_n(y - 4)}" '
                     f'stroke="{colour}" stroke-width="2.5"{dash}/>'
                     f'<text x="{_n(x + 20)}" y="{_n(y)}" fill="{INK}">{esc(text)}</text>')
        x += size + 12
    return "".join(parts), (y - top + 8 if items else 0)


def _axes(frame: _Frame, x_ticks: Sequence[float], y_ticks: Sequence[float], x_label: str, y_label: str,
          x_names: dict[float, str] | None = None) -> str:
    parts = []
    for value in y_ticks:
        y = frame.y(value)
        parts.append(f'<line x1="{_n(frame.left)}" y1="{_n(y)}" x2="{_n(frame.width - frame.right)}" '
                     f'y2="{_n(y)}" stroke="{GRID}"/><text x="{_n(frame.left - 6)}" y="{_n(y + 4)}" '
                     f'text-anchor="end" fill="{MUTED}">{esc(fmt(value))}</text>')
    base = frame.height - frame.bottom
    for value in x_ticks:
        x = frame.x(value)
        name = (x_names or {}).get(value, fmt(value))
        parts.append(f'<line x1="{_n(x)}" y1="{_n(base)}" x2="{_n(x)}" y2="{_n(base + 4)}" stroke="{MUTED}"/>'
                     f'<text x="{_n(x)}" y="{_n(base + 16)}" text-anchor="middle" fill="{MUTED}">'
                     f'{esc(name)}</text>')
    parts.append(f'<line x1="{_n(frame.left)}" y1="{_n(base)}" x2="{_n(frame.width - frame.right)}" '
                 f'y2="{_n(base)}" stroke="{MUTED}"/>')
    parts.append(f'<text x="{_n((frame.left + frame.width - frame.right) / 2)}" y="{_n(frame.height - 4)}" '
                 f'text-anchor="middle" fill="{INK}">{esc(x_label)}</text>')
    middle = (frame.top + base) / 2
    parts.append(f'<text x="12" y="{_n(middle)}" text-anchor="middle" fill="{INK}" '
                 f'transform="rotate(-90 12 {_n(middle)})">{esc(y_label)}</text>')
    return "".join(parts)


def _round_ticks(x0: float, x1: float, width: float) -> list[float]:
    """Integer round ticks, thinned so labels do not overlap."""
    span = max(int(x1 - x0), 1)
    step = max(1, math.ceil(span / max(width / 40, 1)))
    step = next((s for s in (1, 2, 5, 10, 20, 25, 50, 100, 200, 500, 1000) if s >= step), step)
    return [float(v) for v in range(int(math.ceil(x0)), int(x1) + 1) if v % step == 0]


def extent(values: Sequence[float]) -> tuple[float, float] | None:
    """The finite values' range with 5 % room that crosses neither 0 nor, for values in [0, 1], 1."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return None
    low, high = min(finite), max(finite)
    pad = (high - low) * 0.05 or abs(high) * 0.05 or 0.5
    return (low - pad if low < 0 else max(low - pad, 0.0)), (high + pad if high > 1 else min(high + pad, 1.0))


def _y_domain(values: Sequence[float], y_domain: tuple[float, float] | None) -> tuple[float, float]:
    return y_domain or extent(values) or (0.0, 1.0)


def line_chart(name: str, title: str, series: Sequence[Series], *, x_label: str, y_label: str,
               x_domain: tuple[float, float] | None = None, y_domain: tuple[float, float] | None = None,
               bands: Sequence[Band] = (), width: float = 640, height: float = 280,
               attrs: dict[str, str] | None = None) -> str:
    """Lines over rounds; one marker (a ``data-point``) per finite point."""
    clean = []
    for s in series:
        tips = [*s.tips, *[""] * (len(s.points) - len(s.tips))]
        kept = [(p, t) for p, t in zip(s.points, tips, strict=False) if math.isfinite(p[1])]
        clean.append(Series(s.label, s.colour, [p for p, _ in kept], [t for _, t in kept], s.dashed,
                            s.markers))
    xs = [x for s in clean for x, _ in s.points] or [0.0, 1.0]
    ys = [y for s in clean for _, y in s.points] + [y for b in bands for _, y in (*b.lower, *b.upper)]
    x0, x1 = x_domain or (min(xs), max(xs))
    y_low, y_high = _y_domain(ys, y_domain)
    y_ticks = nice_ticks(y_low, y_high)
    legend, legend_height = _legend([(s.label, s.colour, s.dashed) for s in clean], 56, 2, width)
    frame = _Frame(width, height + legend_height, 56, 10 + legend_height, 14, 38,
                   x0, x1 if x1 > x0 else x0 + 1, y_ticks[0], y_ticks[-1])
    body = [_axes(frame, _round_ticks(frame.x0, frame.x1, width), y_ticks, x_label, y_label), legend]
    for band in bands:
        outline = [*band.upper, *reversed(band.lower)]
        if outline:
            corners = " ".join(f"{_n(frame.x(x))},{_n(frame.y(y))}" for x, y in outline)
            body.append(f'<polygon points="{corners}" fill="{band.colour}" fill-opacity="0.15" '
                        'stroke="none"/>')
    points = 0
    for s in clean:
        if not s.points:
            continue
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        path = " ".join(f"{_n(frame.x(x))},{_n(frame.y(y))}" for x, y in s.points)
        body.append(f'<polyline points="{path}" fill="none" stroke="{s.colour}" stroke-width="2"{dash}/>')
        radius = 3 if s.markers and len(s.points) <= 60 else 1.6
        for (x, y), tip in zip(s.points, s.tips, strict=True):
            label = f"{s.label} · round {fmt(x)}: {fmt(y)}" + (f" · {tip}" if tip else "")
            body.append(f'<circle cx="{_n(frame.x(x))}" cy="{_n(frame.y(y))}" r="{radius}" '
                        f'fill="{s.colour}" data-point=""><title>{esc(label)}</title></circle>')
            points += 1
    extra = "".join(f' {k}="{esc(v)}"' for k, v in (attrs or {}).items())
    return _open(name, points, width, frame.height, title, extra) + "".join(body) + "</svg>"


def stacked_bars(name: str, title: str, stacks: Sequence[Stack], *, x_label: str, y_label: str,
                 x_domain: tuple[float, float], y_max: float | None = None, width: float = 640,
                 height: float = 240, attrs: dict[str, str] | None = None) -> str:
    """One stacked bar per round; each non-empty segment is a ``data-point``."""
    rounds = sorted({x for s in stacks for x, v in s.values.items() if v > 0})
    totals = [sum(s.values.get(x, 0) for s in stacks) for x in rounds]
    y_ticks = nice_ticks(0, max([y_max or 0.0, *totals, 1.0]))
    legend, legend_height = _legend([(s.label, s.colour, False) for s in stacks], 56, 2, width)
    x0, x1 = x_domain[0] - 0.5, x_domain[1] + 0.5
    frame = _Frame(width, height + legend_height, 56, 10 + legend_height, 14, 38, x0, x1, 0, y_ticks[-1])
    slot = frame.x(1) - frame.x(0)
    bar = max(min(slot * 0.7, 36), 1.0)
    body = [_axes(frame, _round_ticks(x_domain[0], x_domain[1], width), y_ticks, x_label, y_label), legend]
    points = 0
    for x in rounds:
        base = 0.0
        for s in stacks:
            value = s.values.get(x, 0)
            if value <= 0:
                continue
            top, bottom = frame.y(base + value), frame.y(base)
            body.append(f'<rect x="{_n(frame.x(x) - bar / 2)}" y="{_n(top)}" width="{_n(bar)}" '
                        f'height="{_n(max(bottom - top, 0.5))}" fill="{s.colour}" data-point="">'
                        f'<title>{esc(f"round {x}: {s.label} {fmt(value)}")}</title></rect>')
            base += value
            points += 1
    extra = "".join(f' {k}="{esc(v)}"' for k, v in (attrs or {}).items())
    return _open(name, points, width, frame.height, title, extra) + "".join(body) + "</svg>"


def dot_strip(name: str, title: str, rows: Sequence[tuple[str, Sequence[tuple[float, str, bool]]]], *,
              x_label: str, width: float = 640, attrs: dict[str, str] | None = None) -> str:
    """One row per label, one dot per value (tooltip, highlighted?) on a shared x axis."""
    values = [v for _, dots in rows for v, _, _ in dots if math.isfinite(v)]
    low, high = _y_domain(values, None)
    ticks = nice_ticks(low, high)
    row_height, label_width = 26, 200
    height = 44 + row_height * len(rows)
    frame = _Frame(width, height, label_width, 8, 14, 36, ticks[0], ticks[-1], 0, 1)
    base = height - frame.bottom
    body = []
    for value in ticks:
        x = frame.x(value)
        body.append(f'<line x1="{_n(x)}" y1="{_n(frame.top)}" x2="{_n(x)}" y2="{_n(base)}" stroke="{GRID}"/>'
                    f'<text x="{_n(x)}" y="{_n(base + 14)}" text-anchor="middle" fill="{MUTED}">'
                    f'{esc(fmt(value))}</text>')
    body.append(f'<text x="{_n((label_width + width) / 2)}" y="{_n(height - 4)}" text-anchor="middle" '
                f'fill="{INK}">{esc(x_label)}</text>')
    points = 0
    for i, (label, dots) in enumerate(rows):
        y = frame.top + row_height * (i + 0.5)
        shown = label if len(label) <= 30 else label[:29] + "…"
        body.append(f'<text x="{_n(label_width - 8)}" y="{_n(y + 4)}" text-anchor="end" fill="{INK}">'
                    f'{esc(shown)}</text>')
        seen: dict[str, int] = {}
        for value, tip, marked in dots:
            if not math.isfinite(value):
                continue
            colour = REJECTED if marked else _COLOURS[0]
            cx = _n(frame.x(value))
            offset = seen.get(cx, 0)  # equal values step up and down instead of hiding each other
            seen[cx] = offset + 1
            shift = (offset + 1) // 2 * 5 * (1 if offset % 2 else -1)
            body.append(f'<circle cx="{cx}" cy="{_n(y + shift)}" r="{5 if marked else 4}" '
                        f'fill="{colour}" fill-opacity="0.75" data-point="">'
                        f'<title>{esc(tip)}</title></circle>')
            points += 1
    extra = "".join(f' {k}="{esc(v)}"' for k, v in (attrs or {}).items())
    return _open(name, points, width, height, title, extra) + "".join(body) + "</svg>"
