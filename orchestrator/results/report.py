"""``gdbench report``: one markdown and one self-contained HTML report from run directories or merged files.

Every number comes from the merged table (``orchestrator.results.merge``); a row that did not pass its checks is
shown by its status and reason, never as a number. This module builds each run's tables, notes, provenance
and plots; the cells are ``orchestrator.results.report_cells``, the tables along a run's axes
``orchestrator.results.report_axes``, the pages ``orchestrator.results.report_pages``, and what they share
(``Table``, ``RunSection``, the plots' titles) ``orchestrator.results.report_common``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from orchestrator.results.merge import write_merged
from orchestrator.results.noise import geomean, num
from orchestrator.results.plots import Series, line_plot
from orchestrator.results.report_axes import host_differences, host_table, version_table
from orchestrator.results.report_cells import (
    Cell,
    compile_cell,
    energy_cell,
    error_cell,
    fused_cell,
    reason_text,
    speedup,
    speedup_cell,
    time_cell,
)
from orchestrator.results.report_common import Records, RunSection, Table, plot_title
from orchestrator.results.report_pages import render_html, render_markdown
from orchestrator.results.rowkeys import (
    DEVICE_ORDER,
    VARIANT_ORDER,
    Key,
    Keys,
    rank,
    records,
    row_keys,
    text,
    version_rank,
)
from orchestrator.results.table import (
    DOCUMENT_FIELDS,
    HOST_FIELDS,
    WORKLOAD_FIELDS,
    dims_of,
    distinct,
    host_fact,
    load_labeled,
    rows_that_ran,
    timed,
)

#: The row every speedup is measured against, in the same run and at the same dimension.
BASELINE = ("numpy", "cpu", "loop")


# ---------------------------------------------------------------------------------------------- per run


def _matrix(caption: str, keys: list[Key], dims: list[int], make: Callable[[Key, int], Cell],
            extra: tuple[str, Callable[[Key], Cell]] | None = None, keyer: Keys | None = None) -> Table:
    header = [f"d={d}" for d in dims] + ([extra[0]] if extra else [])
    rows = [(key, [make(key, d) for d in dims] + ([extra[1](key)] if extra else [])) for key in keys]
    return Table(caption, header, rows, keyer or Keys())


def _provenance(df: pd.DataFrame) -> tuple[list[tuple[str, str]], pd.DataFrame]:
    """Run-wide facts, then one line per (framework, device) document: versions and images."""
    ran = rows_that_ran(df)
    problem = ", ".join(f"{k}={distinct(ran[k])}" for k in WORKLOAD_FIELDS)
    facts = [(name, host_fact(df) if name == "host" else distinct(df[column])) for name, column in HOST_FIELDS] + [
        ("problem", problem),
        ("timestamps (UTC)", f"{df['timestamp_utc'].min()} … {df['timestamp_utc'].max()}"),
        ("run id", str(df.iloc[0]["run_id"])),
    ]
    groups = [df["framework"], df["device"], df["framework_version"].map(text).rename("_version"), df["host"]]
    docs = (df.groupby(groups, sort=False).agg(**{c: (c, distinct) for _, c in DOCUMENT_FIELDS})
            .reset_index().drop(columns="_version"))
    return facts, docs


def _notes(keyer: Keys, keys: list[Key], recs: Records) -> list[str]:
    """Number every distinct (row's framework, device, status, reason) without a time; tag its records with it."""
    grouped: dict[tuple[Key, str, str], tuple[set[str], set[int]]] = {}
    for cell, rec in recs.items():
        if not timed(rec):
            doc = (*cell[:2], *cell[3:-1])  # the row key without its variant: one document
            variants, dims = grouped.setdefault((doc, str(rec.get("status")), reason_text(rec)), (set(), set()))
            variants.add(cell[2])
            dims.add(cell[-1])
    order: dict[Key, int] = {}
    for i, k in enumerate(keys):
        order.setdefault((*k[:2], *k[3:]), i)
    lines = []
    numbers = {}
    for n, ((doc, status, reason), (variants, dims)) in enumerate(sorted(
        grouped.items(), key=lambda kv: (order.get(kv[0][0], 0), kv[0][1:])
    ), start=1):
        names = ", ".join(sorted(variants, key=lambda v: rank(v, VARIANT_ORDER)))
        label = keyer.label((doc[0], doc[1], "", *doc[2:]))
        lines.append(f"[{n}] {label}/{doc[1]} ({names}) d={','.join(map(str, sorted(dims)))}: {status}: {reason}")
        numbers[(doc, status, reason)] = n
    for cell, rec in recs.items():
        if not timed(rec):
            rec["_note"] = numbers[((*cell[:2], *cell[3:-1]), str(rec.get("status")), reason_text(rec))]
    return lines


def baseline_key(keyer: Keys, key: Key) -> Key:
    """numpy loop on CPU on the row's host: its newest version where the run holds several."""
    if len(key) == 3:
        return BASELINE
    versions = sorted(keyer.versions.get("numpy", ()), key=version_rank)
    return (*BASELINE, versions[-1] if versions else "", key[4])


def _summary(label: str, keyer: Keys, keys: list[Key], dims: list[int], recs: Records) -> str:
    parts = []
    for device in sorted({k[1] for k in keys}, key=lambda d: rank(d, DEVICE_ORDER)):
        values = [
            s for key in keys if key[1] == device and key != baseline_key(keyer, key) for d in dims
            if (s := speedup(recs.get((*key, d)), recs.get((*baseline_key(keyer, key), d)))) is not None
        ]
        g = geomean(values)
        parts.append(f"{device.upper()} {g:.2f}× over {len(values)} result(s)" if g is not None
                     else f"{device.upper()} no timed result with a baseline")
    return f"{label}: geometric mean speedup vs numpy loop on CPU — " + "; ".join(parts)


def _has(recs: Records, keys: list[Key], columns: Sequence[str]) -> bool:
    return any(num(rec.get(c)) is not None for cell, rec in recs.items() if cell[:-1] in keys for c in columns)


def build_section(label: str, df: pd.DataFrame) -> RunSection:
    keyer = Keys.of(df)
    dims, keys, recs = dims_of(df), row_keys(df, keyer), records(df, keyer)
    notes = _notes(keyer, keys, recs)
    base = lambda k, d: recs.get((*baseline_key(keyer, k), d))  # noqa: E731

    def row_geomean(key: Key) -> Cell:
        g = geomean(s for d in dims if (s := speedup(recs.get((*key, d)), base(key, d))) is not None)
        return Cell(f"{g:.2f}×") if g is not None else Cell("—", "missing", "no timed result with a baseline")

    ran = rows_that_ran(df)  # unrun rows carry no workload
    iters, repeats = distinct(ran["iters"]), distinct(ran["repeats"])
    newest = baseline_key(keyer, keys[0]) if keys else BASELINE
    of_numpy = f" {newest[3]}" if len(newest) > 3 and newest[3] else ""
    matrix = lambda *a, **kw: _matrix(*a, **kw, keyer=keyer)  # noqa: E731

    def path_cell(key: Key) -> Cell:
        """The library and kernel the row ran on (``kernel_path``), beside its times."""
        paths = sorted({p for d in dims if (p := text((recs.get((*key, d)) or {}).get("kernel_path")))})
        return Cell("; ".join(paths), "note") if paths else Cell("—", "missing", "not recorded by this run")

    tables = [
        matrix(f"Time per iteration, ms (median of at least {repeats} repeats of {iters} iterations; ± CV"
               f"{'; × floor' if _has(recs, keys, ('x_floor',)) else ''})", keys, dims,
               lambda k, d: time_cell(recs.get((*k, d))),
               ("code path", path_cell) if any(text(r.get("kernel_path")) for r in recs.values()) else None),
        matrix(f"Speedup vs numpy{of_numpy} loop on CPU (same run, same d; higher is faster; ≈ inside the noise)",
               keys, dims, lambda k, d: speedup_cell(recs.get((*k, d)), base(k, d)), ("geomean", row_geomean)),
        matrix(f"First call, ms (compile/trace plus one run of {iters} iterations)", keys, dims,
               lambda k, d: compile_cell(recs.get((*k, d)))),
        matrix("Max relative error vs the float64 reference", keys, dims, lambda k, d: error_cell(recs.get((*k, d)))),
    ]
    if keyer.versioned:
        tables.append(version_table(keyer, keys, dims, recs))
    fused = [k for k in keys if k[2] == "fused"]
    if _has(recs, fused, ("transfer_s", "layout_extra_bytes")):
        tables.append(matrix("Fused rows: host↔device transfer, ms, and extra memory of the re-layout", fused, dims,
                             lambda k, d: fused_cell(recs.get((*k, d)))))
    gpu = [k for k in keys if k[1] == "gpu"]
    if _has(recs, gpu, ("joules_per_iter", "avg_power_w")):
        tables.append(matrix("GPU energy per iteration, µJ, and average power, W", gpu, dims,
                             lambda k, d: energy_cell(recs.get((*k, d)))))
    if keyer.several_hosts:
        tables.append(host_table(keyer, keys, dims, recs, host_differences(df, keyer.hosts)))
    facts, docs = _provenance(df)
    return RunSection(label, df, dims, keys, tables, _summary(label, keyer, keys, dims, recs), facts, docs, notes,
                      plots(label, dims, plot_series(dims, keys, recs, keyer)), keyer)


def plot_series(dims: list[int], keys: list[Key], recs: Records, keyer: Keys | None = None) -> dict[str, Series]:
    """The data of every plot: time and speedup vs d per row (named as its table row is), and per GPU
    framework (version, host) with a timed row, µs per iteration of its variants and, where measured, its floor."""
    keyer = keyer or Keys()

    def points(key: Key, scale: float) -> list[tuple[int, float]]:
        return [(d, float(r["time_per_iter_s"]) * scale) for d in dims if timed(r := recs.get((*key, d)))]

    def shown(key: Key) -> tuple[str, str, str]:
        return (keyer.label(key), key[1], key[2])

    base = lambda k, d: recs.get((*baseline_key(keyer, k), d))  # noqa: E731
    out: dict[str, Series] = {
        "time": {shown(k): points(k, 1e3) for k in keys},
        "speedup": {shown(k): [(d, s) for d in dims if (s := speedup(recs.get((*k, d)), base(k, d))) is not None]
                    for k in keys},
    }
    for doc in dict.fromkeys((k[0], *k[3:]) for k in keys if k[1] == "gpu"):
        rows = [k for k in keys if k[1] == "gpu" and (k[0], *k[3:]) == doc]
        lines: Series = {shown(k): points(k, 1e6) for k in rows}
        if any(lines.values()):
            name = keyer.label((doc[0], "gpu", "", *doc[1:]))
            floor = {cell[-1]: f * 1e6 for cell, r in recs.items()
                     if cell[:-1] in rows and (f := num(r.get("floor_s"))) is not None}
            lines[(name, "gpu", "floor")] = sorted(floor.items())
            out[f"gpu-{name}"] = lines
    return out


def plots(label: str, dims: list[int], series: dict[str, Series]) -> dict[str, bytes]:
    axes = {"time": "ms per iteration (log)", "speedup": "speedup vs numpy loop CPU (log)"}
    titles = {"time": "time per iteration", "speedup": "speedup"}
    return {name: line_plot(data, dims, axes.get(name, "µs per iteration (log)"),
                            f"{label}: {titles.get(name) or plot_title(name)}", unit_line=name == "speedup")
            for name, data in series.items()}


# ---------------------------------------------------------------------------------------------- files


@dataclass
class ReportFiles:
    markdown: Path
    html: Path
    parquet: Path
    csv: Path
    pngs: list[Path]
    summaries: list[str]


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-") or "run"


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
            path = out_dir / f"{_slug(name)}-{_slug(s.label)}.png"
            path.write_bytes(png)
            files[f"{s.label}:{name}"] = path.name
            pngs.append(path)
    exported = [parquet.name, csv.name]
    md, page = out_dir / "report.md", out_dir / "report.html"
    md.write_text(render_markdown(sections, files, exported), encoding="utf-8")
    page.write_text(render_html(sections, exported), encoding="utf-8")
    return ReportFiles(md, page, parquet, csv, pngs, [s.summary for s in sections])
