"""Typer commands ``gdbench report``, ``compare`` and ``publish`` (registered by ``orchestrator.cli.app``).

They only parse options and call plain functions; a refusal is raised as ``GdbenchError`` so that it leaves
through the CLI's one error path (one line with its fix, exit code 2 for bad input).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.errors import EXIT_OK, InvalidOptions
from orchestrator.results.compare import compare, gate, print_terminal, write_outputs
from orchestrator.results.compare_across import Axis
from orchestrator.results.noise import ALPHA, MIN_EFFECT
from orchestrator.results.report import build_report

RunsArg = Annotated[
    list[Path],
    typer.Argument(help="run directories (manifest.json + documents) or merged .parquet/.csv files",
                   exists=True, show_default=False),
]


def report_command(
    runs: RunsArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="directory for report.md, report.html, plots and data")],
) -> None:
    """Write a markdown and a self-contained HTML report (tables, plots, provenance) plus the merged data."""
    files = build_report(runs, out)
    for line in files.summaries:
        typer.echo(line)
    typer.echo(f"wrote {files.markdown}, {files.html}, {files.parquet.name}, {files.csv.name} and "
               f"{len(files.pngs)} plots in {out}")


def compare_command(
    runs: RunsArg,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="also write compare.md, .html and .csv here")] = None,
    alpha: Annotated[float, typer.Option(help="significance level of the Mann-Whitney U test per cell")] = ALPHA,
    min_effect: Annotated[float, typer.Option(
        help="smallest relative change of the median that is marked, e.g. 0.05 for ±5%")] = MIN_EFFECT,
    across: Annotated[Axis | None, typer.Option(
        help="match cells that differ only in this (python: the image's Python; image: the image tag; cuda: the "
        "image's CUDA runtime; driver: the NVIDIA driver; gpu: the GPU model — these three over GPU rows, across "
        "hosts), within one run or across several, and compare each value with the first (the oldest version)",
        show_default=False)] = None,
    fail_on_slower: Annotated[bool, typer.Option(
        "--fail-on-slower", help="exit 1 when a matched cell got slower beyond the noise and --min-effect "
        "(inconclusive cells never fail); exit 2 when no cell was timed on both sides")] = False,
) -> int:
    """Compare runs cell by cell against the first; mark only differences larger than the runs' own noise."""
    if not 0 < alpha < 1 or not 0 <= min_effect < 1:
        raise InvalidOptions(f"--alpha {alpha:g} / --min-effect {min_effect:g} out of range",
                             fix=f"--alpha in (0, 1), --min-effect in [0, 1), e.g. --alpha {ALPHA} "
                             f"--min-effect {MIN_EFFECT}")
    if across is not None:
        from orchestrator.results import across_pages
        from orchestrator.results.compare_across import compare_across

        result = compare_across(runs, across.value, alpha=alpha, min_effect=min_effect)
        across_pages.print_terminal(result)
        written = across_pages.write_outputs(result, out) if out is not None else []
    else:
        result = compare(runs, alpha=alpha, min_effect=min_effect)  # type: ignore[assignment]
        print_terminal(result)
        written = write_outputs(result, out) if out is not None else []
    if written:
        typer.echo(f"wrote {', '.join(p.name for p in written)} in {out}", err=True)
    if not fail_on_slower:
        return EXIT_OK
    code, line = gate(result.matched(), min_effect)
    typer.echo(line, err=True)
    return code


def publish_command(
    runs: Annotated[list[Path], typer.Argument(
        help="run directories, merged .parquet/.csv files, or a directory of run directories (results/)",
        show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="the site's directory (new, or one publish wrote)")],
    alpha: Annotated[float, typer.Option(help="significance level of the Mann-Whitney U test per point")] = ALPHA,
    min_effect: Annotated[float, typer.Option(
        help="smallest relative change of the median that is marked, e.g. 0.05 for ±5%")] = MIN_EFFECT,
) -> None:
    """Write one static site (no server, no CDN) with each cell's history against version, date and host."""
    from orchestrator.results.publish import publish

    if not 0 < alpha < 1 or not 0 <= min_effect < 1:
        raise InvalidOptions(f"--alpha {alpha:g} / --min-effect {min_effect:g} out of range",
                             fix=f"--alpha in (0, 1), --min-effect in [0, 1), e.g. --alpha {ALPHA} "
                             f"--min-effect {MIN_EFFECT}")
    site = publish(runs, out, alpha=alpha, min_effect=min_effect)
    typer.echo(f"{len(site.runs)} runs: {len(site.read)} source(s) read from the results, {len(site.reused)} "
               f"from the site's cache; {len(site.written)} page(s) written", err=True)
    typer.echo(str(site.index))
