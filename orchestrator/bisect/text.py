"""What ``gdbench bisect`` prints: the path it took (release, median, verdict) and what it found, in plain lines.

Kept apart from the search and the sweeps so the words are in one place and the CLI stays a thin parser.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.bisect.plan import RUNS
from orchestrator.bisect.search import BAD, SKIPPED, Step
from orchestrator.bisect.session import Report


def per_iter(seconds: float | None) -> str:
    """A per-iteration time in the unit that keeps three significant figures readable."""
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def step_lines(step: Step, good: str) -> list[str]:
    """One line per cell of a step: release, outcome, cell, its median per iteration beside the good release's
    (measured just before it, in the same run directory), the ratio, p and the verdict's words."""
    if not step.cells:
        return [f"  {step.release:<12} {step.outcome:<8} {step.note}"]
    lines = []
    for c in step.cells:
        v = c.verdict
        ratio = f"×{v.ratio:.3f}" if v.ratio is not None else ""
        p = f"p={v.p_value:.2g}" if v.p_value is not None else ""
        median = f"{per_iter(c.median)}/iter" if c.median is not None else "-"
        factor = f"(×{step.factor} repeats)" if step.factor > 1 else ""
        warned = f"⚠ {c.warnings}" if c.warnings else ""
        extra = "; ".join(x for x in (v.text if v.ratio is not None else "", warned, step.note) if x)
        lines.append(f"  {step.release:<12} {step.outcome:<8} {c.cell:<16} {median:>14} ({good}: "
                     f"{per_iter(c.good_median)}) {ratio:>7} {p:>8} {factor} {extra}".rstrip())
    return lines


def render(report: Report) -> list[str]:
    """The path, then one line with the answer (or why there is none), then what it built and where the runs are."""
    req = report.request
    fw = req.framework
    lines = [f"{fw} bisect {req.good} → {req.bad} ({req.flavour} image, Python {req.python}): "
             f"{len(report.candidates)} release(s) between; each measured right after {req.good}"]
    lines += [f"  left out  {line}" for line in report.left_out]
    for step in report.path:
        lines += step_lines(step, req.good)
    if report.status == "interrupted":
        lines.append(f"interrupted: the runs it finished are kept; continue with gdbench bisect --resume {req.out}")
    elif report.status == "complete" and report.first_bad is None:
        lines.append(f"no release between {req.good} and {req.bad} is slower beyond the noise")
    elif report.first_bad is not None:
        lines.append(f"first bad release: {fw} {report.first_bad}")
        if report.unresolved:
            lines.append(f"  or one of {', '.join(report.unresolved)} before it, which could not be measured "
                         "(skipped above)")
    measured = [s for s in report.path if s.outcome != SKIPPED]
    built = f" ({', '.join(report.built)})" if report.built else ""
    lines.append(f"images built: {len(report.built)}{built}, rebuilt from cache: {len(report.refreshed)}; "
                 f"releases measured: {len(measured)} besides {req.good}, skipped: {len(report.path) - len(measured)}, "
                 f"bad: {sum(s.outcome == BAD for s in report.path)}; wall time {report.wall_s:.0f} s")
    if report.declared:
        lines.append(f"declared for this bisect: {', '.join(report.declared)} "
                     + ("(kept: --keep)" if req.keep else "(removed again)"))
    if report.runs:
        runs = req.out / RUNS
        lines.append(f"runs: {runs} ({', '.join(Path(r).name for r in report.runs)}): gdbench publish {runs} --out "
                     f"SITE; gdbench compare {report.runs[-1]} --across framework_version")
    return lines
