"""``gdbench report``: one markdown and one self-contained HTML report from run directories or merged files.

Every number comes from the merged table (``orchestrator.merge``); a row that did not pass its checks is
shown by its status and reason, never as a number. The HTML needs no network: CSS is inline and plots are
PNG data URIs, so the file can be mailed or opened from an archive years later.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from solvers.registry import FRAMEWORKS

from .merge import load_runs, write_merged

DEVICE_ORDER = ("cpu", "gpu")
VARIANT_ORDER = ("loop", "fused")
#: The row every speedup is measured against, in the same run and at the same dimension.
BASELINE = ("numpy", "cpu", "loop")
FRAMEWORK_COLORS = {
    "numpy": "#4c72b0", "numba": "#dd8452", "jax": "#55a868", "tensorflow": "#c44e52", "torch": "#8172b3",
}
DEVICE_MARK = {"cpu": "🟩 cpu", "gpu": "🟦 gpu"}
REASON_CHARS = 40

Key = tuple[str, str, str]


# ---------------------------------------------------------------------------------------------- loading


def load_labeled(paths: Sequence[Path | str]) -> tuple[pd.DataFrame, list[str]]:
    """Merged rows plus a ``run`` label column, and the labels in input order.

    The label is the run_id; when two inputs carry the same run_id (a copied directory, a rerun with the
    same id) the input path is added so neither run silently absorbs the other.
    """
    frames = []
    for index, path in enumerate(paths):
        df = load_runs([path])
        if df.empty:
            raise ValueError(f"{path}: no valid result documents")
        df["_input"], df["_path"] = index, str(path)
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    df["run_id"] = df["run_id"].astype(str)
    owners = df.groupby("run_id")["_input"].nunique()
    labels: dict[tuple[int, str], str] = {}
    for (index, run_id), group in df.groupby(["_input", "run_id"], sort=False):
        label = run_id if owners[run_id] == 1 else f"{run_id} ({group['_path'].iloc[0]})"
        while label in labels.values():  # the same path given twice
            label += " (again)"
        labels[(int(index), str(run_id))] = label
    df["run"] = [labels[(int(i), r)] for i, r in zip(df["_input"], df["run_id"], strict=True)]
    return df.drop(columns=["_input", "_path"]), list(labels.values())


def _rank(value: str, order: Sequence[str]) -> tuple[int, str]:
    return (order.index(value) if value in order else len(order), value)


def row_keys(df: pd.DataFrame) -> list[Key]:
    """(framework, device, variant) in a fixed, readable order: registry order, CPU before GPU, loop first."""
    keys = {(str(f), str(d), str(v)) for f, d, v in zip(df["framework"], df["device"], df["variant"], strict=True)}
    return sorted(keys, key=lambda k: (_rank(k[0], FRAMEWORKS), _rank(k[1], DEVICE_ORDER), _rank(k[2], VARIANT_ORDER)))


def dims_of(df: pd.DataFrame) -> list[int]:
    return sorted({int(d) for d in df["dim"].dropna()})


def _records(df: pd.DataFrame) -> dict[tuple[str, str, str, int], dict[str, Any]]:
    """One record per (framework, device, variant, dim); the first document wins if a run repeats one."""
    out: dict[tuple[str, str, str, int], dict[str, Any]] = {}
    for rec in df.to_dict("records"):
        if rec["dim"] is None or pd.isna(rec["dim"]):
            continue
        out.setdefault((str(rec["framework"]), str(rec["device"]), str(rec["variant"]), int(rec["dim"])), rec)
    return out


def _ok(rec: dict[str, Any] | None) -> bool:
    return rec is not None and rec.get("status") == "ok" and _num(rec.get("time_per_iter_s")) is not None


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


# ---------------------------------------------------------------------------------------------- cells


@dataclass(frozen=True)
class Cell:
    """One table cell: the text shown, its kind (for styling), and the full text behind a truncation."""

    text: str
    kind: str = "ok"  # ok | failed | unavailable | invalid | missing | note
    title: str = ""


MISSING = Cell("—", "missing", "not run")


def _reason(rec: dict[str, Any]) -> str:
    return " ".join(str(rec.get("reason") or "no reason recorded").split())


def status_cell(rec: dict[str, Any] | None, with_reason: bool = False) -> Cell:
    """What a row that has no number shows instead: its status, a note number, and (if asked) the reason.

    Full reasons are listed once per run under the tables (``[n]``); repeating them in every cell of every
    table would bury the numbers.
    """
    if rec is None:
        return MISSING
    status = str(rec.get("status") or "missing")
    reason = _reason(rec)
    note = f" [{rec['_note']}]" if rec.get("_note") else ""
    kind = status if status in ("unavailable", "invalid") else "failed"
    if with_reason and status == "failed":
        short = reason if len(reason) <= REASON_CHARS else reason[: REASON_CHARS - 1] + "…"
        return Cell(f"failed{note}: {short}", kind, reason)
    return Cell(f"{status}{note}", kind, reason)


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.4g}"


def time_cell(rec: dict[str, Any] | None) -> Cell:
    if not _ok(rec):
        return status_cell(rec, with_reason=True)
    assert rec is not None
    cv = _num(rec.get("cv"))
    return Cell(fmt_ms(float(rec["time_per_iter_s"])), "ok", f"CV {cv:.1%}" if cv is not None else "")


def compile_cell(rec: dict[str, Any] | None) -> Cell:
    if not _ok(rec) or _num(rec.get("compile_s")) is None:
        return status_cell(rec) if not _ok(rec) else MISSING
    assert rec is not None
    return Cell(fmt_ms(float(rec["compile_s"])))


def error_cell(rec: dict[str, Any] | None) -> Cell:
    if not _ok(rec):
        return status_cell(rec)
    assert rec is not None
    err, tol = _num(rec.get("max_rel_error")), _num(rec.get("tolerance"))
    return Cell(f"{err:.1e}" if err is not None else "—", "ok", f"tolerance {tol:.0e}" if tol is not None else "")


def speedup(rec: dict[str, Any] | None, base: dict[str, Any] | None) -> float | None:
    if not (_ok(rec) and _ok(base)):
        return None
    assert rec is not None and base is not None
    return float(base["time_per_iter_s"]) / float(rec["time_per_iter_s"])


def speedup_cell(rec: dict[str, Any] | None, base: dict[str, Any] | None) -> Cell:
    if not _ok(rec):
        return status_cell(rec)
    s = speedup(rec, base)
    if s is None:
        return Cell("no baseline", "note", "numpy loop on CPU did not give a time at this dimension")
    return Cell(f"{s:.2f}×")


def geomean(values: Iterable[float]) -> float | None:
    logs = [math.log(v) for v in values if v > 0]
    return math.exp(sum(logs) / len(logs)) if logs else None


# ---------------------------------------------------------------------------------------------- per run


@dataclass
class Table:
    caption: str
    header: list[str]
    #: (framework, device, variant) then one cell per remaining header column.
    rows: list[tuple[Key, list[Cell]]]


@dataclass
class RunSection:
    label: str
    df: pd.DataFrame
    dims: list[int]
    keys: list[Key]
    tables: list[Table]
    summary: str
    provenance: list[tuple[str, str]]
    documents: pd.DataFrame
    notes: list[str]
    plots: dict[str, bytes] = field(default_factory=dict)


def _matrix(caption: str, keys: list[Key], dims: list[int], recs: dict, make: Callable[[Key, int], Cell],
            extra: tuple[str, Callable[[Key], Cell]] | None = None) -> Table:
    header = [f"d={d}" for d in dims] + ([extra[0]] if extra else [])
    rows = []
    for key in keys:
        cells = [make(key, d) for d in dims] + ([extra[1](key)] if extra else [])
        rows.append((key, cells))
    return Table(caption, header, rows)


def _text(value: Any) -> str:
    # Integer columns holding a NaN come back as floats; 2.0 threads reads as a mistake.
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _unique(series: pd.Series) -> str:
    values = sorted({_text(v) for v in series.dropna() if str(v) != ""})
    return "; ".join(values) if values else "—"


def _provenance(df: pd.DataFrame) -> tuple[list[tuple[str, str]], pd.DataFrame]:
    """Run-wide facts, then one line per (framework, device) document: versions and images."""
    first = df.iloc[0]
    ran = df[df["status"] == "ok"] if (df["status"] == "ok").any() else df
    problem = ", ".join(f"{k}={_unique(ran[k])}" for k in ("n", "iters", "repeats", "dtype", "seed"))
    facts = [
        ("CPU model", _unique(df["cpu_model"])),
        ("threads", _unique(df["threads"])),
        ("host", _unique(df["hostname"])),
        ("GPU", _unique(df["gpu_name"])),
        ("NVIDIA driver", _unique(df["gpu_driver_version"])),
        ("CUDA (driver)", _unique(df["cuda_driver_version"])),
        ("Docker", _unique(df["docker_version"])),
        ("problem", problem),
        ("timestamps (UTC)", f"{df['timestamp_utc'].min()} … {df['timestamp_utc'].max()}"),
        ("run id", str(first["run_id"])),
    ]
    docs = (
        df.groupby(["framework", "device"], sort=False)
        .agg(**{c: (c, _unique) for c in (
            "framework_version", "python_version", "numpy_version", "blas", "image_tag", "image_digest", "source",
        )})
        .reset_index()
    )
    return facts, docs


def _notes(keys: list[Key], recs: dict) -> list[str]:
    """Number every distinct (framework, device, status, reason) without a time; tag its records with it."""
    grouped: dict[tuple[str, str, str, str], tuple[set[str], set[int]]] = {}
    for (f, d, v, dim), rec in recs.items():
        if not _ok(rec):
            variants, dims = grouped.setdefault((f, d, str(rec.get("status")), _reason(rec)), (set(), set()))
            variants.add(v)
            dims.add(dim)
    order = {k[:2]: i for i, k in reversed(list(enumerate(keys)))}
    lines = []
    numbers = {}
    for n, ((f, d, status, reason), (variants, dims)) in enumerate(sorted(
        grouped.items(), key=lambda kv: (order.get(kv[0][:2], 0), kv[0][2:])
    ), start=1):
        names = ", ".join(sorted(variants, key=lambda v: _rank(v, VARIANT_ORDER)))
        lines.append(f"[{n}] {f}/{d} ({names}) d={','.join(map(str, sorted(dims)))}: {status}: {reason}")
        numbers[(f, d, status, reason)] = n
    for (f, d, _, _), rec in recs.items():
        if not _ok(rec):
            rec["_note"] = numbers[(f, d, str(rec.get("status")), _reason(rec))]
    return lines


def _summary(label: str, keys: list[Key], dims: list[int], recs: dict) -> str:
    parts = []
    for device in sorted({k[1] for k in keys}, key=lambda d: _rank(d, DEVICE_ORDER)):
        values = [
            s for key in keys if key[1] == device and key != BASELINE for d in dims
            if (s := speedup(recs.get((*key, d)), recs.get((*BASELINE, d)))) is not None
        ]
        g = geomean(values)
        parts.append(f"{device.upper()} {g:.2f}× over {len(values)} result(s)" if g is not None
                     else f"{device.upper()} no timed result with a baseline")
    return f"{label}: geometric mean speedup vs numpy loop on CPU — " + "; ".join(parts)


def build_section(label: str, df: pd.DataFrame) -> RunSection:
    dims, keys, recs = dims_of(df), row_keys(df), _records(df)
    notes = _notes(keys, recs)
    base = lambda d: recs.get((*BASELINE, d))  # noqa: E731

    def row_geomean(key: Key) -> Cell:
        g = geomean(s for d in dims if (s := speedup(recs.get((*key, d)), base(d))) is not None)
        return Cell(f"{g:.2f}×") if g is not None else Cell("—", "missing", "no timed result with a baseline")

    ran = df[df["status"] == "ok"] if (df["status"] == "ok").any() else df  # unrun rows carry no workload
    iters, repeats = _unique(ran["iters"]), _unique(ran["repeats"])
    tables = [
        _matrix(f"Time per iteration, ms (median of {repeats} repeats of {iters} iterations)", keys, dims, recs,
                lambda k, d: time_cell(recs.get((*k, d)))),
        _matrix("Speedup vs numpy loop on CPU (same run, same d; higher is faster)", keys, dims, recs,
                lambda k, d: speedup_cell(recs.get((*k, d)), base(d)), ("geomean", row_geomean)),
        _matrix(f"First call, ms (compile/trace plus one run of {iters} iterations)", keys, dims, recs,
                lambda k, d: compile_cell(recs.get((*k, d)))),
        _matrix("Max relative error vs the float64 reference", keys, dims, recs,
                lambda k, d: error_cell(recs.get((*k, d)))),
    ]
    facts, docs = _provenance(df)
    section = RunSection(label, df, dims, keys, tables, _summary(label, keys, dims, recs), facts, docs, notes)
    section.plots = plots(section, recs)
    return section


# ---------------------------------------------------------------------------------------------- plots


def _style(key: Key) -> dict[str, Any]:
    palette = ["#937860", "#da8bc3", "#8c8c8c", "#ccb974", "#64b5cd"]
    color = FRAMEWORK_COLORS.get(key[0]) or palette[hash(key[0]) % len(palette)]
    return {"color": color, "linestyle": "-" if key[1] == "cpu" else "--",
            "marker": "o" if key[2] == "loop" else "s", "label": " ".join(key)}


def _png(fig: Any) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _plot(section: RunSection, series: dict[Key, list[tuple[int, float]]], ylabel: str, title: str,
          baseline_line: bool) -> bytes:
    # The object API with an explicit Agg canvas: no pyplot global state, no display needed.
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator

    fig = Figure(figsize=(8, 4.6))
    ax = fig.add_subplot()
    drawn = 0
    for key, points in series.items():
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, **_style(key))
            drawn += 1
    if not drawn:
        ax.text(0.5, 0.5, "no timed results", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(section.dims, [str(d) for d in section.dims])
        ax.xaxis.set_minor_locator(NullLocator())
        # Enough plainly labelled ticks to read values: a log axis spanning under a decade has one label.
        ys = [y for points in series.values() for _, y in points] + ([1.0] if baseline_line else [])
        span = max(ys) / min(ys)
        ax.yaxis.set_major_locator(MaxNLocator(nbins=6) if span < 10
                                   else LogLocator(subs=(1.0, 2.0, 5.0) if span < 1000 else (1.0,)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_locator(NullLocator())
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    if baseline_line and drawn:
        ax.axhline(1.0, color="#444", linewidth=0.8, linestyle=":")
    ax.set_xlabel("dimension d")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    return _png(fig)


def plots(section: RunSection, recs: dict) -> dict[str, bytes]:
    """Time per iteration and speedup vs d, one line per framework × device × variant; gaps where none."""
    times = {k: [(d, float(r["time_per_iter_s"]) * 1e3) for d in section.dims if _ok(r := recs.get((*k, d)))]
             for k in section.keys}
    speed = {k: [(d, s) for d in section.dims
                 if (s := speedup(recs.get((*k, d)), recs.get((*BASELINE, d)))) is not None]
             for k in section.keys}
    return {
        "time": _plot(section, times, "ms per iteration (log)", f"{section.label}: time per iteration", False),
        "speedup": _plot(section, speed, "speedup vs numpy loop CPU (log)", f"{section.label}: speedup", True),
    }


# ---------------------------------------------------------------------------------------------- output


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-") or "run"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(table: Table) -> str:
    head = ["framework", "device", "variant", *table.header]
    lines = [f"**{table.caption}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (f, d, v), cells in table.rows:
        lines.append("| " + " | ".join([f, DEVICE_MARK.get(d, d), v, *(_md(c.text) for c in cells)]) + " |")
    return "\n".join(lines)


def render_markdown(sections: list[RunSection], files: dict[str, str], exported: Sequence[str]) -> str:
    out = ["# gdbench report", "", f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M UTC}. "
           "Times are medians per iteration; rows without a number show why (failed, unavailable, invalid), "
           "with the full reason in note [n] under the run's tables.", ""]
    out += ["## Summary", ""] + [f"- {s.summary}" for s in sections] + [""]
    for s in sections:
        out += [f"## Run {s.label}", "", "### Provenance", "", "| | |", "|---|---|"]
        out += [f"| {k} | {_md(v)} |" for k, v in s.provenance]
        out += ["", "| framework | device | version | python | numpy | BLAS | image | image digest |",
                "|" + "---|" * 8]
        for r in s.documents.to_dict("records"):
            out.append("| " + " | ".join(_md(str(r[c])) for c in (
                "framework", "device", "framework_version", "python_version", "numpy_version", "blas",
                "image_tag", "image_digest")) + " |")
        out.append("")
        for table in s.tables:
            out += [_md_table(table), ""]
        out += [f"![time per iteration]({files[f'{s.label}:time']})", "",
                f"![speedup vs numpy loop]({files[f'{s.label}:speedup']})", ""]
        if s.notes:
            out += ["### Rows without a time", ""] + [f"- {_md(n)}" for n in s.notes] + [""]
    out += ["## Data", "", "Every per-repeat time is in " + " and ".join(f"`{e}`" for e in exported)
            + " (`repeat_times_s`, seconds per repeat of `iters` iterations).", ""]
    return "\n".join(out)


CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em; color: #1b1b1b; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; } h3 { font-size: 1.05em; }
table { border-collapse: collapse; margin: 0.6em 0 1.4em; }
caption { text-align: left; font-weight: 600; padding-bottom: 0.3em; }
th, td { border: 1px solid #c8c8c8; padding: 3px 8px; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.dev-cpu td { background: #dff0d8; }
tr.dev-gpu td { background: #d9e8fb; }
td.failed { color: #a40000; font-weight: 600; }
td.unavailable, td.invalid, td.missing, td.note { color: #666; font-style: italic; }
table.kv td:first-child { font-weight: 600; }
.legend span { display: inline-block; padding: 1px 8px; margin-right: 6px; border: 1px solid #c8c8c8; }
img { max-width: 100%; display: block; margin: 0.5em 0 1em; }
code { background: #f4f4f4; padding: 0 3px; }
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _html_table(table: Table) -> str:
    parts = [f"<table class='results'><caption>{_e(table.caption)}</caption><thead><tr>",
             "<th>framework</th><th>device</th><th>variant</th>", *(f"<th>{_e(h)}</th>" for h in table.header),
             "</tr></thead><tbody>"]
    for (f, d, v), cells in table.rows:
        parts.append(f"<tr class='dev-{_e(d)}' data-framework='{_e(f)}' data-device='{_e(d)}' data-variant='{_e(v)}'>"
                     f"<td>{_e(f)}</td><td>{_e(d)}</td><td>{_e(v)}</td>")
        for c in cells:
            title = f" title='{_e(c.title)}'" if c.title else ""
            cls = "num" if c.kind == "ok" else c.kind
            parts.append(f"<td class='{cls}'{title}>{_e(c.text)}</td>")
        parts.append("</tr>")
    parts.append("</tbody></table>")
    return "".join(parts)


def _img(png: bytes, alt: str) -> str:
    return f"<img alt='{_e(alt)}' src='data:image/png;base64,{base64.b64encode(png).decode('ascii')}'>"


def render_html(sections: list[RunSection], exported: Sequence[str]) -> str:
    body = [f"<h1>gdbench report</h1><p>Generated {datetime.now(UTC):%Y-%m-%d %H:%M UTC}. Times are medians per "
            "iteration; rows without a number show why (failed, unavailable, invalid), with the full reason in "
            "note [n] under the run's tables; hover a cell for details.</p>"
            "<p class='legend'><span style='background:#dff0d8'>CPU rows</span>"
            "<span style='background:#d9e8fb'>GPU rows</span></p>",
            "<h2>Summary</h2><ul>", *(f"<li class='summary'>{_e(s.summary)}</li>" for s in sections), "</ul>"]
    for s in sections:
        facts = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in s.provenance)
        body.append(f"<section class='run' data-run='{_e(s.label)}'><h2>Run {_e(s.label)}</h2><h3>Provenance</h3>"
                    f"<table class='kv'>{facts}</table>")
        cols = ("framework", "device", "framework_version", "python_version", "numpy_version", "blas", "image_tag",
                "image_digest")
        body.append("<table class='documents'><thead><tr>" + "".join(
            f"<th>{_e(c)}</th>" for c in ("framework", "device", "version", "python", "numpy", "BLAS", "image",
                                           "image digest")) + "</tr></thead><tbody>")
        for r in s.documents.to_dict("records"):
            body.append(f"<tr class='dev-{_e(r['device'])}'>" + "".join(f"<td>{_e(r[c])}</td>" for c in cols) + "</tr>")
        body.append("</tbody></table>")
        body += [_html_table(t) for t in s.tables]
        body += [_img(s.plots["time"], f"{s.label}: time per iteration vs d"),
                 _img(s.plots["speedup"], f"{s.label}: speedup vs numpy loop vs d")]
        if s.notes:
            body.append("<h3>Rows without a time</h3><ul class='notes'>"
                        + "".join(f"<li>{_e(n)}</li>" for n in s.notes) + "</ul>")
        body.append("</section>")
    body.append("<h2>Data</h2><p>Every per-repeat time is in " + " and ".join(
        f"<a href='{_e(e)}'><code>{_e(e)}</code></a>" for e in exported)
        + " (column <code>repeat_times_s</code>, seconds per repeat).</p>")
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>gdbench report</title>"
            f"<style>{CSS}</style></head><body>" + "\n".join(body) + "</body></html>\n")


@dataclass
class ReportFiles:
    markdown: Path
    html: Path
    parquet: Path
    csv: Path
    pngs: list[Path]
    summaries: list[str]


def build_report(paths: Sequence[Path | str], out_dir: Path) -> ReportFiles:
    """Load the runs, write merged data, plots, ``report.md`` and ``report.html`` into ``out_dir``."""
    df, labels = load_labeled(paths)
    out_dir.mkdir(parents=True, exist_ok=True)
    parquet, csv = write_merged(df.drop(columns=["run"]), out_dir)
    sections = [build_section(label, df[df["run"] == label].reset_index(drop=True)) for label in labels]
    files: dict[str, str] = {}
    pngs = []
    for s in sections:
        for name, png in s.plots.items():
            path = out_dir / f"{name}-{_slug(s.label)}.png"
            path.write_bytes(png)
            files[f"{s.label}:{name}"] = path.name
            pngs.append(path)
    exported = [parquet.name, csv.name]
    md, page = out_dir / "report.md", out_dir / "report.html"
    md.write_text(render_markdown(sections, files, exported), encoding="utf-8")
    page.write_text(render_html(sections, exported), encoding="utf-8")
    return ReportFiles(md, page, parquet, csv, pngs, [s.summary for s in sections])
