"""NumPy on the CPU: the baseline every speedup is measured against.

``loop`` is the textbook form (temporaries allocated each step). ``fused`` is the fastest plain-NumPy
form: preallocated buffers and ``out=`` arguments so each step does two BLAS gemv calls and no allocation,
with the bias folded into the residual update, and Xᵀ kept as its own C-contiguous copy (made in setup,
outside the clock, like the JAX and TensorFlow layouts): OpenBLAS's gemv over the transposed view of X
measured much slower than over a contiguous copy (docs/frameworks.md), so both products read memory row
by row. The price is a second copy of X. NumPy cannot fuse the two passes over X; that is
numba's job.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..base import Framework, Solver
from ..problem import ProblemData


class LoopSolver:
    def setup(self, data: ProblemData) -> None:
        self.data = data

    def run(self, iters: int) -> tuple[np.ndarray, float]:
        X, y, lr = self.data.X, self.data.y, self.data.lr
        n = X.shape[0]
        W = self.data.W0.copy()
        b = X.dtype.type(self.data.b0)
        for _ in range(iters):
            y_hat = X @ W + b
            dW = -2.0 / n * (X.T @ (y - y_hat))
            db = -2.0 / n * np.sum(y - y_hat)
            W = W - lr * dW
            b = b - lr * db
        return W, b

    def sync(self, out: Any) -> None:
        """NumPy is synchronous."""

    def fetch(self, out: tuple[np.ndarray, float]) -> tuple[np.ndarray, float]:
        return np.asarray(out[0]), float(out[1])


class FusedSolver(LoopSolver):
    relayout = "C-contiguous copy of Xᵀ"

    def setup(self, data: ProblemData) -> None:
        self.data = data
        self.XT = np.ascontiguousarray(data.X.T)
        self.extra_bytes = self.XT.nbytes

    def run(self, iters: int) -> tuple[np.ndarray, float]:
        X, y = self.data.X, self.data.y
        n = X.shape[0]
        dt = X.dtype.type
        step = dt(2.0 * self.data.lr / n)  # W -= lr·(−2/n)·Xᵀr  ⇔  W += (2·lr/n)·Xᵀr
        W = self.data.W0.copy()
        b = dt(self.data.b0)
        r = np.empty_like(y)
        g = np.empty_like(W)
        XT = self.XT
        for _ in range(iters):
            np.matmul(X, W, out=r)
            np.subtract(y, r, out=r)
            r -= b
            np.matmul(XT, r, out=g)
            g *= step
            W += g
            b += step * r.sum()
        return W, b


class NumpyFramework(Framework):
    name = "numpy"
    variants = {"cpu": ("loop", "fused")}

    def version(self) -> str:
        return np.__version__

    def configure_threads(self, threads: int) -> dict[str, Any]:
        return {}  # BLAS pools are limited by threadpoolctl in shared code.

    def make_solver(self, device: str, variant: str) -> Solver:
        return LoopSolver() if variant == "loop" else FusedSolver()

    def gemv(self, data: ProblemData, W: np.ndarray) -> Callable[[int], np.ndarray]:
        X, out = data.X, np.empty(data.n, dtype=data.X.dtype)

        def run(k: int) -> np.ndarray:
            for _ in range(k):
                np.matmul(X, W, out=out)  # fused's first product, as it calls it
            return out

        return run

    def kernel_path(self, device: str, variant: str) -> str | None:
        from ..kernels import openblas

        return openblas(prefix_hint="numpy")  # NumPy's own OpenBLAS, not another library's


FRAMEWORK = NumpyFramework()
