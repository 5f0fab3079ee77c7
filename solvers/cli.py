"""``python -m solvers``: run one framework across dimensions and print ONE JSON document to stdout.

Exit codes (one per class of outcome, so a caller can branch without parsing):

====  ===========================================================================
0     every (dim, variant) ran and passed its checks
1     at least one (dim, variant) failed: wrong answer, failed sync check, crash
2     invalid input: unknown framework/variant/device, dims ≤ 0, n < 2, iters < 1 …
3     unavailable: framework not installed, device not visible, variant not offered
4     internal error in the harness itself (a bug: please report it)
====  ===========================================================================
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import Any, NoReturn, TextIO

from . import options, registry, threads
from .base import DEVICES, VARIANTS, Framework, Unavailable
from .options import DEFAULTS, OptionError, default_threads
from .problem import ProblemSpec
from .timing import Sampling

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_UNAVAILABLE, EXIT_INTERNAL = 0, 1, 2, 3, 4


class InvalidInput(ValueError):
    """Arguments that can never run, whatever is installed."""


def _csv(values: tuple[object, ...]) -> str:
    return ",".join(str(v) for v in values)


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so bad input still yields a JSON document."""

    def error(self, message: str) -> NoReturn:
        raise InvalidInput(message)


def _add_sampling(parser: argparse.ArgumentParser) -> None:
    """The adaptive-repeats options of ``run`` and ``bench`` (``timing.Sampling``; defaults in ``options``)."""
    parser.add_argument("--repeats", type=int, default=DEFAULTS.repeats,
                        help="timed runs per (dim, variant), at least; more until the interval is narrow")
    parser.add_argument("--max-repeats", type=int, default=DEFAULTS.max_repeats,
                        help="timed runs per (dim, variant), at most (= --repeats: exactly that many)")
    parser.add_argument("--ci-width", type=float, default=DEFAULTS.ci_width,
                        help="stop once the median's 95%% interval is within ± this fraction of it")
    parser.add_argument("--row-budget", type=float, default=DEFAULTS.row_budget_s,
                        help="stop adding repeats once they have taken this many seconds")


