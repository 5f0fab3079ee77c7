"""The binary search of ``gdbench bisect``, as plain functions over an ordered list of releases.

Nothing here builds or runs: the caller hands in ``measure(release, factor)``, which returns one ``Step``, and
the search decides which release to measure next. Kept apart so the search rule (a skipped release is never
guessed good or bad, an inconclusive one is measured again with more repeats before it may count as not
slower) is tested on synthetic verdicts, without Docker.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from orchestrator.results.noise import Verdict

BAD, GOOD, INCONCLUSIVE, SKIPPED, MISSING = "bad", "good", "inconclusive", "skipped", "missing"


@dataclass(frozen=True)
class CellVerdict:
    """One cell of one release against the good release's same cell, measured in the same run directory."""

    cell: str
    good_median: float | None
    median: float | None
    verdict: Verdict
    outcome: str
    #: The solver's warnings on either side (``2.4.4 noisy``): the verdict stands, the reader should know.
    warnings: str = ""


@dataclass(frozen=True)
class Step:
    """One release on the search's path: what it was judged, at which repeat factor, and why."""

    release: str
    outcome: str
    factor: int = 1
    cells: tuple[CellVerdict, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class SearchResult:
    """The path taken, the first bad release, and the skipped releases that may hide an earlier first bad."""

    path: list[Step]
    first_bad: str | None
    unresolved: list[str] = field(default_factory=list)


def classify(v: Verdict, min_effect: float) -> str:
    """One cell's verdict as the search reads it: bad only when slower beyond the noise *and* the effect.

    Good: faster, or a median ratio inside ``1 + min_effect`` with a p value the repeats could reach (whether
    significant or not). Inconclusive: too few repeats to reach alpha, or a ratio above the effect band that the
    test cannot tell from noise. Missing: a side without times (failed or absent).
    """
    if v.ratio is None:
        return MISSING
    if v.mark == "slower":
        return BAD
    if v.mark == "faster":
        return GOOD
    if v.p_value is None:
        return INCONCLUSIVE
    return GOOD if v.ratio <= 1 + min_effect else INCONCLUSIVE


def combine(outcomes: Sequence[str]) -> str:
    """A release over all its cells: any bad cell makes it bad; every cell must be good for it to be good."""
    for kind in (BAD, MISSING, INCONCLUSIVE):
        if kind in outcomes:
            return kind
    return GOOD if outcomes else MISSING


Measure = Callable[[str, int], Step]


def judge(release: str, measure: Measure, factors: Sequence[int]) -> Step:
    """Measure ``release`` at the first repeat factor; while inconclusive, again (both sides) at the next one.

    Still inconclusive at the last factor: counted as not slower, and the step says so, so the path never
    hides a guess.
    """
    step = measure(release, factors[0])
    for factor in factors[1:]:
        if step.outcome != INCONCLUSIVE:
            break
        step = replace(measure(release, factor), note=f"inconclusive at ×{step.factor}, re-measured")
    if step.outcome == INCONCLUSIVE:
        return replace(step, outcome=GOOD, note=f"still inconclusive at ×{step.factor} repeats: taken as not "
                                                "slower (not proven)")
    if step.outcome == MISSING:
        return replace(step, outcome=SKIPPED, note=step.note or "the cell has no times")
    return step


def search(candidates: Sequence[str], bad: str, judge_one: Callable[[str], Step]) -> SearchResult:
    """Binary search over ``candidates`` (oldest first, strictly between a good release and ``bad``, which is
    known to be bad) for the first bad release.

    A skipped release (it could not be built or run) is left out and its nearest neighbour in the open
    interval is tried instead, as ``git bisect skip`` does; when only skipped releases remain between the last
    good and the first bad, they are returned as unresolved rather than guessed.
    """
    releases = [*candidates, bad]
    lo, hi = -1, len(releases) - 1  # releases[lo] good (-1: the good release), releases[hi] bad
    skipped: set[int] = set()
    path: list[Step] = []
    while True:
        open_ = [i for i in range(lo + 1, hi) if i not in skipped]
        if not open_:
            break
        mid = (lo + hi) // 2
        i = min(open_, key=lambda j: (abs(j - mid), j))
        step = judge_one(releases[i])
        path.append(step)
        if step.outcome == BAD:
            hi = i
        elif step.outcome == GOOD:
            lo = i
        else:
            skipped.add(i)
    unresolved = [releases[j] for j in range(lo + 1, hi) if j in skipped]
    return SearchResult(path, releases[hi], unresolved)
