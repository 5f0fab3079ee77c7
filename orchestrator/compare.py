"""``gdbench compare``: runs side by side, marking only differences larger than the runs' own noise.

Cells are matched on (framework, device, variant, dim). For each later run the per-repeat times per iteration
are compared with the first run's by a two-sided Mann-Whitney U test, and a cell is marked only when the test
rejects *and* the ratio of medians is outside a minimum effect band, so a tiny but consistent shift is not
reported as a regression. With few repeats the test cannot reach the significance level at all (3 vs 3
repeats: the smallest two-sided p is 0.1); such cells say so instead of guessing.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from solvers.registry import FRAMEWORKS

from .report import CSS, DEVICE_ORDER, _rank, _text, load_labeled, row_keys

ALPHA = 0.05
MIN_EFFECT = 0.05
EXACT_MAX = 400

#: Facts that, when they differ between runs, may explain a difference in time (shown first).
RUN_FIELDS = [
    ("host", "hostname"), ("CPU model", "cpu_model"), ("threads", "threads"), ("GPU", "gpu_name"),
    ("NVIDIA driver", "gpu_driver_version"), ("CUDA (driver)", "cuda_driver_version"),
    ("Docker", "docker_version"), ("n", "n"), ("iters", "iters"), ("repeats", "repeats"), ("dtype", "dtype"),
    ("seed", "seed"),
]
DOCUMENT_FIELDS = [
    ("version", "framework_version"), ("image", "image_tag"), ("image digest", "image_digest"),
    ("python", "python_version"), ("numpy", "numpy_version"), ("BLAS", "blas"),
]
PROBLEM_FIELDS = ("n", "iters", "dtype", "seed")
WORKLOAD = (*PROBLEM_FIELDS, "repeats")


def min_p_value(n1: int, n2: int) -> float:
    """Smallest two-sided p an exact Mann-Whitney U test can give for these sample sizes (no ties)."""
    return min(1.0, 2.0 / math.comb(n1 + n2, n1))


@dataclass
class Sample:
    """One run's result for one cell: status, and per-iteration repeat times when it passed its checks."""

    status: str
    reason: str
    times: np.ndarray = field(default_factory=lambda: np.empty(0))

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.times.size > 0

    @property
    def median(self) -> float:
        return float(np.median(self.times))

    @property
    def iqr_rel(self) -> float:
        q1, q3 = np.percentile(self.times, [25, 75])
        return float((q3 - q1) / self.median)

    @property
    def cv(self) -> float:
        return float(np.std(self.times, ddof=1) / np.mean(self.times)) if self.times.size > 1 else 0.0


@dataclass
class Verdict:
    ratio: float | None = None
    p_value: float | None = None
    #: "slower" / "faster" only when significant and outside the effect band; else "".
    mark: str = ""
    text: str = ""


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
        return (
            "Test: two-sided Mann-Whitney U (scipy.stats.mannwhitneyu; exact p without ties, normal approximation "
            "with tie correction otherwise) on the per-repeat times per iteration of each "
            f"run against the first run, per cell, α={self.alpha:g}, not corrected for multiple comparisons. A cell is "
            f"marked only when p < α and the ratio of medians is outside [{1 - self.min_effect:.2f}, "
            f"{1 + self.min_effect:.2f}]. With n₁ and n₂ repeats the smallest possible p is 2/C(n₁+n₂, n₁) "
            "(3 vs 3: 0.1), so cells whose repeats cannot reach α say \"too few repeats to decide\". "
            "Dispersion: IQR as a percentage of the median, and CV (standard deviation over mean), which also "
            "shows outliers the IQR ignores."
        )


def _sample(rec: dict[str, Any] | None) -> Sample:
    if rec is None:
        return Sample("missing", "not in this run")
    status, reason = str(rec.get("status")), " ".join(str(rec.get("reason") or "").split())
    times = rec.get("repeat_times_s")
    iters = rec.get("iters")
    if status != "ok" or times is None or len(times) == 0 or not iters:
        return Sample(status, reason)
    return Sample(status, reason, np.asarray(list(times), dtype=float) / float(iters))


