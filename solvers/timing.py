"""The timing protocol, written once for every framework.

Per (dim, variant): transfer (outside the clock) → first call timed alone as ``compile_s`` → correctness
against the float64 reference (a failure carries no timing) → ``repeats`` timed runs, each ended by a device
sync → a sync check: the loop at 2k iterations must take 1.8–2.2× as long as at k, which a clock that
misses queued asynchronous work cannot pass.
"""

from __future__ import annotations

import math
import resource
import statistics
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

from .base import Solver
from .problem import TOLERANCE, ProblemData, max_rel_error
from .schema import empty_row

SYNC_RATIO = (1.8, 2.2)
#: The sync check grows k until one run lasts this long, so fixed call overhead cannot skew the ratio.
SYNC_MIN_SECONDS = 0.05
SYNC_MAX_ITERS = 1 << 22
SYNC_PAIRS = 5
SYNC_ATTEMPTS = 3


def _timed(solver: Solver, iters: int) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = solver.run(iters)
    solver.sync(out)
    return time.perf_counter() - t0, out


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def sync_check(solver: Solver, iters: int) -> dict[str, Any]:
    """Ratio of the fastest 2k run to the fastest k run over interleaved pairs, k grown to ``SYNC_MIN_SECONDS``.

    Load on a shared host only ever adds time, so the fastest of several interleaved runs is the estimate a
    burst cannot move; a failed attempt is retried at twice k, where a burst weighs half as much. A clock
    that misses queued work sees a ratio near 1 whatever k is.
    """
    k = iters
    t_k, _ = _timed(solver, k)
    while t_k < SYNC_MIN_SECONDS and k < SYNC_MAX_ITERS:
        k *= 2 if t_k <= 0 else max(2, min(64, math.ceil(SYNC_MIN_SECONDS / t_k)))
        k = min(k, SYNC_MAX_ITERS)
        t_k, _ = _timed(solver, k)
    ratio = float("nan")
    for attempt in range(SYNC_ATTEMPTS):
        if attempt:
            k = min(2 * k, SYNC_MAX_ITERS)
        _timed(solver, 2 * k)  # warm any per-length cache (e.g. a graph captured per iteration count)
        t1, t2 = float("inf"), float("inf")
        for _ in range(SYNC_PAIRS):
            t1 = min(t1, _timed(solver, k)[0])
            t2 = min(t2, _timed(solver, 2 * k)[0])
        ratio = t2 / t1
        if SYNC_RATIO[0] <= ratio <= SYNC_RATIO[1]:
            break
    return {"iters": k, "ratio": round(ratio, 4), "passed": SYNC_RATIO[0] <= ratio <= SYNC_RATIO[1]}


class _Failed(Exception):
    """A check failed: the row keeps its diagnosis but loses every timing."""


_TIMINGS = ("compile_s", "transfer_s", "median_s", "min_s", "cv", "time_per_iter_s")


def measure(
    make_solver: Callable[[], Solver],
    data: ProblemData,
    reference: tuple[np.ndarray, float],
    *,
    variant: str,
    iters: int,
    repeats: int,
    dtype: str,
    gpu_state: Callable[[], dict[str, Any] | None],
    check_sync: bool = True,
) -> dict[str, Any]:
    """Run the protocol for one (dim, variant); a failed check or any exception gives a ``failed`` row."""
    row = empty_row(data.d, variant, "failed", None)
    row["tolerance"] = TOLERANCE[dtype]
    try:
        _run_checked(row, make_solver, data, reference, iters=iters, repeats=repeats, dtype=dtype,
                     gpu_state=gpu_state, check_sync=check_sync)
    except _Failed as exc:
        row["reason"] = str(exc)
    except Exception as exc:
        row["reason"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        row["stderr_tail"] = "".join(traceback.format_exc().splitlines(keepends=True)[-20:])
    if row["status"] != "ok":
        row.update({k: None for k in _TIMINGS}, repeat_times_s=[])
    return row


def _run_checked(row: dict[str, Any], make_solver: Callable[[], Solver], data: ProblemData,
                 reference: tuple[np.ndarray, float], *, iters: int, repeats: int, dtype: str,
                 gpu_state: Callable[[], dict[str, Any] | None], check_sync: bool) -> None:
    solver = make_solver()
    t0 = time.perf_counter()
    solver.setup(data)
    row["transfer_s"] = time.perf_counter() - t0
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
    times = [_timed(solver, iters)[0] for _ in range(repeats)]
    # The answer after the timed runs must still be right: a solver that reuses state across runs would not be.
    W, b = solver.fetch(_timed(solver, iters)[1])
    if not max_rel_error(W, b, *reference) <= TOLERANCE[dtype]:
        raise _Failed("result changed after repeated runs (state leaks between runs)")
    if check_sync:
        row["sync_check"] = check = sync_check(solver, iters)
        if not check["passed"]:
            raise _Failed(
                f"sync check failed: {2 * check['iters']} iterations took {check['ratio']:.2f}x the time "
                f"of {check['iters']} (want {SYNC_RATIO[0]}-{SYNC_RATIO[1]}x)"
            )
    row["gpu_state_after"] = gpu_state()
    row["peak_rss_bytes"] = peak_rss_bytes()
    median = statistics.median(times)
    row.update(
        status="ok",
        repeat_times_s=times,
        median_s=median,
        min_s=min(times),
        cv=statistics.pstdev(times) / statistics.fmean(times) if len(times) > 1 else 0.0,
        time_per_iter_s=median / iters,
    )
