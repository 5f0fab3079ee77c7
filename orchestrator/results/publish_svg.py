"""The site's plots as inline SVG written here: no script, no library, no CDN, and every point a link.

One plot is one cell's history in one order (version, date or host stack): a dot at each run's median time
per iteration, a thick bar over its interquartile range and a thin one from its fastest to its slowest repeat,
wrapped in ``<a href>`` to the row on its run's page with a ``<title>`` tooltip (median, spread, provenance,
verdict). A change beyond the noise against the previous point is marked ▲ (slower, red) or ▼ (faster, green).
A row without a time is a grey × on the axis, linked the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np

from orchestrator.results.compare_text import p_text, ratio_text, sample_text, verdict_text
from orchestrator.results.emit import html_escape as esc
from orchestrator.results.publish_model import AXES, Point
from orchestrator.results.rowkeys import text

W, H = 540, 240
LEFT, RIGHT, TOP, BOTTOM = 70, 16, 16, 64
PLOT_W, PLOT_H = W - LEFT - RIGHT, H - TOP - BOTTOM
UNITS = ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns"))
MAX_TICK_LABELS = 12


def unit_of(high: float) -> tuple[float, str]:
    """The largest unit the slowest time reaches (seconds per iteration → s, ms, µs or ns)."""
    return next(((scale, name) for scale, name in UNITS if high >= scale), UNITS[-1])


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]."""
    span = max(high - low, abs(high) * 1e-6, 1e-300)
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step) + 1)]


def _x_positions(order: list[Point], axis: str) -> tuple[list[float], list[tuple[float, str]]]:
    """Each point's x in [0, 1] and the labelled ticks: categories for version and stack (several runs of
    one value side by side), time for dates (by order where a date is missing or all dates are equal)."""
    if axis == "date" and all(p.date for p in order) and len({p.date for p in order}) > 1:
        stamps = [p.date.timestamp() for p in order]  # type: ignore[union-attr]
        lo, hi = min(stamps), max(stamps)
        xs = [0.04 + 0.92 * (s - lo) / (hi - lo) for s in stamps]
        fmt = "%Y-%m-%d" if hi - lo > 3 * 86400 else "%m-%d %H:%M"
        return xs, [(0.04 + 0.92 * i / 4, datetime.fromtimestamp(lo + (hi - lo) * i / 4, UTC).strftime(fmt))
                    for i in range(5)]
    value: Callable[[Point], str] = {"version": lambda p: p.version or "?", "stack": lambda p: p.stack}.get(
        axis, lambda p: p.date.strftime("%Y-%m-%d %H:%M") if p.date else p.run.run_id)
    slots = list(dict.fromkeys(value(p) for p in order))
    members: dict[str, list[int]] = {}
    for i, p in enumerate(order):
        members.setdefault(value(p), []).append(i)
    xs = [0.0] * len(order)
    width = 1 / len(slots)
    for s, slot in enumerate(slots):
        group = members[slot]
        for j, i in enumerate(group):
            xs[i] = width * (s + 0.5 + (0.6 * ((j + 0.5) / len(group) - 0.5) if len(group) > 1 else 0))
    every = max(1, math.ceil(len(slots) / MAX_TICK_LABELS))
    return xs, [(width * (s + 0.5), slot) for s, slot in enumerate(slots) if s % every == 0]


def tooltip(point: Point, axis: str, scale: float, unit: str) -> str:
    """What hovering a point says: the run, its time and spread, where it ran, and the verdict."""
    rec, s = point.rec, point.sample
    lines = [f"run {point.run.run_id} · {rec['framework']} {point.version} · {point.date:%Y-%m-%d %H:%M} UTC"
             if point.date else f"run {point.run.run_id} · {rec['framework']} {point.version}"]
    if s.ok:
        lo, q1, q3, hi = np.percentile(s.times, [0, 25, 75, 100])
        lines.append(f"median {s.median / scale:.4g} {unit}/iter · IQR {q1 / scale:.4g}–{q3 / scale:.4g} · "
                     f"min–max {lo / scale:.4g}–{hi / scale:.4g} · {s.times.size} repeats")
    else:
        lines.append(sample_text(s))
    lines.append(" · ".join(x for x in (point.stack, text(rec.get("cpu_model")), text(rec.get("gpu_name")),
                                         text(rec.get("image_tag")),
                                         f"Python {text(rec.get('python_version'))}") if x))
    if v := point.verdicts.get(axis):
        lines.append(f"vs previous: {verdict_text(v, s.flags)} ({ratio_text(v)}, p {p_text(v)})")
    return "\n".join(lines)


