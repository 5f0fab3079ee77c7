"""The site's pages from the runs' rows alone: an index, per framework a plot and a table page, per run a page.

Each run's page holds its provenance and rows; each row is the target of its points' links.

Every page is self-contained (inline style and SVG, no script, relative links only), so the site opens from
disk and from any static host. A page whose text is unchanged is not rewritten, and pages of runs or
frameworks that left the site are removed, so a re-publish touches only what changed.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.results.compare_text import p_text, ratio_text, verdict_text
from orchestrator.results.emit import html_escape as esc
from orchestrator.results.emit import html_page
from orchestrator.results.noise import ALPHA, MIN_EFFECT, sample
from orchestrator.results.publish_model import (
    AXES,
    Cell,
    Point,
    Run,
    anchor,
    build_cells,
    cell_anchor,
    cell_key,
    frameworks_devices,
)
from orchestrator.results.publish_svg import SVG_CSS, plot, unit_of
from orchestrator.results.rowkeys import text
from solvers.schema import write_atomic

PAGE_CSS = SVG_CSS + """
nav { margin-bottom: 1em; } nav a { margin-right: 1em; }
section.cell { margin-bottom: 1.5em; } .plots { display: flex; flex-wrap: wrap; gap: 0 1.2em; }
.slower { color: #c00000; font-weight: 600; } .faster { color: #1a7f1a; font-weight: 600; }
td.matrix a { font-weight: 600; } p.method { color: #555; max-width: 60em; font-size: 0.92em; }
"""
#: Provenance of one document on its run's page: label, merged column.
PROVENANCE = [
    ("framework version", "framework_version"), ("inventory host", "host"), ("host", "host_hostname"),
    ("CPU", "cpu_model"), ("threads", "threads"), ("GPU", "gpu_name"), ("NVIDIA driver", "gpu_driver_version"),
    ("CUDA (driver)", "cuda_driver_version"), ("CUDA runtime", "cuda_runtime"), ("image", "image_tag"),
    ("image digest", "image_digest"), ("Python", "python_version"), ("NumPy", "numpy_version"), ("BLAS", "blas"),
    ("kernel", "host_kernel"), ("OS", "host_os"), ("date (UTC)", "timestamp_utc"), ("n", "n"), ("iters", "iters"),
    ("dtype", "dtype"), ("document", "source"),
]


def page(title: str, body: Iterable[str], up: str = "") -> str:
    """A page of the site: the project's page and style (``emit``), a link home and a heading."""
    return html_page(title, [f'<nav><a href="{up}index.html">gdbench results</a></nav>', f"<h1>{esc(title)}</h1>",
                             *body], PAGE_CSS)


def cell_title(cell: Cell) -> str:
    framework, device, variant, dim, dtype, n = cell.key
    return f"{framework} · {device} · {variant} · d={dim} · {dtype} · n={n}"


def change_lines(cell: Cell) -> list[str]:
    """The marked changes of a cell in words, with the two runs each compares."""
    lines = []
    for axis, order in cell.orders.items():
        timed = [p for p in order if p.sample.ok]
        for before, point in pairwise(timed):
            v = point.verdicts.get(axis)
            if v is None or not v.mark:
                continue
            lines.append(f'<li><span class="{v.mark}">{esc(verdict_text(v))}</span> {ratio_text(v)} (p {p_text(v)})'
                         f" in {esc(AXES[axis])} order: <a href=\"{esc(point.href)}\">{esc(point.run.run_id)}</a> "
                         f"({esc(_where(point, axis))}) against <a href=\"{esc(before.href)}\">"
                         f"{esc(before.run.run_id)}</a> ({esc(_where(before, axis))})</li>")
    return lines


def _where(point: Point, axis: str) -> str:
    if axis == "stack":
        return point.stack
    return point.version if axis == "version" else (f"{point.date:%Y-%m-%d %H:%M}" if point.date else "no date")


def framework_page(framework: str, cells: list[Cell]) -> str:
    body = [f'<p><a href="{framework}-table.html">The same history as tables</a>. Each dot is one run\'s median '
            "time per iteration; the thick bar is its interquartile range, the thin one its fastest to slowest "
            "repeat; a dot links to the row on its run's page. ▲ slower / ▼ faster: beyond the noise against the "
            "point before it in that order. × a row without a time.</p>"]
    device = None
    for cell in cells:
        if cell.device != device:
            device = cell.device
            body.append(f'<h2 id="{esc(device)}">{esc(framework)} on {esc(device)}</h2>')
        body.append(f'<section class="cell" id="{esc(cell.anchor)}"><h3>{esc(cell_title(cell))}</h3>'
                    '<div class="plots">')
        body.extend(plot(order, axis, f"{cell_title(cell)} against {AXES[axis]}")
                    for axis, order in cell.orders.items())
        body.append("</div>")
        if changes := change_lines(cell):
            body.append("<ul>" + "".join(changes) + "</ul>")
        body.append("</section>")
    return page(f"{framework}: history per cell", body)


def _time_cells(point: Point, scale: float, unit: str) -> str:
    s = point.sample
    if not s.ok:
        reason = f": {s.reason}" if s.reason else ""
        return f'<td colspan="3" class="{esc(s.status)}">{esc(s.status + reason)}</td>'
    lo, q1, q3, hi = np.percentile(s.times, [0, 25, 75, 100])
    return (f'<td class="num">{s.median / scale:.4g} {unit}</td><td class="num">{q1 / scale:.4g}–{q3 / scale:.4g}'
            f'</td><td class="num">{lo / scale:.4g}–{hi / scale:.4g} (n={s.times.size})</td>')


def _verdict_cell(point: Point, axis: str) -> str:
    v = point.verdicts.get(axis)
    if v is None:
        return "<td></td>"
    return f'<td class="{v.mark}">{esc(verdict_text(v, point.sample.flags))} {ratio_text(v)}</td>'


def table_page(framework: str, cells: list[Cell]) -> str:
    body = [f'<p><a href="{framework}.html">The same history as plots</a>. Rows in run-date order; the verdicts '
            "compare each row with the row before it in date order and in version order.</p>"]
    for cell in cells:
        timed = [p.sample.median for p in cell.points if p.sample.ok]
        scale, unit = unit_of(max(timed) if timed else 1e-3)
        rows = [f'<tr><td><a href="{esc(p.href)}">{esc(p.run.run_id)}</a></td>'
                f"<td>{esc(f'{p.date:%Y-%m-%d %H:%M}' if p.date else '')}</td><td>{esc(p.version)}</td>"
                f"<td>{esc(p.stack)}</td>{_time_cells(p, scale, unit)}{_verdict_cell(p, 'date')}"
                f"{_verdict_cell(p, 'version')}</tr>" for p in cell.points]
        body.append(f'<table id="{esc(cell.anchor)}"><caption>{esc(cell_title(cell))}</caption><tr><th>run</th>'
                    "<th>date (UTC)</th><th>version</th><th>host · driver · CUDA</th><th>median / iter</th>"
                    "<th>IQR</th><th>min–max</th><th>vs previous date</th><th>vs previous version</th></tr>"
                    + "".join(rows) + "</table>")
    return page(f"{framework}: history per cell (tables)", body)


def method(alpha: float, min_effect: float) -> str:
    """How a mark is reached: ``compare``'s test, applied to each point and the point before it."""
    return ("Marks: in each order (version, date, host) every timed point is compared with the timed point before "
            "it by gdbench compare's test: a two-sided Mann-Whitney U test on the per-repeat times per iteration "
            f"at α={alpha:g}, not corrected for multiple comparisons, and marked ▲ slower or ▼ faster only when "
            f"p < α and the ratio of medians is outside [{1 - min_effect:.2f}, {1 + min_effect:.2f}]. Every other "
            "pair is inconclusive (≈): its difference is not larger than the runs' own noise. Spread: the thick "
            "bar is the interquartile range of the repeats, the thin one their fastest to slowest.")


def index_page(runs: list[Run], cells: list[Cell], alpha: float, min_effect: float) -> str:
    frameworks, devices = frameworks_devices(cells)
    head = "".join(f"<th>{esc(d)}</th>" for d in devices)
    rows = []
    for framework in frameworks:
        tds = []
        for device in devices:
            mine = [c for c in cells if c.framework == framework and c.device == device]
            timed = [c for c in mine if any(p.sample.ok for p in c.points)]
            if not mine:
                tds.append("<td>—</td>")
                continue
            changes = sum(c.changes for c in mine)
            tds.append(f'<td class="matrix"><a href="{esc(framework)}.html#{esc(device)}">{len(timed)} of '
                       f"{len(mine)} cells timed</a>, {len({p.run.key for c in mine for p in c.points})} runs"
                       + (f', <span class="slower">{changes} change(s) beyond the noise</span>' if changes else "")
                       + "</td>")
        rows.append(f'<tr><th><a href="{esc(framework)}.html">{esc(framework)}</a> '
                    f'(<a href="{esc(framework)}-table.html">table</a>)</th>{"".join(tds)}</tr>')
    run_rows = [f'<tr><td><a href="runs/{esc(r.key)}.html">{esc(r.run_id)}</a></td><td>{esc(r.date)}</td>'
                f"<td>{esc(', '.join(sorted({str(x['framework']) for x in r.rows})))}</td>"
                f"<td>{esc(', '.join(sorted({text(x.get('host')) or 'local' for x in r.rows})))}</td>"
                f"<td>{esc(r.source)}</td></tr>" for r in runs]
    body = [f"<p>{len(runs)} runs, {len(cells)} cells. Pick a framework for each cell's history against version, "
            "date and host.</p>",
            f'<table id="matrix"><caption>Frameworks × devices</caption><tr><th>framework</th>{head}</tr>'
            + "".join(rows) + "</table>",
            '<table id="runs"><caption>Runs, oldest first</caption><tr><th>run</th><th>date (UTC)</th>'
            "<th>frameworks</th><th>hosts</th><th>source</th></tr>" + "".join(run_rows) + "</table>",
            f'<p class="method">{esc(method(alpha, min_effect))}</p>']
    return page("gdbench results", body)


def run_page(run: Run) -> str:
    """A run's provenance (one column per document) and its rows, each row the target of its points' links."""
    docs: dict[tuple[str, ...], dict[str, Any]] = {}
    for rec in run.rows:
        docs.setdefault(tuple(text(rec.get(k)) for k in ("framework", "framework_version", "device", "host")), rec)
    head = "".join(f"<th>{esc(f)} {esc(v)} on {esc(d)} @{esc(h or 'local')}</th>" for f, v, d, h in docs)
    kv = "".join(f"<tr><td>{label}</td>" + "".join(f"<td>{esc(text(rec.get(col)) or '—')}</td>"
                                                   for rec in docs.values()) + "</tr>" for label, col in PROVENANCE)
    body = [f"<p>Source: <code>{esc(run.source)}</code></p>",
            f'<table class="kv" id="provenance"><caption>Provenance</caption><tr><th></th>{head}</tr>{kv}</table>']
    rows = []
    for rec in run.rows:
        point = Point(run, rec, sample(rec), text(rec.get("framework_version")), None, "")
        scale, unit = unit_of(point.sample.median if point.sample.ok else 1e-3)
        key = cell_key(rec)
        cell = f"../{esc(str(rec['framework']))}.html" + (f"#{esc(cell_anchor(key))}" if key else "")
        rows.append(f'<tr id="{esc(anchor(rec))}"><td><a href="{cell}">{esc(rec["framework"])}</a></td>'
                    f"<td>{esc(point.version)}</td><td>{esc(rec['device'])}</td><td>{esc(rec['variant'])}</td>"
                    f"<td>{esc(text(rec.get('dim')))}</td><td>{esc(text(rec.get('host')) or 'local')}</td>"
                    f"{_time_cells(point, scale, unit)}<td>{esc(text(rec.get('flags')))}</td></tr>")
    body.append('<table id="rows"><caption>Rows (a framework links to the cell\'s history)</caption><tr>'
                "<th>framework</th><th>version</th><th>device</th><th>variant</th><th>d</th><th>host</th>"
                "<th>median / iter</th><th>IQR</th><th>min–max</th><th>flags</th></tr>" + "".join(rows) + "</table>")
    return page(f"Run {run.run_id}", body, up="../")


def _write(path: Path, content: str, written: list[Path]) -> None:
    """Write only when the text changed, so a re-publish rewrites only the pages a new run touched; atomically,
    so a static host serving the directory never sends half a page."""
    try:
        if path.read_text(encoding="utf-8") == content:
            return
    except OSError:
        pass
    write_atomic(path, content)
    written.append(path)


def write_site(runs: list[Run], out: Path, alpha: float = ALPHA, min_effect: float = MIN_EFFECT) -> list[Path]:
    """Every page of the site into ``out``; returns the pages written (unchanged pages are not)."""
    cells = build_cells(runs, alpha, min_effect)
    frameworks, _ = frameworks_devices(cells)
    written: list[Path] = []
    (out / "runs").mkdir(parents=True, exist_ok=True)
    pages = {out / "index.html": index_page(runs, cells, alpha, min_effect)}
    for framework in frameworks:
        mine = [c for c in cells if c.framework == framework]
        pages[out / f"{framework}.html"] = framework_page(framework, mine)
        pages[out / f"{framework}-table.html"] = table_page(framework, mine)
    pages.update({out / "runs" / f"{run.key}.html": run_page(run) for run in runs})
    for path, content in pages.items():
        _write(path, content, written)
    for stale in [*out.glob("*.html"), *(out / "runs").glob("*.html")]:
        if stale not in pages:
            stale.unlink()
    return written
