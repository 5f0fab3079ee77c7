"""XLA:CPU's fused step against d: time, the thread partition XLA chose for each of its two products, and
the same step over two column halves of A. A standalone reproducer (JAX and NumPy only) for the jump in
the fused forms' time at some d (docs/frameworks.md#jax).

Usage: .venv/bin/python scripts/xla_dims.py [--dims 20,40,…,100] [--threads 2] [--rounds 7]
       (run it with --threads 1 too: the finding is the difference)

Per d it compiles the fused program (θ·A and A·r over A = [Xᵀ; 1ᵀ], (d+1, n), float64, in a fori_loop),
reads from XLA's dump (``--xla_dump_to``) how each product's kernel is split into workgroups (the
``workgroup_id_x × chunk`` in its optimised LLVM IR: chunk outputs per workgroup), and what share of the
outputs the busiest of ``--threads`` threads then computes (100 %: the product runs on one thread). The
"split" form is the same step over two column halves of A (two partial gradients, summed), checked equal.
Every round times each d once, in a fresh order, so a drift of the shared host lands on no d alone;
NumPy's gemv over the same A (one pass) is the yardstick.
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


def busiest_share(chunk: int, outputs: int, threads: int) -> tuple[int, float]:
    """(workgroups, share of the outputs the busiest thread computes) for greedy assignment to threads."""
    sizes = [min(chunk, outputs - i) for i in range(0, outputs, chunk)]
    loads = [0] * threads
    for size in sizes:
        loads[loads.index(min(loads))] += size
    return len(sizes), max(loads) / outputs


def workgroup_chunk(ir: str, outputs: int) -> int | None:
    """Outputs per workgroup in a kernel's IR: the workgroup id times a constant (``mul``, or ``shl`` by a
    power of two), or all of them when the id is only compared with 0 (one workgroup); None: no workgroups."""
    scaled = re.search(r"(mul|shl)(?: \w+)* i64 %workgroup_id_x, (\d+)", ir)
    if scaled:
        return int(scaled[2]) if scaled[1] == "mul" else 1 << int(scaled[2])
    return outputs if "%workgroup_id_x" in ir else None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dims", default="20,40,48,50,52,54,56,60,64,72,80,100")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=200)
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

    def step(th, parts):
        grad = None
        for A, y in parts:
            r = y - lax.dot_general(th, A, (((0,), (0,)), ((), ())), precision=hi)
            g = lax.dot_general(r, A, (((0,), (1,)), ((), ())), precision=hi)
            grad = g if grad is None else grad + g
        return th + 1e-4 * grad

    def fused(theta, parts, k):
        return lax.fori_loop(0, k, lambda _, th: step(th, parts), theta)

    run = jax.jit(fused, static_argnums=2)
    rng = np.random.default_rng(0)
    n, half = args.n, args.n // 2
    dims = [int(x) for x in args.dims.split(",")]
    progs, facts = {}, {}
    for d in dims:
        A, y, th = rng.standard_normal((d + 1, n)), rng.standard_normal(n), jax.device_put(np.zeros(d + 1))
        whole = [(jax.device_put(A), jax.device_put(y))]
        halves = [(jax.device_put(np.ascontiguousarray(A[:, s])), jax.device_put(y[s]))
                  for s in (slice(0, half), slice(half, n))]
        before = set(glob.glob(f"{dump}/*"))
        run(th, whole, args.steps).block_until_ready()
        split = []
        for name, outputs in (("dot", n), ("dot.1", d + 1)):
            ir = [p for p in set(glob.glob(f"{dump}/*")) - before
                  if p.endswith(f".{name}_elemental_kernel_module.ir-with-opt.ll")]
            chunk = workgroup_chunk(pathlib.Path(ir[0]).read_text(), outputs) if ir else None
            if chunk is None:
                split.append(f"{name}: not an elemental kernel with workgroups")
                continue
            groups, share = busiest_share(chunk, outputs, args.threads)
            split.append(f"{'θ·A' if name == 'dot' else 'A·r'}: {groups} × {chunk} (busiest {share:.0%})")
        facts[d] = "; ".join(split)
        a, b = np.asarray(run(th, whole, 20)), np.asarray(run(th, halves, 20))
        assert np.allclose(a, b, rtol=1e-10, atol=1e-12), f"d={d}: the split form differs"
        progs[d] = {"fused": lambda th=th, p=whole: run(th, p, args.steps).block_until_ready(),
                    "split": lambda th=th, p=halves: run(th, p, args.steps).block_until_ready(),
                    "gemv": lambda A=A, y=y: [A @ y for _ in range(args.steps)]}
    for fns in progs.values():  # compiled (each static step count is its own program) and warm before timing
        for fn in fns.values():
            fn()
    times: dict[int, dict[str, list[float]]] = {d: {k: [] for k in progs[d]} for d in dims}
    # NumPy's yardstick is timed after every XLA round, never between them: OpenBLAS's worker threads spin
    # for a while after each call, and on a 2-core machine they would take the cores XLA's pool needs.
    for kinds in (("fused", "split"), ("gemv",)):
        for _ in range(args.rounds):
            for d in random.sample(dims, len(dims)):
                for kind in kinds:
                    t0 = time.perf_counter()
                    progs[d][kind]()
                    times[d][kind].append((time.perf_counter() - t0) / args.steps)
    print(f"jax {jax.__version__}, n={n}, {args.threads} thread(s), {args.rounds} rounds of {args.steps} steps; "
          "µs per step (median)")
    print("| d | fused µs | split µs | NumPy gemv µs | fused / 2 gemv | XLA's workgroups per product |")
    print("| --- | --- | --- | --- | --- | --- |")
    for d in dims:
        med = {k: statistics.median(v) * 1e6 for k, v in times[d].items()}
        print(f"| {d} | {med['fused']:.1f} | {med['split']:.1f} | {med['gemv']:.1f} | "
              f"{med['fused'] / (2 * med['gemv']):.2f} | {facts[d]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
