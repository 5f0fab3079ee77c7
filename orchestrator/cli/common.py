"""What every gdbench command group shares: the options that mean the same everywhere, and the two consoles
(data on stdout, diagnostics on stderr)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

ComposeOpt = Annotated[Path | None, typer.Option("--compose", help="compose file with the image services "
                                                 "(default: the project directory's)")]
ProjectOpt = Annotated[Path | None, typer.Option(
    "--project", help="project directory: compose.yaml, image recipes, locks, build scripts; images add writes "
    "there (default: $GDBENCH_PROJECT, this directory or the gdbench checkout, else the user data dir; gdbench "
    "doctor says which)", show_default=False)]
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


def compose_arg(compose: Path | None, project: Path | None) -> str | None:
    """The compose file ``--compose`` or ``--project`` names, for functions that take a path; None when neither
    is given, so they find the project's themselves (and a run that needs no images never looks)."""
    if compose is None and project is None:
        return None
    from orchestrator.project import locate

    return str(locate(compose, project).compose)
