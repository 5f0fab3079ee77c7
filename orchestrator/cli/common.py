"""What every gdbench command group shares: the options that mean the same everywhere, and the two consoles
(data on stdout, diagnostics on stderr)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

ComposeOpt = Annotated[Path | None, typer.Option("--compose", help="compose file with the image services "
                                                 "(default: ./compose.yaml, then the gdbench checkout's)")]
DockerOpt = Annotated[str | None, typer.Option("--docker-host", envvar="DOCKER_HOST",
                                               help="Docker daemon URL (default: the environment's)")]
HostsOpt = Annotated[str | None, typer.Option(
    "--hosts", help="comma list of hosts from the hosts file, or all", show_default="local")]
HostsFileOpt = Annotated[Path | None, typer.Option(
    "--hosts-file", help="inventory of Docker engines: one hosts.NAME table per engine", show_default="./hosts.toml")]


def out_console() -> Console:
    """Tables that are the command's data go to stdout (wide when piped)."""
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = 160
    return console


def err_console() -> Console:
    from orchestrator.sweep.progress import stderr_console

    return stderr_console()
