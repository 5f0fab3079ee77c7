"""The words of ``compare``'s verdicts, shared by plain ``compare`` and ``compare --across``: a side's sample,
a ratio, a p, the verdict's text and style, the method under every table, and ``--fail-on-slower``'s exit."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from orchestrator.errors import EXIT_FAILED, EXIT_OK, InvalidOptions
from orchestrator.results.noise import Sample, Verdict


def sample_text(s: Sample) -> str:
    if s.ok:
        caveat = f" ⚠ {', '.join(s.flags)}" if s.flags else ""
        return f"{s.median * 1e3:.4g} ms (IQR {s.iqr_rel:.1%}, CV {s.cv:.0%}, n={s.times.size}){caveat}"
    return f"failed: {s.reason}" if s.status == "failed" and s.reason else s.status


def ratio_text(v: Verdict) -> str:
    return f"{v.ratio:.3f}×" if v.ratio is not None else "—"


def p_text(v: Verdict) -> str:
    return f"{v.p_value:.2g}" if v.p_value is not None else "—"


MARKED = {"slower": "▲ SLOWER", "faster": "▼ FASTER"}
#: Style of a verdict cell by how its text starts (the rest may name a flagged side).
STYLES = {"▲": ("bold red", "slower"), "▼": ("bold green", "faster")}


def verdict_text(v: Verdict, flagged: Sequence[str] = ()) -> str:
    """The verdict as shown: a mark, or why there is none; ``flagged`` names sides the solver flagged."""
    if v.mark:
        text = MARKED[v.mark]
    elif v.inconclusive and v.p_value is not None and v.text.startswith("within"):
        text = f"≈ {v.text}"
    else:
        text = f"≈ inconclusive: {v.text}" if v.inconclusive else v.text
    return text + (f" ({'; '.join(flagged)})" if flagged else "")


def method_text(alpha: float, min_effect: float, side: str = "run") -> str:
    """How every verdict of ``compare`` (plain or ``--across``) is reached, printed under its tables."""
    return (
        "Test: two-sided Mann-Whitney U (exact p without ties up to 2,500 pairs of repeats, normal approximation "
        "with tie and continuity correction otherwise, as scipy.stats.mannwhitneyu computes them) on the "
        "per-repeat times per iteration of each "
        f"{side} against the first {side}, per cell, α={alpha:g}, not corrected for multiple comparisons. A cell is "
        f"marked only when p < α and the ratio of medians is outside [{1 - min_effect:.2f}, "
        f"{1 + min_effect:.2f}]. With n₁ and n₂ repeats the smallest possible p is 2/C(n₁+n₂, n₁) "
        "(3 vs 3: 0.1), so cells whose repeats cannot reach α say \"too few repeats to decide\". "
        "Dispersion: IQR as a percentage of the median, and CV (standard deviation over mean), which also "
        "shows outliers the IQR ignores. A cell without a mark is inconclusive (≈): its difference is not larger "
        "than the runs' own noise. ⚠ names a side the solver flagged noisy (repeats spread beyond its threshold) "
        "or unstable (sync check ratio above its bound)."
    )


def gate(matched: Sequence[Verdict], min_effect: float) -> tuple[int, str]:
    """``--fail-on-slower``: exit 1 when a cell timed on both sides got slower beyond the noise and the minimum
    effect, else 0, with the line that says so; inconclusive cells never fail. No such cell at all is a gate
    that checks nothing: refused (exit 2) rather than passed."""
    if not matched:
        raise InvalidOptions("--fail-on-slower: no cell was timed on both sides, so there is nothing to gate on",
                             fix="compare runs that share at least one timed (framework, device, variant, d)")
    slower = [v for v in matched if v.mark == "slower"]
    if slower:
        worst = max(v.ratio or 0.0 for v in slower)
        return EXIT_FAILED, (f"fail-on-slower: {len(slower)} of {len(matched)} matched cell(s) slower beyond the "
                             f"noise and ±{min_effect:.0%} (worst {worst:.3f}×)")
    return EXIT_OK, (f"fail-on-slower: none of {len(matched)} matched cell(s) slower beyond the noise and "
                     f"±{min_effect:.0%}")


def verdict_cells(v: Verdict) -> list[Any]:
    """A verdict's CSV columns, in both compare forms: ratio to the first, p, mark, verdict, inconclusive."""
    return [v.ratio if v.ratio is not None else "", v.p_value if v.p_value is not None else "", v.mark, v.text,
            v.inconclusive]


def write_pages(out_dir: Path, pages: dict[str, str]) -> list[Path]:
    """compare.md, compare.html and compare.csv (or whatever ``pages`` names) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, page in pages.items():
        (out_dir / name).write_text(page, encoding="utf-8")
    return [out_dir / name for name in pages]
