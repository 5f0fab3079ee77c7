"""The timing protocol, written once for every framework and used alike by ``run`` and the bench.

Per (dim, variant): transfer (outside the clock) → first call timed alone as ``compile_s`` → correctness
against the float64 reference (a failure carries no timing) → timed runs, each ended by a device sync,
sampled adaptively (``Sampling``: a minimum, then until the median's 95 % interval is narrow enough or the
row's budget is spent) → a sync check over runs of k, 2k, 3k and 4k iterations in a balanced order, fitted
as time against iterations, k chosen from the measured time so one run lasts ``SYNC_MIN_SECONDS``. A clock
that misses queued asynchronous work sees a ratio t(2k)/t(k) near 1 and fails; a ratio above the expected
range only means the speed moved during the check, so the row keeps its time and is flagged. A row that
failed only its sync check gets one fresh attempt (``measure``).
"""

from __future__ import annotations

import math
import os
import resource
import statistics
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .base import Solver
from .problem import TOLERANCE, ProblemData, max_rel_error
from .schema import empty_row, sampling_record

#: t(2k)/t(k) must reach the lower bound: a clock that misses queued work sees ~1. Above the upper bound
#: the speed changed between runs (a shared or frequency-scaling CPU), which cannot mean a wrong time.
SYNC_RATIO = (1.8, 2.2)
#: The sync check grows k until one run lasts this long, so fixed call overhead cannot skew the ratio.
SYNC_MIN_SECONDS = 0.05
SYNC_MAX_ITERS = 1 << 22
#: Run lengths as multiples of k, and the rounds over them: odd rounds in this order, even rounds reversed
#: (ABBA), so neither a drift nor a speed that flips from run to run lands on one length only.
SYNC_MULTIPLES = (1, 2, 3, 4)
SYNC_ROUNDS = 4
#: After this many rounds (one whole ABBA) a ratio inside ``SYNC_RATIO`` settles the check; any other ratio
#: (a possible failure, or unstable) gets every round before it is judged.
SYNC_SETTLED_ROUNDS = 2
#: A check below the lower bound is repeated once at twice k, where a burst of load weighs half as much.
SYNC_ATTEMPTS = 2
#: Spread above which a row is flagged ``noisy``: differences between rows smaller than this cannot be read.
NOISY_CV = 0.10
NOISY_IQR_REL = 0.10
#: The median's standard error over the sample's: sqrt(pi/2) for normal samples (asymptotic).
MEDIAN_SE_FACTOR = math.sqrt(math.pi / 2)
#: Two-sided 95 % Student t quantiles by degrees of freedom (the slope's interval); 1.96 beyond the table.
_T95 = {1: 12.71, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 18: 2.101, 20: 2.086, 25: 2.060,
        30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}


def _timed(solver: Solver, iters: int) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = solver.run(iters)
    solver.sync(out)
    return time.perf_counter() - t0, out


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def t95(dof: int) -> float:
    """The 95 % two-sided t quantile for ``dof`` degrees of freedom (next smaller tabulated dof: wider)."""
    if dof < 1:
        return float("inf")
    if dof > max(_T95):
        return 1.96
    return _T95[max(k for k in _T95 if k <= dof)]


def fit_slope(points: list[tuple[int, float]]) -> dict[str, Any]:
    """Least-squares seconds per iteration over (iterations, seconds) points, with its 95 % interval."""
    x = np.array([p[0] for p in points], dtype=float)
    y = np.array([p[1] for p in points], dtype=float)
    xm = x - x.mean()
    sxx = float(xm @ xm)
    slope = float(xm @ (y - y.mean())) / sxx
    resid = y - (y.mean() + slope * xm)
    dof = len(points) - 2
    se = math.sqrt(float(resid @ resid) / dof / sxx) if dof > 0 else float("inf")
    half = t95(dof) * se
    return {"time_per_iter_s": slope, "low": slope - half, "high": slope + half, "points": len(points),
            "intercept_s": float(y.mean() - slope * x.mean())}


