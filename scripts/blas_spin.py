"""How long OpenBLAS's spinning workers slow what is timed right after them (docs/frameworks.md).

Usage: .venv/bin/python scripts/blas_spin.py [--rounds 7] [--d 100]

After a burst of NumPy gemvs (OpenBLAS, 2 threads), OpenBLAS's worker threads keep spinning for a while;
on a 2-core host they share the cores with the next timed thing. Each round reads jax's and tensorflow's
own gemv (``Framework.gemv``, ``solvers.floor.per_product_s``, as ``python -m solvers bench`` does) right
after such a burst, and after the same burst followed by 0.3 s and 1 s of idle; the median per case shows
what the bench's ``SETTLE_S`` pause is for and whether it is long enough.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):  # as the images leave them
    os.environ.pop(var, None)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--d", type=int, default=100)
    args = ap.parse_args()
    from solvers import threads

    threads.apply(2)
    import numpy as np

    from solvers import problem, registry
    from solvers.floor import per_product_s

    threads.limit_blas(2)
    data = problem.make_data(problem.ProblemSpec(n=10_000, iters=10), args.d)
    W = np.random.default_rng(0).standard_normal(args.d)
    out = np.empty(data.n)
    runs = {}
    for name in ("jax", "tensorflow"):
        fw = registry.load(name)
        fw.configure_threads(2)
        runs[name] = fw.gemv(data, W)
        runs[name](10)
    idle = {"right after NumPy gemvs": 0.0, "after 0.3 s idle": 0.3, "after 1 s idle": 1.0}
    readings: dict[tuple[str, str], list[float]] = {(n, k): [] for n in runs for k in idle}
    for _ in range(args.rounds):
        for name, run in runs.items():
            for case, pause in idle.items():
                for _ in range(50):
                    np.matmul(data.X, W, out=out)
                time.sleep(pause)
                readings[(name, case)].append(per_product_s(run))
    print(f"own gemv per product at d={args.d}, 2 threads, {args.rounds} rounds (median, ms)")
    for (name, case), values in readings.items():
        print(f"{name:10s} {case:24s} {statistics.median(values) * 1e3:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
