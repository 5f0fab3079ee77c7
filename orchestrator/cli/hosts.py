"""``gdbench hosts check``: one row per inventory host, every problem with its fix; the logic is hostcheck's."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape

from orchestrator.cli.common import (
    ComposeOpt,
    HostsFileOpt,
    HostsOpt,
    ProjectOpt,
    compose_arg,
    err_console,
    out_console,
)
from orchestrator.errors import EXIT_OK

hosts_app = typer.Typer(no_args_is_help=True, help="The Docker engines of hosts.toml.")


@hosts_app.command("check")
def hosts_check_command(
    hosts: HostsOpt = None,
    hosts_file: HostsFileOpt = None,
    compose: ComposeOpt = None,
    project: ProjectOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the rows as JSON")] = False,
) -> int:
    """One row per host: reachable, engine, OS/kernel, CPUs, NVIDIA runtime, GPUs, driver, CUDA, images."""
    from rich.table import Table

    from orchestrator.hosts import inventory
    from orchestrator.hosts.check import check_hosts, summary
    from orchestrator.images.compose import load_compose

    entries = inventory.select(inventory.load(hosts_file), hosts or "all")
    rows = check_hosts(entries, load_compose(compose_arg(compose, project)))
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
        out_console().print(table)
        err = err_console()
        for r in rows:
            for p in r.problems:
                err.print(f"{r.name}: {p.level}: {p.name}: {p.detail}" + (f" — fix: {p.fix}" if p.fix else ""),
                          markup=False, soft_wrap=True)
    return 1 if any(p.level == "blocker" for r in rows for p in r.problems) else EXIT_OK
