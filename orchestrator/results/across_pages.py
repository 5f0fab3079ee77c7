"""What ``compare --across`` prints and writes: per framework, the differing provenance, the table and its
verdict line, in the terminal, markdown, HTML and a long-form CSV that keeps every per-repeat time."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from orchestrator.results.compare_across import Across, Group, Match
from orchestrator.results.compare_text import (
    STYLES,
    method_text,
    p_text,
    ratio_text,
    sample_text,
    verdict_cells,
    verdict_text,
    write_pages,
)
from orchestrator.results.emit import VERDICT_CSS, html_escape, html_page, html_table, md_escape, md_table
from orchestrator.results.noise import Verdict


def _columns(c: Across, g: Group) -> list[str]:
    """The fields that tell this group's matches apart beyond device, variant and d."""
    out = []
    if c.axis != "framework_version" and len({m.version for m in g.matches}) > 1:
        out.append("version")
    if c.axis != "host" and len({m.host for m in g.matches}) > 1:
        out.append("host")
    if c.several_runs and any(m.run for m in g.matches):
        out.append("run")
    return out


def _flagged(g: Group, m: Match, value: str) -> list[str]:
    return [f"{v} {', '.join(s.flags)}" for v in (g.values[0], value)
            if (s := m.samples.get(v)) is not None and s.ok and s.flags]


def table_rows(c: Across, g: Group) -> tuple[list[str], list[list[str]]]:
    """Header and rows of one framework's table (shared by terminal, markdown and HTML)."""
    extra = _columns(c, g)
    first, *others = g.values
    header = ["device", "variant", "d", *extra, first]
    for value in others:
        header += [value, f"{value}/{first}", "p", "verdict"]
    rows = []
    for m in g.matches:
        shown = {"version": m.version, "host": m.host, "run": m.run or "across runs"}
        row = [m.device, m.variant, str(m.dim), *(shown[x] for x in extra), sample_text(m.samples[first])]
        for value in others:
            v = m.verdicts.get(value, Verdict(text="not in this match"))
            row += [sample_text(m.samples[value]), ratio_text(v), p_text(v), verdict_text(v, _flagged(g, m, value))]
        rows.append(row)
    return header, rows


def title(c: Across, g: Group) -> str:
    return f"{g.framework} across {c.axis}: {' vs '.join(g.values)} (each against {g.values[0]})"


def print_terminal(c: Across, file: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(file=file)
    if not console.is_terminal:
        console = Console(file=file, width=200)
    console.print(Text(f"Runs: {', '.join(c.labels)}. Ratios are each value's median over the first value's."))
    for w in c.warnings:
        console.print(Text(f"warning: {w}", style="bold yellow"))
    for g in c.groups:
        console.print(Text(title(c, g), style="bold"))
        prov = Table(title="Provenance that differs", title_justify="left")
        prov.add_column("")
        for value in g.values:
            prov.add_column(Text(value), overflow="fold")
        for name, values in g.provenance:
            prov.add_row(Text(name), *(Text(v) for v in values))
        console.print(prov)
        header, rows = table_rows(c, g)
        table = Table(title="Median time per iteration", title_justify="left")
        for h in header:
            table.add_column(Text(h), overflow="fold")
        for row in rows:
            table.add_row(*(Text(cell, style=STYLES.get(cell[:1], ("", ""))[0]) for cell in row))
        console.print(table)
    console.print(Text("Verdict per framework", style="bold"))
    for g in c.groups:
        for line in g.verdict_lines():
            console.print(Text(line))
    console.print(Text(method_text(c.alpha, c.min_effect, side="value")))


def render_markdown(c: Across) -> str:
    md = md_escape
    out = [f"# gdbench compare --across {c.axis}", "", md(f"Runs: {', '.join(c.labels)}."), ""]
    out += [f"> **warning:** {md(w)}" for w in c.warnings]
    for g in c.groups:
        out += ["", f"## {md(title(c, g))}", "", *md_table(["", *g.values], [[n, *v] for n, v in g.provenance])]
        out += ["", *md_table(*table_rows(c, g), bold_marks=True)]
    out += ["", "## Verdict per framework", ""] + [f"- {md(line)}" for g in c.groups for line in g.verdict_lines()]
    out += ["", method_text(c.alpha, c.min_effect, side="value"), ""]
    return "\n".join(out)


def render_html(c: Across) -> str:
    e = html_escape
    body = [f"<h1>gdbench compare --across {e(c.axis)}</h1><p>Runs: {e(', '.join(c.labels))}.</p>"]
    body += [f"<p class='warning'>warning: {e(w)}</p>" for w in c.warnings]
    for g in c.groups:
        body.append(f"<h2>{e(title(c, g))}</h2>")
        body.append(html_table(["", *g.values], [[name, *values] for name, values in g.provenance], "provenance",
                               cell_class=_verdict_class))
        body.append(html_table(*table_rows(c, g), "compare", cell_class=_verdict_class))
    body.append("<h2>Verdict per framework</h2><ul>" + "".join(
        f"<li>{e(line)}</li>" for g in c.groups for line in g.verdict_lines()) + "</ul>")
    body.append(f"<p>{e(method_text(c.alpha, c.min_effect, side='value'))}</p>")
    return html_page(f"gdbench compare --across {c.axis}", body, VERDICT_CSS)


def _verdict_class(cell: str) -> str:
    return STYLES.get(cell[:1], ("", ""))[1]


def render_csv(c: Across) -> str:
    """Long form: one line per (match, value), with every per-repeat time so nothing is lost."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["framework", "device", "variant", "dim", "framework_version", "host", "run", "axis", "value",
                "reference", "status", "reason", "flags", "repeats", "median_s_per_iter", "ratio_to_first", "p_value",
                "mark", "verdict", "inconclusive", "repeat_times_per_iter_s"])
    for g in c.groups:
        for m in g.matches:
            for value in g.values:
                s, v = m.samples[value], m.verdicts.get(value, Verdict())
                rec = m.rows.get(value) or {}
                w.writerow([g.framework, m.device, m.variant, m.dim, m.version or rec.get("framework_version", ""),
                            m.host or rec.get("host", ""), m.run or rec.get("run", ""), c.axis, value, g.values[0],
                            s.status, s.reason, ";".join(s.flags), s.times.size, s.median if s.ok else "",
                            *verdict_cells(v), json.dumps(s.times.tolist())])
    return buf.getvalue()


def write_outputs(c: Across, out_dir: Path) -> list[Path]:
    return write_pages(out_dir, {"compare.md": render_markdown(c), "compare.html": render_html(c),
                                 "compare.csv": render_csv(c)})
