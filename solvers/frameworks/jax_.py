"""JAX (XLA) on CPU or GPU, float64 via ``jax_enable_x64`` and full-precision matmuls (no TF32).

``loop`` is the form JAX's documentation teaches: a ``jax.jit``-compiled step over (n, d) ``X``, called
from a Python loop, so every iteration pays one dispatch.

``fused`` compiles the whole run into one XLA program (``lax.fori_loop`` whose trip count is a traced
argument, so the 2x-iterations sync check reuses the executable). Three choices make it the fastest
honest form measured here (the layout is built once in ``setup``, outside the clock):

* the design matrix is stored transposed and augmented, ``A = [Xᵀ; 1ᵀ]`` (d+1, n), with θ = (W, b), so a
  single product ``θ·A`` gives ŷ and a single product ``A·r`` gives both gradients (the ones row yields
  Σr): two passes over the data per step and nothing else;
* both products contract over A's leading or trailing axis directly (``lax.dot_general``), which XLA:CPU
  turns into plain GEMV calls. With (n, d) ``X`` it instead handles ``X.T @ r`` poorly, and its
  (n, 2)-shaped products are slow;
* the dynamic count runs as whole blocks of 256 steps, then 16, then single steps, each block a loop with
  a static trip count: XLA:GPU reads an unknown-trip-count loop's predicate back to the host after every
  step, a known one it does not (see ``_fused``). On CPU this measured the same as one flat loop.

The algorithm is unchanged: same steps, same arithmetic per element (the bias gradient is Σr, computed as
a dot with ones). Precomputing XᵀX would change the per-step work, so it is not done.

On XLA:CPU the first two measured faster than the textbook forms and the third the same (docs/frameworks.md).

Buffer donation buys nothing here: X, y and θ0 must survive every run, and the loop carry (d+1 floats)
never leaves the program.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from collections.abc import Callable
from typing import Any

import jax

# Before any array exists: without this every "float64" array is silently float32.
jax.config.update("jax_enable_x64", True)
# Full-precision matmuls everywhere (TF32 on Ampere+ GPUs otherwise); the products below also say so.
jax.config.update("jax_default_matmul_precision", "highest")

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402

from ..base import Framework, Solver, Unavailable  # noqa: E402
from ..problem import ProblemData, augmented_transpose  # noqa: E402

HIGHEST = lax.Precision.HIGHEST


@jax.jit
def _step(X: jax.Array, y: jax.Array, W: jax.Array, b: jax.Array, lr: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One textbook gradient step; ``n`` is static, so ``-2.0 / n`` stays weakly typed and keeps the dtype."""
    n = X.shape[0]
    y_hat = jnp.matmul(X, W, precision=HIGHEST) + b
    dW = -2.0 / n * jnp.matmul(X.T, y - y_hat, precision=HIGHEST)
    db = -2.0 / n * jnp.sum(y - y_hat)
    return W - lr * dW, b - lr * db


#: Static block sizes of the fused loop, largest first (the last must be 1); see ``_fused``.
BLOCKS = (256, 16, 1)


