"""PyTorch on CPU and CUDA GPU.

``loop`` is the step as torch's tutorials write it: tensor expressions that allocate a temporary per op,
with the gradient written out by hand (no autograd, run under ``torch.inference_mode``).

``fused`` is the fastest honest form we measured on each device. Every step does the same two passes over
X as ``loop`` (Xᵀr needs the whole residual r, so they cannot merge), through five ops and no allocation;
θ = (W, b) and its gradient g = (gW, gb) are each one buffer with views, so one op updates both:

    r = y − X·W            torch.addmv(y, X, W, alpha=−1, out=r)
    r −= b                 r.sub_(b)
    gW = Xᵀr               torch.mv(Xᵀ, r, out=gW)             (Xᵀ a view of X, or on CPU a copy; below)
    gb = Σr                torch.sum(r, 0, keepdim=True, out=gb)
    θ += (2·lr/n)·g        theta.add_(grad, alpha=2·lr/n)

Why not ``W.addmv_(X.T, r, alpha=2·lr/n)``, one op fewer: BLAS gemv accumulates its partial dot products
straight into W, rounding each against W's magnitude, which in float32 costs the whole tolerance.

*GPU*: the step is captured into CUDA graphs, so a whole block of steps costs one launch from Python.
Graphs hold blocks of 128, 64, …, 1 steps, all captured once per solver after a warm-up on a side stream
(as the CUDA-graph docs require); a run replays the 128-block ⌊iters/128⌋ times and covers the remainder
with at most seven smaller graphs, so any iteration count runs exactly. The graphs read and write static
buffers; each run first copies (W0, b0) into them. We capture eager cuBLAS ops by hand rather than use
``torch.compile(mode="reduce-overhead")``, which replays CUDA graphs too: the hand-made graphs need no
Triton compilation (seconds to tens of seconds per dimension) and no recompiles across shapes. Inductor
could fuse r −= b and Σr into its own reductions, saving two or three of the five kernels per step, which
may matter at small d; that trade is unmeasured.

*CPU*: eager with fused BLAS calls into preallocated buffers. While X is at most ``XT_COPY_MAX_BYTES``,
Xᵀr reads its own C-contiguous copy of Xᵀ (NumPy fused's layout, made in setup and recorded as its
re-layout): torch's gemv over the transposed view was 15–25 % slower per step there. Above it the view
stays: X and a copy no longer share the cache, and the copy tied or lost. ``torch.compile`` (inductor's C++
backend) won only at d=100 on an AMD host whose MKL runs its generic code path, lost 2× at d=20–50 and
needs seconds of compile per dimension, so ``fused`` stays eager on CPU (measurements:
docs/frameworks.md, ``scripts/torch_cpu_forms.py``).

``compiled`` (asked for by name: ``--variant loop,fused,compiled``) records that form beside them: the
textbook step through ``torch.compile`` (fullgraph, static shapes), one compiled step per call, its
compilation timed apart as every variant's first call is.

No TF32 anywhere: ``allow_tf32`` is off for matmul and cuDNN and float32 matmul precision is "highest",
set at import and recorded in ``details``. Compile caches (``TORCHINDUCTOR_CACHE_DIR``,
``TRITON_CACHE_DIR``) go under the temp dir when unset and ``$HOME`` is not writable (read-only images).
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable
from typing import Any


def _default_cache_dirs() -> dict[str, str]:
    """Point compile caches at the temp dir when ``$HOME`` cannot hold them; returns what was set.

    Must run before torch (and Triton) read the variables; inductor's own default is already under the temp
    dir, Triton's is ``~/.triton/cache``, which a read-only root filesystem refuses.
    """
    home = os.path.expanduser("~")
    if os.path.isdir(home) and os.access(home, os.W_OK):
        return {}
    base = os.path.join(tempfile.gettempdir(), f"gdbench-torch-{os.getuid()}")
    chosen = {}
    for var, sub in (("TORCHINDUCTOR_CACHE_DIR", "inductor"), ("TRITON_CACHE_DIR", "triton")):
        if not os.environ.get(var):
            os.environ[var] = chosen[var] = os.path.join(base, sub)
    return chosen


CACHE_DIRS_SET = _default_cache_dirs()

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ..base import Framework, Solver, Unavailable  # noqa: E402
from ..problem import ProblemData  # noqa: E402


def _disable_tf32() -> None:
    """TF32 would silently round float32 matmuls to a 10-bit mantissa on Ampere and newer GPUs."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")


