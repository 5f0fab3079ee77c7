"""The one noise rule: whether two timings of a cell differ, for report, compare, ``--across`` and bisect.

A difference is called only when a two-sided Mann-Whitney U test on the two rows' repeat times rejects at
``ALPHA`` *and* the ratio of medians lies outside ``1 ± MIN_EFFECT``; a difference inside the runs' own
spread is never a win. The test is written here (exact null distribution for the sample sizes a sweep
makes, the normal approximation with tie and continuity correction beyond them, as SciPy computes both),
so the orchestrator's environment needs no SciPy for one function.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ALPHA = 0.05
MIN_EFFECT = 0.05
#: Up to this many (n₁·n₂) pairs the exact distribution of U is computed (30 vs 30 repeats: 900).
EXACT_MAX_PAIRS = 2500
#: Row flags that make a timing less trustworthy (``retried`` does not: the retry passed every check).
WARNING_FLAGS = ("noisy", "unstable")


def min_p_value(n1: int, n2: int) -> float:
    """Smallest two-sided p an exact Mann-Whitney U test can give for these sample sizes (no ties)."""
    return min(1.0, 2.0 / math.comb(n1 + n2, n1))


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing their average rank."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(values.size, dtype=float)
    sorted_values = values[order]
    i = 0
    while i < values.size:
        j = i
        while j + 1 < values.size and sorted_values[j + 1] == sorted_values[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


@functools.lru_cache(maxsize=256)
def _u_distribution(n1: int, n2: int) -> np.ndarray:
    """P(U = u) for u = 0…n₁n₂ under the null, by the recurrence over sample sizes (all terms positive).

    Kept per (n₁, n₂): ``publish`` tests thousands of neighbouring points whose runs share their repeat counts.
    The array is shared between callers: read it, never write it."""
    # prev[j]: distribution for sizes (i-1, j); row built for sizes (i, j), j = 0…n2.
    prev = [np.ones(1) for _ in range(n2 + 1)]  # i = 0: U = 0 whatever j
    for i in range(1, n1 + 1):
        row = [np.ones(1)]  # j = 0: U = 0
        for j in range(1, n2 + 1):
            dist = np.zeros(i * j + 1)
            # The largest of the i + j values is from sample 1 (prob i/(i+j)): it beats all j of sample 2.
            dist[j:j + prev[j].size] += i / (i + j) * prev[j]
            dist[:row[j - 1].size] += j / (i + j) * row[j - 1]
            row.append(dist)
        prev = row
    return prev[n2]


def mann_whitney_p(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided p of the Mann-Whitney U test of ``x`` against ``y`` (SciPy's ``mannwhitneyu`` with method
    "exact" where the sizes allow and nothing ties, else "asymptotic" with continuity correction)."""
    n1, n2 = x.size, y.size
    both = np.concatenate([x, y])
    ranks = _ranks(both)
    u1 = float(ranks[:n1].sum()) - n1 * (n1 + 1) / 2
    u = max(u1, n1 * n2 - u1)
    if np.unique(both).size == both.size and n1 * n2 <= EXACT_MAX_PAIRS:
        dist = _u_distribution(n1, n2)
        return min(1.0, 2.0 * float(dist[round(u):].sum()))
    n = n1 + n2
    _, counts = np.unique(both, return_counts=True)
    tie_term = float((counts ** 3 - counts).sum()) / (n * (n - 1))
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - tie_term))
    if sigma == 0:
        return 1.0
    z = (u - n1 * n2 / 2 - 0.5) / sigma
    return min(1.0, math.erfc(z / math.sqrt(2)))


def num(value: Any) -> float | None:
    """A finite-or-infinite float, or None for a missing value (None, NaN, text)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


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
    if not (a.ok and b.ok):
        return Verdict(text="not comparable")
    ratio = b.median / a.median
    floor = min_p_value(a.times.size, b.times.size)
    if floor >= alpha:
        sizes = f"{a.times.size} vs {b.times.size}"
        return Verdict(ratio, None, "", f"too few repeats to decide ({sizes}: p ≥ {floor:.2g})")
    p = mann_whitney_p(b.times, a.times)
    outside = not (1 - min_effect <= ratio <= 1 + min_effect)
    if p < alpha and outside:
        return Verdict(ratio, p, "slower" if ratio > 1 else "faster", "slower" if ratio > 1 else "faster")
    if p < alpha:
        return Verdict(ratio, p, "", f"within ±{min_effect:.0%}")
    return Verdict(ratio, p, "", "no significant difference")


def geomean(values: Iterable[float]) -> float | None:
    """The geometric mean of the positive values (None if there are none)."""
    logs = [math.log(v) for v in values if v and v > 0]
    return math.exp(sum(logs) / len(logs)) if logs else None
