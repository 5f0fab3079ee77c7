"""The report's two pages from its run sections: markdown (plots as files beside it) and self-contained HTML.

The HTML needs no network: CSS is inline and plots are PNG data URIs, so the file can be mailed or opened
from an archive years later.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import UTC, datetime

from orchestrator.results.emit import html_escape, html_page, html_table, md_escape, md_table
from orchestrator.results.report_cells import LEGEND
from orchestrator.results.report_common import RunSection, Table, plot_title
from orchestrator.results.table import DOCUMENT_FIELDS

DEVICE_MARK = {"cpu": "🟩 cpu", "gpu": "🟦 gpu"}
DOCUMENT_HEADER = ["framework", "device", *(name for name, _ in DOCUMENT_FIELDS)]
DOCUMENT_COLUMNS = ["framework", "device", *(column for _, column in DOCUMENT_FIELDS)]
INTRO = ("Times are medians per iteration; rows without a number show why (failed, unavailable, invalid), "
         "with the full reason in note [n] under the run's tables")


def _doc_columns(s: RunSection) -> tuple[list[str], list[str]]:
    """The documents table's header and columns: the host too when the run has several."""
    extra = ["host"] if s.keyer.several_hosts else []
    return [*DOCUMENT_HEADER[:2], *extra, *DOCUMENT_HEADER[2:]], [*DOCUMENT_COLUMNS[:2], *extra, *DOCUMENT_COLUMNS[2:]]


def _md_table(table: Table) -> str:
    head = ["framework", "device", "variant", *table.header]
    lines = []
    if table.above:
        top, facts = table.above
        lines += [*md_table(top, [[name, *values] for name, values in facts]), ""]
    lines += [f"**{table.caption}**", ""]
    lines += md_table(head, ([table.label(key), DEVICE_MARK.get(key[1], key[1]), key[2], *(c.text for c in cells)]
                             for key, cells in table.rows))
    return "\n".join(lines)


def render_markdown(sections: list[RunSection], files: dict[str, str], exported: Sequence[str]) -> str:
    out = ["# gdbench report", "", f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M UTC}. {INTRO}.", "",
           f"Marks: {LEGEND}", ""]
    out += ["## Summary", ""] + [f"- {s.summary}" for s in sections] + [""]
    for s in sections:
        out += [f"## Run {s.label}", "", "### Provenance", "", "| | |", "|---|---|"]
        out += [f"| {k} | {md_escape(v)} |" for k, v in s.provenance]
        header, columns = _doc_columns(s)
        out += ["", *md_table(header, ([r[c] for c in columns] for r in s.documents.to_dict("records"))), ""]
        for table in s.tables:
            out += [_md_table(table), ""]
        for name in s.plots:
            out += [f"![{plot_title(name)}]({files[f'{s.label}:{name}']})", ""]
        if s.notes:
            out += ["### Rows without a time", ""] + [f"- {md_escape(n)}" for n in s.notes] + [""]
    out += ["## Data", "", "Every per-repeat time is in " + " and ".join(f"`{e}`" for e in exported)
            + " (`repeat_times_s`, seconds per repeat of `iters` iterations).", ""]
    return "\n".join(out)


def _html_table(table: Table) -> str:
    e = html_escape
    parts = []
    if table.above:
        top, facts = table.above
        parts.append(html_table(top, [[name, *values] for name, values in facts], "kv differs"))
    parts += [f"<table class='results'><caption>{e(table.caption)}</caption><thead><tr>",
              "<th>framework</th><th>device</th><th>variant</th>", *(f"<th>{e(h)}</th>" for h in table.header),
              "</tr></thead><tbody>"]
    for key, cells in table.rows:
        f, d, v, label = key[0], key[1], key[2], table.label(key)
        parts.append(f"<tr class='dev-{e(d)}' data-framework='{e(f)}' data-device='{e(d)}' data-variant='{e(v)}'>"
                     f"<td>{e(label)}</td><td>{e(d)}</td><td>{e(v)}</td>")
        for c in cells:
            title = f" title='{e(c.title)}'" if c.title else ""
            cls = "num" if c.kind == "ok" else c.kind
            parts.append(f"<td class='{cls}'{title}>{e(c.text)}</td>")
        parts.append("</tr>")
    parts.append("</tbody></table>")
    return "".join(parts)


def _img(png: bytes, alt: str) -> str:
    return f"<img alt='{html_escape(alt)}' src='data:image/png;base64,{base64.b64encode(png).decode('ascii')}'>"


def render_html(sections: list[RunSection], exported: Sequence[str]) -> str:
    e = html_escape
    body = [f"<h1>gdbench report</h1><p>Generated {datetime.now(UTC):%Y-%m-%d %H:%M UTC}. {INTRO}; hover a cell "
            f"for details.</p><p class='marks'>Marks: {e(LEGEND)}</p>"
            "<p class='legend'><span style='background:#dff0d8'>CPU rows</span>"
            "<span style='background:#d9e8fb'>GPU rows</span></p>",
            "<h2>Summary</h2><ul>", *(f"<li class='summary'>{e(s.summary)}</li>" for s in sections), "</ul>"]
    for s in sections:
        facts = "".join(f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in s.provenance)
        body.append(f"<section class='run' data-run='{e(s.label)}'><h2>Run {e(s.label)}</h2><h3>Provenance</h3>"
                    f"<table class='kv'>{facts}</table>")
        header, columns = _doc_columns(s)
        device = columns.index("device")
        body.append(html_table(header, ([r[c] for c in columns] for r in s.documents.to_dict("records")),
                               "documents", row_attrs=lambda row, i=device: f"class='dev-{e(row[i])}'"))
        body += [_html_table(t) for t in s.tables]
        body += [_img(png, f"{s.label}: {plot_title(name)} vs d") for name, png in s.plots.items()]
        if s.notes:
            body.append("<h3>Rows without a time</h3><ul class='notes'>"
                        + "".join(f"<li>{e(n)}</li>" for n in s.notes) + "</ul>")
        body.append("</section>")
    body.append("<h2>Data</h2><p>Every per-repeat time is in " + " and ".join(
        f"<a href='{e(x)}'><code>{e(x)}</code></a>" for x in exported)
        + " (column <code>repeat_times_s</code>, seconds per repeat).</p>")
    return html_page("gdbench report", body)
