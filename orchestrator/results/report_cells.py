"""The cells of the report's tables: a number with its marks, spread and floor, or why there is none.

A row that did not pass its checks shows its status and a note number, never a number. A timing carries its
CV, the marks of its row's flags (noisy, unstable) and its time over the memory floor; a speedup inside the
runs' own noise is shown as inconclusive (``≈``) by the rule ``compare`` applies (``results.verdict``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.results.noise import ALPHA, MIN_EFFECT, num, sample, verdict, warnings_of
from orchestrator.results.table import timed

REASON_CHARS = 40
#: Shown right after a number whose row carries the flag.
MARKS = {"noisy": "†", "unstable": "‡"}
LEGEND = (
    "† noisy: the repeats spread beyond the solver's threshold; ‡ unstable: the sync check's ratio was above its "
    "bound (the speed changed within the run; the time is kept). ± is the CV of the repeats. × floor: the time over "
    "the memory floor measured in the same process at that d (\"reference\" where that floor is bound by call "
    "overhead, so it is a point of comparison, not a lower bound). ≈ marks a speedup inside the runs' own noise: "
    f"inconclusive (two-sided Mann-Whitney U on the repeats, α={ALPHA:g}, effect outside ±{MIN_EFFECT:.0%})."
)


# ---------------------------------------------------------------------------------------------- cells


@dataclass(frozen=True)
class Cell:
    """One table cell: the text shown, its kind (for styling), and the full text behind a truncation."""

    text: str
    kind: str = "ok"  # ok | flagged | failed | unavailable | invalid | missing | note
    title: str = ""


MISSING = Cell("—", "missing", "not run")


def reason_text(rec: dict[str, Any]) -> str:
    return " ".join(str(rec.get("reason") or "no reason recorded").split())


def status_cell(rec: dict[str, Any] | None, with_reason: bool = False) -> Cell:
    """What a row that has no number shows instead: its status, a note number, and (if asked) the reason.

    Full reasons are listed once per run under the tables (``[n]``); repeating them in every cell of every
    table would bury the numbers.
    """
    if rec is None:
        return MISSING
    status = str(rec.get("status") or "missing")
    reason = reason_text(rec)
    note = f" [{rec['_note']}]" if rec.get("_note") else ""
    kind = status if status in ("unavailable", "invalid") else "failed"
    if with_reason and status == "failed":
        short = reason if len(reason) <= REASON_CHARS else reason[: REASON_CHARS - 1] + "…"
        return Cell(f"failed{note}: {short}", kind, reason)
    return Cell(f"{status}{note}", kind, reason)


def marked(number: str, rec: dict[str, Any], rest: str = "", title: str = "") -> Cell:
    """A number, its row's marks right after it, then ``rest``; a flagged row is styled and says why."""
    flags = warnings_of(rec)
    title = "; ".join([*flags, title] if title else flags)
    return Cell(number + "".join(MARKS[f] for f in flags) + rest, "flagged" if flags else "ok", title)


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.4g}"


def fmt_bytes(n: float) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"


def time_cell(rec: dict[str, Any] | None) -> Cell:
    """The median time per iteration, its CV, and the time over the floor where one was measured."""
    if not timed(rec):
        return status_cell(rec, with_reason=True)
    assert rec is not None
    cv, x = num(rec.get("cv")), num(rec.get("x_floor"))
    rest = f" ±{cv:.1%}" if cv is not None else ""
    if x is not None:
        reference = rec.get("floor_call_overhead_bound") in (True, "True", "true")
        rest += f" · {x:.3g}× floor" + (" (reference)" if reference else "")
    return marked(fmt_ms(float(rec["time_per_iter_s"])), rec, rest)


def compile_cell(rec: dict[str, Any] | None) -> Cell:
    if not timed(rec) or num(rec.get("compile_s")) is None:
        return status_cell(rec) if not timed(rec) else MISSING
    assert rec is not None
    return marked(fmt_ms(float(rec["compile_s"])), rec)


def error_cell(rec: dict[str, Any] | None) -> Cell:
    if not timed(rec):
        return status_cell(rec)
    assert rec is not None
    err, tol = num(rec.get("max_rel_error")), num(rec.get("tolerance"))
    tolerance = f"tolerance {tol:.0e}" if tol is not None else ""
    return marked(f"{err:.1e}" if err is not None else "—", rec, title=tolerance)


def speedup(rec: dict[str, Any] | None, base: dict[str, Any] | None) -> float | None:
    if not (timed(rec) and timed(base)):
        return None
    assert rec is not None and base is not None
    return float(base["time_per_iter_s"]) / float(rec["time_per_iter_s"])


def speedup_cell(rec: dict[str, Any] | None, base: dict[str, Any] | None, baseline: str = "numpy loop on CPU") -> Cell:
    """The speedup over the baseline; ``≈`` where the repeats of the two rows do not tell them apart."""
    if not timed(rec):
        return status_cell(rec)
    assert rec is not None
    s = speedup(rec, base)
    if s is None:
        return Cell("no baseline", "note", f"{baseline} did not give a time at this dimension")
    if rec is base:
        return marked(f"{s:.2f}×", rec)
    v = verdict(sample(base), sample(rec))
    p = f", p={v.p_value:.2g}" if v.p_value is not None else ""
    return marked(f"{'≈' if v.inconclusive else ''}{s:.2f}×", rec, title=f"{v.text}{p}")


def ratio_cell(rec: dict[str, Any] | None, ref: dict[str, Any] | None, reference: str) -> Cell:
    """This row's median over the reference row's (above 1 is slower); ``≈`` inside the noise."""
    if not timed(rec):
        return status_cell(rec)
    assert rec is not None
    if not timed(ref):
        return Cell("no reference", "note", f"{reference} did not give a time at this dimension")
    v = verdict(sample(ref), sample(rec))
    p = f", p={v.p_value:.2g}" if v.p_value is not None else ""
    return marked(f"{'≈' if v.inconclusive else ''}{v.ratio:.3f}×", rec, title=f"{v.text}{p}")


def fused_cell(rec: dict[str, Any] | None) -> Cell:
    """Host↔device transfer time and the extra memory of a re-layout, where the fused row recorded them."""
    if not timed(rec):
        return status_cell(rec)
    assert rec is not None
    transfer, extra = num(rec.get("transfer_s")), num(rec.get("layout_extra_bytes"))
    parts = ([f"transfer {fmt_ms(transfer)} ms"] if transfer is not None else []) + (
        [f"re-layout +{fmt_bytes(extra)}"] if extra is not None else [])
    return marked(" · ".join(parts), rec) if parts else MISSING


def energy_cell(rec: dict[str, Any] | None) -> Cell:
    if not timed(rec):
        return status_cell(rec)
    assert rec is not None
    joules, watts = num(rec.get("joules_per_iter")), num(rec.get("avg_power_w"))
    parts = ([f"{joules * 1e6:.3g} µJ"] if joules is not None else []) + (
        [f"{watts:.3g} W"] if watts is not None else [])
    return marked(" · ".join(parts), rec) if parts else MISSING
