"""What ``report`` and ``compare`` both read from merged results, defined once.

Loading labelled runs, the fixed row order, "the rows that ran", one record per cell, number and text
formatting, markdown/HTML escaping, the page style, the provenance fields, and the one noise rule that
decides whether two timings differ (a difference inside the runs' own spread is never called a win).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from orchestrator.errors import InvalidOptions
from orchestrator.results.merge import load_runs
from orchestrator.results.rowkeys import DEVICE_ORDER, VARIANT_ORDER, CellKey, Key, Keys, rank, records, row_keys, text
from solvers.registry import FRAMEWORKS

__all__ = ["DEVICE_ORDER", "VARIANT_ORDER", "CellKey", "Key", "Keys", "rank", "records", "row_keys"]

#: Row flags that make a timing less trustworthy (``retried`` does not: the retry passed every check).
WARNING_FLAGS = ("noisy", "unstable")

#: Host facts that may explain a difference in time, then the workload; label and merged column.
#: "host" is the engine's hostname (``provenance.host``), never a container's random one.
HOST_FIELDS = [
    ("CPU model", "cpu_model"), ("threads", "threads"), ("host", "host_hostname"), ("inventory host", "host"),
    ("GPU", "gpu_name"), ("NVIDIA driver", "gpu_driver_version"), ("CUDA (driver)", "cuda_driver_version"),
    ("kernel", "host_kernel"), ("engine", "host_engine_version"),
]
WORKLOAD_FIELDS = ("n", "iters", "repeats", "dtype", "seed")
#: Facts of one (framework, device) document: label and merged column.
DOCUMENT_FIELDS = [
    ("version", "framework_version"), ("python", "python_version"), ("numpy", "numpy_version"), ("BLAS", "blas"),
    ("image", "image_tag"), ("image digest", "image_digest"), ("CUDA runtime", "cuda_runtime"),
]


def host_fact(df: pd.DataFrame) -> str:
    """The engine's hostname (``provenance.host``); documents that name none fall back to the hostname the
    solver process saw (inside a container: the container's own), and the row says which it is."""
    engine = df["host_hostname"].map(text) != ""
    parts = []
    if engine.any():
        parts.append(f"{distinct(df.loc[engine, 'host_hostname'])} (the Docker engine's hostname)")
    if (~engine).any():
        parts.append(f"{distinct(df.loc[~engine, 'hostname'])} (the solver process's hostname: "
                     "the document names no engine hostname)")
    return "; ".join(parts)


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
            raise InvalidOptions(f"{path}: no valid result documents",
                                 fix="give a run directory written by `gdbench run` or a file from `gdbench merge`")
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


def document_keys(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(framework, device) of every document, in the same order as ``row_keys``."""
    keys = {(str(f), str(d)) for f, d in zip(df["framework"], df["device"], strict=True)}
    return sorted(keys, key=lambda k: (rank(k[0], FRAMEWORKS), rank(k[1], DEVICE_ORDER)))


def dims_of(df: pd.DataFrame) -> list[int]:
    return sorted({int(d) for d in df["dim"].dropna()})


def rows_that_ran(df: pd.DataFrame) -> pd.DataFrame:
    """The rows that ran, for workload facts; rows that never ran still carry the requested parameters."""
    ok = df[df["status"] == "ok"]
    return ok if not ok.empty else df


def num(value: Any) -> float | None:
    """A finite-or-infinite float, or None for a missing value (None, NaN, text)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def timed(rec: dict[str, Any] | None) -> bool:
    """A row that passed its checks and carries a time."""
    return rec is not None and rec.get("status") == "ok" and num(rec.get("time_per_iter_s")) is not None


def flags_of(rec: dict[str, Any] | None) -> list[str]:
    """A row's flags whether merged as ``"a;b"`` text (CSV, parquet) or kept as a list."""
    value = (rec or {}).get("flags")
    if isinstance(value, str):
        return [f for f in value.split(";") if f]
    if isinstance(value, list | tuple | np.ndarray):
        return [str(f) for f in value]
    return []  # None, NaN, pd.NA: a row merged without flags


def warnings_of(rec: dict[str, Any] | None) -> list[str]:
    return [f for f in flags_of(rec) if f in WARNING_FLAGS]


# ---------------------------------------------------------------------------------------------- text


def number_text(value: Any) -> str:
    """A value as text; integer columns holding a NaN come back as floats, and 2.0 threads reads as a mistake."""
    return text(value)


def distinct(series: pd.Series, split: str | None = None) -> str:
    """The distinct values of a column joined with "; " ("—" if none); ``split`` first splits joined lists."""
    values = {number_text(v) for v in series.dropna() if str(v) != ""}
    if split is not None:
        values = {part for v in values for part in v.split(split)}
    return "; ".join(sorted(values)) if values else "—"


def md_escape(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def html_escape(text: Any) -> str:
    return html.escape(str(text), quote=True)


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


# ---------------------------------------------------------------------------------------------- noise

ALPHA = 0.05
MIN_EFFECT = 0.05
EXACT_MAX = 400


def min_p_value(n1: int, n2: int) -> float:
    """Smallest two-sided p an exact Mann-Whitney U test can give for these sample sizes (no ties)."""
    return min(1.0, 2.0 / math.comb(n1 + n2, n1))


@dataclass
class Sample:
    """One run's result for one cell: status, flags, and per-iteration repeat times when it passed its checks."""

    status: str
    reason: str
    times: np.ndarray = field(default_factory=lambda: np.empty(0))
    flags: list[str] = field(default_factory=list)

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


def sample(rec: dict[str, Any] | None) -> Sample:
    """The per-iteration repeat times of a merged row (none unless it passed its checks)."""
    if rec is None:
        return Sample("missing", "not in this run")
    status, reason = str(rec.get("status")), " ".join(str(rec.get("reason") or "").split())
    times, iters, flags = rec.get("repeat_times_s"), num(rec.get("iters")), warnings_of(rec)
    if status != "ok" or times is None or len(times) == 0 or not iters:
        return Sample(status, reason, flags=flags)
    return Sample(status, reason, np.asarray(list(times), dtype=float) / iters, flags)


@dataclass
class Verdict:
    ratio: float | None = None
    p_value: float | None = None
    #: "slower" / "faster" only when significant and outside the effect band; else "".
    mark: str = ""
    text: str = ""

    @property
    def inconclusive(self) -> bool:
        """Both sides have times but there is no clear win or loss: inside their noise, or within the effect band."""
        return self.ratio is not None and not self.mark


def verdict(a: Sample, b: Sample, alpha: float = ALPHA, min_effect: float = MIN_EFFECT) -> Verdict:
    """Compare B's repeats with A's: marked only when a two-sided Mann-Whitney U test rejects at ``alpha``
    *and* the ratio of medians is outside ``1 ± min_effect``; too few repeats to reach ``alpha`` say so."""
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
