"""One way to fix the thread count for every framework, applied before any framework is imported.

Three layers, because no single knob reaches every runtime: CPU affinity (the process may only run on
``threads`` CPUs of its cpuset, which bounds XLA's and TensorFlow's Eigen pools too), the usual environment
variables read at import by BLAS/OpenMP/Numba/TF/XLA, and each framework's own API afterwards
(``Framework.configure_threads``). All three are recorded in the result.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
)


# glibc mallopt parameters. Fixing them turns off glibc's dynamic mmap threshold, which otherwise moves
# as a process frees large blocks: a NumPy loop that allocates temporaries then changed speed part-way
# through a run (docs/frameworks.md).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MALLOC_SETTINGS = {"M_MMAP_THRESHOLD": 64 << 20, "M_TRIM_THRESHOLD": 256 << 20}


def pin_allocator() -> dict[str, object]:
    """Fix glibc's malloc thresholds for every framework alike; a no-op (recorded) elsewhere."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return {"applied": False}
    ok = mallopt(_M_MMAP_THRESHOLD, MALLOC_SETTINGS["M_MMAP_THRESHOLD"]) == 1
    ok &= mallopt(_M_TRIM_THRESHOLD, MALLOC_SETTINGS["M_TRIM_THRESHOLD"]) == 1
    return {"applied": bool(ok), **MALLOC_SETTINGS}


def apply(threads: int) -> dict[str, object]:
    """Pin the process to ``threads`` CPUs of its cpuset and set the thread env vars; returns what was done."""
    allowed = sorted(os.sched_getaffinity(0))
    pinned = allowed[:threads] if threads <= len(allowed) else allowed
    os.sched_setaffinity(0, pinned)
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    # XLA:CPU sizes its Eigen pool from the affinity mask; one thread means no pool at all.
    if threads == 1 and "xla_cpu_multi_thread_eigen" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
    return {
        "malloc": pin_allocator(),
        "requested": threads,
        "cpus_allowed": allowed,
        "cpus_pinned": pinned,
        "oversubscribed": threads > len(allowed),
        "env": {var: os.environ[var] for var in (*THREAD_ENV_VARS, "TF_NUM_INTEROP_THREADS")},
    }


def limit_blas(threads: int) -> list[dict[str, object]]:
    """Limit every BLAS/OpenMP pool threadpoolctl can see and return its view of them."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)
    return blas_info()


def blas_info() -> list[dict[str, object]]:
    """threadpoolctl's view of every BLAS/OpenMP pool loaded so far, ``architecture`` = the kernel in use.

    Read again after the runs: a library loaded late (numba reaches SciPy's OpenBLAS on first compile) is
    only seen then.
    """
    from threadpoolctl import threadpool_info

    keep = ("user_api", "internal_api", "prefix", "filepath", "version", "num_threads", "threading_layer",
            "architecture")
    return [{k: info.get(k) for k in keep} for info in threadpool_info()]
