"""The memory floor: the fastest one pass over X this process can make, with the solvers' threads.

Every gradient step must read X at least once, so no solver can be expected to beat one pass by much.
Which pass is fastest depends on the layout and on d, so the floor is the best of three, each the median
of batches long enough to dwarf the clock's own cost: a BLAS gemv X·W on X as the solvers get it, a gemv
on a copy whose rows are padded to whole 64-byte lines (the layout numba's fused solver reads), and a plain
streaming read of X at the solvers' thread count: BLAS ddot of X's flat buffer with itself (one stream,
each line read once, split over the BLAS threads the solvers get). NumPy's own sum, one thread only, is
recorded beside it but is not a candidate: it would not bound a multi-threaded solver at small d. At small
d a gemv costs little more than the call itself; there the floor is a call-overhead reference, not a
memory bound, and says so.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .problem import ALIGN, aligned_copy

FLOOR_BATCHES = 41
FLOOR_BATCH_SECONDS = 2e-3
#: A gemv over all of X within this factor of a gemv over 8 rows measures the call, not the memory.
CALL_OVERHEAD_FACTOR = 4.0
_TINY_ROWS = 8


def per_call_s(fn: Callable[[], object], batches: int = FLOOR_BATCHES) -> float:
    """Median seconds per call of ``fn`` over ``batches`` batches of ~``FLOOR_BATCH_SECONDS`` each."""
    fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    batch = max(1, int(FLOOR_BATCH_SECONDS / once))
    samples = []
    for _ in range(batches):
        t0 = time.perf_counter()
        for _ in range(batch):
            fn()
        samples.append((time.perf_counter() - t0) / batch)
    return statistics.median(samples)


#: A framework's gemv runner is timed in calls of at least this long (``per_product_s``).
PRODUCT_CALL_SECONDS = 5e-3
PRODUCT_BATCHES = 9


def per_product_s(run: Callable[[int], object], batches: int = PRODUCT_BATCHES) -> float:
    """Seconds per product of a framework's ``gemv`` runner (``Framework.gemv``), without its call's cost.

    ``run(k)`` makes k products in one call and waits. A call costs a fixed dispatch (≈ 0.3 ms for a jitted
    JAX program, ≈ 1 ms for a tf.function) on top of its products, so the time per product is the marginal
    one: (T(K) − T(1)) / (K − 1), T per call as ``per_call_s`` reads it, K doubled until a call lasts
    ``PRODUCT_CALL_SECONDS``. T(1) is short and steady, so the difference keeps T(K)'s own few-% noise
    (a difference of two long calls would double it).
    """
    k = 1
    run(k)
    while True:
        t0 = time.perf_counter()
        run(k)
        if time.perf_counter() - t0 >= PRODUCT_CALL_SECONDS or k >= 1 << 16:
            break
        k *= 2
    k = max(2, k)
    # per_call_s warms each count first (a program may compile for a new one) and batches the short calls.
    one, many = per_call_s(lambda: run(1), batches), per_call_s(lambda: run(k), batches)
    # Should noise ever make T(1) the longer, the plain average of the long calls still bounds the product.
    return (many - one) / (k - 1) if many > one else many / k


def padded(X: np.ndarray) -> np.ndarray:
    """X in rows padded with zero columns to whole 64-byte lines, each row starting on a line."""
    n, d = X.shape
    per_line = ALIGN // X.dtype.itemsize
    width = -(-d // per_line) * per_line
    out = aligned_copy(np.zeros((n, width), dtype=X.dtype))
    out[:, :d] = X
    return out


def measure_floor(X: np.ndarray) -> dict[str, Any]:
    """The floor at X's d: the best of the three passes, each recorded, and whether the call dominates."""
    n, d = X.shape
    W = np.random.default_rng(0).standard_normal(d).astype(X.dtype)
    out = np.empty(n, dtype=X.dtype)
    Xp = padded(X)
    Wp = np.zeros(Xp.shape[1], dtype=X.dtype)
    Wp[:d] = W
    tiny_X, tiny_out = X[:_TINY_ROWS], out[:_TINY_ROWS]
    flat = np.ascontiguousarray(X).reshape(-1)
    times = {
        "gemv_plain": per_call_s(lambda: np.matmul(X, W, out=out)),
        "gemv_padded": per_call_s(lambda: np.matmul(Xp, Wp, out=out)),
        "stream": per_call_s(lambda: np.dot(flat, flat)),
    }
    sum_one_thread = per_call_s(lambda: np.add.reduce(X, axis=None))
    tiny = per_call_s(lambda: np.matmul(tiny_X, W, out=tiny_out))
    kind = min(times, key=times.__getitem__)
    return {"dim": d, "time_s": times[kind], "kind": kind,
            "call_overhead_bound": times["gemv_plain"] < CALL_OVERHEAD_FACTOR * tiny,
            "gemv_plain_s": times["gemv_plain"], "gemv_padded_s": times["gemv_padded"],
            "stream_s": times["stream"], "sum_one_thread_s": sum_one_thread, "call_s": tiny}
