"""The bench's targets and its one verdict rule: what ``python -m solvers bench`` holds each row to.

Every target is a ratio of times measured in the same run (``bench``'s module docstring says why). A
verdict whose value and target differ by less than the rows' own spread says INCONCLUSIVE: a ratio of two
medians cannot be read more finely than the runs that made them. A row that failed a check has no time
and is held to nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Targets, as ratios measured in the same run.
TARGET_D100_SPEEDUP = 2.0
TARGET_D100_FLOOR_RATIO = 1.5
TARGET_D2_SPEEDUP = 3.0
#: Every framework's fused form at d=100: two passes over X (one per product) is the bound without fusion.
TARGET_D100_FUSED_FLOOR_RATIO = 2.2
#: A one-pass fused form (``Framework.one_pass_variants``) at d=100: one read of X, so near the floor.
TARGET_D100_ONE_PASS_FLOOR_RATIO = 1.3
#: ...and against its own framework's single gemv, the bound docs/frameworks.md proposes in place of the one
#: above: a one-pass step does a gemv's loads and FMAs plus the update's (half a pass more from L1), so 1.3x a
#: bare streaming read asks it to beat its own dot products; 1.75x still catches a kernel that lost its blocking.
TARGET_D100_ONE_PASS_GEMV_RATIO = 1.75
#: A two-pass fused form, at every d where the floor is a memory bound: near twice its own framework's gemv.
TARGET_TWO_GEMV_RATIO = 1.15
#: ...from this d: a step also reads y and writes and reads r (about 4·n values) beside its 2·n·d reads of X,
#: so below d = 40 that other traffic is over 5 % of the products' and two gemv bound nothing (at d=2 it is
#: as much again: measured in docs/frameworks.md).
TWO_GEMV_MIN_D = 40
#: The variants held to that bound: the fastest forms a framework offers (not the textbook ``loop``).
FUSED_FORMS = ("fused", "compiled")
BASELINE = ("numpy", "loop")


@dataclass
class Row:
    framework: str
    variant: str
    dim: int
    status: str
    ms: float | None = None
    reason: str | None = None
    flags: list[str] = field(default_factory=list)
    #: IQR/median of the repeat times: the row's own spread.
    spread: float | None = None
    #: Passes over X per step: 1 for a one-pass form (bounded by the floor), else 2 (bounded by 2 gemv).
    passes: int = 2

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.ms is not None


@dataclass(frozen=True)
class Bounds:
    """What the rows at one d are held to: the floor (one read of X; at small d a call-overhead reference,
    ``memory_bound`` False) and each framework's own gemv, all measured in this process (the lower of the
    readings before and after the rows: a bound inflated by a busy moment would flatter every row)."""

    floor_ms: float
    memory_bound: bool = True
    gemv_ms: dict[str, float] = field(default_factory=dict)

    def two_gemv_ratio(self, row: Row) -> float | None:
        """The row's time over twice its own framework's gemv (None without a time or a gemv)."""
        gemv = self.gemv_ms.get(row.framework)
        return (row.ms or 0.0) / (2 * gemv) if row.ok and gemv else None


def _best(rows: list[Row], compiled_only: bool = False) -> Row | None:
    ok = [r for r in rows if r.ok and not (compiled_only and r.framework == "numpy")]
    return min(ok, key=lambda r: r.ms or 0.0) if ok else None


def _check(name: str, passed: bool | None, detail: str) -> str:
    verdict = "SKIP" if passed is None else "PASS" if passed else "FAIL"
    return f"{verdict}  {name}: {detail}"


def verdict(name: str, value: float, target: float, *, higher_is_better: bool, rows: list[Row],
            detail: str) -> str:
    """PASS/FAIL against ``target``, or INCONCLUSIVE when value and target differ by less than the spread.

    The spread is the largest IQR/median among the rows the ratio is made of: a ratio of two medians cannot
    be read more finely than the runs that made them.
    """
    noise = max((r.spread or 0.0) for r in rows)
    detail = f"{detail}; spread ±{100 * noise:.1f}%"
    if abs(value / target - 1.0) <= noise:
        return f"INCONCLUSIVE  {name}: {detail} (the difference is inside the runs' own spread)"
    return _check(name, value >= target if higher_is_better else value <= target, detail)


def checks(results: dict[int, list[Row]], bounds: dict[int, Bounds]) -> list[str]:
    """The target checks, from this run's rows only."""
    lines = []
    floors_ms = {dim: b.floor_ms for dim, b in bounds.items()}

    def base_row(dim: int) -> Row | None:
        return next((r for r in results.get(dim, []) if (r.framework, r.variant) == BASELINE and r.ok), None)

    if 100 in results:
        gemv_ms = bounds[100].gemv_ms
        best, base = _best(results[100]), base_row(100)
        if best and base:
            s, f = (base.ms or 0.0) / (best.ms or 1.0), (best.ms or 0.0) / floors_ms[100]
            who = f"{best.framework}/{best.variant} {best.ms:.4f} ms"
            lines.append(verdict(f"d=100 best CPU solver >= {TARGET_D100_SPEEDUP:g}x faster than numpy loop",
                                 s, TARGET_D100_SPEEDUP, higher_is_better=True, rows=[best, base],
                                 detail=f"{who}, {s:.2f}x (numpy loop {base.ms:.4f} ms)"))
            lines.append(verdict(f"d=100 best CPU solver <= {TARGET_D100_FLOOR_RATIO:g}x the floor",
                                 f, TARGET_D100_FLOOR_RATIO, higher_is_better=False, rows=[best],
                                 detail=f"{who}, {f:.2f}x (floor {floors_ms[100]:.4f} ms)"))
        else:
            lines.append(_check("d=100 targets", None, "no passing solver or no numpy loop baseline at d=100"))
        for row in (r for r in results[100] if r.variant == "fused" and r.ok):
            f = (row.ms or 0.0) / floors_ms[100]
            lines.append(verdict(f"d=100 {row.framework} fused <= {TARGET_D100_FUSED_FLOOR_RATIO:g}x the floor",
                                 f, TARGET_D100_FUSED_FLOOR_RATIO, higher_is_better=False, rows=[row],
                                 detail=f"{row.ms:.4f} ms, {f:.2f}x (floor {floors_ms[100]:.4f} ms)"))
            if row.passes == 1:
                lines.append(verdict(f"d=100 {row.framework} fused (one pass) <= "
                                     f"{TARGET_D100_ONE_PASS_FLOOR_RATIO:g}x the floor", f,
                                     TARGET_D100_ONE_PASS_FLOOR_RATIO, higher_is_better=False, rows=[row],
                                     detail=f"{row.ms:.4f} ms, {f:.2f}x (floor {floors_ms[100]:.4f} ms)"))
                if gemv := gemv_ms.get(row.framework):
                    g = (row.ms or 0.0) / gemv
                    lines.append(verdict(f"d=100 {row.framework} fused (one pass) <= "
                                         f"{TARGET_D100_ONE_PASS_GEMV_RATIO:g}x its own gemv (proposed bound)", g,
                                         TARGET_D100_ONE_PASS_GEMV_RATIO, higher_is_better=False, rows=[row],
                                         detail=f"{row.ms:.4f} ms = {g:.2f}x {gemv:.4f} ms"))
    else:
        lines.append(_check("d=100 targets", None, "d=100 not measured (--dims)"))
    if 2 in results:
        best, base = _best(results[2], compiled_only=True), base_row(2)
        if best and base:
            s = (base.ms or 0.0) / (best.ms or 1.0)
            lines.append(verdict(f"d=2 best compiled solver (any framework but numpy) >= {TARGET_D2_SPEEDUP:g}x "
                                 "faster than numpy loop", s, TARGET_D2_SPEEDUP, higher_is_better=True,
                                 rows=[best, base], detail=f"{best.framework}/{best.variant} {best.ms:.4f} ms, "
                                 f"{s:.2f}x (numpy loop {base.ms:.4f} ms)"))
        else:
            lines.append(_check("d=2 target", None, "no passing compiled solver or no numpy loop baseline at d=2"))
    else:
        lines.append(_check("d=2 target", None, "d=2 not measured (--dims)"))
    for dim, rows in results.items():
        bound = bounds[dim]
        held = bound.memory_bound and dim >= TWO_GEMV_MIN_D
        for row in (r for r in rows if r.variant in FUSED_FORMS and r.passes == 2 and held):
            ratio = bound.two_gemv_ratio(row)
            if ratio is None:
                continue
            gemv = bound.gemv_ms[row.framework]
            lines.append(verdict(f"d={dim} {row.framework} {row.variant} <= {TARGET_TWO_GEMV_RATIO:g}x two of its "
                                 "own gemv", ratio, TARGET_TWO_GEMV_RATIO, higher_is_better=False, rows=[row],
                                 detail=f"{row.ms:.4f} ms = {ratio:.2f}x 2 x {gemv:.4f} ms"))
    for dim, rows in results.items():
        by_key = {(r.framework, r.variant): r for r in rows}
        for fw in dict.fromkeys(r.framework for r in rows):
            loop, fused = by_key.get((fw, "loop")), by_key.get((fw, "fused"))
            if not (loop and fused and loop.ok and fused.ok):
                continue
            ratio = (fused.ms or 0.0) / (loop.ms or 1.0)
            lines.append(verdict(f"d={dim} {fw} fused not slower than loop", ratio, 1.0, higher_is_better=False,
                                 rows=[loop, fused], detail=f"fused {fused.ms:.4f} ms = {ratio:.2f}x loop "
                                 f"{loop.ms:.4f} ms"))
    return lines
