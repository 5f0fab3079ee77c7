"""``gdbench compare``: runs side by side, marking only differences larger than the runs' own noise.

Cells are matched on (framework, device, variant, dim); where one run holds several versions of a framework
the version joins the match for that framework, and where one run holds several hosts the host joins it
(``orchestrator.results.rowkeys``), so no cell hides another. For each later run the per-repeat times per iteration
are compared with the first run's by a two-sided Mann-Whitney U test, and a cell is marked only when the test
rejects *and* the ratio of medians is outside a minimum effect band, so a tiny but consistent shift is not
reported as a regression. With few repeats the test cannot reach the significance level at all (3 vs 3
repeats: the smallest two-sided p is 0.1); such cells say so instead of guessing. Every unmarked cell is
inconclusive, and a side whose row the solver flagged noisy or unstable says so. The rule itself is
``orchestrator.results.table.verdict``, which the report's speedups use too.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from orchestrator.errors import InvalidOptions
from orchestrator.results.compare_text import (
    MARKED,
    STYLES,
    gate,
    method_text,
    p_text,
    ratio_text,
    sample_text,
    verdict_cells,
    verdict_text,
    write_pages,
)
from orchestrator.results.emit import VERDICT_CSS, html_escape, html_page, html_table, md_escape, md_table
from orchestrator.results.noise import ALPHA, MIN_EFFECT, Sample, Verdict, sample, verdict
from orchestrator.results.rowkeys import CellKey, Keys, records, row_keys, text
from orchestrator.results.table import (
    DOCUMENT_FIELDS,
    HOST_FIELDS,
    WORKLOAD_FIELDS,
    distinct,
    document_keys,
    load_labeled,
    rows_that_ran,
)

#: Facts that, when they differ between runs, may explain a difference in time (shown first).
RUN_FIELDS = [*HOST_FIELDS, *((name, name) for name in WORKLOAD_FIELDS)]
PROBLEM_FIELDS = ("n", "iters", "dtype", "seed")


@dataclass
class Comparison:
    labels: list[str]
    keys: list[tuple[str, str, str, int]]
    samples: dict[tuple[tuple[str, str, str, int], str], Sample]
    verdicts: dict[tuple[tuple[str, str, str, int], str], Verdict]
    provenance: list[tuple[str, list[str]]]
    warnings: list[str]
    alpha: float
    min_effect: float
    #: The key rule of the data: how a row shows its framework (with version and host where needed).
    keyer: Keys = field(default_factory=Keys)
    #: (framework_version, host) of each (cell, run) that holds a row.
    where: dict[tuple[CellKey, str], tuple[str, str]] = field(default_factory=dict)

    def matched(self) -> list[Verdict]:
        """Verdicts of cells timed on both sides (the ones ``--fail-on-slower`` gates on)."""
        return [v for v in self.verdicts.values() if v.ratio is not None]

    @property
    def aliases(self) -> list[str]:
        """Short column names (A, B, …): run ids are long timestamps that would swamp the table."""
        letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        return [letters[i] if i < len(letters) else f"R{i + 1}" for i in range(len(self.labels))]

    @property
    def legend(self) -> str:
        names = ", ".join(f"{a} = {label}" for a, label in zip(self.aliases, self.labels, strict=True))
        return f"Runs: {names}. Ratios are each run's median over {self.aliases[0]}'s."

    @property
    def method(self) -> str:
        return method_text(self.alpha, self.min_effect)


def _values(df: pd.DataFrame, column: str) -> str:
    # threadpoolctl lists BLAS libraries in load order, which varies between runs: compare them as a set.
    return distinct(df[column], split="; " if column == "blas" else None)


def provenance_differences(df: pd.DataFrame, labels: list[str]) -> list[tuple[str, list[str]]]:
    """Provenance rows whose value is not the same in every run: run-wide facts, then per document.

    A per-document fact is compared only between runs that have that document (absent is shown as "—");
    a framework missing from one run is visible in the table itself.
    """
    rows: list[tuple[str, list[str]]] = []
    runs = {label: df[df["run"] == label] for label in labels}
    for name, column in RUN_FIELDS:
        values = [_values(rows_that_ran(runs[label]) if column in WORKLOAD_FIELDS else runs[label], column)
                  for label in labels]
        if len(set(values)) > 1:
            rows.append((name, values))
    for f, d in document_keys(df):
        parts = {label: r[(r["framework"] == f) & (r["device"] == d)] for label, r in runs.items()}
        for name, column in DOCUMENT_FIELDS:
            values = [_values(parts[label], column) if not parts[label].empty else "—" for label in labels]
            present = {v for label, v in zip(labels, values, strict=True) if not parts[label].empty}
            if len(present) > 1:
                rows.append((f"{name} [{f}/{d}]", values))
    return rows


def compare(paths: Sequence[Path | str], alpha: float = ALPHA, min_effect: float = MIN_EFFECT) -> Comparison:
    """Load the runs and compare every later run with the first, cell by cell."""
    df, labels = load_labeled(paths)
    if len(labels) < 2:
        raise InvalidOptions(f"compare needs at least two runs, got {len(labels)}: {', '.join(labels)}",
                             fix="give two or more run directories or merged files, the reference first")
    keyer = Keys.of(df)
    by_run = {label: records(df[df["run"] == label], keyer) for label in labels}
    order = {k: i for i, k in enumerate(row_keys(df, keyer))}
    keys = sorted({k for recs in by_run.values() for k in recs}, key=lambda k: (order[k[:-1]], k[-1]))
    samples = {(k, label): sample(by_run[label].get(k)) for k in keys for label in labels}
    verdicts = {
        (k, label): verdict(samples[(k, labels[0])], samples[(k, label)], alpha, min_effect)
        for k in keys for label in labels[1:]
    }
    warnings = []
    differing = []
    for column in PROBLEM_FIELDS:
        values = [_values(rows_that_ran(df[df["run"] == label]), column) for label in labels]
        if len({v for v in values if v != "—"}) > 1:
            differing.append(f"{column} ({' vs '.join(values)})")
    if differing:
        warnings.append(f"runs differ in {', '.join(differing)}: times per iteration of different workloads are "
                        "being compared")
    where = {(k, label): (text(rec.get("framework_version")), text(rec.get("host")))
             for label, recs in by_run.items() for k, rec in recs.items()}
    return Comparison(labels, keys, samples, verdicts, provenance_differences(df, labels), warnings, alpha,
                      min_effect, keyer, where)


# ---------------------------------------------------------------------------------------------- output


def _flagged(c: Comparison, k: CellKey, label: str) -> list[str]:
    return [f"{alias} {', '.join(s.flags)}" for alias, lab in zip(c.aliases, c.labels, strict=True)
            if lab in (c.labels[0], label) and (s := c.samples[(k, lab)]).ok and s.flags]


def table_rows(c: Comparison) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the side-by-side table (shared by terminal, markdown and HTML)."""
    first, *others = c.aliases
    header = ["framework", "device", "variant", "d", first]
    for alias in others:
        header += [alias, f"{alias}/{first}", "p", "verdict"]
    rows = []
    for k in c.keys:
        row = [c.keyer.label(k[:-1]), k[1], k[2], str(k[-1]), sample_text(c.samples[(k, c.labels[0])])]
        for label in c.labels[1:]:
            v = c.verdicts[(k, label)]
            row += [sample_text(c.samples[(k, label)]), ratio_text(v), p_text(v),
                    verdict_text(v, _flagged(c, k, label))]
        rows.append(row)
    return header, rows


