"""Numba on the CPU: the whole fixed-iteration loop compiled once, by LLVM, for this machine's vector units.

``loop`` is what Numba's documentation suggests: ``@njit`` on the NumPy gradient-descent function, so the
iteration loop runs without the interpreter but each step still makes two BLAS gemv calls (which Numba
reaches through SciPy) and allocates its temporaries.

``fused`` is the fastest honest form found, and why:

* One pass over X per iteration instead of two. Row i gives r_i = y_i − (x_i·W + b), then g += r_i·x_i and
  gb += r_i while the row is still in L1, so X (8 MB at d=100, more than both L2 caches together) comes
  from L3 once per step: the same traffic as the single gemv that is the floor of any solver.
* Rows are split into one contiguous chunk per thread inside one ``prange``; each chunk writes its partial
  gradient to its own row of a buffer allocated in ``setup``, aligned so no two threads write the same cache
  line, and the partials are summed in chunk order afterwards (d+1 numbers per thread). Nothing is
  allocated per iteration (the tests count Numba's allocations).
* Larger d: four rows share each sweep over W and over the partial gradient, so the inner loops do four
  FMAs per load of W or g, and LLVM vectorises them.
  From ``EXACT_D_MIN`` this kernel is compiled with d as a constant (known strides and trip counts).
  ``fastmath`` is limited to ``reassoc`` (lets the row dot product be a vector reduction) and
  ``contract`` (FMA); both only reorder rounding, ~1e-16 relative here, far inside the 1e-8 float64
  tolerance (the tests check it), and no flag assumes away NaN or infinity.
* Small d: a kernel generated for that exact d keeps W and the gradient in scalar registers with a
  constant row stride, so LLVM vectorises across rows instead (a row loop of length 2 cannot be vectorised:
  the four-row kernel is several times slower at d=2).
* Small n·d stays on one thread: starting and joining a parallel region costs ~1-2 µs, which only pays
  from ``PARALLEL_MIN_ELEMENTS`` elements of X per pass.
* Beyond the small-d kernels, ``setup`` copies X once (outside the clock, like a transfer to a device)
  into rows padded with zero columns to whole 64-byte lines and starting on a line, so vector loads never
  straddle two lines (see ``FusedSolver.setup``).
* The iteration loop itself is inside the one compiled call, so Python is entered once per ``run``.

The measurements behind each choice and threshold are in docs/frameworks.md.

Compilation happens in the first ``run`` (timed by shared code as ``compile_s``). There is deliberately no
on-disk cache (``cache=True``): ``compile_s`` would then depend on what earlier runs left on the host, and
the images run read-only with a tmpfs /tmp, where nothing would survive the container anyway.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from typing import Any

import llvmlite.binding as llvm
import numba
import numpy as np
from numba import njit, prange

from ..base import Framework, Solver, Unavailable
from ..problem import ProblemData

#: Reassociation (vector reductions) and contraction (FMA) only: no flag that assumes finite values.
FASTMATH = {"reassoc", "contract"}
#: Up to this d the fused kernel is generated for the exact d (scalar accumulators, vectorised over rows);
#: from d=8 LLVM stops vectorising it across rows and the four-row kernel wins (docs/frameworks.md).
SMALL_D = 7
#: From this d the four-row kernel is compiled for the exact d; below it LLVM fully unrolls the short row
#: loops into slower code (docs/frameworks.md).
EXACT_D_MIN = 24
#: From this many elements of X per pass the fused solver splits rows across threads (docs/frameworks.md).
PARALLEL_MIN_ELEMENTS = 1 << 15
#: Partial-gradient rows start on 128-byte boundaries (two 64-byte lines: the L2 prefetcher fetches pairs)
#: and fill whole such blocks, so two threads never write the same line or its prefetch partner.
_ALIGN = 128
#: Rows of the fused solver's copy of X are padded to whole cache lines (see ``FusedSolver.setup``).
_LINE = 64


# ---------------------------------------------------------------------------------------------------- loop


@njit
def _descend_numpy(X, y, W0, b0, lr, scale, iters):  # pragma: no cover - compiled
    """The textbook loop, as in numpy_.LoopSolver; ``lr`` and ``scale`` (−2/n) arrive in X's dtype."""
    W = W0.copy()
    b = b0
    for _ in range(iters):
        y_hat = X @ W + b
        dW = scale * (X.T @ (y - y_hat))
        db = scale * np.sum(y - y_hat)
        W = W - lr * dW
        b = b - lr * db
    return W, b


# --------------------------------------------------------------------------------------------------- fused


