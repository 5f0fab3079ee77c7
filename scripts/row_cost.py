"""What one row of the protocol costs, phase by phase: ``python scripts/row_cost.py [FRAMEWORK …]``.

The sweep's wall time is the sum of its rows; this splits each row's into the phases of
``solvers.timing.measure`` (everything before the timed repeats, the repeats, the async probe, the sync
check, what is left) plus the floor measured once per d, so a change to the protocol can say what it costs
and what it saves. Wall times on a shared machine: run it alone. CPU device, the run's defaults.
"""

from __future__ import annotations

import inspect
import os
import sys
import time
from collections.abc import Callable
from typing import Any

for _var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):  # as the images do
    os.environ.pop(_var, None)

from solvers import registry, threads  # noqa: E402
from solvers import timing as T  # noqa: E402
from solvers.floor import measure_floor  # noqa: E402
from solvers.options import DEFAULTS  # noqa: E402
from solvers.problem import ProblemSpec, make_data, reference  # noqa: E402

DIMS = (2, 20, 100)


def _clocked(acc: dict[str, float], name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            acc[name] = acc.get(name, 0.0) + time.perf_counter() - t0
    return wrapper


def _repeats() -> dict[str, Any]:
    """The run's default repeats, for this protocol and for the fixed-count one before it (same script)."""
    if "sampling" in inspect.signature(T.measure).parameters:
        return {"sampling": T.Sampling(DEFAULTS.repeats, DEFAULTS.max_repeats, DEFAULTS.ci_width,
                                       DEFAULTS.row_budget_s)}
    return {"repeats": DEFAULTS.repeats}


def main(names: list[str]) -> int:
    acc: dict[str, float] = {}
    T.sync_check = _clocked(acc, "sync", T.sync_check)
    T.async_probe = _clocked(acc, "probe", T.async_probe)
    threads.apply(2)
    spec = ProblemSpec()
    print("framework variant d | row s | repeats (n) s | sync check s | probe s | rest s | floor s (per d)")
    total = 0.0
    for name in names:
        fw = registry.load(name)
        fw.configure_threads(2)
        threads.limit_blas(2)
        for d in DIMS:
            data = make_data(spec, d)
            ref = reference(data, spec.iters)
            t0 = time.perf_counter()
            measure_floor(data.X)
            floor_s = time.perf_counter() - t0
            total += floor_s
            for variant in fw.variants["cpu"]:
                acc.clear()
                t0 = time.perf_counter()
                row = T.measure(lambda v=variant, f=fw: f.make_solver("cpu", v), data, ref, variant=variant,
                                iters=spec.iters, dtype=spec.dtype, gpu_state=lambda: None, **_repeats())
                row_s = time.perf_counter() - t0
                total += row_s
                times = row.get("repeat_times_s") or []
                rest = row_s - sum(times) - acc.get("sync", 0.0) - acc.get("probe", 0.0)
                print(f"{name} {variant} {d} | {row_s:.2f} | {sum(times):.2f} ({len(times)}) | "
                      f"{acc.get('sync', 0.0):.2f} | {acc.get('probe', 0.0):.2f} | {rest:.2f} | {floor_s:.2f}"
                      + ("" if row["status"] == "ok" else f" | {row['status']}: {row['reason']}"), flush=True)
    print(f"total {total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["numpy", "numba", "jax", "tensorflow", "torch"]))
