"""Typer commands ``gdbench report`` and ``gdbench compare`` (registered by ``orchestrator.cli``).

They only parse options and call plain functions; a refusal is raised as ``GdbenchError`` so that it leaves
through the CLI's one error path (one line with its fix, exit code 2 for bad input).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .compare import ALPHA, MIN_EFFECT, compare, print_terminal, write_outputs
from .errors import InvalidOptions
from .report import build_report

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
) -> None:
    """Compare runs cell by cell against the first; mark only differences larger than the runs' own noise."""
    if not 0 < alpha < 1 or not 0 <= min_effect < 1:
        raise InvalidOptions(f"--alpha {alpha:g} / --min-effect {min_effect:g} out of range",
                             fix=f"--alpha in (0, 1), --min-effect in [0, 1), e.g. --alpha {ALPHA} "
                             f"--min-effect {MIN_EFFECT}")
    result = compare(runs, alpha=alpha, min_effect=min_effect)
    print_terminal(result)
    if out is not None:
        paths = write_outputs(result, out)
        typer.echo(f"wrote {', '.join(p.name for p in paths)} in {out}", err=True)
