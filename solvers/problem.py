"""The one fixed problem every framework solves, and the float64 NumPy reference it is checked against.

Data are generated once, by NumPy, from an integer seed, so every framework (and every image) sees the
same bytes. Why a small learning rate: after ``iters`` steps the parameters are still moving, so a solver
that runs one step too few or too many differs from the reference far beyond tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DTYPES = ("float64", "float32")
#: Relative tolerance per dtype for the correctness check against the float64 reference.
TOLERANCE = {"float64": 1e-8, "float32": 1e-3}
from .schema import NOISE_STD  # noqa: E402  (defined once, with the document that records it)

#: Every host array starts on a cache line, so no framework's layout depends on where malloc put it.
ALIGN = 64


@dataclass(frozen=True)
class ProblemSpec:
    """Parameters of one problem instance (everything but the dimension, which is swept)."""

    n: int = 10_000
    iters: int = 1_000
    lr: float = 1e-3
    dtype: str = "float64"
    seed: int = 0


@dataclass(frozen=True)
class ProblemData:
    """Host arrays for one dimension, already in the requested dtype; W0 = 0, b0 = 0."""

    X: np.ndarray  # (n, d), C-contiguous
    y: np.ndarray  # (n,)
    W0: np.ndarray  # (d,)
    b0: float
    lr: float

    @property
    def n(self) -> int:
        return int(self.X.shape[0])

    @property
    def d(self) -> int:
        return int(self.X.shape[1])


def parse_dims(text: str) -> list[int]:
    """A comma list of positive dimensions; ``ValueError`` says what is wrong with it (one rule, every CLI)."""
    try:
        dims = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--dims must be a comma list of integers, got {text!r}") from None
    if not dims:
        raise ValueError("--dims is empty; give e.g. --dims 2,10,100")
    bad = [d for d in dims if d <= 0]
    if bad:
        raise ValueError(f"--dims must be positive, got {bad}")
    return dims


def make_data(spec: ProblemSpec, d: int) -> ProblemData:
    """Synthetic y = X·W* + b* + noise with X ~ N(0, 1); the seed mixes in d so each dimension is its own draw."""
    rng = np.random.default_rng([spec.seed, d])
    X = rng.standard_normal((spec.n, d))
    w_true = rng.standard_normal(d)
    b_true = float(rng.standard_normal())
    y = X @ w_true + b_true + NOISE_STD * rng.standard_normal(spec.n)
    dt = np.dtype(spec.dtype)
    return ProblemData(
        X=aligned_copy(X, dt),
        y=aligned_copy(y, dt),
        W0=np.zeros(d, dtype=dt),
        b0=0.0,
        lr=spec.lr,
    )


def aligned_copy(a: np.ndarray, dtype: np.dtype | type | None = None, align: int = ALIGN) -> np.ndarray:
    """A C-contiguous copy of ``a`` (in ``dtype``) whose data starts on an ``align``-byte boundary.

    NumPy only guarantees 16 bytes; the buffer is over-allocated and the view starts at its first aligned
    byte, so the alignment is the same in every process and every framework that reads the host array.
    """
    dt = np.dtype(dtype or a.dtype)
    nbytes = a.size * dt.itemsize
    raw = np.empty(nbytes + align, dtype=np.uint8)
    skip = -raw.ctypes.data % align
    out = raw[skip:skip + nbytes].view(dt).reshape(a.shape)
    out[...] = a
    return out


def augmented_transpose(data: ProblemData) -> np.ndarray:
    """A = [Xᵀ; 1ᵀ], shape (d+1, n): with θ = (W, b), θ·A is ŷ and A·r holds Xᵀr and Σr in one product.

    A layout choice made in setup (outside the clock), shared by the XLA-based fused solvers.
    """
    A = np.empty((data.d + 1, data.n), dtype=data.X.dtype)
    A[:-1] = data.X.T
    A[-1] = 1
    return A


def reference(data: ProblemData, iters: int) -> tuple[np.ndarray, float]:
    """Plain float64 gradient descent on the same (possibly float32-rounded) data: the ground truth."""
    X = data.X.astype(np.float64)
    y = data.y.astype(np.float64)
    W = data.W0.astype(np.float64).copy()
    b = float(data.b0)
    n = X.shape[0]
    for _ in range(iters):
        r = y - (X @ W + b)
        W -= data.lr * (-2.0 / n) * (X.T @ r)
        b -= data.lr * (-2.0 / n) * float(r.sum())
    return W, b


def max_rel_error(W: np.ndarray, b: float, W_ref: np.ndarray, b_ref: float) -> float:
    """Normwise relative error max|θ − θref| / max|θref| over θ = (W, b).

    Normwise rather than per component: a true coefficient near zero would otherwise turn rounding noise
    into a huge "relative" error.
    """
    theta = np.append(np.asarray(W, dtype=np.float64).ravel(), float(b))
    ref = np.append(W_ref, b_ref)
    if not np.all(np.isfinite(theta)):
        return float("inf")
    return float(np.max(np.abs(theta - ref)) / max(float(np.max(np.abs(ref))), np.finfo(np.float64).tiny))
