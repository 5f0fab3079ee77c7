"""Candidate CPU forms of torch's gradient step, timed side by side in one process (docs/frameworks.md).

Usage: .venv/bin/python scripts/torch_cpu_forms.py [--dims 2,20,50,100] [--rounds 9] [--threads 2] [--compile]

Why interleaved: on a shared 2-core host absolute times drift over minutes, so every round times each
candidate once, in a fresh order, and the table gives the minimum and the median over rounds. Every candidate
is checked against the float64 reference before it is timed; one that misses it is printed as such and
never timed. The OpenBLAS variables are cleared (as in the images) by re-running without them.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from solvers.bench import CLEARED_BLAS_VARS as CLEARED  # the images leave these unset


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dims", default="2,20,50,100")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--iters", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="add torch.compile candidates (seconds per d)")
    ap.add_argument("--products", action="store_true",
                    help="also time each product alone: torch (its BLAS) against NumPy (OpenBLAS)")
    args = ap.parse_args()
    if any(v in os.environ for v in CLEARED):
        env = {k: v for k, v in os.environ.items() if k not in CLEARED}
        return subprocess.run([sys.executable, *sys.argv], env=env, check=False).returncode

    from solvers import problem, threads

    threads.apply(args.threads)
    import torch

    from solvers.frameworks import torch_ as tmod

    threads.limit_blas(args.threads)
    tmod.FRAMEWORK.configure_threads(args.threads)
    cpu = torch.device("cpu")

    class FusedXT(tmod.EagerFusedSolver):
        """The five ops, Xᵀr always reading a C-contiguous copy of Xᵀ (NumPy fused's layout)."""

        def setup(self, data: problem.ProblemData) -> None:
            super().setup(data)
            self.XT = self.X.T.contiguous()

    class FusedView(tmod.EagerFusedSolver):
        """The five ops, Xᵀr always reading the transposed view of X."""

        def setup(self, data: problem.ProblemData) -> None:
            super().setup(data)
            self.XT = self.X.T

    class Augmented(tmod.EagerFusedSolver):
        """A = [X | 1]: r = y − A·θ and g = Aᵀr are one op each, so a step is three ops."""

        transposed_copy = False

        def setup(self, data: problem.ProblemData) -> None:
            super().setup(data)
            self.A = torch.cat([self.X, torch.ones(self.n, 1, dtype=self.X.dtype)], dim=1).contiguous()
            self.AT = self.A.T.contiguous() if self.transposed_copy else self.A.T

        def _step(self) -> None:
            torch.addmv(self.y, self.A, self.theta, alpha=-1, out=self.r)
            torch.mv(self.AT, self.r, out=self.grad)
            self.theta.add_(self.grad, alpha=self.step_size)

    class AugmentedXT(Augmented):
        """As Augmented, with Aᵀ kept as its own contiguous copy for the second product."""

        transposed_copy = True

    class Compiled(tmod._Base):
        """The textbook step compiled by inductor (its C++ loops, not MKL), ``block`` steps per call."""

        block = 32

        def setup(self, data: problem.ProblemData) -> None:
            super().setup(data)
            step_size = 2.0 * self.lr / self.n

            def steps(W: torch.Tensor, b: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
                for _ in range(k):
                    r = self.y - self.X @ W - b
                    W = W + step_size * (self.X.T @ r)
                    b = b + step_size * r.sum()
                return W, b

            self.many = torch.compile(lambda W, b: steps(W, b, self.block), fullgraph=True, dynamic=False)
            self.one = torch.compile(lambda W, b: steps(W, b, 1), fullgraph=True, dynamic=False)

        @torch.inference_mode()
        def run(self, iters: int) -> tuple[torch.Tensor, torch.Tensor]:
            W, b = self.W0.clone(), self.b0.clone()
            for _ in range(iters // self.block):
                W, b = self.many(W, b)
            for _ in range(iters % self.block):
                W, b = self.one(W, b)
            return W, b

    class CompiledOne(Compiled):
        block = 1

    candidates: dict[str, Callable[[], object]] = {
        "loop": lambda: tmod.LoopSolver(cpu),
        "fused as shipped (5 ops; Xᵀ copied while X <= 4 MiB)": lambda: tmod.EagerFusedSolver(cpu),
        "5 ops, Xᵀ a view": lambda: FusedView(cpu),
        "5 ops, Xᵀ a contiguous copy": lambda: FusedXT(cpu),
        "3 ops, A=[X|1], Aᵀ a view": lambda: Augmented(cpu),
        "3 ops, A=[X|1], Aᵀ a contiguous copy": lambda: AugmentedXT(cpu),
    }
    if args.compile:
        candidates["torch.compile (inductor C++), one step per call"] = lambda: CompiledOne(cpu)
        candidates["torch.compile (inductor C++), 32 steps per call"] = lambda: Compiled(cpu)
    spec = problem.ProblemSpec(iters=args.iters)
    print(f"torch {torch.__version__}, {args.threads} threads, n={spec.n}, iters={spec.iters}, "
          f"{args.rounds} interleaved rounds; µs per iteration, min / median")
    blas = [part.strip() for line in torch.__config__.show().splitlines() for part in line.split(",")
            if "BLAS_INFO" in part or "LAPACK_INFO" in part]
    print(f"torch BLAS: {'; '.join(blas) or 'not reported'}; intra-op threads {torch.get_num_threads()}; "
          f"load average (1 min) at start: {os.getloadavg()[0]:.2f}")
    dims = [int(x) for x in args.dims.split(",")]
    table: dict[str, dict[int, str]] = {name: {} for name in candidates}
    for d in dims:
        data = problem.make_data(spec, d)
        ref = problem.reference(data, spec.iters)
        solvers = {}
        for name, make in candidates.items():
            s = make()
            s.setup(data)
            W, b = s.fetch(s.run(spec.iters))
            err = problem.max_rel_error(W, b, *ref)
            if err > problem.TOLERANCE["float64"]:
                table[name][d] = f"wrong ({err:.1e})"
            else:
                solvers[name] = s
        samples: dict[str, list[float]] = {name: [] for name in solvers}
        rng = random.Random(d)
        for _ in range(args.rounds):
            order = list(solvers)
            rng.shuffle(order)
            for name in order:
                s = solvers[name]
                t0 = time.perf_counter()
                s.sync(s.run(spec.iters))
                samples[name].append((time.perf_counter() - t0) / spec.iters * 1e6)
        for name, ts in samples.items():
            table[name][d] = f"{min(ts):.1f} / {statistics.median(ts):.1f}"
    print("| form | " + " | ".join(f"d={d}" for d in dims) + " |")
    print("| --- | " + " | ".join("---" for _ in dims) + " |")
    for name, cells in table.items():
        print(f"| {name} | " + " | ".join(cells.get(d, "-") for d in dims) + " |")
    if args.products:
        _products(dims, spec, args.rounds)
    print(f"load average (1 min) at end: {os.getloadavg()[0]:.2f}")
    return 0


def _products(dims: list[int], spec: object, rounds: int) -> None:
    """Each matrix-vector product alone, torch beside NumPy, µs per call (min / median of ``rounds`` batches)."""
    print("\n| product, µs per call | " + " | ".join(f"d={d}" for d in dims) + " |")
    print("| --- | " + " | ".join("---" for _ in dims) + " |")
    rows: dict[str, list[str]] = {}
    for d in dims:
        for name, cell in _products_at(d, spec, rounds).items():
            rows.setdefault(name, []).append(cell)
    for name, cells in rows.items():
        print(f"| {name} | " + " | ".join(cells) + " |")


def _products_at(d: int, spec: object, rounds: int) -> dict[str, str]:
    import numpy as np
    import torch

    from solvers import problem

    data = problem.make_data(spec, d)  # type: ignore[arg-type]
    X, Xn = torch.from_numpy(data.X), data.X
    XTn = np.ascontiguousarray(Xn.T)
    W, r = torch.ones(d, dtype=X.dtype), torch.ones(Xn.shape[0], dtype=X.dtype)
    on, od = torch.empty_like(r), torch.empty_like(W)
    Wn, rn, onn, odn = W.numpy(), r.numpy(), np.empty_like(r.numpy()), np.empty_like(W.numpy())
    products: dict[str, Callable[[], object]] = {
        "torch.mv(X, W)": lambda: torch.mv(X, W, out=on),
        "torch.mv(X.T, r), a view": lambda: torch.mv(X.T, r, out=od),
        "torch.mm(r[None], X)": lambda: torch.mm(r[None], X, out=od[None]),
        "NumPy X @ W (OpenBLAS)": lambda: np.matmul(Xn, Wn, out=onn),
        "NumPy Xᵀ @ r, Xᵀ a contiguous copy": lambda: np.matmul(XTn, rn, out=odn),
    }
    cells = {}
    with torch.inference_mode():
        for name, fn in products.items():
            fn()
            ts = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                for _ in range(200):
                    fn()
                ts.append((time.perf_counter() - t0) / 200 * 1e6)
            cells[name] = f"{min(ts):.1f} / {statistics.median(ts):.1f}"
    return cells


if __name__ == "__main__":
    raise SystemExit(main())
