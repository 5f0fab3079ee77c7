"""PNG line plots of plain data: series of (d, value) per (framework, device, variant), log-log.

Matplotlib's object API on an explicit Agg canvas: no pyplot global state and no display, so the report
renders the same on a headless CI runner as on a laptop.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from solvers.registry import REGISTRY

#: A line whose name is no registered framework takes one of these (each framework's own is in solvers.registry).
PALETTE = ("#937860", "#da8bc3", "#8c8c8c", "#ccb974", "#64b5cd")

#: (framework, device, variant), or any tuple whose first item names the line's framework.
SeriesKey = tuple[str, ...]
Series = dict[SeriesKey, list[tuple[int, float]]]


#: Lighter or darker of the framework's colour for its second, third, … version (or host) in one plot.
SHADES = (0.0, -0.35, 0.4, -0.6, 0.65)


def _shade(color: str, amount: float) -> str:
    """``color`` mixed towards black (amount < 0) or white (amount > 0)."""
    rgb = [int(color[i:i + 2], 16) for i in (1, 3, 5)]
    mixed = [c * (1 + amount) if amount < 0 else c + (255 - c) * amount for c in rgb]
    return "#" + "".join(f"{round(c):02x}" for c in mixed)


def shades(keys: Sequence[SeriesKey]) -> dict[str, int]:
    """The n-th distinct label of one framework ("numpy 1.26.4", "numpy 2.4.6 @gpu1", …) gets shade n."""
    seen: dict[str, list[str]] = {}
    for key in keys:
        labels = seen.setdefault(key[0].split(" ")[0], [])
        if key[0] not in labels:
            labels.append(key[0])
    return {label: i for labels in seen.values() for i, label in enumerate(labels)}


def line_style(key: SeriesKey, shade: int = 0) -> dict[str, Any]:
    """Colour by framework (shaded per version or host), solid CPU / dashed GPU, circle loop / square fused;
    a dotted grey floor line."""
    if key[-1] == "floor":
        return {"color": "#444", "linestyle": ":", "marker": "x", "label": " ".join(key)}
    name = key[0].split(" ")[0]
    entry = REGISTRY.get(name)
    color = entry.color if entry else PALETTE[sum(map(ord, name)) % len(PALETTE)]
    color = _shade(color, SHADES[shade % len(SHADES)])
    device, variant = (key[1], key[2]) if len(key) >= 3 else ("cpu", "loop")
    return {"color": color, "linestyle": "-" if device == "cpu" else "--",
            "marker": "o" if variant == "loop" else "s", "label": " ".join(key)}


def png(fig: Any) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def line_plot(series: Series, dims: Sequence[int], ylabel: str, title: str, unit_line: bool = False) -> bytes:
    """One line per series over ``dims`` (gaps where a series has no point); ``unit_line`` marks y = 1."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator

    fig = Figure(figsize=(8, 4.6))
    ax = fig.add_subplot()
    drawn = 0
    shade = shades(list(series))
    for key, points in series.items():
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, **line_style(key, shade.get(key[0], 0)))
            drawn += 1
    if not drawn:
        ax.text(0.5, 0.5, "no timed results", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(list(dims), [str(d) for d in dims])
        ax.xaxis.set_minor_locator(NullLocator())
        # Enough plainly labelled ticks to read values: a log axis spanning under a decade has one label.
        ys = [y for points in series.values() for _, y in points] + ([1.0] if unit_line else [])
        span = max(ys) / min(ys)
        ax.yaxis.set_major_locator(MaxNLocator(nbins=6) if span < 10
                                   else LogLocator(subs=(1.0, 2.0, 5.0) if span < 1000 else (1.0,)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
        if unit_line:
            ax.axhline(1.0, color="#444", linewidth=0.8, linestyle=":")
    ax.set_xlabel("dimension d")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    return png(fig)
