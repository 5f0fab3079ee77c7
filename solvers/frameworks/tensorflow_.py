"""TensorFlow on CPU or GPU, every step compiled by XLA (``tf.function(jit_compile=True)``), no TF32.

``loop`` is the usual TF2 form: a compiled step over (n, d) ``X`` called from a Python loop, so each
iteration pays one ``tf.function`` call (tens to hundreds of µs on CPU, which dominates small d).

``fused`` puts the whole fixed-iteration loop in one compiled program: a ``tf.while_loop`` whose trip
count is a tensor argument, so the 2x-iterations sync check reuses the traced and compiled function.
Like the JAX plugin it stores ``A = [Xᵀ; 1ᵀ]`` (d+1, n) once in ``setup`` with θ = (W, b): one product
``θ·A`` gives ŷ, one product ``A·r`` gives both gradients (the ones row yields Σr), so a step is two GEMV
passes over the data and nothing else. The algorithm is unchanged (no XᵀX precomputation).
The dynamic count runs as whole blocks of 256 steps, then 16, then single steps, each block a loop with a
static trip count, because XLA:GPU waits on the host for the predicate of every step of a loop whose
trip count it cannot see (see ``_fused``); on CPU this measured the same as one flat loop.

The same choices measured fastest through TF's XLA:CPU as through JAX's (docs/frameworks.md).

Threads: TensorFlow fixes its pools when its runtime context starts, so importing this module creates no
tensor and no context; ``configure_threads`` (called right after import) sets intra-op to the requested
count and inter-op to 1. Sync: ``.numpy()`` on both outputs, which waits for the program that made them.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from ..base import Framework, Solver, Unavailable
from ..problem import ProblemData, augmented_transpose

# A process-wide flag that creates no context: float32 matmuls and convolutions stay IEEE float32 on GPU.
tf.config.experimental.enable_tensor_float_32_execution(False)


#: tf.function's jit_compile arrived in TF 2.5 (before it: experimental_compile). Without it neither variant
#: can be compiled by XLA; both are then reported unavailable (``requires``), and the plain tf.function below
#: is never run, so no variant silently measures TF's graph executor instead of XLA.
HAS_JIT_COMPILE = "jit_compile" in inspect.signature(tf.function).parameters
_xla = tf.function(jit_compile=True) if HAS_JIT_COMPILE else tf.function


@_xla
def _step(X: tf.Tensor, y: tf.Tensor, W: tf.Tensor, b: tf.Tensor, lr: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """One textbook gradient step; n comes from the static shape, so the constants take X's dtype."""
    n = X.shape[0]
    y_hat = tf.linalg.matvec(X, W) + b
    dW = -2.0 / n * tf.linalg.matvec(X, y - y_hat, transpose_a=True)
    db = -2.0 / n * tf.reduce_sum(y - y_hat)
    return W - lr * dW, b - lr * db


#: Static block sizes of the fused loop, largest first (the last must be 1); see ``_fused``.
BLOCKS = (256, 16, 1)