def verdict(a: Sample, b: Sample, alpha: float = ALPHA, min_effect: float = MIN_EFFECT) -> Verdict:
    """Compare run B's cell with run A's; see the module docstring for the rule."""
    from scipy.stats import mannwhitneyu

    if not (a.ok and b.ok):
        return Verdict(text="not comparable")
    ratio = b.median / a.median
    floor = min_p_value(a.times.size, b.times.size)
    if floor >= alpha:
        sizes = f"{a.times.size} vs {b.times.size}"
        return Verdict(ratio, None, "", f"too few repeats to decide ({sizes}: p ≥ {floor:.2g})")
    # Exact p wherever it is defined (no ties; cheap up to a few hundred repeats), so the p shown and the
    # floor above are the same distribution; the normal approximation with tie correction otherwise.
    both = np.concatenate([a.times, b.times])
    exact = np.unique(both).size == both.size and both.size <= EXACT_MAX
    p = float(mannwhitneyu(b.times, a.times, alternative="two-sided", method="exact" if exact else "asymptotic").pvalue)
    outside = not (1 - min_effect <= ratio <= 1 + min_effect)
    if p < alpha and outside:
        return Verdict(ratio, p, "slower" if ratio > 1 else "faster", "slower" if ratio > 1 else "faster")
    if p < alpha:
        return Verdict(ratio, p, "", f"within ±{min_effect:.0%}")
    return Verdict(ratio, p, "", "no significant difference")


def _values(df: pd.DataFrame, column: str) -> str:
    values = sorted({_text(v) for v in df[column].dropna() if str(v) != ""})
    if column == "blas":  # threadpoolctl lists libraries in load order, which varies between runs
        values = sorted({part for v in values for part in v.split("; ")})
    return "; ".join(values) if values else "—"


def _timed_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows that ran, for workload facts; rows that never ran still carry the requested parameters."""
    ok = df[df["status"] == "ok"]
    return ok if not ok.empty else df


def provenance_differences(df: pd.DataFrame, labels: list[str]) -> list[tuple[str, list[str]]]:
    """Provenance rows whose value is not the same in every run: run-wide facts, then per document.

    A per-document fact is compared only between runs that have that document (absent is shown as "—");
    a framework missing from one run is visible in the table itself.
    """
    rows: list[tuple[str, list[str]]] = []
    runs = {label: df[df["run"] == label] for label in labels}
    for name, column in RUN_FIELDS:
        values = [_values(_timed_rows(runs[label]) if column in WORKLOAD else runs[label], column)
                  for label in labels]
        if len(set(values)) > 1:
            rows.append((name, values))
    docs = sorted({(str(f), str(d)) for f, d in zip(df["framework"], df["device"], strict=True)},
                  key=lambda k: (_rank(k[0], FRAMEWORKS), _rank(k[1], DEVICE_ORDER)))
    for f, d in docs:
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
        raise ValueError(f"compare needs at least two runs, got {len(labels)}: {', '.join(labels)}")
    records: dict[tuple[tuple[str, str, str, int], str], dict[str, Any]] = {}
    for rec in df.to_dict("records"):
        if rec["dim"] is None or pd.isna(rec["dim"]):
            continue
        key = (str(rec["framework"]), str(rec["device"]), str(rec["variant"]), int(rec["dim"]))
        records.setdefault((key, rec["run"]), rec)
    order = {k: i for i, k in enumerate(row_keys(df))}
    keys = sorted({k for k, _ in records}, key=lambda k: (order[k[:3]], k[3]))
    samples = {(k, label): _sample(records.get((k, label))) for k in keys for label in labels}
    verdicts = {
        (k, label): verdict(samples[(k, labels[0])], samples[(k, label)], alpha, min_effect)
        for k in keys for label in labels[1:]
    }
    warnings = []
    differing = []
    for column in PROBLEM_FIELDS:
        values = [_values(_timed_rows(df[df["run"] == label]), column) for label in labels]
        if len({v for v in values if v != "—"}) > 1:
            differing.append(f"{column} ({' vs '.join(values)})")
    if differing:
        warnings.append(f"runs differ in {', '.join(differing)}: times per iteration of different workloads are "
                        "being compared")
    return Comparison(labels, keys, samples, verdicts, provenance_differences(df, labels), warnings, alpha,
                      min_effect)


# ---------------------------------------------------------------------------------------------- output


def _sample_text(s: Sample) -> str:
    if s.ok:
        return f"{s.median * 1e3:.4g} ms (IQR {s.iqr_rel:.1%}, CV {s.cv:.0%}, n={s.times.size})"
    return f"failed: {s.reason}" if s.status == "failed" and s.reason else s.status


def _ratio_text(v: Verdict) -> str:
    return f"{v.ratio:.3f}×" if v.ratio is not None else "—"


def _p_text(v: Verdict) -> str:
    return f"{v.p_value:.2g}" if v.p_value is not None else "—"


def _verdict_text(v: Verdict) -> str:
    return {"slower": "▲ SLOWER", "faster": "▼ FASTER"}.get(v.mark, v.text)


def table_rows(c: Comparison) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the side-by-side table (shared by terminal, markdown and HTML)."""
    first, *others = c.aliases
    header = ["framework", "device", "variant", "d", first]
    for alias in others:
        header += [alias, f"{alias}/{first}", "p", "verdict"]
    rows = []
    for k in c.keys:
        row = [k[0], k[1], k[2], str(k[3]), _sample_text(c.samples[(k, c.labels[0])])]
        for label in c.labels[1:]:
            v = c.verdicts[(k, label)]
            row += [_sample_text(c.samples[(k, label)]), _ratio_text(v), _p_text(v), _verdict_text(v)]
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
    styles = {"▲ SLOWER": "bold red", "▼ FASTER": "bold green"}
    for row in rows:
        table.add_row(*(Text(cell, style=styles.get(cell, "")) for cell in row))
    console.print(table)
    console.print(Text(c.method))


