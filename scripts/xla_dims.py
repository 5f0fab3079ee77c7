"""XLA:CPU's two GEMVs of the fused step, timed against d, with what XLA emitted for each d: a standalone
reproducer (JAX and NumPy only) for the jump at some d (docs/frameworks.md#jax).

Usage: .venv/bin/python scripts/xla_dims.py [--dims 40,48,50,52,56,64,100] [--rounds 7] [--threads 2]

Per d it compiles the fused program (θ·A and A·r over A = [Xᵀ; 1ᵀ], (d+1, n), float64, inside a
fori_loop), dumps XLA's optimised LLVM IR for its two dots, and counts what the IR holds (the vector widths
LLVM kept, the multiplies); then every round times each d once, in a fresh order, so a drift of the shared
host lands on no d alone. NumPy's gemv over the same A (one pass) is printed beside it as the yardstick.
"""

from __future__ import annotations

import argparse
import glob
import os
import pathlib
import random
import re
import statistics
import sys
import tempfile
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dims", default="40,48,50,52,56,64,100")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=10_000)
    args = ap.parse_args()
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):  # as the images leave them
        os.environ.pop(var, None)
    dump = tempfile.mkdtemp(prefix="xla-dims-")
    os.environ["XLA_FLAGS"] = f"--xla_dump_to={dump}"
    os.environ["OMP_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.threads])  # XLA sizes its pool from this

    import jax
    import numpy as np
    from jax import lax

    jax.config.update("jax_enable_x64", True)
    hi = lax.Precision.HIGHEST

    def fused(theta, A, y, k):
        def one(_, th):
            r = y - lax.dot_general(th, A, (((0,), (0,)), ((), ())), precision=hi)
            return th + 1e-4 * lax.dot_general(r, A, (((0,), (1,)), ((), ())), precision=hi)
        return lax.fori_loop(0, k, one, theta)

    rng = np.random.default_rng(0)
    dims = [int(x) for x in args.dims.split(",")]
    progs, gemvs, facts = {}, {}, {}
    for d in dims:
        A = jax.device_put(rng.standard_normal((d + 1, args.n)))
        y = jax.device_put(rng.standard_normal(args.n))
        th = jax.device_put(np.zeros(d + 1))
        before = set(glob.glob(f"{dump}/*"))
        fn = jax.jit(fused, static_argnums=3)
        fn(th, A, y, args.steps).block_until_ready()
        ir = [p for p in set(glob.glob(f"{dump}/*")) - before if re.search(r"dot(\.1)?_elemental.*with-opt\.ll$", p)]
        text = "".join(pathlib.Path(p).read_text() for p in ir)
        widths = sorted({int(w) for w in re.findall(r"<(\d+) x double>", text)})
        facts[d] = (f"{len(ir)} elemental dot kernels, (d+1) mod 8 = {(d + 1) % 8}, vector widths {widths}, "
                    f"{len(re.findall(r'fmul', text))} fmul") if ir else "no elemental dot kernel (a library call)"
        progs[d] = lambda th=th, A=A, y=y, fn=fn: fn(th, A, y, args.steps).block_until_ready()
        An, r = np.asarray(A), np.asarray(y)
        gemvs[d] = lambda An=An, r=r: An @ r
    times: dict[int, list[float]] = {d: [] for d in dims}
    gemv_t: dict[int, list[float]] = {d: [] for d in dims}
    for _ in range(args.rounds):
        for d in random.sample(dims, len(dims)):
            t0 = time.perf_counter()
            progs[d]()
            times[d].append((time.perf_counter() - t0) / args.steps)
            t0 = time.perf_counter()
            for _ in range(20):
                gemvs[d]()
            gemv_t[d].append((time.perf_counter() - t0) / 20)
    print(f"jax {jax.__version__}, n={args.n}, {args.steps} steps per call, {args.threads} threads, "
          f"{args.rounds} rounds; µs per step (median, min) and NumPy's A·r gemv (median)")
    print("| d | step µs (median) | step µs (min) | NumPy gemv µs | step / 2 gemv | what XLA emitted |")
    print("| --- | --- | --- | --- | --- | --- |")
    for d in dims:
        med, best, g = statistics.median(times[d]) * 1e6, min(times[d]) * 1e6, statistics.median(gemv_t[d]) * 1e6
        print(f"| {d} | {med:.1f} | {best:.1f} | {g:.1f} | {med / (2 * g):.2f} | {facts[d]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
