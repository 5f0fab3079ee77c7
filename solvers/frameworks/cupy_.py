"""CuPy on NVIDIA GPUs (no CPU device: CuPy is a GPU array library only).

``loop`` is what CuPy's documentation teaches: the NumPy code with ``cupy`` for ``numpy``, array expressions
in a Python loop (``X @ W + b``, ``X.T @ r``, ``r.sum()``). Each step launches a handful of kernels and
allocates its temporaries from CuPy's memory pool; the bias stays a 0-d device array, so nothing in the loop
waits for the host.

``fused`` keeps every buffer preallocated and does one step as two launches over A = [Xᵀ; 1ᵀ] (d+1, n), with
θ = (W, b) and step = 2·lr/n:

* one ``RawKernel`` (a thread per row, coalesced down A's rows): r_i = y_i − Σ_j A_ji·θ_j, the forward
  product and the residual fused, so ŷ is never written;
* one cuBLAS gemv straight into θ: θ ← step·A·r + 1·θ (the ones row gives the bias gradient Σr).

Those steps are recorded once per block size (256, 16 and 1 steps, as in ``jax_``) by CuPy's stream capture
into CUDA graphs, and a run of ``iters`` steps replays whole graphs: one launch per 256 steps instead of two
per step, and no host synchronisation inside a run. Recording happens in the first run (``compile_s``).

Import works without CUDA or a GPU (CuPy loads its CUDA libraries lazily); ``devices()`` then returns none
and every run is ``unavailable`` with CuPy's own reason.
"""

from __future__ import annotations

import importlib.metadata
import math
from typing import Any

import cupy as cp
import numpy as np

from ..base import Framework, Solver, Unavailable
from ..problem import ProblemData, augmented_transpose
from ..registry import REGISTRY

#: Steps per recorded CUDA graph, largest first (the last must be 1).
BLOCKS = (256, 16, 1)
THREADS = 256
_RESIDUAL = r"""
extern "C" __global__ void residual(const T* A, const T* y, const T* theta, T* r, const int n, const int d1) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        T s = 0;
        for (int j = 0; j < d1; ++j) s += A[(long long)j * n + i] * theta[j];
        r[i] = y[i] - s;
    }
}
"""
_CTYPES = {"float64": "double", "float32": "float"}


def kernel_source(dtype_name: str) -> str:
    """The fused residual kernel's CUDA source for one dtype."""
    return f"typedef {_CTYPES[dtype_name]} T;\n{_RESIDUAL}"


class _Base:
    def sync(self, out: Any) -> None:
        self.stream.synchronize()

    def fetch(self, out: tuple[Any, Any]) -> tuple[np.ndarray, float]:
        W, b = out
        with self.stream:
            host_w, host_b = cp.asnumpy(W), float(cp.asnumpy(b))
        return host_w, host_b


class LoopSolver(_Base):
    """The NumPy textbook loop with ``cp`` for ``np`` (CuPy's documented way)."""

    def setup(self, data: ProblemData) -> None:
        self.stream = cp.cuda.Stream(non_blocking=True)
        dt = data.X.dtype
        with self.stream:
            self.X, self.y, self.W0 = cp.asarray(data.X), cp.asarray(data.y), cp.asarray(data.W0)
            self.b0 = cp.asarray(dt.type(data.b0))
            self.lr, self.scale = dt.type(data.lr), dt.type(-2.0 / data.n)
        self.stream.synchronize()

    def run(self, iters: int) -> tuple[Any, Any]:
        with self.stream:
            W, b = self.W0.copy(), self.b0.copy()
            for _ in range(iters):
                y_hat = self.X @ W + b
                dW = self.scale * (self.X.T @ (self.y - y_hat))
                db = self.scale * cp.sum(self.y - y_hat)
                W = W - self.lr * dW
                b = b - self.lr * db
        return W, b


