"""Numba on NVIDIA GPUs through ``numba-cuda``, as the ``gpu`` device of the one ``numba`` framework.

Why one framework with two devices rather than a framework of its own: it is the same library, the same
``@jit`` programming model and the same version line (numba-cuda is NVIDIA's maintained CUDA target that
Numba itself now defers to; its built-in ``numba.cuda`` is deprecated and is never used here), and the
registry's model is exactly that: a framework lists its devices, each device its variants. The CPU code stays
in ``numba_``; this module extends that framework with the GPU and is what the registry loads, so a CPU image
without numba-cuda still imports it and simply reports that no GPU is offered.

``loop`` is the plain idiom of numba-cuda's documentation: one thread per element, no shared memory. Each
step launches a residual kernel (a thread per row: r_i = y_i − x_i·W − b) and a gradient kernel (a thread
per coefficient, summing r_i·x_ij over the rows and updating it in place).

``fused`` is one kernel per step that makes one pass over X (a row's values are read again for the update
while still in cache). X is stored transposed (d, n) so consecutive threads read consecutive addresses.
Threads walk the rows grid-stride, keep their partial Σ r_i·x_ij and Σ r_i in shared memory, reduce them per
block with a shared-memory tree (no warp shuffles, so the simulator runs it) and add the block's d+1 sums to
the gradient with atomics. Since no grid-wide barrier exists, the update of θ = (W, b) happens at the start of
the *next* step: every block forms θ_k = θ_{k-1} + step·g_{k-1} from the previous step's buffers, block 0
stores it and clears the buffer the next step accumulates into (three rotating gradient buffers, two θ
buffers, so no step reads what a concurrent block writes). One small kernel after the last step applies the
final update. No host synchronisation happens inside a run.

Under ``NUMBA_ENABLE_CUDASIM=1`` the same kernels run in numba's CUDA simulator (Python threads): the rows
are checked against the reference and reported as ``simulated``, without any timing.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import math
from typing import Any

import numpy as np

from ..base import Solver, Unavailable
from ..problem import ProblemData
from .numba_ import NumbaFramework

#: numba-cuda, the maintained CUDA target; without it the GPU device is simply not offered.
HAS_NUMBA_CUDA = importlib.util.find_spec("numba_cuda") is not None
if HAS_NUMBA_CUDA:
    from numba import config as numba_config
    from numba import cuda
GPU_VARIANTS = ("loop", "fused")
#: Threads per block: the largest power of two up to this whose shared partials fit in 48 KiB.
MAX_TPB = 256
SHARED_BYTES = 48 * 1024
#: Blocks per multiprocessor of the fused grid (grid-stride covers the rest of the rows).
BLOCKS_PER_SM = 4


def threads_per_block(d: int, itemsize: int, n: int) -> int:
    """Largest power of two ≤ MAX_TPB (and ≥ 32) whose (d+1) partials per thread, plus θ, fit in shared memory."""
    tpb = MAX_TPB
    while tpb > 32 and ((d + 1) * tpb + d + 1) * itemsize > SHARED_BYTES:
        tpb //= 2
    while tpb > 32 and tpb // 2 >= n:
        tpb //= 2
    return tpb


@functools.cache
def _kernels(dtype_name: str) -> dict[str, Any]:
    """The kernels for one dtype (the shared array's element type must be a compile-time constant)."""
    from numba import float32, float64

    sh_type = {"float64": float64, "float32": float32}[dtype_name]

    @cuda.jit
    def residual(XT, y, theta, r):  # pragma: no cover - compiled
        i = cuda.grid(1)
        d, n = XT.shape
        if i < n:
            s = theta[d]
            for j in range(d):
                s += XT[j, i] * theta[j]
            r[i] = y[i] - s

    @cuda.jit
    def gradient_update(XT, r, theta, step):  # pragma: no cover - compiled
        j = cuda.grid(1)
        d, n = XT.shape
        if j <= d:
            g = r[0] * 0
            for i in range(n):
                g += r[i] * (XT[j, i] if j < d else 1)
            theta[j] += step * g

    @cuda.jit
    def fused_step(XT, y, theta_in, g_in, theta_out, g_out, g_clear, step):  # pragma: no cover - compiled
        sh = cuda.shared.array(0, dtype=sh_type)  # (d+1)·tpb partials, then θ_k (d+1)
        d, n = XT.shape
        t = cuda.threadIdx.x
        tpb = cuda.blockDim.x
        base = (d + 1) * tpb
        for j in range(t, d + 1, tpb):
            sh[base + j] = theta_in[j] + step * g_in[j]
            if cuda.blockIdx.x == 0:
                theta_out[j] = sh[base + j]
                g_clear[j] = 0
        for j in range(d + 1):
            sh[j * tpb + t] = 0
        cuda.syncthreads()
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        while i < n:
            s = sh[base + d]
            for j in range(d):
                s += XT[j, i] * sh[base + j]
            r = y[i] - s
            for j in range(d):
                sh[j * tpb + t] += r * XT[j, i]
            sh[d * tpb + t] += r
            i += stride
        cuda.syncthreads()
        half = tpb // 2
        while half > 0:
            if t < half:
                for j in range(d + 1):
                    sh[j * tpb + t] += sh[j * tpb + t + half]
            cuda.syncthreads()
            half //= 2
        for j in range(t, d + 1, tpb):
            cuda.atomic.add(g_out, j, sh[j * tpb])

    @cuda.jit
    def finish(theta_in, g_in, out, step):  # pragma: no cover - compiled
        j = cuda.grid(1)
        if j < out.shape[0]:
            out[j] = theta_in[j] + step * g_in[j]

    return {"residual": residual, "gradient_update": gradient_update, "fused_step": fused_step, "finish": finish}


class _Base:
    """Device buffers and the one stream every launch of a run goes to."""

    def setup(self, data: ProblemData) -> None:
        dt = data.X.dtype
        self.n, self.d = data.X.shape
        self.kernels = _kernels(dt.name)
        self.stream = cuda.stream()
        self.XT = cuda.to_device(np.ascontiguousarray(data.X.T), stream=self.stream)
        self.y = cuda.to_device(data.y, stream=self.stream)
        self.theta0 = cuda.to_device(np.append(data.W0, dt.type(data.b0)).astype(dt), stream=self.stream)
        self.zeros = cuda.to_device(np.zeros(self.d + 1, dtype=dt), stream=self.stream)
        self.step = dt.type(2.0 * data.lr / data.n)  # θ += (2·lr/n)·Σ r·[x; 1]
        self.stream.synchronize()

    def sync(self, out: Any) -> None:
        self.stream.synchronize()

    def fetch(self, out: Any) -> tuple[np.ndarray, float]:
        theta = out.copy_to_host(stream=self.stream)
        self.stream.synchronize()
        return theta[:-1].copy(), float(theta[-1])


class LoopSolver(_Base):
    def setup(self, data: ProblemData) -> None:
        super().setup(data)
        self.r = cuda.device_array(self.n, dtype=data.X.dtype, stream=self.stream)
        self.theta = cuda.device_array(self.d + 1, dtype=data.X.dtype, stream=self.stream)
        self.tpb = min(MAX_TPB, 32 * math.ceil(self.n / 32))

    def run(self, iters: int) -> Any:
        k, s = self.kernels, self.stream
        self.theta.copy_to_device(self.theta0, stream=s)  # every run starts from (W0, b0)
        rows = math.ceil(self.n / self.tpb)
        for _ in range(iters):
            k["residual"][rows, self.tpb, s](self.XT, self.y, self.theta, self.r)
            k["gradient_update"][1, self.d + 1, s](self.XT, self.r, self.theta, self.step)
        return self.theta


class FusedSolver(_Base):
    def setup(self, data: ProblemData) -> None:
        super().setup(data)
        dt = data.X.dtype
        self.thetas = [cuda.device_array(self.d + 1, dtype=dt, stream=self.stream) for _ in range(2)]
        self.grads = [cuda.device_array(self.d + 1, dtype=dt, stream=self.stream) for _ in range(3)]
        self.out = cuda.device_array(self.d + 1, dtype=dt, stream=self.stream)
        self.tpb = threads_per_block(self.d, dt.itemsize, self.n)
        self.shared_bytes = ((self.d + 1) * self.tpb + self.d + 1) * dt.itemsize
        self.blocks = max(1, min(math.ceil(self.n / self.tpb), BLOCKS_PER_SM * _sm_count()))

    def run(self, iters: int) -> Any:
        k, s = self.kernels, self.stream
        step_kernel = k["fused_step"][self.blocks, self.tpb, s, self.shared_bytes]
        # Step 0 forms θ_0 = θ0 + step·0 and accumulates into a cleared buffer; see the module docstring.
        theta_in, g_in = self.theta0, self.zeros
        self.grads[0].copy_to_device(self.zeros, stream=s)
        for it in range(iters):
            theta_out, g_out, g_clear = self.thetas[it % 2], self.grads[it % 3], self.grads[(it + 1) % 3]
            step_kernel(self.XT, self.y, theta_in, g_in, theta_out, g_out, g_clear, self.step)
            theta_in, g_in = theta_out, g_out
        k["finish"][1, 32 * math.ceil((self.d + 1) / 32), s](theta_in, g_in, self.out, self.step)
        return self.out


def _sm_count() -> int:
    return int(getattr(cuda.get_current_device(), "MULTIPROCESSOR_COUNT", 1) or 1)


class NumbaCudaFramework(NumbaFramework):
    """``numba`` on the CPU (see ``numba_``) and, with numba-cuda and a GPU (or its simulator), on the GPU."""

    def __init__(self) -> None:
        super().__init__()
        self.variants = {**self.variants, "gpu": GPU_VARIANTS}

    def devices(self) -> list[str]:
        return ["cpu", "gpu"] if HAS_NUMBA_CUDA and cuda.is_available() else ["cpu"]

    def gpu_unavailable_reason(self) -> str:
        if not HAS_NUMBA_CUDA:
            return "numba-cuda is not installed (pip install numba-cuda[cu12], or use the gdbench/numba cuda image)"
        return "numba-cuda found no usable CUDA GPU or driver (NUMBA_ENABLE_CUDASIM=1 runs its simulator instead)"

    def simulated(self, device: str) -> bool:
        return device == "gpu" and HAS_NUMBA_CUDA and bool(numba_config.ENABLE_CUDASIM)

    def make_solver(self, device: str, variant: str) -> Solver:
        if device != "gpu":
            return super().make_solver(device, variant)
        if "gpu" not in self.devices():
            raise Unavailable(self.gpu_unavailable_reason())
        return LoopSolver() if variant == "loop" else FusedSolver()

    def kernel_path(self, device: str, variant: str) -> str | None:
        if device == "gpu":
            return "numba-cuda's own kernels (no cuBLAS)"
        return super().kernel_path(device, variant)

    def details(self, device: str) -> dict[str, Any]:
        if device != "gpu":
            return super().details(device)
        dev = cuda.get_current_device()
        name = getattr(dev, "name", None)
        return {
            "numba_cuda": importlib.metadata.version("numba-cuda"),
            "simulator": self.simulated(device),
            "device_name": name.decode() if isinstance(name, bytes) else name,
            "compute_capability": list(getattr(dev, "compute_capability", ()) or ()) or None,
            "fused_form": "one kernel per step: grid-stride rows over Xᵀ, shared-memory tree, atomics",
        }


FRAMEWORK = NumbaCudaFramework()