def compile_kernel(source: str, name: str, label: str) -> Callable[..., None]:
    """The function ``name`` of a generated kernel's ``source``, compiled lazily by Numba with ``FASTMATH``."""
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<gdbench numba kernel {label}>", "exec"), namespace)
    return njit(fastmath=FASTMATH)(namespace[name])


#: Rows that share one sweep over W and one over the partial gradient in ``blocked_kernel``: 1, 2, 3 and 8
#: measured no better at any d from 32 to 128 on the AVX-512 host (docs/frameworks.md).
ROWS = 4


def _blocked_source(d: int | None, rows: int) -> str:
    """Source of the row kernel ``rows`` rows at a time; ``d`` a literal (known trip counts) or X's width."""
    dd = "d" if d is None else str(d)
    ks = range(rows)
    lines = [
        "def rows_blocked(X, y, W, b, lo, hi, out):",
        f"    d = {'X.shape[1]' if d is None else d}",
        "    zero = X.dtype.type(0)",
        "    g = out[:d]",
        "    for j in range(d):",
        "        g[j] = zero",
        "    gb = zero",
        "    i = lo",
        f"    while i + {rows} <= hi:",
        *(f"        x{k} = X[i + {k}]" for k in ks),
        *(f"        s{k} = zero" for k in ks),
        f"        for j in range({dd}):",
        "            w = W[j]",
        *(f"            s{k} += x{k}[j] * w" for k in ks),
        *(f"        r{k} = y[i + {k}] - b - s{k}" for k in ks),
        f"        for j in range({dd}):",
        "            g[j] += " + " + ".join(f"r{k} * x{k}[j]" for k in ks),
        "        gb += " + " + ".join(f"r{k}" for k in ks),
        f"        i += {rows}",
        "    while i < hi:",
        "        x = X[i]",
        "        s = zero",
        f"        for j in range({dd}):",
        "            s += x[j] * W[j]",
        "        r = y[i] - b - s",
        f"        for j in range({dd}):",
        "            g[j] += r * x[j]",
        "        gb += r",
        "        i += 1",
        "    out[d] = gb",
    ]
    return "\n".join(lines) + "\n"


@functools.cache
def blocked_kernel(d: int | None, rows: int = ROWS) -> Callable[..., None]:
    """The row kernel ``rows`` rows at a time, for one d ≥ 1 (a compile-time constant) or any d (None): the
    rows of a block share each load of W and of the partial gradient, and their dot products are independent
    chains the core can overlap. Partial gradient of rows [lo, hi): Σ r_i·x_i into out[:d], Σ r_i into out[d]."""
    if d is not None and d < 1:
        raise ValueError(f"d must be >= 1, not {d}")
    if rows < 1:
        raise ValueError(f"rows must be >= 1, not {rows}")
    return compile_kernel(_blocked_source(d, rows), "rows_blocked", f"d={d} rows={rows}")


_SMALL_TEMPLATE = '''
def _rows_d{D}(X, y, W, b, lo, hi, out):
    """The row kernel for d={D}: constant stride, scalar accumulators, so LLVM vectorises across rows."""
    zero = X.dtype.type(0)
    xs = X[lo:hi].reshape(-1)
    ys = y[lo:hi]
    {w_load}
    {g_init}
    gb = zero
    for k in range(hi - lo):
        r = ys[k] - b - ({dot})
        {g_update}
        gb += r
    {g_store}
    out[{D}] = gb
'''


@functools.cache
def small_kernel(d: int) -> Callable[..., None]:
    """The row kernel for one small d, from a template (unrolled in d, so W and g stay in registers)."""
    if not 1 <= d <= SMALL_D:
        raise ValueError(f"small kernels cover 1 <= d <= {SMALL_D}, not {d}")
    js = range(d)
    src = _SMALL_TEMPLATE.format(
        D=d,
        w_load="; ".join(f"w{j} = W[{j}]" for j in js),
        g_init="; ".join(f"g{j} = zero" for j in js),
        dot=" + ".join(f"xs[k * {d} + {j}] * w{j}" for j in js),
        g_update="; ".join(f"g{j} += r * xs[k * {d} + {j}]" for j in js),
        g_store="; ".join(f"out[{j}] = g{j}" for j in js),
    )
    return compile_kernel(src, f"_rows_d{d}", f"d={d}")


