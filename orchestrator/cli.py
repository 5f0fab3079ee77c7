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

from solvers import registry
from solvers.options import DEFAULTS

from .errors import EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK, GdbenchError, Interrupted
from .spec import (
    BackendName,
    DType,
    Flavour,
    SweepOptions,
    parse_cpuset,
    parse_devices,
    parse_dims,
    parse_frameworks,
    parse_gpus,
    parse_labels,
    parse_mem,
    parse_variants,
)

app = typer.Typer(name="gdbench", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Gradient-descent benchmark across numerical frameworks in containers: run, merge, report.")

ComposeOpt = Annotated[Path | None, typer.Option("--compose", help="compose file with the image services "
                                                 "(default: ./compose.yaml, then the gdbench checkout's)")]
DockerOpt = Annotated[str | None, typer.Option("--docker-host", envvar="DOCKER_HOST",
                                               help="Docker daemon URL (default: the environment's)")]
HostsOpt = Annotated[str | None, typer.Option(
    "--hosts", help="comma list of hosts from the hosts file, or all", show_default="local")]
HostsFileOpt = Annotated[Path | None, typer.Option(
    "--hosts-file", help="inventory of Docker engines: one hosts.NAME table per engine", show_default="./hosts.toml")]


def _out() -> Console:
    """Tables that are the command's data go to stdout (wide when piped)."""
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = 160
    return console


def _err() -> Console:
    from .progress import stderr_console

    return stderr_console()


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
        help=f"comma list of {', '.join(DEFAULTS.variants)}", show_default="all")] = None,
    dims: Annotated[str | None, typer.Option(
        help="comma list of dimensions d", show_default=",".join(map(str, DEFAULTS.dims)))] = None,
    n: Annotated[int | None, typer.Option("--n", help="rows of X", show_default=str(DEFAULTS.n))] = None,
    iters: Annotated[int | None, typer.Option(help="gradient steps per run", show_default=str(DEFAULTS.iters))] = None,
    repeats: Annotated[int | None, typer.Option(
        help="timed runs per (dim, variant)", show_default=str(DEFAULTS.repeats))] = None,
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
        "subprocesses in this environment", show_default="docker")] = None,
    resume: Annotated[Path | None, typer.Option(
        help="continue the run in this directory: containers with a (not failed) document there are skipped")] = None,
    no_sync_check: Annotated[bool, typer.Option(
        "--no-sync-check", help="skip the solver's 2x-iterations sync check (quick runs on a busy host)")] = False,
    label: Annotated[list[str] | None, typer.Option(
        "--label", help="extra container label KEY=VALUE (repeatable), e.g. a CI job id")] = None,
    compose: ComposeOpt = None,
    docker_url: DockerOpt = None,
    hosts: HostsOpt = None,
    hosts_file: HostsFileOpt = None,
    registry: Annotated[str | None, typer.Option(
        help="ship images to the hosts through this registry repository (push once, hosts pull) instead of "
        "streaming them from this machine's engine")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="echo every solver stderr line")] = False,
) -> int:
    """Run the sweep: one container per (framework, version, device), all dims inside it; prints the run directory."""
    from .fleet import resolve
    from .planner import resume_options
    from .progress import SweepProgress
    from .rundir import RunDir
    from .runner import run_sweep

    given: dict[str, Any] = {
        "variants": parse_variants(variants) if variants is not None else None,
        "dims": parse_dims(dims) if dims is not None else None,
        "n": n, "iters": iters, "repeats": repeats, "dtype": dtype.value if dtype else None, "seed": seed,
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
    if resume is not None:  # what is not given now comes from the run being resumed
        if out is not None and out != resume:
            raise GdbenchError("give either --out or --resume, not both", fix="--resume DIR writes into DIR")
        opts, _ = resume_options(RunDir(resume), given)
        out = resume
    else:
        opts = SweepOptions.from_dict({**SweepOptions().to_dict(), **{k: v for k, v in given.items() if v is not None}})
    entries, fleet = resolve(hosts, hosts_file, registry, resume)
    code, run_dir = run_sweep(opts, out, resume=resume is not None, compose_path=str(compose) if compose else None,
                              progress=SweepProgress(verbose=verbose), docker_url=docker_url, hosts=entries,
                              fleet=fleet, registry=fleet["registry"] if fleet else None)
    typer.echo(str(run_dir))
    return code


@app.command("merge")
def merge_command(
    runs: Annotated[list[Path], typer.Argument(help="run directories or merged .parquet/.csv files", exists=True)],
    out: Annotated[Path, typer.Option("--out", "-o", help="directory for results.parquet and results.csv")],
) -> int:
    """Merge run directories into one table (parquet keeps per-repeat lists; CSV has them as JSON)."""
    from .merge import load_runs, write_merged

    df = load_runs(runs)
    if df.empty:
        raise GdbenchError(f"no valid result documents in {', '.join(map(str, runs))}")
    parquet, csv = write_merged(df, out)
    _err().print(f"merged {len(df)} rows from {len(runs)} source(s)")
    typer.echo(f"{parquet}\n{csv}")
    return EXIT_OK


@app.command("doctor")
def doctor_command(
    compose: ComposeOpt = None,
    docker_url: DockerOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the checks as JSON")] = False,
) -> int:
    """Check Docker, the NVIDIA runtime, host GPUs and the images; each problem comes with its fix."""
    from rich.table import Table

    from .doctor import blockers, diagnose

    checks = diagnose(str(compose) if compose else None, docker_url)
    if as_json:
        typer.echo(json.dumps([c.to_dict() for c in checks], indent=2))
    else:
        style = {"ok": "green", "warning": "yellow", "blocker": "bold red", "info": "cyan"}
        table = Table(title="gdbench doctor", title_justify="left")
        for col in ("check", "status", "detail", "fix"):
            table.add_column(col, overflow="fold")
        for c in checks:
            table.add_row(escape(c.name), f"[{style[c.level]}]{c.level}[/]", escape(c.detail), escape(c.fix or ""))
        _out().print(table)
    bad = blockers(checks)
    if bad:
        listed = "; ".join(f"{c.name}: fix with {c.fix}" for c in bad)
        _err().print(f"[bold red]{len(bad)} blocker(s)[/]: " + escape(listed))
        return 1
    return EXIT_OK


class _ImagesGroup(typer.core.TyperGroup):
    """``gdbench images [NAMES…] [--build]`` stays the listing: anything that is not a subcommand goes to ``list``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = ["list", *args]
        return super().parse_args(ctx, args)


images_app = typer.Typer(cls=_ImagesGroup, no_args_is_help=False, add_completion=False,
                         help="The declared images: list them, add or remove a framework version, build them.")
app.add_typer(images_app, name="images")
PythonOpt = Annotated[str | None, typer.Option("--python", help="the image's Python: 3.11 (bookworm base) or 3.13 "
                                               "(trixie base)", show_default="3.11 where the version supports it")]
VersionArg = Annotated[str, typer.Argument(help="FRAMEWORK==VERSION, e.g. numpy==1.26.4", show_default=False)]
FlavourOpt = Annotated[Flavour | None, typer.Option(help="cpu or cuda", show_default="cpu (cuda for cupy)")]


@images_app.command("list")
def images_command(
    build: Annotated[bool, typer.Option("--build", help="build the named images (default: every CPU image) "
                                                        "from compose's build sections")] = False,
    names: Annotated[list[str] | None, typer.Argument(
        help="frameworks, FRAMEWORK@VERSION or compose services, e.g. numpy jax-gpu numpy@1.26.4",
        show_default=False)] = None,
    flavour: Annotated[Flavour | None, typer.Option(help="with framework names: cpu or cuda images")] = None,
    compose: ComposeOpt = None,
    docker_url: DockerOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the list as JSON")] = False,
) -> int:
    """List every declared image, built or not (version, Python, default?, size), or build them with --build."""
    from .compose import load_compose
    from .dockerhost import DockerEngine
    from .images import build as build_images
    from .images import image_rows, select_services

    cf = load_compose(str(compose) if compose else None)
    selected = None
    if build or names:
        selected = select_services(cf, list(names or []), flavour.value if flavour else None)
    engine = DockerEngine.connect(docker_url)
    if build:
        err = _err()
        build_images(engine, selected or [], lambda line: err.print(line, markup=False))
    rows = image_rows(cf, engine)
    if selected is not None:
        rows = [r for r in rows if r["service"] in {s.name for s in selected}]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return EXIT_OK
    from rich.table import Table

    table = Table(title=f"gdbench images ({cf.path})", title_justify="left")
    for col in ("service", "tag", "version", "python", "default", "built", "size", "cuda", "id"):
        table.add_column(col)
    for r in rows:
        table.add_row(escape(r["service"]), escape(r["tag"]), escape(r["version"] or "-"), escape(r["python"]),
                      "yes" if r["default"] else "", "[green]yes[/]" if r["built"] else "[red]no[/]",
                      f"{r['size_bytes'] / 1e9:.2f} GB" if r["size_bytes"] else "-",
                      r["cuda_version"] or "-", (r["id"] or "-").removeprefix("sha256:")[:12])
    _out().print(table)
    return EXIT_OK


@images_app.command("add")
def images_add_command(pin: VersionArg, flavour: FlavourOpt = None, python: PythonOpt = None,
                       compose: ComposeOpt = None) -> int:
    """Declare another version: check it on PyPI, resolve its hash lock, add its service to compose.yaml."""
    from .compose import load_compose
    from .images import add_version

    err = _err()
    lines = add_version(pin, flavour.value if flavour else None, python, load_compose(str(compose) if compose
                        else None), lambda line: err.print(line, markup=False))
    typer.echo("\n".join(lines))
    return EXIT_OK


@images_app.command("remove")
def images_remove_command(pin: VersionArg, flavour: FlavourOpt = None, python: PythonOpt = None,
                          compose: ComposeOpt = None) -> int:
    """Undo ``images add`` exactly: its compose service, its .in and its lock (a built image stays)."""
    from .compose import load_compose
    from .images import remove_version

    typer.echo(remove_version(pin, flavour.value if flavour else None, python,
                              load_compose(str(compose) if compose else None)))
    return EXIT_OK


@images_app.command("build")
def images_build_command(
    names: Annotated[list[str] | None, typer.Argument(
        help="services, frameworks or FRAMEWORK@VERSION / FRAMEWORK@all", show_default="every CPU service")] = None,
    flavour: Annotated[Flavour | None, typer.Option(help="with framework names: cpu or cuda images")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="rebuild every layer")] = False,
    compose: ComposeOpt = None,
) -> int:
    """Build declared images as make images does: base, wheel, the lock's wheelhouse, then the offline build."""
    from .compose import load_compose
    from .images import build_declared, select_services

    cf = load_compose(str(compose) if compose else None)
    build_declared(cf, select_services(cf, list(names or []), flavour.value if flavour else None), no_cache)
    return EXIT_OK


@app.command("clean")
def clean_command(docker_url: DockerOpt = None, hosts: HostsOpt = None, hosts_file: HostsFileOpt = None) -> int:
    """Remove every container gdbench labelled (left behind by a killed orchestrator or a lost host)."""
    from . import inventory
    from .dockerhost import DockerEngine

    if hosts is None and hosts_file is None:
        removed = DockerEngine.connect(docker_url).remove_containers()
        _err().print(f"removed {removed} container(s)")
        return EXIT_OK
    for entry in inventory.select(inventory.load(hosts_file), hosts or "all"):
        removed = DockerEngine.for_host(entry).remove_containers()
        _err().print(f"{entry.name}: removed {removed} container(s)")
    return EXIT_OK


hosts_app = typer.Typer(no_args_is_help=True, help="The Docker engines of hosts.toml.")


@hosts_app.command("check")
def hosts_check_command(
    hosts: HostsOpt = None,
    hosts_file: HostsFileOpt = None,
    compose: ComposeOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the rows as JSON")] = False,
) -> int:
    """One row per host: reachable, engine, OS/kernel, CPUs, NVIDIA runtime, GPUs, driver, CUDA, images."""
    from rich.table import Table

    from . import inventory
    from .compose import load_compose
    from .hostcheck import check_hosts, summary

    entries = inventory.select(inventory.load(hosts_file), hosts or "all")
    rows = check_hosts(entries, load_compose(str(compose) if compose else None))
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in rows], indent=2))
    else:
        table = Table(title="gdbench hosts check", title_justify="left")
        for col in ("host", "reachable", "engine", "OS / kernel", "arch", "CPU", "NVIDIA runtime", "GPUs",
                    "driver", "CUDA (max)", "images"):
            table.add_column(col, overflow="fold")
        for r in rows:
            table.add_row(escape(r.name), "[green]yes[/]" if r.reachable else "[red]no[/]", escape(r.engine),
                          escape(r.os), escape(r.architecture), escape(r.cpu), escape(r.nvidia_runtime),
                          escape(r.gpus), escape(r.driver), escape(r.cuda), escape(summary(r)))
        _out().print(table)
        err = _err()
        for r in rows:
            for p in r.problems:
                err.print(f"{r.name}: {p.level}: {p.name}: {p.detail}" + (f" — fix: {p.fix}" if p.fix else ""),
                          markup=False, soft_wrap=True)
    return 1 if any(p.level == "blocker" for r in rows for p in r.problems) else EXIT_OK


app.add_typer(hosts_app, name="hosts")

from .gpuclocks import gpu_app  # noqa: E402  (its commands parse options and call gpuclocks' functions)

app.add_typer(gpu_app, name="gpu")

_LAZY = ("report", "compare")


def _register_report_commands(argv: list[str]) -> None:
    """Add ``report``/``compare`` (heavy imports: matplotlib, scipy) only when they may be needed."""
    wanted = not argv or argv[0] in _LAZY or argv[0].startswith("-")
    if not wanted or any(c.name in _LAZY for c in app.registered_commands):
        return
    try:
        from .cli_report import compare_command, report_command
    except ImportError as exc:
        if argv and argv[0] in _LAZY:
            raise GdbenchError(f"gdbench {argv[0]} is unavailable: {exc}",
                               fix="pip install -e '.[orchestrator]'") from exc
        return
    app.command("report")(report_command)
    app.command("compare")(compare_command)


def _error_line(err: Console, message: str) -> None:
    err.print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: one line (with the fix) for every refusal, no traceback."""
    from typer._click.exceptions import ClickException

    args = list(sys.argv[1:] if argv is None else argv)
    err = _err()
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