class FusedSolver(_Base):
    """Fused residual kernel + cuBLAS gemv per step, replayed as recorded CUDA graphs."""

    def setup(self, data: ProblemData) -> None:
        # cupy.cublas loads libcublas when imported, so only here, where a GPU and CUDA's libraries exist.
        from cupy import cublas

        self.gemv = cublas.gemv
        dt = data.X.dtype
        self.stream = cp.cuda.Stream(non_blocking=True)
        self.n, self.d1 = data.n, data.X.shape[1] + 1
        self.kernel = cp.RawKernel(kernel_source(dt.name), "residual")
        with self.stream:
            self.A, self.y = cp.asarray(augmented_transpose(data)), cp.asarray(data.y)
            self.theta0 = cp.asarray(np.append(data.W0, dt.type(data.b0)).astype(dt))
            self.theta = cp.empty_like(self.theta0)
            self.r = cp.empty(self.n, dtype=dt)
        self.step = dt.type(2.0 * data.lr / data.n)
        self.graphs: dict[int, Any] = {}
        self.stream.synchronize()

    def _one_step(self) -> None:
        blocks = math.ceil(self.n / THREADS)
        self.kernel((blocks,), (THREADS,), (self.A, self.y, self.theta, self.r, np.int32(self.n), np.int32(self.d1)))
        self.gemv("N", self.step, self.A, self.r, 1.0, self.theta)

    def _graph(self, steps: int) -> Any:
        """The CUDA graph of ``steps`` steps, recorded on first use (kernel and cuBLAS handle made beforehand)."""
        if steps not in self.graphs:
            self.kernel.compile()
            with self.stream:
                cp.cuda.device.get_cublas_handle()
                self.stream.begin_capture()
                try:
                    for _ in range(steps):
                        self._one_step()
                finally:
                    graph = self.stream.end_capture()
            self.graphs[steps] = graph
        return self.graphs[steps]

    def run(self, iters: int) -> tuple[Any, Any]:
        with self.stream:
            self.theta[...] = self.theta0  # every run starts from (W0, b0); an async device copy
        rest = iters
        for size in BLOCKS:
            count, rest = divmod(rest, size)
            if count:
                graph = self._graph(size)
                for _ in range(count):
                    graph.launch(self.stream)
        return self.theta[:-1], self.theta[-1]

    def fetch(self, out: tuple[Any, Any]) -> tuple[np.ndarray, float]:
        W, b = super().fetch(out)
        return W.copy(), b  # the next run overwrites θ


class CupyFramework(Framework):
    name = "cupy"
    variants = {"gpu": ("loop", "fused")}

    def __init__(self) -> None:
        self._gpu_error: str | None = None

    def version(self) -> str:
        return cp.__version__

    def configure_threads(self, threads: int) -> dict[str, Any]:
        """CuPy runs nothing on the CPU beyond the Python thread launching kernels."""
        return {"api": None}

    def devices(self) -> list[str]:
        try:
            count = cp.cuda.runtime.getDeviceCount()
        except Exception as exc:  # CUDARuntimeError: no driver, insufficient driver, no device
            self._gpu_error = f"{type(exc).__name__}: {exc}"
            return []
        if not count:
            self._gpu_error = "CUDA reports 0 devices"
        return ["gpu"] if count else []

    def gpu_unavailable_reason(self) -> str:
        if self._gpu_error is None:
            self.devices()
        return f"CuPy found no usable GPU ({self._gpu_error or 'unknown reason'})"

    def variant_unavailable_reason(self, device: str, variant: str) -> str:
        return "CuPy has no CPU device" if device == "cpu" else super().variant_unavailable_reason(device, variant)

    def make_solver(self, device: str, variant: str) -> Solver:
        if device != "gpu" or "gpu" not in self.devices():
            raise Unavailable(self.gpu_unavailable_reason() if device == "gpu" else "CuPy has no CPU device")
        return LoopSolver() if variant == "loop" else FusedSolver()

    def peak_device_memory(self, device: str) -> int | None:
        """Bytes CuPy's pool holds: it keeps no peak, but its pool never shrinks between resets, so this is one."""
        return int(cp.get_default_memory_pool().total_bytes()) if device == "gpu" else None

    def reset_peak_device_memory(self, device: str) -> None:
        if device == "gpu":
            cp.get_default_memory_pool().free_all_blocks()

    def kernel_path(self, device: str, variant: str) -> str | None:
        if variant == "fused":
            return "a RawKernel (residual) and one cuBLAS gemv per step, in CUDA graphs"
        return "CuPy's elementwise kernels and cuBLAS products"

    def details(self, device: str) -> dict[str, Any]:
        props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
        dists = [d for d in REGISTRY["cupy"].dists if _has_dist(d)]
        return {
            "distribution": dists[0] if dists else None,
            "cuda_runtime": cp.cuda.runtime.runtimeGetVersion(),
            "cuda_driver": cp.cuda.runtime.driverGetVersion(),
            "device_name": props["name"].decode() if isinstance(props["name"], bytes) else props["name"],
            "compute_capability": f"{props['major']}.{props['minor']}",
            "fused_form": "RawKernel residual + cuBLAS gemv per step, CUDA graphs of 256/16/1 steps",
        }


def _has_dist(name: str) -> bool:
    try:
        importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


FRAMEWORK = CupyFramework()
