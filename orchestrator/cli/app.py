"""``gdbench``: run the solver images across frameworks and devices, merge, report and compare.

The commands only parse options and call plain functions (``runner``, ``doctor``, ``images``, ``merge``).
Data goes to stdout; progress, diagnostics and tables meant for people go to stderr. Every refusal is one
line with its fix and a non-zero exit; a traceback means a bug.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.core
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from orchestrator.cli.common import (
    ComposeOpt,
    DockerOpt,
    HostsFileOpt,
    HostsOpt,
    ProjectOpt,
    compose_arg,
    err_console,
    out_console,
)
from orchestrator.errors import EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK, GdbenchError, Interrupted
from orchestrator.sweep.spec import (
    BackendName,
    DType,
    Flavour,
    parse_cpuset,
    parse_devices,
    parse_dims,
    parse_frameworks,
    parse_gpus,
    parse_labels,
    parse_mem,
    parse_variants,
)
from solvers import registry
from solvers.base import ALL_VARIANTS
from solvers.options import DEFAULTS

app = typer.Typer(name="gdbench", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Gradient-descent benchmark across numerical frameworks in containers: run, merge, report.")

@app.command("run")
def run_command(
    frameworks: Annotated[str | None, typer.Option(
        "--frameworks", "-f", help=f"comma list of {', '.join(registry.FRAMEWORKS)}, or all; FRAMEWORK@VERSION "
        "runs a declared version (gdbench images lists them), FRAMEWORK@all every one",
        show_default="all")] = None,
    devices: Annotated[str | None, typer.Option(
        "--devices", "-d", help="comma list of cpu, gpu, auto (auto: the GPU where host and framework can, "
        "else the CPU)", show_default="cpu,auto")] = None,
    variants: Annotated[str | None, typer.Option(
        help=f"comma list of {', '.join(ALL_VARIANTS)} (extras such as compiled run only when named; a "
        "framework without one answers unavailable)", show_default=",".join(DEFAULTS.variants))] = None,
    dims: Annotated[str | None, typer.Option(
        help="comma list of dimensions d", show_default=",".join(map(str, DEFAULTS.dims)))] = None,
    n: Annotated[int | None, typer.Option("--n", help="rows of X", show_default=str(DEFAULTS.n))] = None,
    iters: Annotated[int | None, typer.Option(help="gradient steps per run", show_default=str(DEFAULTS.iters))] = None,
    repeats: Annotated[int | None, typer.Option(
        help="timed runs per (dim, variant), at least; more until the median's interval is narrow",
        show_default=str(DEFAULTS.repeats))] = None,
    max_repeats: Annotated[int | None, typer.Option(
        help="timed runs per (dim, variant), at most (equal to --repeats: exactly that many)",
        show_default=str(DEFAULTS.max_repeats))] = None,
    ci_width: Annotated[float | None, typer.Option(
        help="stop adding repeats once the median's 95% interval is within ± this fraction of it",
        show_default=str(DEFAULTS.ci_width))] = None,
    row_budget: Annotated[float | None, typer.Option(
        help="stop adding repeats once a row's repeats have taken this many seconds",
        show_default=str(DEFAULTS.row_budget_s))] = None,
    dtype: Annotated[DType | None, typer.Option(show_default=DEFAULTS.dtype)] = None,
    seed: Annotated[int | None, typer.Option(show_default=str(DEFAULTS.seed))] = None,
    lr: Annotated[float | None, typer.Option(help="learning rate", show_default=str(DEFAULTS.lr))] = None,
    threads: Annotated[int | None, typer.Option(
        help="threads per framework (same for all)", show_default="min(2, cpuset size)")] = None,
    cpuset: Annotated[str | None, typer.Option(
        help="host CPUs for every container, e.g. 0-3", show_default="the first --threads CPUs")] = None,
    flavour: Annotated[Flavour | None, typer.Option(
        help="image flavour", show_default="cpu images for CPU runs, cuda images for GPU runs")] = None,
    gpus: Annotated[str | None, typer.Option(
        help="GPUs a GPU container gets: all, or a comma list of indices or UUIDs (nvidia-smi -L)",
        show_default="all")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="run directory", show_default="results/<run id>")] = None,
    timeout: Annotated[float | None, typer.Option(
        help="seconds per container before it is killed", show_default="3600")] = None,
    mem_limit: Annotated[str | None, typer.Option(help="memory per container, no swap", show_default="4g")] = None,
    pids_limit: Annotated[int | None, typer.Option(
        help="processes + threads per container", show_default="4096")] = None,
    backend: Annotated[BackendName | None, typer.Option(
        help="docker: one hardened container per (framework, device); local: python -m solvers "
        "subprocesses in this environment; slurm: containers as steps of an exclusive Slurm node "
        "(--backend-opt partition=… constraint=…)", show_default="docker")] = None,
    backend_opt: Annotated[list[str] | None, typer.Option(
        "--backend-opt", help="KEY=VALUE of the backend (repeatable), e.g. url=ssh://me@gpu1 for docker, "
        "partition=gpu for slurm; kept for --resume. With --hosts, each host's table holds its keys")] = None,
    resume: Annotated[Path | None, typer.Option(
        help="continue the run in this directory: containers with a (not failed) document there are skipped")] = None,
    no_sync_check: Annotated[bool, typer.Option(
        "--no-sync-check", help="skip the solver's 2x-iterations sync check (quick runs on a busy host)")] = False,
    label: Annotated[list[str] | None, typer.Option(
        "--label", help="extra container label KEY=VALUE (repeatable), e.g. a CI job id")] = None,
    compose: ComposeOpt = None,
    project: ProjectOpt = None,
    docker_url: DockerOpt = None,
    hosts: HostsOpt = None,
    hosts_file: HostsFileOpt = None,
    registry: Annotated[str | None, typer.Option(
        help="ship images to the hosts through this registry repository (push once, hosts pull) instead of "
        "streaming them from this machine's engine")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="echo every solver stderr line")] = False,
) -> int:
    """Run the sweep: one container per (framework, version, device), all dims inside it; prints the run directory."""
    from orchestrator.sweep.progress import SweepProgress
    from orchestrator.sweep.request import build_request
    from orchestrator.sweep.runner import run_sweep

    given: dict[str, Any] = {
        "variants": parse_variants(variants) if variants is not None else None,
        "dims": parse_dims(dims) if dims is not None else None,
        "n": n, "iters": iters, "repeats": repeats, "max_repeats": max_repeats,
        "ci_width": ci_width, "row_budget_s": row_budget, "dtype": dtype.value if dtype else None, "seed": seed,
        "lr": lr, "threads": threads, "cpuset": parse_cpuset(cpuset) if cpuset is not None else None,
        "flavour": flavour.value if flavour else None, "timeout_s": timeout,
        "gpus": parse_gpus(gpus) if gpus is not None else None,
        "mem_limit": parse_mem(mem_limit) if mem_limit is not None else None, "pids_limit": pids_limit,
        "sync_check": False if no_sync_check else None,
        "frameworks": parse_frameworks(frameworks) if frameworks is not None else None,
        "devices": parse_devices(devices) if devices is not None else None,
        "backend": backend.value if backend else None,
        "labels": parse_labels(label) if label else None,
    }
    request = build_request(given, out=out, resume=resume, hosts=hosts, hosts_file=hosts_file,
                            registry_repo=registry, backend_opts=backend_opt, compose=compose_arg(compose, project),
                            docker_url=docker_url)
    code, run_dir = run_sweep(request, progress=SweepProgress(verbose=verbose))
    typer.echo(str(run_dir))
    return code


@app.command("merge")
def merge_command(
    runs: Annotated[list[Path], typer.Argument(help="run directories or merged .parquet/.csv files", exists=True)],
    out: Annotated[Path, typer.Option("--out", "-o", help="directory for results.parquet and results.csv")],
) -> int:
    """Merge run directories into one table (parquet keeps per-repeat lists; CSV has them as JSON)."""
    from orchestrator.results.merge import load_runs, write_merged

    df = load_runs(runs)
    if df.empty:
        raise GdbenchError(f"no valid result documents in {', '.join(map(str, runs))}")
    parquet, csv = write_merged(df, out)
    err_console().print(f"merged {len(df)} rows from {len(runs)} source(s)")
    typer.echo(f"{parquet}\n{csv}")
    return EXIT_OK


@app.command("doctor")
def doctor_command(
    compose: ComposeOpt = None,
    project: ProjectOpt = None,
    docker_url: DockerOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the checks as JSON")] = False,
) -> int:
    """Check the project directory, Docker, the NVIDIA runtime, host GPUs and the images; each problem comes with
    its fix."""
    from rich.table import Table

    from orchestrator.hosts.doctor import blockers, diagnose

    checks = diagnose(str(compose) if compose else None, docker_url, project)
    if as_json:
        typer.echo(json.dumps([c.to_dict() for c in checks], indent=2))
    else:
        style = {"ok": "green", "warning": "yellow", "blocker": "bold red", "info": "cyan"}
        table = Table(title="gdbench doctor", title_justify="left")
        for col in ("check", "status", "detail", "fix"):
            table.add_column(col, overflow="fold")
        for c in checks:
            table.add_row(escape(c.name), f"[{style[c.level]}]{c.level}[/]", escape(c.detail), escape(c.fix or ""))
        out_console().print(table)
    bad = blockers(checks)
    if bad:
        listed = "; ".join(f"{c.name}: fix with {c.fix}" for c in bad)
        err_console().print(f"[bold red]{len(bad)} blocker(s)[/]: " + escape(listed))
        return 1
    return EXIT_OK


@app.command("init")
def init_command(
    directory: Annotated[Path, typer.Argument(help="a new or empty directory", show_default=False)],
) -> int:
    """Make a project directory of your own from this gdbench's files (compose.yaml, image recipes and locks,
    build scripts); use it with --project DIR or GDBENCH_PROJECT=DIR. Prints its path."""
    from orchestrator.project import init

    typer.echo(str(init(directory, note=lambda line: err_console().print(line, markup=False)).root))
    return EXIT_OK


@app.command("clean")
def clean_command(docker_url: DockerOpt = None, hosts: HostsOpt = None, hosts_file: HostsFileOpt = None) -> int:
    """Remove every container gdbench labelled, and cancel its Slurm jobs (left by a killed orchestrator or a lost
    host)."""
    from orchestrator.backends.docker.engine import DockerEngine
    from orchestrator.hosts import inventory

    if hosts is None and hosts_file is None:
        removed = DockerEngine.connect(docker_url).remove_containers()
        err_console().print(f"removed {removed} container(s)")
        return EXIT_OK
    from orchestrator.backends.registry import clean_host

    for entry in inventory.select(inventory.load(hosts_file), hosts or "all"):
        err_console().print(f"{entry.name}: {clean_host(entry)}")
    return EXIT_OK


from orchestrator.cli.hosts import hosts_app  # noqa: E402  (gdbench hosts …)
from orchestrator.cli.images import images_app  # noqa: E402  (gdbench images …)

app.add_typer(images_app, name="images")
app.add_typer(hosts_app, name="hosts")

from orchestrator.cli.gpu import gpu_app  # noqa: E402  (its commands parse options and call gpuclocks' functions)

app.add_typer(gpu_app, name="gpu")

from orchestrator.cli.bisect import bisect_command  # noqa: E402  (its logic is orchestrator.bisect)

app.command("bisect")(bisect_command)

_LAZY = ("report", "compare", "publish")


def _register_report_commands(argv: list[str]) -> None:
    """Add ``report``/``compare``/``publish`` (heavy imports: matplotlib, pandas) only when they may be needed."""
    wanted = not argv or argv[0] in _LAZY or argv[0].startswith("-")
    if not wanted or any(c.name in _LAZY for c in app.registered_commands):
        return
    try:
        from orchestrator.cli.report import compare_command, publish_command, report_command
    except ImportError as exc:
        if argv and argv[0] in _LAZY:
            raise GdbenchError(f"gdbench {argv[0]} is unavailable: {exc}",
                               fix="pip install -e '.[orchestrator]'") from exc
        return
    app.command("report")(report_command)
    app.command("compare")(compare_command)
    app.command("publish")(publish_command)


def _error_line(err: Console, message: str) -> None:
    err.print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: one line (with the fix) for every refusal, no traceback."""
    from typer._click.exceptions import ClickException

    args = list(sys.argv[1:] if argv is None else argv)
    err = err_console()
    try:
        _register_report_commands(args)
        rv = typer.main.get_command(app).main(args=args, prog_name="gdbench", standalone_mode=False)
    except GdbenchError as exc:
        _error_line(err, exc.message + (f" — fix: {exc.fix}" if exc.fix else ""))
        return exc.exit_code
    except ClickException as exc:
        _error_line(err, f"{exc.format_message()} (see: gdbench {args[0] if args else ''} --help)")
        return exc.exit_code if exc.exit_code else EXIT_INVALID
    except (KeyboardInterrupt, Interrupted):  # a signal outside the sweep's own guard
        return EXIT_INTERRUPTED
    return rv if isinstance(rv, int) else EXIT_OK