@jax.jit
def _fused(iters: jax.Array, A: jax.Array, y: jax.Array, theta0: jax.Array,
           step: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``iters`` steps on θ = (W, b) with A = [Xᵀ; 1ᵀ]; ``step`` = 2·lr/n, so θ += step·A·(y − θ·A).

    The count is traced, so XLA cannot know the trip count of a plain loop over it, and XLA:GPU then copies
    the loop predicate to the host and waits for it after every step. Running ``iters`` as whole blocks of
    256, then of 16, then single steps keeps the count dynamic while the inner block loops have a static
    trip count that XLA:GPU runs without that round trip: at most iters/256 + 33 host waits per run instead
    of ``iters``. The steps and their order are unchanged.
    """

    def one(_: jax.Array, theta: jax.Array) -> jax.Array:
        r = y - lax.dot_general(theta, A, (((0,), (0,)), ((), ())), precision=HIGHEST)
        return theta + step * lax.dot_general(r, A, (((0,), (1,)), ((), ())), precision=HIGHEST)

    def block(size: int) -> Callable[[jax.Array, jax.Array], jax.Array]:
        return one if size == 1 else lambda _, theta: lax.fori_loop(0, size, one, theta)

    theta, rest = theta0, iters
    for size in BLOCKS:
        theta = lax.fori_loop(0, rest // size, block(size), theta)
        rest = rest % size
    return theta[:-1], theta[-1]


@jax.jit
def _gemvs(k: jax.Array, A: jax.Array, theta: jax.Array, one: jax.Array) -> jax.Array:
    """k products θ·A (fused's first product, as it spells it) in one program; θ is scaled by a traced one
    each time, so XLA can neither hoist the product out of the loop nor fold the scaling away."""

    def body(_: jax.Array, carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        t, _v = carry
        return t * one, lax.dot_general(t, A, (((0,), (0,)), ((), ())), precision=HIGHEST)

    return lax.fori_loop(0, k, body, (theta, jnp.zeros(A.shape[1], A.dtype)))[1]


class _Base:
    def __init__(self, device: jax.Device) -> None:
        self.device = device

    def _put(self, x: np.ndarray) -> jax.Array:
        return jax.device_put(x, self.device)

    def sync(self, out: tuple[jax.Array, jax.Array]) -> None:
        jax.block_until_ready(out)

    def fetch(self, out: tuple[jax.Array, jax.Array]) -> tuple[np.ndarray, float]:
        return np.asarray(out[0]), float(out[1])


class LoopSolver(_Base):
    """A jitted step dispatched once per iteration from Python (JAX queues them asynchronously)."""

    def setup(self, data: ProblemData) -> None:
        dt = data.X.dtype
        self.X, self.y, self.W0 = self._put(data.X), self._put(data.y), self._put(data.W0)
        self.b0 = self._put(np.asarray(data.b0, dtype=dt))
        self.lr = self._put(np.asarray(data.lr, dtype=dt))
        jax.block_until_ready((self.X, self.y, self.W0, self.b0, self.lr))

    def run(self, iters: int) -> tuple[jax.Array, jax.Array]:
        W, b = self.W0, self.b0
        for _ in range(iters):
            W, b = _step(self.X, self.y, W, b, self.lr)
        return W, b

    def hlo(self, iters: int) -> str:
        """The compiled step's HLO text (to check which dtype really runs)."""
        return _step.lower(self.X, self.y, self.W0, self.b0, self.lr).compile().as_text()


class FusedSolver(_Base):
    """The whole fixed-iteration loop as one XLA program over the augmented, transposed design matrix.

    A deliberate twin of ``tensorflow_.FusedSolver``: both hand XLA the same [Xᵀ; 1ᵀ] layout and step size, so
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
        jax.block_until_ready((self.A, self.y, self.theta0, self.step))

    def run(self, iters: int) -> tuple[jax.Array, jax.Array]:
        # An int32 scalar: every count has the same abstract type, so a new count reuses the executable.
        return _fused(np.int32(iters), self.A, self.y, self.theta0, self.step)

    def hlo(self, iters: int) -> str:
        """The compiled program's HLO text (to check which dtype really runs)."""
        return _fused.lower(np.int32(iters), self.A, self.y, self.theta0, self.step).compile().as_text()


#: ``fused_cmdbuf``'s per-compile XLA options. Command buffers (CUDA graphs) for the whole program, while loops
#: included (CUDA conditional nodes), so XLA:GPU records the loop nest once and replays it with no per-step
#: launches or host round trips. Per-compile options take the full list of command types, not the
#: ``+WHILE`` form XLA_FLAGS accepts; the pinned jaxlib validates names even when compiling for the CPU.
CMDBUF_OPTIONS: dict[str, str | int] = {
    "xla_gpu_enable_command_buffer": "FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,WHILE,CONDITIONAL",
    "xla_gpu_graph_min_graph_size": 1,
}


class CmdbufSolver(FusedSolver):
    """``fused``'s very program, compiled ahead of time with ``CMDBUF_OPTIONS`` (the only difference)."""

    def setup(self, data: ProblemData) -> None:
        super().setup(data)
        self._exe: Any = None

    def _compiled(self) -> Any:
        if self._exe is None:  # in the first run, so compile time is reported as compile_s
            self._exe = _fused.lower(np.int32(1), self.A, self.y, self.theta0, self.step).compile(
                compiler_options=CMDBUF_OPTIONS)
        return self._exe

    def run(self, iters: int) -> tuple[jax.Array, jax.Array]:
        return self._compiled()(np.int32(iters), self.A, self.y, self.theta0, self.step)

    def hlo(self, iters: int) -> str:
        return self._compiled().as_text()


class JaxFramework(Framework):
    name = "jax"
    variants = {"cpu": ("loop", "fused"), "gpu": ("loop", "fused", "fused_cmdbuf")}
    #: jax.Array (the one array type, 0.4.1) is what the solvers put on a device and block on.
    requires = (("0.4.1", "jax.Array", ("loop", "fused", "fused_cmdbuf")),)

    def __init__(self) -> None:
        self._gpu_error: str | None = None

    def version(self) -> str:
        return jax.__version__

    def configure_threads(self, threads: int) -> dict[str, Any]:
        """JAX has no thread API: XLA:CPU sizes its pool from the CPU affinity set before import."""
        return {
            "api": None,
            "cpu_affinity": len(os.sched_getaffinity(0)),
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
        }

    def _device(self, device: str) -> jax.Device:
        try:
            return jax.devices(device)[0]
        except RuntimeError as exc:
            if device == "gpu":
                self._gpu_error = str(exc)
            raise Unavailable(f"jax has no {device} device: {exc}") from exc

    def devices(self) -> list[str]:
        found = ["cpu"]
        try:
            self._device("gpu")
            found.append("gpu")
        except Unavailable:
            pass
        return found

    def gpu_unavailable_reason(self) -> str:
        if self._gpu_error is None:
            self.devices()
        plugins = [p for p in ("jax_cuda12_plugin", "jax_cuda13_plugin") if importlib.util.find_spec(p)]
        hint = (f"a CUDA plugin is installed ({', '.join(plugins)}) but found no usable GPU or driver" if plugins
                else "no CUDA plugin is installed (pip install 'jax[cuda12]')")
        return f"jax reported: {self._gpu_error or 'no GPU backend'}; {hint}"

    def variant_unavailable_reason(self, device: str, variant: str) -> str:
        if variant == "fused_cmdbuf" and device == "cpu":
            return "fused_cmdbuf records XLA:GPU command buffers (CUDA graphs); XLA:CPU has none to record"
        return super().variant_unavailable_reason(device, variant)

    def make_solver(self, device: str, variant: str) -> Solver:
        if variant not in self.variants.get(device, ()):
            raise Unavailable(self.variant_unavailable_reason(device, variant))
        dev = self._device(device)
        solver = {"loop": LoopSolver, "fused": FusedSolver, "fused_cmdbuf": CmdbufSolver}[variant]
        return solver(dev)

    def peak_device_memory(self, device: str) -> int | None:
        """XLA's allocator peak (process lifetime: XLA offers no reset); None on CPU, which keeps no stats."""
        stats = self._device(device).memory_stats()
        peak = stats.get("peak_bytes_in_use") if stats else None
        return int(peak) if peak is not None else None

    def gemv(self, data: ProblemData, W: np.ndarray) -> Callable[[int], np.ndarray]:
        dev = self._device("cpu")
        dt = data.X.dtype
        A = jax.device_put(augmented_transpose(data), dev)
        theta = jax.device_put(np.append(W, dt.type(0)), dev)
        one = jax.device_put(np.asarray(1, dtype=dt), dev)
        return lambda k: np.asarray(_gemvs(np.int32(k), A, theta, one))

    def kernel_path(self, device: str, variant: str) -> str | None:
        from ..kernels import xla

        return xla(device)

    def details(self, device: str) -> dict[str, Any]:
        dev = self._device(device)
        return {
            "backend": dev.platform,
            "device_kind": dev.device_kind,
            "platform_version": dev.client.platform_version,
            "jaxlib": importlib.metadata.version("jaxlib"),
            "x64": bool(jax.config.jax_enable_x64),
            "matmul_precision": "highest (lax.Precision.HIGHEST on every product; no TF32)",
            "default_matmul_precision": jax.config.jax_default_matmul_precision,
            "fused_form": "lax.fori_loop, dynamic trip count, A = [Xᵀ; 1ᵀ]",
            # What XLA was told: flags from the environment for every program, options per compile.
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "compiler_options": {"loop": {}, "fused": {}, "fused_cmdbuf": dict(CMDBUF_OPTIONS)},
        }


FRAMEWORK = JaxFramework()
