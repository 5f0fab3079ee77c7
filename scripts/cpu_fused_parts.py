"""Where numba's and numpy's fused steps spend their time, interleaved in one process (docs/frameworks.md).

Usage: .venv/bin/python scripts/cpu_fused_parts.py numba [--dims 32,64,80,100,128] [--rounds 9]
       .venv/bin/python scripts/cpu_fused_parts.py numpy [--rounds 15]

numba: the fused driver with the row kernel blocking 1, 2, 3, 4 and 8 rows, on X padded to whole lines as
the solver lays it out, plus (at d=100) the same 4-row kernel without its gradient update ("dot only") or
without its dot products ("update only", r taken as y) and on one thread; NumPy's gemv and a streaming
read of X (the bench's floor) are timed after all numba rounds, because OpenBLAS's worker threads keep
spinning after each call and would share the two cores with numba's pool.

numpy (d=100): two gemvs over X, over the copy of Xᵀ and over X's transposed view, the step's vector ops,
its two products back to back (X·W then Xᵀr over the copy), the solver's own run and the same step
written out; all in NumPy's one OpenBLAS.

Each round times every candidate once (200 or 100 steps), in a fresh order, so a drift of the shared host
lands on no candidate alone; the table gives the median, the IQR/median and the minimum over rounds.
Threads, affinity and allocator as the solvers set them (``solvers.threads.apply``), the OpenBLAS variables
cleared as in the images.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):  # as the images leave them
    os.environ.pop(var, None)

Case = Callable[[int], object]


def timed(groups: list[dict[str, Case]], rounds: int, steps: int) -> dict[str, list[float]]:
    """Seconds per step of every case: each group's rounds finish before the next group's start."""
    times: dict[str, list[float]] = {name: [] for group in groups for name in group}
    for group in groups:
        for fn in group.values():
            fn(20)  # compiled and warm
        for _ in range(rounds):
            for name in random.sample(list(group), len(group)):
                t0 = time.perf_counter()
                group[name](steps)
                times[name].append((time.perf_counter() - t0) / steps)
    return times


def table(times: dict[str, list[float]], base: str) -> list[str]:
    ref = statistics.median(times[base])
    out = [f"| case | ms per step (median) | IQR/median | min | × {base} |", "| --- | --- | --- | --- | --- |"]
    for name, ts in times.items():
        med = statistics.median(ts)
        q = statistics.quantiles(ts, n=4) if len(ts) > 1 else [med, med, med]
        out.append(f"| {name} | {med * 1e3:.4f} | {100 * (q[2] - q[0]) / med:.1f} % | {min(ts) * 1e3:.4f} | "
                   f"{med / ref:.2f} |")
    return out


def numba_cases(d: int, n: int) -> list[dict[str, Case]]:
    import numpy as np

    from solvers import problem
    from solvers.frameworks import numba_ as nb

    data = problem.make_data(problem.ProblemSpec(n=n, iters=10), d)
    width = nb.padded_width(d, data.X.dtype)
    X = nb.aligned_zeros(n, width, data.X.dtype)
    X[:, :d] = data.X
    step = data.X.dtype.type(2.0 * data.lr / n)

    def driver(kernel: Callable[..., None], parallel: bool = True) -> Case:
        W, parts = np.zeros(width), nb.partials(2 if parallel else 1, width + 1, X.dtype)
        descend = nb.descend_parallel if parallel else nb.descend_serial
        return lambda steps: descend(kernel, X, data.y, W, 0.0, step, steps, parts)

    def variant(rows: int, keep: str) -> Callable[..., None]:
        """The blocked kernel's source with one of its two inner loops taken out (d=100 only)."""
        src = nb._blocked_source(width, rows)

        def cut(old: str, new: str) -> None:
            """One edit of the source; an edit that matches nothing would time the whole kernel as a part."""
            nonlocal src
            if old not in src:
                raise SystemExit(f"the blocked kernel's source no longer has {old.strip()!r}: update this script")
            src = src.replace(old, new, 1)

        if keep == "dot":  # no gradient update: keep r alive through gb only
            cut("            g[j] += ", "            pass  # ")
        else:  # no dot products: r is y − b
            cut("            s0 += x0[j] * w", "            pass")
            for k in range(1, rows):
                cut(f"            s{k} += x{k}[j] * w\n", "")
        return nb.compile_kernel(src, "rows_blocked", f"{keep} only")

    cases = {f"{rows} rows": driver(nb.blocked_kernel(width, rows)) for rows in (1, 2, 3, 4, 8)}
    if d == 100:
        cases["4 rows, dot only"] = driver(variant(4, "dot"))
        cases["4 rows, update only"] = driver(variant(4, "update"))
        cases["4 rows, one thread"] = driver(nb.blocked_kernel(width, 4), parallel=False)
    W = np.random.default_rng(0).standard_normal(d)
    out, flat = np.empty(n), np.ascontiguousarray(data.X).reshape(-1)
    refs = {"NumPy gemv": lambda steps: [np.matmul(data.X, W, out=out) for _ in range(steps)],
            "stream (floor)": lambda steps: [np.dot(flat, flat) for _ in range(steps)]}
    return [cases, refs]


def numpy_cases(n: int) -> list[dict[str, Case]]:
    import numpy as np

    from solvers import problem
    from solvers.frameworks import numpy_ as npf

    data = problem.make_data(problem.ProblemSpec(n=n, iters=10), 100)
    solver = npf.FusedSolver()
    solver.setup(data)
    X, y, XT = data.X, data.y, solver.XT
    W, r, g = data.W0.copy(), np.empty(n), np.empty(100)
    lr_step = 2.0 * data.lr / n

    def written_out(steps: int) -> None:
        b = float(data.b0)
        for _ in range(steps):
            np.matmul(X, W, out=r)
            np.subtract(y, r, out=r)
            r.__isub__(b)
            np.matmul(XT, r, out=g)
            g.__imul__(lr_step)
            W.__iadd__(g)
            b += lr_step * r.sum()

    def vector_ops(steps: int) -> None:
        for _ in range(steps):
            np.subtract(y, r, out=r)
            r.__isub__(0.5)
            r.sum()

    return [{"two gemv X·W": lambda steps: [np.matmul(X, W, out=r) for _ in range(2 * steps)],
             "two gemv Xᵀr (the copy)": lambda steps: [np.matmul(XT, r, out=g) for _ in range(2 * steps)],
             "two gemv r·X (X's view, no copy)": lambda steps: [np.matmul(r, X, out=g) for _ in range(2 * steps)],
             "y − r, r −= b, Σr": vector_ops,
             "X·W then Xᵀr": lambda steps: [(np.matmul(X, W, out=r), np.matmul(XT, r, out=g))
                                             for _ in range(steps)],
             "solver's run": solver.run,
             "the step written out": written_out}]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("which", choices=("numba", "numpy"))
    ap.add_argument("--dims", default="32,64,80,100,128", help="numba only")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    from solvers import threads

    threads.apply(args.threads)  # before numpy, numba or any BLAS loads
    threads.limit_blas(args.threads)
    if args.which == "numpy":
        print(f"numpy fused parts, d=100, n={args.n}, {args.threads} threads; 100 steps per sample")
        print("\n".join(table(timed(numpy_cases(args.n), args.rounds or 15, 100), "two gemv X·W")))
        return 0
    for d in (int(x) for x in args.dims.split(",")):
        print(f"\nnumba fused, d={d}, n={args.n}, {args.threads} threads; 200 steps per sample")
        print("\n".join(table(timed(numba_cases(d, args.n), args.rounds or 9, 200), "NumPy gemv")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