def sampling(args: argparse.Namespace) -> Sampling:
    """The checked ``Sampling`` of parsed ``run``/``bench`` arguments (``InvalidInput`` if no rule)."""
    try:
        return Sampling.checked(args.repeats, args.max_repeats, args.ci_width, args.row_budget)
    except OptionError as exc:
        raise InvalidInput(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m solvers", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="benchmark one framework on one device over a list of dimensions")
    run.add_argument("--framework", required=True, help=f"one of: {', '.join(registry.FRAMEWORKS)}")
    run.add_argument("--device", default="cpu", help=f"one of: {', '.join(DEVICES)}")
    run.add_argument("--variant", default=_csv(DEFAULTS.variants), help=f"comma list of: {', '.join(VARIANTS)}")
    run.add_argument("--dims", default=_csv(DEFAULTS.dims), help="comma list of dimensions d")
    run.add_argument("--n", type=int, default=DEFAULTS.n, help="rows of X")
    run.add_argument("--iters", type=int, default=DEFAULTS.iters, help="gradient steps per run")
    _add_sampling(run)
    run.add_argument("--dtype", default=DEFAULTS.dtype, help="float64 or float32")
    run.add_argument("--seed", type=int, default=DEFAULTS.seed)
    run.add_argument("--lr", type=float, default=DEFAULTS.lr, help="learning rate")
    run.add_argument("--threads", type=int, default=default_threads())
    run.add_argument("--no-sync-check", action="store_true", help="skip the 2x-iterations sync check")
    run.add_argument("--no-floor", action="store_true", help="skip measuring the memory floor at each d")
    run.add_argument("--out", help="write the document to this file instead of stdout")
    lst = sub.add_parser("list", help="print installed frameworks and the devices each sees (JSON)")
    lst.add_argument("--threads", type=int, default=1)
    sub.add_parser("schema", help="print the result document's JSON schema")
    bench = sub.add_parser("bench", help="every installed framework x variant at d=2 and d=100 vs a gemv floor")
    bench.add_argument("--dims", default=_csv(DEFAULTS.bench_dims))
    bench.add_argument("--n", type=int, default=DEFAULTS.n)
    bench.add_argument("--iters", type=int, default=DEFAULTS.iters)
    _add_sampling(bench)
    bench.add_argument("--threads", type=int, default=default_threads())
    bench.add_argument("--frameworks", default=",".join(registry.FRAMEWORKS))
    bench.add_argument("--keep-blas-env", action="store_true",
                       help="measure with OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE as set (the images leave them unset)")
    return parser


def _spec(args: argparse.Namespace) -> ProblemSpec:
    if args.framework not in registry.REGISTRY:
        raise InvalidInput(f"unknown framework {args.framework!r}; choose from {', '.join(registry.FRAMEWORKS)}")
    if args.device not in DEVICES:
        raise InvalidInput(f"unknown device {args.device!r}; choose from {', '.join(DEVICES)}")
    try:
        options.check_dtype(args.dtype)
        for name in ("n", "iters", "threads"):
            options.check_int(name, getattr(args, name))
        options.check_lr(args.lr)
    except OptionError as exc:
        raise InvalidInput(str(exc)) from None
    args.sampling = sampling(args)
    return ProblemSpec(n=args.n, iters=args.iters, lr=args.lr, dtype=args.dtype, seed=args.seed)


def _document(args: argparse.Namespace, status: str, error: str | None, results: list[dict[str, Any]],
              provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    from . import metadata
    from .schema import SCHEMA_VERSION, problem_record

    get = lambda name, default=None: getattr(args, name, default)  # noqa: E731
    dims = [d for d in (get("dims_list") or []) if isinstance(d, int)]
    return {
        "schema_version": SCHEMA_VERSION,
        "framework": str(get("framework", "")),
        "device": str(get("device", "")),
        "status": status,
        "error": error,
        "problem": problem_record(n=get("n", 0), dims=dims, iters=get("iters", 0), repeats=get("repeats", 0),
                                  dtype=str(get("dtype", "")), seed=get("seed", 0), lr=get("lr", 0.0),
                                  sampling=get("sampling").record() if get("sampling") else None),
        "provenance": provenance
        or metadata.collect({"name": str(get("framework", "")), "version": None}, {}, None, gpu=False),
        "results": results,
    }


def _emit(doc: dict[str, Any], out_path: str | None, stdout: TextIO) -> None:
    from .schema import dumps, write_atomic

    text = dumps(doc) + "\n"
    if out_path:
        write_atomic(out_path, text)
    else:
        stdout.write(text)
        stdout.flush()


def _not_run_rows(args: argparse.Namespace, status: str, reason: str) -> list[dict[str, Any]]:
    from .schema import not_run_row

    variants = getattr(args, "variants_list", None) or list(VARIANTS)
    return [not_run_row(d, v, status, reason) for d in getattr(args, "dims_list", None) or [] for v in variants]


def run(args: argparse.Namespace, stdout: TextIO) -> int:
    """The ``run`` command; every outcome, even bad input, ends as one valid document."""
    from . import metadata, nvml
    from .floor import measure_floor
    from .problem import make_data, reference
    from .schema import not_run_row
    from .timing import measure

    try:
        try:
            args.dims_list = options.dims(args.dims)
            args.variants_list = options.variants(args.variant)
        except OptionError as exc:
            raise InvalidInput(str(exc)) from None
        spec = _spec(args)
    except InvalidInput as exc:
        _log(f"error: {exc}")
        _emit(_document(args, "invalid", str(exc), _not_run_rows(args, "invalid", str(exc))), args.out, stdout)
        return EXIT_INVALID

    thread_info = threads.apply(args.threads)
    try:
        fw: Framework = registry.load(args.framework)
        if args.device == "gpu" and "gpu" not in fw.devices():
            raise Unavailable(f"GPU requested but {fw.gpu_unavailable_reason()}; run with --device cpu "
                              "or give the process a GPU (docker run --gpus all …)")
        if args.device not in fw.variants:
            raise Unavailable(f"{args.framework} has no {args.device} backend")
    except Unavailable as exc:
        _log(f"unavailable: {exc}")
        _emit(_document(args, "unavailable", str(exc), _not_run_rows(args, "unavailable", str(exc))),
              args.out, stdout)
        return EXIT_UNAVAILABLE

    thread_info["framework"] = fw.configure_threads(args.threads)
    blas = threads.limit_blas(args.threads)
    gpu = args.device == "gpu"
    fw_info = {"name": fw.name, "version": fw.version(), **fw.details(args.device)}
    provenance = metadata.collect(fw_info, thread_info, blas, gpu=gpu)
    gpu_state = metadata.collect_gpu_state if gpu else (lambda: None)
    gaps = fw.api_gaps()  # variants this version's API cannot run: unavailable with the reason, never attempted
    offered = tuple(v for v in fw.variants[args.device] if v not in gaps)

    results: list[dict[str, Any]] = []
    floors: list[dict[str, Any]] = []
    for d in args.dims_list:
        data = make_data(spec, d)
        ref = reference(data, spec.iters)
        if not args.no_floor:
            floors.append(measure_floor(data.X))  # same process, same threads as the rows at this d
        for variant in args.variants_list:
            if variant not in offered:
                reason = fw.variant_unavailable_reason(args.device, variant)
                results.append(not_run_row(d, variant, "unavailable", reason))
                continue
            _log(f"{fw.name}/{args.device}/{variant} d={d} …")
            fw.reset_peak_device_memory(args.device)
            simulated = fw.simulated(args.device)
            row = measure(lambda v=variant: fw.make_solver(args.device, v), data, ref, variant=variant,
                          iters=spec.iters, sampling=args.sampling, dtype=spec.dtype, gpu_state=gpu_state,
                          check_sync=not args.no_sync_check, simulated=simulated,
                          sampler=nvml.open_window if gpu and not simulated else None)
            row["peak_device_bytes"] = fw.peak_device_memory(args.device) if gpu else None
            row["kernel_path"] = _kernel_path(fw, args.device, variant) if row["status"] != "unavailable" else None
            _log(f"  {row['status']}: " + (f"{row['time_per_iter_s'] * 1e3:.4f} ms/iter, err {row['max_rel_error']:.1e}"
                                             if row["status"] == "ok" else str(row["reason"])))
            results.append(row)

    statuses = {r["status"] for r in results}
    status = "ok" if statuses <= {"ok"} else "failed" if "failed" in statuses else "unavailable"
    if "simulated" in statuses and statuses <= {"ok", "simulated"}:
        status = "simulated"  # every row ran and passed its checks, under a simulator: no timing exists
    provenance["blas"] = threads.blas_info()  # every BLAS that loaded, late ones too (numba loop: SciPy's)
    doc = _document(args, status, None, results, provenance)
    doc["floor"] = floors if not args.no_floor else None
    _emit(doc, args.out, stdout)
    return {"ok": EXIT_OK, "simulated": EXIT_OK, "failed": EXIT_FAILED}.get(status, EXIT_UNAVAILABLE)


def _kernel_path(fw: Framework, device: str, variant: str) -> str | None:
    """What ``fw.kernel_path`` reads, or why it could not: a diagnostic, never a reason to lose the row."""
    try:
        return fw.kernel_path(device, variant)
    except Exception as exc:
        return f"not read ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})"


def list_frameworks(args: argparse.Namespace, stdout: TextIO) -> int:
    """Which frameworks import here and which devices each sees."""
    import json

    threads.apply(args.threads)
    out: dict[str, Any] = {}
    for name in registry.FRAMEWORKS:
        try:
            fw = registry.load(name)
            out[name] = {"installed": True, "version": fw.version(), "devices": fw.devices(),
                         "variants": {k: list(v) for k, v in fw.variants.items()}}
        except Unavailable as exc:
            out[name] = {"installed": False, "reason": str(exc)}
        except Exception as exc:  # a broken install is reported, not fatal to the listing
            out[name] = {"installed": False, "reason": f"{type(exc).__name__}: {exc}"}
    stdout.write(json.dumps(out, indent=2) + "\n")
    return EXIT_OK


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point. Stdout is reserved for the document: fd 1 is pointed at stderr while frameworks run."""
    real_stdout = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except InvalidInput as exc:
        _log(f"error: {exc}\n{parser.format_usage()}")
        ns = argparse.Namespace()
        _emit(_document(ns, "invalid", str(exc), []), None, real_stdout)
        return EXIT_INVALID
    try:
        if args.command == "run":
            return run(args, real_stdout)
        if args.command == "list":
            return list_frameworks(args, real_stdout)
        if args.command == "schema":
            import json

            from .schema import DOCUMENT

            real_stdout.write(json.dumps(DOCUMENT, indent=2) + "\n")
            return EXIT_OK
        from .bench import bench

        return bench(args, real_stdout)
    except Exception:
        _log("internal error in gdbench (please report):\n" + traceback.format_exc())
        return EXIT_INTERNAL