_disable_tf32()


class _Base:
    """Data on the device, shared by every variant; ``setup`` returns only once the copy has landed."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def setup(self, data: ProblemData) -> None:
        dev = self.device
        self.X = torch.from_numpy(data.X).to(dev).contiguous()
        self.y = torch.from_numpy(data.y).to(dev)
        self.W0 = torch.from_numpy(data.W0).to(dev)
        self.b0 = torch.full((), data.b0, dtype=self.X.dtype, device=dev)
        self.n = int(data.X.shape[0])
        self.lr = float(data.lr)
        self.sync(None)

    def sync(self, out: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def fetch(self, out: tuple[torch.Tensor, torch.Tensor]) -> tuple[np.ndarray, float]:
        W, b = out
        return W.detach().cpu().numpy().copy(), float(b.detach().cpu().reshape(()).item())


class LoopSolver(_Base):
    """Allocating tensor expressions, one Python iteration per step."""

    @torch.inference_mode()
    def run(self, iters: int) -> tuple[torch.Tensor, torch.Tensor]:
        X, y, lr, n = self.X, self.y, self.lr, self.n
        W = self.W0.clone()
        b = self.b0.clone()  # a device scalar: no host round-trip per step
        for _ in range(iters):
            y_hat = X @ W + b
            dW = -2.0 / n * (X.T @ (y - y_hat))
            db = -2.0 / n * torch.sum(y - y_hat)
            W = W - lr * dW
            b = b - lr * db
        return W, b


#: Largest X (bytes) for which the CPU fused form keeps a contiguous copy of Xᵀ (see the module docstring).
XT_COPY_MAX_BYTES = 4 << 20


class EagerFusedSolver(_Base):
    """Five in-place BLAS-backed ops per step on preallocated buffers (see the module docstring)."""

    relayout: str | None = None
    extra_bytes = 0

    def setup(self, data: ProblemData) -> None:
        super().setup(data)
        d = int(data.X.shape[1])
        # θ = (W, b) and its gradient each live in one buffer, so one add_ updates both.
        self.theta = torch.empty(d + 1, dtype=self.X.dtype, device=self.device)
        self.grad = torch.empty_like(self.theta)
        self.W, self.b = self.theta[:d], self.theta[d:]
        self.gW, self.gb = self.grad[:d], self.grad[d:]
        self.r = torch.empty_like(self.y)
        self.XT = self.X.T
        if self.device.type == "cpu" and self.X.nbytes <= XT_COPY_MAX_BYTES:
            self.XT = self.XT.contiguous()
            self.extra_bytes, self.relayout = self.XT.nbytes, "C-contiguous copy of Xᵀ"
        self.step_size = 2.0 * self.lr / self.n  # W -= lr·(−2/n)·Xᵀr  ⇔  W += (2·lr/n)·Xᵀr
        self.sync(None)

    def _step(self) -> None:
        r = self.r
        torch.addmv(self.y, self.X, self.W, alpha=-1, out=r)
        r.sub_(self.b)
        torch.mv(self.XT, r, out=self.gW)
        torch.sum(r, 0, keepdim=True, out=self.gb)
        self.theta.add_(self.grad, alpha=self.step_size)

    def _reset(self) -> None:
        """Every run starts from (W0, b0), whatever earlier runs left in the buffers."""
        self.W.copy_(self.W0)
        self.b.copy_(self.b0)

    @torch.inference_mode()
    def run(self, iters: int) -> tuple[torch.Tensor, torch.Tensor]:
        self._reset()
        for _ in range(iters):
            self._step()
        return self.W, self.b


class CompiledSolver(_Base):
    """``compiled``: the loop's textbook step through ``torch.compile`` (inductor, fullgraph, static shapes),
    one compiled step per call. The first run compiles (``compile_s``); a run starts from (W0, b0)."""

    relayout: str | None = None
    extra_bytes = 0

    def setup(self, data: ProblemData) -> None:
        super().setup(data)
        X, y, step = self.X, self.y, 2.0 * self.lr / self.n

        def step_fn(W: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            r = y - X @ W - b
            return W + step * (X.T @ r), b + step * r.sum()

        self.step = torch.compile(step_fn, fullgraph=True, dynamic=False)

    @torch.inference_mode()
    def run(self, iters: int) -> tuple[torch.Tensor, torch.Tensor]:
        W, b = self.W0.clone(), self.b0.clone()
        for _ in range(iters):
            W, b = self.step(W, b)
        return W, b


class CudaGraphFusedSolver(EagerFusedSolver):
    """The fused step captured into CUDA graphs of 128, 64, …, 1 steps; a run replays them."""

    BLOCK = 128

    def setup(self, data: ProblemData) -> None:
        super().setup(data)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}

    def _capture(self) -> None:
        """Capture once per solver (first run, so its cost lands in compile_s); the buffers never move."""
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):  # warm-up: cuBLAS handles and workspaces are created outside capture
            for _ in range(3):
                self._step()
        torch.cuda.current_stream(self.device).wait_stream(side)
        pool = None
        k = self.BLOCK
        while k >= 1:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                for _ in range(k):
                    self._step()
            pool = graph.pool()  # the ops allocate nothing, but share one pool should any do
            self.graphs[k] = graph
            k //= 2

    @torch.inference_mode()
    def run(self, iters: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.graphs:
            self._capture()
        self._reset()  # eager copies on the current stream, ordered before the replays
        for size, count in replay_plan(iters, self.BLOCK):
            graph = self.graphs[size]
            for _ in range(count):
                graph.replay()
        return self.W, self.b


def replay_plan(iters: int, block: int) -> list[tuple[int, int]]:
    """(graph size, replays) covering exactly ``iters`` steps: ⌊iters/block⌋ full blocks, then the binary
    digits of the remainder, so graphs of block, block/2, …, 1 steps (block a power of two) suffice."""
    plan = [(block, iters // block)] if iters >= block else []
    rest, size = iters % block, block // 2
    while size:
        if rest & size:
            plan.append((size, 1))
        size //= 2
    return plan


@functools.cache
def _mkl_path() -> str:
    """MKL prints its banner on the first verbose call of the process only: read it once."""
    from ..kernels import captured_c_stdout, mkl_summary

    X = torch.ones(64, 8, dtype=torch.float64)
    v = torch.ones(8, dtype=torch.float64)

    def one_gemv() -> None:
        with torch.backends.mkl.verbose(torch.backends.mkl.VERBOSE_ON):
            torch.mv(X, v)

    return mkl_summary(captured_c_stdout(one_gemv)) or "MKL (its verbose banner names no path)"


class TorchFramework(Framework):
    name = "torch"
    #: ``compiled`` only when asked (``--variant loop,fused,compiled``): seconds of compilation per d.
    variants = {"cpu": ("loop", "fused", "compiled"), "gpu": ("loop", "fused", "compiled")}
    requires = (("2.0", "torch.compile", ("compiled",)),)

    def version(self) -> str:
        return torch.__version__

    def configure_threads(self, threads: int) -> dict[str, Any]:
        torch.set_num_threads(threads)
        interop_error = None
        try:
            torch.set_num_interop_threads(1)  # one op at a time: the step is a dependent chain
        except RuntimeError as exc:  # allowed once, before any inter-op work; keep what is in force
            interop_error = str(exc)
        return {
            "intra_op_threads": torch.get_num_threads(),
            "inter_op_threads": torch.get_num_interop_threads(),
            "inter_op_error": interop_error,
        }

    def devices(self) -> list[str]:
        return ["cpu", "gpu"] if torch.cuda.is_available() else ["cpu"]

    def gpu_unavailable_reason(self) -> str:
        if torch.version.cuda is None and getattr(torch.version, "hip", None) is None:
            return (f"this torch build ({torch.__version__}) is CPU-only (torch.version.cuda is None); "
                    "install a CUDA build of torch")
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        return (f"torch {torch.__version__} is built for CUDA {torch.version.cuda or torch.version.hip} but sees "
                f"no device (torch.cuda.device_count() = {torch.cuda.device_count()}, "
                f"CUDA_VISIBLE_DEVICES={visible!r}): no driver loaded or no GPU passed into the container")

    def make_solver(self, device: str, variant: str) -> Solver:
        if device == "gpu":
            if not torch.cuda.is_available():
                raise Unavailable(self.gpu_unavailable_reason())
            dev = torch.device("cuda", torch.cuda.current_device())
            fused: type[_Base] = CudaGraphFusedSolver
        elif device == "cpu":
            dev, fused = torch.device("cpu"), EagerFusedSolver
        else:
            raise ValueError(f"unknown device {device!r}")
        return {"loop": LoopSolver, "fused": fused, "compiled": CompiledSolver}[variant](dev)

    def peak_device_memory(self, device: str) -> int | None:
        if device == "gpu" and torch.cuda.is_available():
            return int(torch.cuda.max_memory_allocated())
        return None

    def reset_peak_device_memory(self, device: str) -> None:
        if device == "gpu" and torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    def gemv(self, data: ProblemData, W: np.ndarray) -> Callable[[int], np.ndarray]:
        X, w = torch.from_numpy(data.X), torch.from_numpy(np.ascontiguousarray(W))
        out = torch.empty(data.n, dtype=X.dtype)

        @torch.inference_mode()
        def run(k: int) -> np.ndarray:
            for _ in range(k):
                torch.mv(X, w, out=out)  # fused's first product is addmv over the same X
            return out.numpy()

        return run

    def kernel_path(self, device: str, variant: str) -> str | None:
        """cuBLAS on the GPU; on the CPU the path MKL's own banner names for one float64 gemv (its generic
        path on CPUs it does not dispatch for) and the vector ISA ATen's kernels were built for."""
        if device == "gpu":
            return ("inductor's Triton kernels and cuBLAS" if variant == "compiled" else "cuBLAS") + \
                f" (CUDA {torch.version.cuda})"
        from ..kernels import openblas

        aten = f"ATen {torch.backends.cpu.get_cpu_capability()}"
        if variant == "compiled":
            return f"inductor's C++ loops (its own vectorised code, not MKL); {aten}"
        if not torch.backends.mkl.is_available():
            return f"{openblas() or 'BLAS not named'}; {aten}"
        return f"{_mkl_path()}; {aten}"

    def details(self, device: str) -> dict[str, Any]:
        gpu = device == "gpu" and torch.cuda.is_available()
        info: dict[str, Any] = {
            "cuda_build": torch.version.cuda,
            "hip_build": getattr(torch.version, "hip", None),
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "device_name": torch.cuda.get_device_name() if gpu else None,
            "device_capability": ".".join(map(str, torch.cuda.get_device_capability())) if gpu else None,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "mkl": torch.backends.mkl.is_available(),
            "openmp": torch.backends.openmp.is_available(),
            "fused_backend": ("CUDA graphs of eager cuBLAS ops (blocks of 128 steps)" if device == "gpu"
                              else "eager MKL/BLAS ops into preallocated buffers (no torch.compile); Xᵀ "
                              f"copied while X is at most {XT_COPY_MAX_BYTES} bytes"),
            "compile_cache_dirs": {var: os.environ.get(var) for var in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")},
        }
        return info


FRAMEWORK = TorchFramework()