@_xla
def _fused(iters: tf.Tensor, A: tf.Tensor, y: tf.Tensor, theta0: tf.Tensor,
           step: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """``iters`` steps on θ = (W, b) with A = [Xᵀ; 1ᵀ]; ``step`` = 2·lr/n, so θ += step·A·(y − θ·A).

    The count is a tensor, so XLA cannot know the trip count of a plain loop over it, and XLA:GPU then copies
    the loop predicate to the host and waits for it after every step. Running ``iters`` as whole blocks of
    256, then of 16, then single steps keeps the count dynamic while the inner block loops have a static
    trip count that XLA:GPU runs without that round trip: at most iters/256 + 33 host waits per run instead
    of ``iters``. The steps and their order are unchanged.
    """

    def one(theta: tf.Tensor) -> tf.Tensor:
        r = y - tf.einsum("dn,d->n", A, theta)
        return theta + step * tf.einsum("dn,n->d", A, r)

    def repeat(count: tf.Tensor | int, fn: Callable[[tf.Tensor], tf.Tensor], theta: tf.Tensor) -> tf.Tensor:
        zero = tf.constant(0, dtype=tf.int32)
        return tf.while_loop(lambda i, _: i < count, lambda i, t: (i + 1, fn(t)), (zero, theta))[1]

    theta, rest = theta0, iters
    for size in BLOCKS:
        fn = one if size == 1 else (lambda t, size=size: repeat(size, one, t))
        theta = repeat(rest // size, fn, theta)
        rest = rest % size
    return theta[:-1], theta[-1]


@_xla
def _gemvs(k: tf.Tensor, A: tf.Tensor, theta: tf.Tensor, one: tf.Tensor) -> tf.Tensor:
    """k products θ·A (fused's first product, as it spells it) in one program; θ is scaled by a traced one
    each time, so XLA can neither hoist the product out of the loop nor fold the scaling away."""
    zero = tf.constant(0, dtype=tf.int32)
    v0 = tf.zeros(tf.shape(A)[1:], dtype=A.dtype)
    return tf.while_loop(lambda i, t, v: i < k,
                         lambda i, t, v: (i + 1, t * one, tf.einsum("dn,d->n", A, t)), (zero, theta, v0))[2]


class _Base:
    def __init__(self, device: str) -> None:
        self.device = device  # "/CPU:0" or "/GPU:0"

    def _put(self, x: np.ndarray) -> tf.Tensor:
        with tf.device(self.device):
            return tf.identity(tf.constant(x))  # identity runs on the device: the copy really lands there

    def sync(self, out: tuple[tf.Tensor, tf.Tensor]) -> None:
        for t in out:
            t.numpy()

    def fetch(self, out: tuple[tf.Tensor, tf.Tensor]) -> tuple[np.ndarray, float]:
        return out[0].numpy(), float(out[1].numpy())


class LoopSolver(_Base):
    """A compiled step called once per iteration from Python."""

    def setup(self, data: ProblemData) -> None:
        dt = data.X.dtype
        self.X, self.y, self.W0 = self._put(data.X), self._put(data.y), self._put(data.W0)
        self.b0 = self._put(np.asarray(data.b0, dtype=dt))
        self.lr = self._put(np.asarray(data.lr, dtype=dt))
        self.sync((self.X, self.y))

    def run(self, iters: int) -> tuple[tf.Tensor, tf.Tensor]:
        W, b = self.W0, self.b0
        with tf.device(self.device):
            for _ in range(iters):
                W, b = _step(self.X, self.y, W, b, self.lr)
        return W, b

    def hlo(self, iters: int) -> str:
        """The compiled step's optimised HLO (to check which dtype really runs)."""
        with tf.device(self.device):
            return _step.experimental_get_compiler_ir(self.X, self.y, self.W0, self.b0, self.lr)(
                stage="optimized_hlo")


class FusedSolver(_Base):
    """The whole fixed-iteration loop as one XLA program over the augmented, transposed design matrix.

    A deliberate twin of ``jax_.FusedSolver``: both hand XLA the same [Xᵀ; 1ᵀ] layout and step size, so
    the two frameworks compile the same problem; only the device-put and the loop spelling differ.
    """

    relayout = "A = [Xᵀ; 1ᵀ]"

    def setup(self, data: ProblemData) -> None:
        dt = data.X.dtype
        A = augmented_transpose(data)
        self.extra_bytes = A.nbytes
        self.A, self.y = self._put(A), self._put(data.y)
        self.theta0 = self._put(np.append(data.W0, dt.type(data.b0)))
        self.step = self._put(np.asarray(2.0 * data.lr / data.n, dtype=dt))
        self.sync((self.A, self.y))

    def _iters(self, iters: int) -> tf.Tensor:
        # Host int32 (XLA keeps loop bounds on the host side): one signature for every count, no retrace.
        return tf.constant(iters, dtype=tf.int32)

    def run(self, iters: int) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.device(self.device):
            return _fused(self._iters(iters), self.A, self.y, self.theta0, self.step)

    def hlo(self, iters: int) -> str:
        """The compiled program's optimised HLO (to check which dtype really runs)."""
        with tf.device(self.device):
            return _fused.experimental_get_compiler_ir(self._iters(iters), self.A, self.y, self.theta0, self.step)(
                stage="optimized_hlo")


def _gpus() -> list[Any]:
    return tf.config.list_physical_devices("GPU")


class TensorflowFramework(Framework):
    name = "tensorflow"
    variants = {"cpu": ("loop", "fused"), "gpu": ("loop", "fused")}
    requires = (("2.5", "tf.function(jit_compile=True)", ("loop", "fused")),)

    def api_gaps(self) -> dict[str, str]:
        gaps = super().api_gaps()
        if not HAS_JIT_COMPILE:  # whatever the version says, the signature decides
            gaps = {v: f"tensorflow {tf.__version__}: tf.function takes no jit_compile (TF >= 2.5 does), which "
                       f"the {v} variant needs" for v in ("loop", "fused")}
        return gaps

    def version(self) -> str:
        return tf.__version__

    def configure_threads(self, threads: int) -> dict[str, Any]:
        """Set the op pools and GPU memory growth; both are fixed once TF's context starts."""
        errors: list[str] = []
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError as exc:  # the context already started (a second call in one process)
            errors.append(str(exc))
        growth: list[bool] = []
        for gpu in _gpus():
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError as exc:
                errors.append(str(exc))
            growth.append(bool(tf.config.experimental.get_memory_growth(gpu)))
        tf.config.experimental.enable_tensor_float_32_execution(False)
        return {
            "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
            "gpu_memory_growth": growth,
            "errors": errors,
        }

    def devices(self) -> list[str]:
        return ["cpu", "gpu"] if _gpus() else ["cpu"]

    def gpu_unavailable_reason(self) -> str:
        info = tf.sysconfig.get_build_info()
        if not info.get("is_cuda_build"):
            return ("this TensorFlow build has no CUDA support (e.g. tensorflow-cpu); "
                    "install 'tensorflow[and-cuda]' on a Linux host with an NVIDIA driver")
        return (f"TensorFlow (CUDA {info.get('cuda_version')}) lists no GPU: check the NVIDIA driver, "
                f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')} and TF's log")

    def make_solver(self, device: str, variant: str) -> Solver:
        if device == "gpu" and not _gpus():
            raise Unavailable(self.gpu_unavailable_reason())
        name = "/GPU:0" if device == "gpu" else "/CPU:0"
        return LoopSolver(name) if variant == "loop" else FusedSolver(name)

    def peak_device_memory(self, device: str) -> int | None:
        if device != "gpu":
            return None
        return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])

    def reset_peak_device_memory(self, device: str) -> None:
        if device == "gpu":
            tf.config.experimental.reset_memory_stats("GPU:0")

    def gemv(self, data: ProblemData, W: np.ndarray) -> Callable[[int], np.ndarray]:
        put = _Base("/CPU:0")._put
        dt = data.X.dtype
        A, theta = put(augmented_transpose(data)), put(np.append(W, dt.type(0)))
        one = put(np.asarray(1, dtype=dt))

        def run(k: int) -> np.ndarray:
            with tf.device("/CPU:0"):
                return _gemvs(tf.constant(k, dtype=tf.int32), A, theta, one).numpy()

        return run

    def kernel_path(self, device: str, variant: str) -> str | None:
        from ..kernels import xla

        return xla(device)  # every step is XLA-compiled (jit_compile)

    def details(self, device: str) -> dict[str, Any]:
        info = tf.sysconfig.get_build_info()
        out: dict[str, Any] = {
            "backend": "XLA via tf.function(jit_compile=True)",
            "device": "/GPU:0" if device == "gpu" else "/CPU:0",
            "tf32_enabled": bool(tf.config.experimental.tensor_float_32_execution_enabled()),
            "float64": "native (TensorFlow has no x64 switch)",
            "cuda_build": bool(info.get("is_cuda_build")),
            "cuda_version": info.get("cuda_version"),
            "cudnn_version": info.get("cudnn_version"),
            "onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
            "fused_form": "tf.while_loop, tensor trip count, A = [Xᵀ; 1ᵀ]",
        }
        gpus = _gpus()
        if device == "gpu" and gpus:
            out["device_details"] = {k: str(v) for k, v in tf.config.experimental.get_device_details(gpus[0]).items()}
        return out


FRAMEWORK = TensorflowFramework()