def plot(order: list[Point], axis: str, caption: str) -> str:
    """One cell's history in one order as an ``<svg>`` element (points in ``order``, left to right)."""
    timed = [p for p in order if p.sample.ok]
    values = np.concatenate([p.sample.times for p in timed]) if timed else np.array([1e-3])
    scale, unit = unit_of(float(values.max()))
    lo, hi = float(values.min()) / scale, float(values.max()) / scale
    pad = (hi - lo) * 0.12 or hi * 0.05 or 1.0  # room for the marks above and below the bars
    ticks = nice_ticks(max(lo - pad, 0.0), hi + pad)
    y_lo, y_hi = min(ticks[0], lo - pad), max(ticks[-1], hi + pad)
    y_lo = max(y_lo, 0.0)

    def y(v: float) -> float:
        return TOP + PLOT_H * (1 - (v / scale - y_lo) / (y_hi - y_lo))

    xs, xticks = _x_positions(order, axis)
    out = [f'<svg class="plot" data-axis="{axis}" viewBox="0 0 {W} {H}" width="{W}" height="{H}" '
           f'role="img" aria-label="{esc(caption)}" xmlns="http://www.w3.org/2000/svg">',
           f"<title>{esc(caption)}</title>",
           f'<rect class="frame" x="{LEFT}" y="{TOP}" width="{PLOT_W}" height="{PLOT_H}"/>']
    for t in ticks:
        ty = TOP + PLOT_H * (1 - (t - y_lo) / (y_hi - y_lo))
        out.append(f'<line class="grid" x1="{LEFT}" x2="{LEFT + PLOT_W}" y1="{ty:.1f}" y2="{ty:.1f}"/>'
                   f'<text class="tick" x="{LEFT - 6}" y="{ty + 4:.1f}" text-anchor="end">{t:.4g}</text>')
    out.append(f'<text class="axis" x="14" y="{TOP + PLOT_H / 2:.0f}" text-anchor="middle" '
               f'transform="rotate(-90 14 {TOP + PLOT_H / 2:.0f})">{unit} per iteration</text>')
    base = TOP + PLOT_H
    rotate = len(xticks) > 4 or max((len(label) for _, label in xticks), default=0) > 14
    for fx, label in xticks:
        tx = LEFT + PLOT_W * fx
        anchor = (f' text-anchor="end" transform="rotate(-25 {tx:.1f} {base + 14:.1f})"' if rotate
                  else ' text-anchor="middle"')
        out.append(f'<text class="tick" x="{tx:.1f}" y="{base + 14:.1f}"{anchor}>{esc(label[:28])}</text>')
    out.append(f'<text class="axis" x="{LEFT + PLOT_W / 2:.0f}" y="{base + (56 if rotate else 32)}" '
               'text-anchor="middle">'
               f"{esc(AXES[axis])}</text>")
    line = [f"{LEFT + PLOT_W * x:.1f},{y(p.sample.median):.1f}" for p, x in zip(order, xs, strict=True)
            if p.sample.ok]
    if len(line) > 1:
        out.append(f'<polyline class="trend" points="{" ".join(line)}"/>')
    for p, fx in zip(order, xs, strict=True):
        px = LEFT + PLOT_W * fx
        out.append(f'<a class="pt" href="{esc(p.href)}" data-run="{esc(p.run.key)}">'
                   f"<title>{esc(tooltip(p, axis, scale, unit))}</title>")
        if p.sample.ok:
            q0, q1, q3, q4 = np.percentile(p.sample.times, [0, 25, 75, 100])
            my = y(p.sample.median)
            out.append(f'<line class="range" x1="{px:.1f}" x2="{px:.1f}" y1="{y(q0):.1f}" y2="{y(q4):.1f}"/>'
                       f'<line class="iqr" x1="{px:.1f}" x2="{px:.1f}" y1="{y(q1):.1f}" y2="{y(q3):.1f}"/>'
                       f'<circle cx="{px:.1f}" cy="{my:.1f}" r="4"/>')
            mark = (v := p.verdicts.get(axis)) and v.mark
            if mark == "slower":
                out.append(f'<text class="mark slower" x="{px:.1f}" y="{y(q4) - 5:.1f}" '
                           'text-anchor="middle">▲</text>')
            elif mark == "faster":
                out.append(f'<text class="mark faster" x="{px:.1f}" y="{y(q0) + 15:.1f}" '
                           'text-anchor="middle">▼</text>')
        else:
            out.append(f'<text class="untimed" x="{px:.1f}" y="{base - 3:.1f}" text-anchor="middle">×</text>')
        out.append("</a>")
    out.append("</svg>")
    return "\n".join(out)


SVG_CSS = """
svg.plot { display: block; margin: 0.3em 0 0.8em; max-width: 100%; height: auto; background: #fff; }
svg.plot .frame { fill: #fcfcfc; stroke: #bbb; }
svg.plot .grid { stroke: #e4e4e4; }
svg.plot .tick, svg.plot .axis { font: 11px system-ui, sans-serif; fill: #444; }
svg.plot .trend { fill: none; stroke: #9bb7d4; stroke-width: 1; }
svg.plot .range { stroke: #5a7fa8; stroke-width: 1; }
svg.plot .iqr { stroke: #2b5d94; stroke-width: 4; }
svg.plot circle { fill: #1f4e85; stroke: #fff; stroke-width: 1; }
svg.plot a.pt:hover circle { fill: #e08a00; }
svg.plot .mark { font: bold 13px system-ui, sans-serif; }
svg.plot .slower { fill: #c00000; } svg.plot .faster { fill: #1a7f1a; }
svg.plot .untimed { font: bold 14px system-ui, sans-serif; fill: #888; }
"""