def padded_width(d: int, dtype: np.dtype) -> int:
    """Columns of the fused solver's copy of X: d for the small kernels, else d rounded up to whole lines."""
    if d <= SMALL_D:
        return d
    per_line = _LINE // dtype.itemsize
    return -(-d // per_line) * per_line


def row_kernel(width: int, d: int | None = None) -> Callable[..., None]:
    """The fused row kernel for rows of ``width`` columns (``d`` real ones; the rest are zero padding)."""
    d = width if d is None else d
    if d <= SMALL_D:
        return small_kernel(d)
    return blocked_kernel(width if width >= EXACT_D_MIN else None)


@njit(fastmath=FASTMATH)
def descend_serial(kernel, X, y, W, b, step, iters, parts):  # pragma: no cover - compiled
    """``iters`` fused steps on one thread; W is updated in place, the new b is returned."""
    n, d = X.shape
    g = parts[0]
    for _ in range(iters):
        kernel(X, y, W, b, 0, n, g)
        for j in range(d):
            W[j] += step * g[j]
        b += step * g[d]
    return b


@njit(parallel=True, fastmath=FASTMATH)
def descend_parallel(kernel, X, y, W, b, step, iters, parts):  # pragma: no cover - compiled
    """``iters`` fused steps, one contiguous chunk of rows per thread; partials reduced in chunk order."""
    n, d = X.shape
    chunks = parts.shape[0]
    size = (n + chunks - 1) // chunks
    for _ in range(iters):
        for c in prange(chunks):
            lo = min(n, c * size)
            kernel(X, y, W, b, lo, min(n, lo + size), parts[c])
        for j in range(d + 1):
            acc = parts[0, j]
            for c in range(1, chunks):
                acc += parts[c, j]
            if j < d:
                W[j] += step * acc
            else:
                b += step * acc
    return b


@njit(parallel=True)
def _probe_pool(x):  # pragma: no cover - compiled
    for i in prange(x.shape[0]):
        x[i] = i


def use_parallel(n: int, d: int, threads: int) -> bool:
    """Threads pay off only when a pass is long enough to hide the cost of starting a parallel region."""
    return threads > 1 and n * d >= PARALLEL_MIN_ELEMENTS


# ------------------------------------------------------------------------------------------------- solvers


def aligned_zeros(rows: int, cols: int, dtype: np.dtype) -> np.ndarray:
    """Zeroed C-contiguous (rows, cols) array whose data starts on an ``_ALIGN``-byte boundary.

    NumPy only guarantees 16 bytes, so the buffer is over-allocated and the view starts at the first aligned
    address; with ``cols`` a whole number of lines, every row then starts on a line of its own.
    """
    per_block = _ALIGN // dtype.itemsize
    raw = np.zeros(rows * cols + per_block, dtype=dtype)
    skip = (-raw.ctypes.data % _ALIGN) // dtype.itemsize
    return raw[skip:skip + rows * cols].reshape(rows, cols)


def partials(chunks: int, size: int, dtype: np.dtype) -> np.ndarray:
    """Per-chunk partial gradients, each row padded to whole ``_ALIGN`` blocks so no two share a line."""
    per_block = _ALIGN // dtype.itemsize
    return aligned_zeros(chunks, -(-size // per_block) * per_block, dtype)


class LoopSolver:
    def setup(self, data: ProblemData) -> None:
        self.data = data
        dt = data.X.dtype.type
        self.args = (data.X, data.y, data.W0, dt(data.b0), dt(data.lr), dt(-2.0 / data.n))

    def run(self, iters: int) -> tuple[np.ndarray, Any]:
        return _descend_numpy(*self.args, iters)

    def sync(self, out: Any) -> None:
        """Numba runs synchronously on the calling thread."""

    def fetch(self, out: tuple[np.ndarray, Any]) -> tuple[np.ndarray, float]:
        return np.asarray(out[0]), float(out[1])


class FusedSolver(LoopSolver):
    def setup(self, data: ProblemData) -> None:
        """Lay X out for the kernel (outside the clock, like any transfer to a device) and size the buffers.

        Beyond the small-d kernels X is copied once into rows padded with zero columns to whole 64-byte
        lines, starting on a line: every vector load of a row is then aligned instead of straddling two
        lines (NumPy's X starts 16 bytes into a line and d=100 rows are 12.5 lines long). Zero columns add
        nothing to any dot product and their gradient stays zero, so the arithmetic is unchanged; at d=100
        4 % more data buys ~20 % per step on two threads (docs/frameworks.md).
        """
        self.data = data
        n, d = data.X.shape
        dt = data.X.dtype
        self.d = d
        width = padded_width(d, dt)
        if d <= SMALL_D:
            self.X = data.X  # the small kernels read rows as one flat run of n·d values: no padding wanted
            self.extra_bytes, self.relayout = 0, None
        else:
            self.X = aligned_zeros(n, width, dt)
            self.X[:, :d] = data.X
            self.extra_bytes, self.relayout = self.X.nbytes, "X in rows padded to whole 64-byte lines"
        threads = numba.get_num_threads()
        self.parallel = use_parallel(n, width, threads)
        self.parts = partials(threads if self.parallel else 1, width + 1, dt)
        self.W = np.zeros(width, dtype=dt)
        self.kernel = row_kernel(width, d)
        self.descend = descend_parallel if self.parallel else descend_serial
        self.step = dt.type(2.0 * data.lr / n)  # W -= lr·(−2/n)·Xᵀr  ⇔  W += (2·lr/n)·Xᵀr

    def run(self, iters: int) -> tuple[np.ndarray, Any]:
        data = self.data
        # Every run starts from (W0, b0): repeated runs must not continue each other. Padding stays zero.
        self.W[:self.d] = data.W0
        self.W[self.d:] = 0
        b = self.descend(self.kernel, self.X, data.y, self.W, data.X.dtype.type(data.b0), self.step, iters,
                         self.parts)
        return self.W[:self.d], b

    def fetch(self, out: tuple[np.ndarray, Any]) -> tuple[np.ndarray, float]:
        return np.array(out[0]), float(out[1])  # a copy: the next run overwrites the solver's buffer


@njit
def _gemvs(X, W, k):  # pragma: no cover - compiled
    """k products X·W as ``loop`` makes them (``@`` through SciPy's BLAS, a new result each time)."""
    out = X @ W
    for _ in range(k - 1):
        out = X @ W
    return out


class NumbaFramework(Framework):
    name = "numba"
    variants = {"cpu": ("loop", "fused")}
    one_pass_variants = ("fused",)
    #: Both variants run prange regions on a pool set to --threads with set_num_threads (numba 0.49).
    requires = (("0.49", "numba.set_num_threads / get_num_threads", ("loop", "fused")),)

    def __init__(self) -> None:
        # Numba compiles `@` and np.dot to BLAS calls it finds through SciPy; without SciPy `loop` cannot
        # compile, so it is not offered (reported as unavailable rather than as a failed run).
        if importlib.util.find_spec("scipy") is None:
            self.variants = {"cpu": ("fused",)}

    def version(self) -> str:
        return numba.__version__

    def configure_threads(self, threads: int) -> dict[str, Any]:
        """Numba's pool was sized from NUMBA_NUM_THREADS at import; the API may only lower it."""
        if not hasattr(numba, "set_num_threads"):  # older than ``requires``: its variants are unavailable
            return {"num_threads": None, "pool_size": numba.config.NUMBA_NUM_THREADS, "threading_layer": None}
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        return {"num_threads": numba.get_num_threads(), "pool_size": numba.config.NUMBA_NUM_THREADS,
                "threading_layer": self.threading_layer()}

    @staticmethod
    def threading_layer() -> str:
        """The layer in use (omp, tbb, workqueue); Numba only picks one when a parallel region first runs."""
        try:
            return numba.threading_layer()
        except ValueError:
            _probe_pool(np.zeros(2))  # a throwaway region: no solver code is compiled ahead of its timed call
            return numba.threading_layer()

    def make_solver(self, device: str, variant: str) -> Solver:
        if variant not in self.variants.get(device, ()):
            raise Unavailable(f"numba offers no {variant} on {device} here (the loop variant needs SciPy)")
        return LoopSolver() if variant == "loop" else FusedSolver()

    def gemv(self, data: ProblemData, W: np.ndarray) -> Callable[[int], np.ndarray] | None:
        if "loop" not in self.variants["cpu"]:
            return None  # no SciPy, so no BLAS for numba's ``@``: fused reads X once and needs no such bound
        return lambda k: _gemvs(data.X, W, k)

    def kernel_path(self, device: str, variant: str) -> str | None:
        if variant == "loop":  # np.dot in nopython code calls SciPy's BLAS (scipy.linalg.cython_blas)
            from ..kernels import openblas

            return f"{openblas(prefix_hint='scipy') or 'SciPy BLAS'} (SciPy's, through numba's np.dot)"
        return f"numba's own LLVM loops for {numba.config.CPU_NAME or llvm.get_host_cpu_name()} (no BLAS)"

    def details(self, device: str) -> dict[str, Any]:
        return {
            "threading_layer": self.threading_layer(),
            "num_threads": numba.get_num_threads(),
            "fastmath": sorted(FASTMATH),
            "parallel_min_elements": PARALLEL_MIN_ELEMENTS,
            "small_d_kernels": SMALL_D,
            "exact_d_min": EXACT_D_MIN,
            "rows_per_block": ROWS,
            # The CPU LLVM generates code for: it decides the vector width (AVX2, AVX-512) of every kernel.
            "llvm_cpu": numba.config.CPU_NAME or llvm.get_host_cpu_name(),
        }


FRAMEWORK = NumbaFramework()
