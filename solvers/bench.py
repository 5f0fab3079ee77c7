"""``python -m solvers bench``: every installed framework × CPU variant, in one process, against a floor.

Why one process: the targets are ratios (speedup over the NumPy loop, distance from the floor), and on a
shared host absolute times drift; ratios taken minutes apart in different processes would mix that drift
in. Each row goes through the same protocol and acceptance rule as ``run`` (``timing.measure``: compile
apart, correctness, repeats, sync check, one fresh attempt after a failed sync check), so a row that failed
a check has no time and counts for nothing.

The floor (``solvers.floor``) is the fastest single pass over X with the same threads; at small d it is a
call-overhead reference and the table says so. A step that reads X once (numba's ``fused``) is held to
it; a step that cannot (two products, each a pass) is held to twice its own framework's gemv, measured
here through ``Framework.gemv`` in the layout that framework's ``fused`` reads (the ``x 2gemv`` column):
a framework's fused form is only as good as it can be when that ratio is near 1. Every cell prints its
spread; the targets and the verdict rule (INCONCLUSIVE inside the rows' own spread) are ``solvers.targets``.

BLAS environment: the images leave OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset, so the bench re-runs
itself without them when they are set (``--keep-blas-env`` measures the environment as given); the kernel
threadpoolctl reports (``architecture``) is printed, before the rows and again after them, when every BLAS
that loads late (numba's loop reaches SciPy's OpenBLAS) has loaded.

The output is a plain-text report on stdout; the exit code is 0 whenever anything ran, whether or not the
targets were met, 1 when frameworks loaded but no row passed, 2 for invalid arguments, 3 when no framework
could be loaded.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from typing import Any, TextIO

import numpy as np

from . import registry, threads
from .base import Framework, Unavailable
from .problem import ProblemData, ProblemSpec
from .targets import BASELINE, Bounds, Row, checks
from .timing import Sampling

BLAS_ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_VERBOSE", "MKL_CBWR", "MKL_DEBUG_CPU_TYPE")
#: Unset in the images (images/Dockerfile sets neither), so unset for the bench's own measurements too.
CLEARED_BLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
#: Seconds of quiet before each reading: OpenBLAS's (and OpenMP's) worker threads keep spinning for a while
#: after their last call, and on a 2-core host they share the cores with whatever is timed next (jax's own
#: gemv read 0.13 ms right after a NumPy gemv and 0.063 ms after 0.3 s idle: docs/frameworks.md).
SETTLE_S = 0.3
#: Set in the re-run child: what the parent cleared, for the report.
_CLEARED_MARK = "GDBENCH_BENCH_CLEARED"


def _measure(fw: Framework, variant: str, data: ProblemData, ref: tuple[np.ndarray, float], spec: ProblemSpec,
             sampling: Sampling) -> dict[str, Any]:
    from .timing import measure

    return measure(lambda: fw.make_solver("cpu", variant), data, ref, variant=variant, iters=spec.iters,
                   sampling=sampling, dtype=spec.dtype, gpu_state=lambda: None)


def _load(names: list[str], n_threads: int, log: TextIO) -> tuple[dict[str, Framework], list[str]]:
    frameworks: dict[str, Framework] = {}
    lines: list[str] = []
    for name in names:
        if name not in registry.REGISTRY:
            lines.append(f"skipped {name}: unknown framework (choose from {', '.join(registry.FRAMEWORKS)})")
            continue
        try:
            fw = registry.load(name)
            fw.configure_threads(n_threads)
        except Unavailable as exc:
            lines.append(f"skipped {name}: {exc}")
            continue
        except Exception as exc:  # a broken install is one skipped framework, not a failed report
            lines.append(f"skipped {name}: {type(exc).__name__}: {exc}".splitlines()[0])
            continue
        if "cpu" not in fw.variants:
            lines.append(f"skipped {name}: no CPU backend")
            continue
        frameworks[name] = fw
        lines.append(f"loaded  {name} {fw.version()}: {', '.join(fw.variants['cpu'])}")
    for line in lines:
        print(line, file=log, flush=True)
    return frameworks, lines


def own_gemvs_ms(frameworks: dict[str, Framework], data: ProblemData) -> dict[str, float]:
    """Each framework's own gemv over this d's X, ms per product (``Framework.gemv``); a framework whose
    gemv cannot run here is left out and says why on stderr, its rows then print no two-gemv ratio."""
    from .floor import per_product_s

    W = np.random.default_rng(0).standard_normal(data.d).astype(data.X.dtype)
    out: dict[str, float] = {}
    for name, fw in frameworks.items():
        try:
            time.sleep(SETTLE_S)
            run = fw.gemv(data, W)
            if run is not None:
                out[name] = per_product_s(run) * 1e3
        except Exception as exc:  # a bound we cannot take is a missing column, never a failed report
            print(f"{name}: no own gemv at d={data.d}: {type(exc).__name__}: {exc}".splitlines()[0],
                  file=sys.stderr, flush=True)
    return out


def _fmt(x: float | None, spec: str, suffix: str = "") -> str:
    return "-" if x is None else format(x, spec) + suffix


def _one_thread_sum(floor: dict[str, Any]) -> str:
    """NumPy's one-thread sum, shown for reference only (documents before it existed lack it)."""
    value = floor.get("sum_one_thread_s")
    return "" if value is None else f" (one-thread sum {value * 1e3:.4f})"