def render_markdown(c: Comparison) -> str:
    def md(s: str) -> str:
        return s.replace("|", "\\|").replace("\n", " ")

    out = ["# gdbench compare", "", md(c.legend), "", "## Provenance that differs", ""]
    if c.provenance:
        out += ["| | " + " | ".join(c.aliases) + " |", "|" + "---|" * (len(c.labels) + 1)]
        out += ["| " + " | ".join(md(x) for x in [name, *values]) + " |" for name, values in c.provenance]
    else:
        out.append("No recorded difference between the runs.")
    out += [""] + [f"> **warning:** {md(w)}" for w in c.warnings] + ["", "## Median time per iteration", ""]
    header, rows = table_rows(c)
    out += ["| " + " | ".join(md(h) for h in header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        out.append("| " + " | ".join(f"**{md(x)}**" if x.startswith(("▲", "▼")) else md(x) for x in row) + " |")
    out += ["", c.method, ""]
    return "\n".join(out)


def render_html(c: Comparison) -> str:
    e = lambda s: html.escape(str(s), quote=True)  # noqa: E731
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>gdbench compare</title>",
             f"<style>{CSS} td.slower {{ color: #a40000; font-weight: 700; }} "
             "td.faster { color: #1b6e20; font-weight: 700; } .warning { color: #8a5a00; font-weight: 600; }</style>",
             "</head><body><h1>gdbench compare</h1>",
             f"<p>{e(c.legend)}</p>",
             "<h2>Provenance that differs</h2>"]
    if c.provenance:
        parts.append("<table class='provenance'><thead><tr><th></th>" + "".join(f"<th>{e(x)}</th>" for x in c.aliases)
                     + "</tr></thead><tbody>" + "".join(
                         "<tr>" + "".join(f"<td>{e(x)}</td>" for x in [name, *values]) + "</tr>"
                         for name, values in c.provenance) + "</tbody></table>")
    else:
        parts.append("<p>No recorded difference between the runs.</p>")
    parts += [f"<p class='warning'>warning: {e(w)}</p>" for w in c.warnings]
    header, rows = table_rows(c)
    parts.append("<h2>Median time per iteration</h2><table class='compare'><thead><tr>"
                 + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr></thead><tbody>")
    for row in rows:
        cls = {"▲ SLOWER": "slower", "▼ FASTER": "faster"}
        parts.append(f"<tr class='dev-{e(row[1])}'>" + "".join(
            f"<td class='{cls.get(x, '')}'>{e(x)}</td>" for x in row) + "</tr>")
    parts.append(f"</tbody></table><p>{e(c.method)}</p></body></html>\n")
    return "".join(parts)


def render_csv(c: Comparison) -> str:
    """Long form: one line per (cell, run), with every per-repeat time so nothing is lost."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["framework", "device", "variant", "dim", "run", "status", "reason", "repeats", "median_s_per_iter",
                "iqr_rel", "cv", "ratio_to_first", "p_value", "mark", "verdict", "repeat_times_per_iter_s"])
    for k in c.keys:
        for label in c.labels:
            s = c.samples[(k, label)]
            v = c.verdicts.get((k, label), Verdict())
            w.writerow([*k, label, s.status, s.reason, s.times.size,
                        s.median if s.ok else "", s.iqr_rel if s.ok else "", s.cv if s.ok else "",
                        v.ratio if v.ratio is not None else "", v.p_value if v.p_value is not None else "",
                        v.mark, v.text, json.dumps(s.times.tolist())])
    return buf.getvalue()


def write_outputs(c: Comparison, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"compare.md": render_markdown(c), "compare.html": render_html(c), "compare.csv": render_csv(c)}
    paths = []
    for name, text in files.items():
        (out_dir / name).write_text(text, encoding="utf-8")
        paths.append(out_dir / name)
    return paths


__all__ = ["ALPHA", "MIN_EFFECT", "Comparison", "compare", "min_p_value", "print_terminal", "verdict",
           "write_outputs"]