def print_terminal(c: Comparison, file: Any = None) -> None:
    """A rich table on stdout; marked cells in colour on a terminal, plain text when piped."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(file=file)
    if not console.is_terminal:
        console = Console(file=file, width=80 + 75 * len(c.labels))
    console.print(Text(c.legend))
    if c.provenance:
        console.print(Text("Provenance that differs between runs", style="bold"))
        prov = Table()
        prov.add_column("")
        for alias in c.aliases:
            prov.add_column(Text(alias), overflow="fold")
        for name, values in c.provenance:  # Text, not str: "[numpy/cpu]" is not rich markup
            prov.add_row(Text(name), *(Text(v) for v in values))
        console.print(prov)
    else:
        console.print(Text("Provenance: no recorded difference between the runs."))
    for w in c.warnings:
        console.print(Text(f"warning: {w}", style="bold yellow"))
    header, rows = table_rows(c)
    console.print(Text("Median time per iteration", style="bold"))
    table = Table()
    for h in header:
        table.add_column(Text(h), overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell, style=STYLES.get(cell[:1], ("", ""))[0]) for cell in row))
    console.print(table)
    console.print(Text(c.method))


def render_markdown(c: Comparison) -> str:
    md = md_escape
    out = ["# gdbench compare", "", md(c.legend), "", "## Provenance that differs", ""]
    if c.provenance:
        out += md_table(["", *c.aliases], [[name, *values] for name, values in c.provenance])
    else:
        out.append("No recorded difference between the runs.")
    out += [""] + [f"> **warning:** {md(w)}" for w in c.warnings] + ["", "## Median time per iteration", ""]
    out += md_table(*table_rows(c), bold_marks=True)
    out += ["", c.method, ""]
    return "\n".join(out)


def render_html(c: Comparison) -> str:
    e = html_escape
    body = ["<h1>gdbench compare</h1>", f"<p>{e(c.legend)}</p>", "<h2>Provenance that differs</h2>"]
    if c.provenance:
        body.append(html_table(["", *c.aliases], [[name, *values] for name, values in c.provenance], "provenance"))
    else:
        body.append("<p>No recorded difference between the runs.</p>")
    body += [f"<p class='warning'>warning: {e(w)}</p>" for w in c.warnings]
    body += ["<h2>Median time per iteration</h2>",
             html_table(*table_rows(c), "compare", cell_class=lambda x: STYLES.get(x[:1], ("", ""))[1],
                        row_attrs=lambda row: f"class='dev-{e(row[1])}'"),
             f"<p>{e(c.method)}</p>"]
    return html_page("gdbench compare", body, VERDICT_CSS)


def render_csv(c: Comparison) -> str:
    """Long form: one line per (cell, run), with every per-repeat time so nothing is lost."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["framework", "device", "variant", "dim", "framework_version", "host", "run", "status", "reason",
                "flags", "repeats",
                "median_s_per_iter", "iqr_rel", "cv", "ratio_to_first", "p_value", "mark", "verdict", "inconclusive",
                "repeat_times_per_iter_s"])
    for k in c.keys:
        for label in c.labels:
            s = c.samples[(k, label)]
            v = c.verdicts.get((k, label), Verdict())
            w.writerow([*k[:3], k[-1], *c.where.get((k, label), ("", "")), label, s.status, s.reason,
                        ";".join(s.flags), s.times.size,
                        s.median if s.ok else "", s.iqr_rel if s.ok else "", s.cv if s.ok else "",
                        *verdict_cells(v), json.dumps(s.times.tolist())])
    return buf.getvalue()


def write_outputs(c: Comparison, out_dir: Path) -> list[Path]:
    return write_pages(out_dir, {"compare.md": render_markdown(c), "compare.html": render_html(c),
                                 "compare.csv": render_csv(c)})


__all__ = ["MARKED", "Comparison", "compare", "gate", "print_terminal", "verdict_text", "write_outputs"]