def _floor_line(dim: int, floor: dict[str, Any], readings: tuple[float, float]) -> str:
    what = ("a call-overhead reference (X is so small a gemv mostly measures its call)"
            if floor["call_overhead_bound"] else "the fastest single pass over X")
    return (f"d={dim}  (floor: {floor['time_s'] * 1e3:.4f} ms, {floor['kind']}, {what}; gemv "
            f"{floor['gemv_plain_s'] * 1e3:.4f}, padded gemv {floor['gemv_padded_s'] * 1e3:.4f}, stream "
            f"{floor['stream_s'] * 1e3:.4f}{_one_thread_sum(floor)} ms; the lower of {readings[0]:.4f} before "
            f"and {readings[1]:.4f} after the rows)")


def _gemv_line(bounds: Bounds) -> str:
    own = ", ".join(f"{name} {ms:.4f}" for name, ms in bounds.gemv_ms.items()) or "none measured"
    return (f"       own gemv X·W per framework, ms (a two-pass step's bound is twice its own): {own}")


def _table(dim: int, rows: list[Row], floor: dict[str, Any], readings: tuple[float, float],
           bounds: Bounds) -> list[str]:
    base = next((r.ms for r in rows if (r.framework, r.variant) == BASELINE and r.ok), None)
    xfloor = "x ref" if floor["call_overhead_bound"] else "x floor"
    header = (f"{'framework':<11} {'variant':<8} {'ms/iter':>10} {'spread':>7} {'vs numpy loop':>14} "
              f"{xfloor:>8} {'x 2gemv':>8}  status")
    out = [_floor_line(dim, floor, readings), _gemv_line(bounds), header, "-" * len(header)]
    for r in rows:
        speedup = base / r.ms if r.ok and base else None
        ratio = r.ms / bounds.floor_ms if r.ok else None
        status = "ok" if r.ok else f"{r.status}: {r.reason}"
        if r.flags:
            status += f" ({', '.join(r.flags)})"
        if r.passes == 1 and r.ok:
            status += " (one pass over X: held to the floor)"
        spread = _fmt(None if r.spread is None else 100 * r.spread, ".1f", "%")
        out.append(f"{r.framework:<11} {r.variant:<8} {_fmt(r.ms, '.4f'):>10} {spread:>7} "
                   f"{_fmt(speedup, '.2f', 'x'):>14} {_fmt(ratio, '.2f', 'x'):>8} "
                   f"{_fmt(bounds.two_gemv_ratio(r), '.2f', 'x'):>8}  {status[:160]}")
    return out


def _blas_line(label: str, blas: list[dict[str, Any]]) -> str:
    return label + "; ".join(f"{b.get('internal_api')} {b.get('version')} {b.get('architecture')} "
                             f"threads={b.get('num_threads')}" for b in blas)


def _rerun_without_blas_env(args: argparse.Namespace, stdout: TextIO) -> int | None:
    """Run the bench again in a child without ``CLEARED_BLAS_VARS`` when any is set; None when none is."""
    if getattr(args, "keep_blas_env", False) or os.environ.get(_CLEARED_MARK) is not None:
        return None
    cleared = {v: os.environ[v] for v in CLEARED_BLAS_VARS if v in os.environ}
    if not cleared:
        return None
    env = {k: v for k, v in os.environ.items() if k not in CLEARED_BLAS_VARS}
    env[_CLEARED_MARK] = " ".join(f"{k}={v}" for k, v in cleared.items())
    argv = [sys.executable, "-m", "solvers", "bench", "--dims", str(args.dims), "--n", str(args.n),
            "--iters", str(args.iters), "--repeats", str(args.repeats), "--max-repeats", str(args.max_repeats),
            "--ci-width", str(args.ci_width), "--row-budget", str(args.row_budget), "--threads", str(args.threads),
            "--frameworks", str(args.frameworks)]
    print(f"re-running the bench without {env[_CLEARED_MARK]} (unset in the images)", file=sys.stderr, flush=True)
    stdout.flush()
    return subprocess.run(argv, env=env, stdout=stdout, check=False).returncode