def sync_check(solver: Solver, iters: int, per_iter_s: float | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(``sync_check``, ``slope``): runs of k…4k iterations in ABBA order, one k run lasting ``SYNC_MIN_SECONDS``.

    k comes from ``per_iter_s`` (the repeats' median) where known, else from ``iters``, and grows until a
    k run really lasts that long. ``ratio`` is the fastest 2k run over the fastest k run: load on a shared
    host only adds time, so the fastest of several runs is the estimate a burst cannot move. ``passed`` is
    false only below the lower bound; above the upper one the check says ``unstable``. A ratio inside the
    bounds after ``SYNC_SETTLED_ROUNDS`` ends the check early (``rounds`` says how many ran).
    """
    k = iters
    if per_iter_s and per_iter_s > 0:
        k = max(1, min(SYNC_MAX_ITERS, math.ceil(1.1 * SYNC_MIN_SECONDS / per_iter_s)))
    t_k, _ = _timed(solver, k)
    while t_k < SYNC_MIN_SECONDS and k < SYNC_MAX_ITERS:
        k *= 2 if t_k <= 0 else max(2, min(64, math.ceil(SYNC_MIN_SECONDS / t_k)))
        k = min(k, SYNC_MAX_ITERS)
        t_k, _ = _timed(solver, k)
    check: dict[str, Any] = {}
    points: list[tuple[int, float]] = []
    for attempt in range(SYNC_ATTEMPTS):
        if attempt:
            k = min(2 * k, SYNC_MAX_ITERS)
        _timed(solver, max(SYNC_MULTIPLES) * k)  # warm any per-length cache (e.g. a graph per count)
        points = []
        for rnd in range(SYNC_ROUNDS):
            for m in SYNC_MULTIPLES if rnd % 2 == 0 else SYNC_MULTIPLES[::-1]:
                points.append((m * k, _timed(solver, m * k)[0]))
            ratio = _sync_ratio(points, k)
            if rnd + 1 >= SYNC_SETTLED_ROUNDS and SYNC_RATIO[0] <= ratio <= SYNC_RATIO[1]:
                break
        check = {"iters": k, "ratio": round(ratio, 4), "passed": ratio >= SYNC_RATIO[0],
                 "unstable": ratio > SYNC_RATIO[1], "bounds": list(SYNC_RATIO), "attempts": attempt + 1,
                 "rounds": rnd + 1}
        if check["passed"]:
            break
    slope = fit_slope(points)
    return check, {k_: (v if not isinstance(v, float) else v if math.isfinite(v) else None)
                   for k_, v in slope.items()}


def _sync_ratio(points: list[tuple[int, float]], k: int) -> float:
    best = {m: min(t for n, t in points if n == m * k) for m in (1, 2)}
    return best[2] / max(best[1], 1e-12)


def async_probe(solver: Solver, iters: int) -> dict[str, Any]:
    """How asynchronous the solver is: time to return from ``run`` unsynced vs synced, and a second sync.

    ``dispatch_s`` well below ``synced_s`` means ``run`` only queues work and the sync is what waits for it;
    ``resync_s`` is a sync on work already finished, which must cost almost nothing (a sync that redoes or
    waits for unrelated work would not).
    """
    t0 = time.perf_counter()
    out = solver.run(iters)
    dispatch = time.perf_counter() - t0
    solver.sync(out)
    synced = time.perf_counter() - t0
    t1 = time.perf_counter()
    solver.sync(out)
    resync = time.perf_counter() - t1
    return {"iters": iters, "dispatch_s": dispatch, "synced_s": synced, "resync_s": resync,
            "dispatch_fraction": round(dispatch / synced, 4) if synced > 0 else None}


@dataclass(frozen=True)
class Sampling:
    """How many timed repeats a row takes: ``min_repeats``, then one more at a time until the median's 95 %
    interval is within ±``ci_width`` of it (``interval``), ``max_repeats`` ran, or the repeats have taken
    ``budget_s`` (``budget``). Settled rows stop early; a noisy row spends its budget and keeps its flag."""

    min_repeats: int
    max_repeats: int
    ci_width: float
    budget_s: float

    @classmethod
    def checked(cls, repeats: int, max_repeats: int, ci_width: float, budget_s: float) -> Sampling:
        """The rule from the ``--repeats``/``--max-repeats``/``--ci-width``/``--row-budget`` options, checked
        (``options.check_sampling``: an ``OptionError`` names the option)."""
        from .options import check_sampling

        check_sampling(repeats, max_repeats, ci_width, budget_s)
        return cls(repeats, max_repeats, ci_width, budget_s)

    @classmethod
    def fixed(cls, repeats: int) -> Sampling:
        """Exactly ``repeats`` timed runs, whatever their spread."""
        return cls(repeats, repeats, 0.0, math.inf)

    def stop(self, times: list[float]) -> str | None:
        """Why sampling stops after ``times``, or None to time one more repeat."""
        n = len(times)
        if n < self.min_repeats:
            return None
        if median_ci_rel(times) <= self.ci_width:
            return "interval"
        if n >= self.max_repeats:
            return "max_repeats"
        if sum(times) >= self.budget_s:
            return "budget"
        return None

    def record(self) -> dict[str, Any]:
        return sampling_record(min_repeats=self.min_repeats, max_repeats=self.max_repeats, ci_width=self.ci_width,
                               budget_s=self.budget_s)


def median_ci_rel(times: list[float]) -> float:
    """Half-width of the median's 95 % interval over the median: t(n-1) · sqrt(pi/2) · s / sqrt(n) / median.

    The normal approximation of the median's standard error: an outlier widens it (more repeats), never
    narrows it. Below two repeats there is no interval (infinite).
    """
    n = len(times)
    median = statistics.median(times) if times else 0.0
    if n < 2 or median <= 0:
        return math.inf
    return t95(n - 1) * MEDIAN_SE_FACTOR * statistics.stdev(times) / math.sqrt(n) / median


def spread(times: list[float]) -> dict[str, float]:
    """Median, min, coefficient of variation and IQR/median of the repeat times."""
    median = statistics.median(times)
    q1, q3 = np.percentile(times, [25, 75])
    return {"median_s": median, "min_s": min(times),
            "cv": statistics.pstdev(times) / statistics.fmean(times) if len(times) > 1 else 0.0,
            "iqr_rel": float(q3 - q1) / median if median > 0 else 0.0}


def _steal_s() -> float | None:
    """Steal time of all CPUs so far (seconds): time the hypervisor ran someone else on our vCPUs."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = fh.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK") if fields[0] == "cpu" and len(fields) > 8 else None
    except (OSError, ValueError, IndexError):
        return None


def _host_sample() -> tuple[float | None, float | None, int]:
    try:
        load: float | None = os.getloadavg()[0]
    except OSError:
        load = None
    return load, _steal_s(), resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw


def _host_load(start: tuple[float | None, float | None, int]) -> dict[str, Any]:
    _, steal, nivcsw = _host_sample()
    return {"loadavg_start": start[0],
            "steal_s": round(steal - start[1], 3) if steal is not None and start[1] is not None else None,
            "nivcsw": nivcsw - start[2]}


class Window(Protocol):
    """A measurement window opened just before the timed repeats (see ``solvers.nvml.open_window``)."""

    def finish(self, run_once: Callable[[], float], *, iters: int, runs: int) -> dict[str, Any]:
        """Close the window after ``runs`` runs of ``iters`` (``run_once`` adds runs); the row fields it fills."""
        ...

    def close(self) -> None:
        """Stop whatever the window started (idempotent; also after an exception in the timed runs)."""
        ...


class _Failed(Exception):
    """A check failed: the row keeps its diagnosis but loses every timing."""


class _SyncFailed(_Failed):
    """Only the sync check failed: the one failure a fresh attempt may clear (a burst of load)."""


_TIMINGS = ("compile_s", "transfer_s", "median_s", "min_s", "cv", "iqr_rel", "time_per_iter_s")


def measure(
    make_solver: Callable[[], Solver],
    data: ProblemData,
    reference: tuple[np.ndarray, float],
    *,
    variant: str,
    iters: int,
    sampling: Sampling,
    dtype: str,
    gpu_state: Callable[[], dict[str, Any] | None],
    check_sync: bool = True,
    simulated: bool = False,
    sampler: Callable[[], Window | None] | None = None,
) -> dict[str, Any]:
    """Run the protocol for one (dim, variant); a failed check or any exception gives a ``failed`` row.

    ``simulated``: the device is a simulator, so the row stops after the correctness check with status
    ``simulated`` and no timing. ``sampler``: opens a measurement window (GPU energy, sampled clocks, see
    ``solvers.nvml``) around the timed repeats; it may return None (no NVML) and then nothing is added.

    The acceptance rule of every caller: a row that failed only its sync check is measured once more from a
    fresh solver (on a shared host one bad moment can sink the ratio; a solver that really misses queued
    work fails again), and the row that counts carries the flag ``retried``.
    """
    def attempt() -> dict[str, Any]:
        return _attempt(make_solver, data, reference, variant=variant, iters=iters, sampling=sampling, dtype=dtype,
                        gpu_state=gpu_state, check_sync=check_sync, simulated=simulated, sampler=sampler)

    row = attempt()
    if row.pop("_sync_only", False):
        first = row["reason"]
        row = attempt()
        row.pop("_sync_only", None)
        row["flags"].append("retried")
        if row["sync_check"] is not None:
            row["sync_check"]["first_attempt"] = first
    return row


def _attempt(make_solver: Callable[[], Solver], data: ProblemData, reference: tuple[np.ndarray, float], *,
             variant: str, iters: int, sampling: Sampling, dtype: str,
             gpu_state: Callable[[], dict[str, Any] | None], check_sync: bool, simulated: bool,
             sampler: Callable[[], Window | None] | None) -> dict[str, Any]:
    row = empty_row(data.d, variant, "failed", None)
    row["tolerance"] = TOLERANCE[dtype]
    start = _host_sample()
    try:
        _run_checked(row, make_solver, data, reference, iters=iters, sampling=sampling, dtype=dtype,
                     gpu_state=gpu_state, check_sync=check_sync, simulated=simulated, sampler=sampler)
    except _Failed as exc:
        row["reason"] = str(exc)
        row["_sync_only"] = isinstance(exc, _SyncFailed)
    except Exception as exc:
        row["reason"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        row["stderr_tail"] = "".join(traceback.format_exc().splitlines(keepends=True)[-20:])
    row["host_load"] = _host_load(start)
    if row["status"] != "ok":
        # The repeat times it measured stay (their spread can be read); no figure that reads as a result.
        row.update(dict.fromkeys(_TIMINGS), flags=[], energy=None, gpu_samples=None)
    return row


def _finite(value: float) -> float | None:
    return round(value, 6) if math.isfinite(value) else None


def _layout(solver: Solver, data: ProblemData) -> dict[str, Any]:
    """Where X starts within a 64-byte line, and what the solver's own re-layout of it costs in memory."""
    return {"x_alignment": int(data.X.ctypes.data % 64), "extra_bytes": getattr(solver, "extra_bytes", 0),
            "what": getattr(solver, "relayout", None)}


def _run_checked(row: dict[str, Any], make_solver: Callable[[], Solver], data: ProblemData,
                 reference: tuple[np.ndarray, float], *, iters: int, sampling: Sampling, dtype: str,
                 gpu_state: Callable[[], dict[str, Any] | None], check_sync: bool, simulated: bool,
                 sampler: Callable[[], Window | None] | None) -> None:
    solver = make_solver()
    t0 = time.perf_counter()
    solver.setup(data)
    row["transfer_s"] = time.perf_counter() - t0
    row["layout"] = _layout(solver, data)
    row["gpu_state_before"] = gpu_state()
    row["compile_s"], out = _timed(solver, iters)
    W, b = solver.fetch(out)
    row["output_dtype"] = str(np.asarray(W).dtype)
    err = max_rel_error(W, b, *reference)
    row["max_rel_error"] = err if math.isfinite(err) else None
    if row["output_dtype"] != dtype:
        raise _Failed(f"ran in {row['output_dtype']}, asked for {dtype}")
    if not err <= TOLERANCE[dtype]:
        raise _Failed(f"max relative error {err:.3g} exceeds tolerance {TOLERANCE[dtype]:g}")
    if simulated:  # checked; a simulator's clock says nothing about the device it stands in for
        row.update(status="simulated", reason="ran under a device simulator: checked for correctness, no timing")
        return
    window = sampler() if sampler else None
    try:
        times: list[float] = []
        while (stop := sampling.stop(times)) is None:
            times.append(_timed(solver, iters)[0])
        row["sampling"] = {**sampling.record(), "repeats": len(times), "stop": stop,
                           "ci_rel": _finite(median_ci_rel(times))}
        if window is not None:  # may run more loops, outside ``times``, until the energy window is long enough
            row.update(window.finish(lambda: _timed(solver, iters)[0], iters=iters, runs=len(times)))
    finally:
        if window is not None:
            window.close()
    row["repeat_times_s"] = times
    # The answer after the timed runs must still be right: a solver that reuses state across runs would not be.
    W, b = solver.fetch(_timed(solver, iters)[1])
    if not max_rel_error(W, b, *reference) <= TOLERANCE[dtype]:
        raise _Failed("result changed after repeated runs (state leaks between runs)")
    flags: list[str] = []
    if check_sync:
        row["async_probe"] = async_probe(solver, iters)
        check, row["slope"] = sync_check(solver, iters, statistics.median(times) / iters)
        row["sync_check"] = check
        if not check["passed"]:
            raise _SyncFailed(
                f"sync check failed: {2 * check['iters']} iterations took {check['ratio']:.2f}x the time "
                f"of {check['iters']} (want at least {SYNC_RATIO[0]}x)"
            )
        if check["unstable"]:
            flags.append("unstable")
    row["gpu_state_after"] = gpu_state()
    row["peak_rss_bytes"] = peak_rss_bytes()
    stats = spread(times)
    if stats["cv"] > NOISY_CV or stats["iqr_rel"] > NOISY_IQR_REL:
        flags.append("noisy")
    row.update(status="ok", **stats, time_per_iter_s=stats["median_s"] / iters, flags=flags)

