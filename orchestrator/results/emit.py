"""The one table emitter of every results page: markdown and HTML tables, escaping, the page and its style.

report, compare, ``compare --across`` and publish all print tables of text cells; writing the ``|``/``<td>``
plumbing once keeps their pages alike and their escaping right (a ``|`` in a reason cannot break a
markdown row, a ``<`` in a provenance value cannot break a page). The terminal view is Rich's own table.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Sequence
from typing import Any

#: Cells that carry a verdict mark; markdown shows them in bold.
MARKS = ("▲", "▼")

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
td.flagged { text-align: right; color: #8a5a00; font-weight: 600; }
table.kv td:first-child { font-weight: 600; }
.legend span { display: inline-block; padding: 1px 8px; margin-right: 6px; border: 1px solid #c8c8c8; }
img { max-width: 100%; display: block; margin: 0.5em 0 1em; }
code { background: #f4f4f4; padding: 0 3px; }
"""
#: The verdict colours of compare's pages.
VERDICT_CSS = (" td.slower { color: #a40000; font-weight: 700; } td.faster { color: #1b6e20; font-weight: 700; }"
               " .warning { color: #8a5a00; font-weight: 600; }")


def md_escape(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def html_escape(text: Any) -> str:
    return html.escape(str(text), quote=True)


def md_row(cells: Iterable[str]) -> str:
    """One markdown row of already-escaped cells (an empty cell stays one space wide)."""
    return "|" + "|".join(f" {c} " if c else " " for c in cells) + "|"


def md_table(header: Sequence[Any], rows: Iterable[Sequence[Any]], *, bold_marks: bool = False) -> list[str]:
    """Header, rule and rows, every cell escaped; ``bold_marks``: verdict cells (▲/▼) in bold."""
    def cell(x: Any) -> str:
        text = md_escape(x)
        return f"**{text}**" if bold_marks and str(x).startswith(MARKS) else text

    return [md_row(md_escape(h) for h in header), "|" + "---|" * len(header),
            *(md_row(cell(x) for x in row) for row in rows)]


def html_table(header: Sequence[Any], rows: Iterable[Sequence[Any]], cls: str, *, caption: str | None = None,
               cell_class: Callable[[Any], str] | None = None,
               row_attrs: Callable[[Sequence[Any]], str] | None = None) -> str:
    """A table of escaped text cells: ``cell_class`` names each cell's class, ``row_attrs`` adds attributes to
    each ``<tr>`` (e.g. the device row colour)."""
    e = html_escape
    parts = [f"<table class='{cls}'>", f"<caption>{e(caption)}</caption>" if caption else "", "<thead><tr>",
             *(f"<th>{e(h)}</th>" for h in header), "</tr></thead><tbody>"]
    for row in rows:
        parts.append(f"<tr{(' ' + row_attrs(row)) if row_attrs else ''}>")
        parts += [f"<td class='{cell_class(x)}'>{e(x)}</td>" if cell_class else f"<td>{e(x)}</td>" for x in row]
        parts.append("</tr>")
    parts.append("</tbody></table>")
    return "".join(parts)


def html_page(title: str, body: Iterable[str], extra_css: str = "") -> str:
    """A whole self-contained page: no script, no external style, no font to fetch."""
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html_escape(title)}</title>"
            f"<style>{CSS}{extra_css}</style></head><body>" + "\n".join(body) + "</body></html>\n")