def bench(args: argparse.Namespace, stdout: TextIO) -> int:
    """Run the report; see the module docstring for what is measured and why."""
    from . import options, problem
    from .floor import measure_floor

    log = sys.stderr
    try:
        dims = options.dims(str(args.dims))
        for name in ("n", "iters", "threads"):
            options.check_int(name, getattr(args, name))
        sampling = Sampling.checked(args.repeats, args.max_repeats, args.ci_width, args.row_budget)
    except options.OptionError as exc:
        print(f"invalid arguments: {exc}", file=stdout, flush=True)
        return 2
    names = options.split(str(args.frameworks))
    rerun = _rerun_without_blas_env(args, stdout)
    if rerun is not None:
        return rerun

    # Thread env vars and affinity must be in place before any framework (or its BLAS) is imported.
    thread_info = threads.apply(args.threads)
    frameworks, load_lines = _load(names, args.threads, log)
    blas = threads.limit_blas(args.threads)

    spec = problem.ProblemSpec(n=args.n, iters=args.iters)
    env = {v: os.environ[v] for v in BLAS_ENV_VARS if v in os.environ}
    cleared = os.environ.get(_CLEARED_MARK)
    report = [
        f"gdbench bench: n={spec.n} iters={spec.iters} repeats={args.repeats}…{args.max_repeats} "
        f"(until ±{args.ci_width:.0%} or {args.row_budget:g} s) dtype={spec.dtype} "
        f"threads={args.threads} (cpus {thread_info['cpus_pinned']})",
        _blas_line("BLAS: ", blas),
        "BLAS environment: " + (" ".join(f"{k}={v}" for k, v in env.items()) or "none set")
        + (f" (cleared {cleared}: the images leave them unset)" if cleared else ""),
        f"load average (1 min) at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs",
        *load_lines,
        "",
    ]
    print("\n".join(report), file=stdout, flush=True)
    if not frameworks:
        print("nothing could run: no framework loaded", file=stdout, flush=True)
        return 3

    results: dict[int, list[Row]] = {}
    bounds: dict[int, Bounds] = {}
    for dim in dims:
        data = problem.make_data(spec, dim)
        ref = problem.reference(data, spec.iters)
        time.sleep(SETTLE_S)
        before = measure_floor(data.X)
        gemv_before = own_gemvs_ms(frameworks, data)
        rows: list[Row] = []
        for name, fw in frameworks.items():
            for variant in fw.variants["cpu"]:
                print(f"{name}/cpu/{variant} d={dim} …", file=log, flush=True)
                time.sleep(SETTLE_S)
                res = _measure(fw, variant, data, ref, spec, sampling)
                ms = res["time_per_iter_s"] * 1e3 if res["status"] == "ok" else None
                rows.append(Row(name, variant, dim, res["status"], ms, res["reason"], list(res["flags"]),
                                res["iqr_rel"], 1 if variant in fw.one_pass_variants else 2))
        # Measured again after the rows, and the lower kept: a floor inflated by a busy moment would flatter
        # every solver, and the stricter reading is the honest one.
        time.sleep(SETTLE_S)
        after = measure_floor(data.X)
        gemv_after = own_gemvs_ms(frameworks, data)
        floor = min(before, after, key=lambda f: f["time_s"])
        gemvs = {k: min(v, gemv_after.get(k, v)) for k, v in gemv_before.items()}
        bounds[dim] = Bounds(floor["time_s"] * 1e3, not floor["call_overhead_bound"], gemvs)
        results[dim] = rows
        readings = (before["time_s"] * 1e3, after["time_s"] * 1e3)
        print("\n".join([*_table(dim, rows, floor, readings, bounds[dim]), ""]), file=stdout, flush=True)

    # Other processes on the same cores stretch every barrier of a multi-threaded solver: say so next to the
    # verdicts, so a FAIL on a busy host is read as such.
    print("\n".join(["targets (ratios from this run):", *checks(results, bounds),
                     f"load average (1 min) at end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs",
                     _blas_line("BLAS loaded by the end: ", threads.blas_info())]),
          file=stdout, flush=True)
    return 0 if any(r.ok for rows in results.values() for r in rows) else 1
