"""``gdbench bisect``: options parsed and checked here, the search and its sweeps in ``orchestrator.bisect``.

The command parses options, checks them with ``orchestrator.bisect.plan`` (every refusal before anything is
declared or built) and calls ``orchestrator.bisect.session.run_bisect``; the path goes to stdout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.common import ComposeOpt, DockerOpt, err_console
from orchestrator.errors import EXIT_INTERRUPTED, EXIT_OK, InvalidOptions
from orchestrator.results.noise import ALPHA, MIN_EFFECT
from orchestrator.sweep.spec import Flavour, parse_cpuset
from solvers import registry
from solvers.options import DEFAULTS


def bisect_command(
    framework: Annotated[str | None, typer.Argument(
        help=f"one of {', '.join(registry.FRAMEWORKS)}", show_default=False)] = None,
    good: Annotated[str | None, typer.Option("--good", help="a release whose cell is fast (older)")] = None,
    bad: Annotated[str | None, typer.Option("--bad", help="a release whose cell is slower (newer)")] = None,
    cell: Annotated[list[str] | None, typer.Option(
        "--cell", help="device,variant,d (repeatable): bad when any cell is slower", show_default="cpu,loop,2")] = None,
    flavour: Annotated[Flavour | None, typer.Option(
        help="image flavour", show_default="cpu; cuda for a gpu cell")] = None,
    python: Annotated[str | None, typer.Option(
        "--python", help="the images' Python (3.11 or 3.13)", show_default="the good release's base")] = None,
    pre: Annotated[bool, typer.Option("--pre", help="search pre-releases too")] = False,
    keep: Annotated[bool, typer.Option("--keep", help="keep the versions it declared in compose.yaml")] = False,
    alpha: Annotated[float | None, typer.Option(
        help="significance level of the noise rule", show_default=str(ALPHA))] = None,
    min_effect: Annotated[float | None, typer.Option(
        help="smallest slowdown that counts (0.05: 5 %)", show_default=str(MIN_EFFECT))] = None,
    max_factor: Annotated[int | None, typer.Option(
        help="an inconclusive release is measured again with ×2, ×4 … up to this many times the repeats",
        show_default="4")] = None,
    n: Annotated[int | None, typer.Option("--n", help="rows of X", show_default=str(DEFAULTS.n))] = None,
    iters: Annotated[int | None, typer.Option(help="gradient steps", show_default=str(DEFAULTS.iters))] = None,
    repeats: Annotated[int | None, typer.Option(show_default=str(DEFAULTS.repeats))] = None,
    max_repeats: Annotated[int | None, typer.Option(show_default=str(DEFAULTS.max_repeats))] = None,
    ci_width: Annotated[float | None, typer.Option(show_default=str(DEFAULTS.ci_width))] = None,
    row_budget: Annotated[float | None, typer.Option(show_default=str(DEFAULTS.row_budget_s))] = None,
    threads: Annotated[int | None, typer.Option(show_default="min(2, cpuset size)")] = None,
    cpuset: Annotated[str | None, typer.Option(help="host CPUs, e.g. 0-3")] = None,
    no_sync_check: Annotated[bool, typer.Option("--no-sync-check", help="skip the solver's sync check")] = False,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="folder for bisect.json and the runs",
        show_default="results/bisect-<fw>-<good>-<bad>")] = None,
    resume: Annotated[Path | None, typer.Option(
        help="continue an interrupted bisect in this folder: what it measured is not run again")] = None,
    compose: ComposeOpt = None,
    docker_url: DockerOpt = None,
) -> int:
    """Binary-search the releases between --good and --bad for the first whose cell is slower beyond the noise."""
    from orchestrator.bisect import plan
    from orchestrator.bisect.session import run_bisect
    from orchestrator.bisect.text import render
    from orchestrator.images.compose import find_compose
    from orchestrator.sweep.spec import SweepOptions

    sweep = {"n": n, "iters": iters, "repeats": repeats, "max_repeats": max_repeats, "ci_width": ci_width,
             "row_budget_s": row_budget, "threads": threads,
             "cpuset": parse_cpuset(cpuset) if cpuset is not None else None,
             "sync_check": False if no_sync_check else None}
    sweep = {k: v for k, v in sweep.items() if v is not None}
    if resume is not None:
        given = [name for name, value in (("FRAMEWORK", framework), ("--good", good), ("--bad", bad),
                                          ("--cell", cell), ("--flavour", flavour), ("--python", python),
                                          ("--alpha", alpha), ("--min-effect", min_effect),
                                          ("--max-factor", max_factor), ("--out", out)) if value]
        flags = {"row_budget_s": "--row-budget", "sync_check": "--no-sync-check"}
        given += [flags.get(k, f"--{k.replace('_', '-')}") for k in sweep]
        if given or pre or keep:
            raise InvalidOptions(f"--resume continues the bisect as it was asked; {', '.join(given) or '--pre/--keep'} "
                                 "cannot change it", fix=f"gdbench bisect --resume {resume}")
        req = plan.load_resumed(resume)
    else:
        if framework is None or good is None or bad is None:
            raise InvalidOptions("give FRAMEWORK --good V1 --bad V2 (or --resume DIR)",
                                 fix="e.g. gdbench bisect numpy --good 1.26.4 --bad 2.4.6")
        if framework not in registry.REGISTRY:
            raise InvalidOptions(f"unknown framework {framework!r}; choose from {', '.join(registry.FRAMEWORKS)}")
        cells = [plan.parse_cell(c, framework) for c in cell] if cell else [plan.default_cell(framework)]
        alpha, min_effect = ALPHA if alpha is None else alpha, MIN_EFFECT if min_effect is None else min_effect
        max_factor = 4 if max_factor is None else max_factor
        if not 0 < alpha < 1 or not 0 <= min_effect < 1 or max_factor < 1:
            raise InvalidOptions("--alpha must be in (0, 1), --min-effect in [0, 1), --max-factor at least 1")
        SweepOptions.from_dict({**SweepOptions().to_dict(), **sweep}).check()
        flavour_name = plan.flavour_for(cells, flavour.value if flavour else None)
        folder = out or Path("results") / f"bisect-{framework}-{good}-{bad}"
        if (folder / plan.SUMMARY).exists():
            raise InvalidOptions(f"{folder} already holds a bisect", fix=f"gdbench bisect --resume {folder}, or "
                                 "choose another --out")
        compose_path = find_compose(compose)
        good, bad, python_name = plan.check_ends(framework, good, bad, flavour_name, python)
        factors = [f for f in (1, 2, 4, 8, 16) if f <= max_factor]
        req = plan.BisectRequest(framework, good, bad, cells, flavour_name, python_name, folder, keep, pre, alpha,
                                 min_effect, factors, sweep, str(compose_path), docker_url)
    err = err_console()
    report = run_bisect(req, lambda line: err.print(line, markup=False, highlight=False))
    typer.echo("\n".join(render(report)))
    return EXIT_INTERRUPTED if report.status == "interrupted" else EXIT_OK
