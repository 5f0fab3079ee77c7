"""``gdbench gpu``: show the host GPUs' clocks, persistence and MIG state; lock or unlock their clocks.

Commands only parse options and call ``orchestrator.hosts.gpuclocks``; its ``NoGpu`` (no driver, GPU or
nvidia-smi) reaches the CLI's one error path as one line and exit 5.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from orchestrator.hosts import gpuclocks

gpu_app = typer.Typer(help="Host GPUs: clocks, persistence, MIG; lock or unlock clocks (root, nvidia-smi).",
                      invoke_without_command=True, no_args_is_help=False)


def _show(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))


@gpu_app.callback()
def gpu_command(ctx: typer.Context) -> None:
    """Show each GPU's current/application/max clocks, persistence and MIG mode (JSON), and the last lock."""
    if ctx.invoked_subcommand is not None:
        return
    _show({"gpus": gpuclocks.status(), "clock_record": gpuclocks.read_record()})


@gpu_app.command("lock")
def lock_command(
    sm: Annotated[int | None, typer.Option("--sm", help="SM clock in MHz", show_default="default app clock")] = None,
    mem: Annotated[int | None, typer.Option("--mem", help="memory clock in MHz",
                                            show_default="default app clock")] = None,
    index: Annotated[int | None, typer.Option("--index", "-i", help="one GPU", show_default="all")] = None,
) -> None:
    """Lock SM and memory clocks with nvidia-smi (root) and record what was run."""
    _show(gpuclocks.lock(sm, mem, index))


@gpu_app.command("unlock")
def unlock_command(
    index: Annotated[int | None, typer.Option("--index", "-i", help="one GPU", show_default="all")] = None,
) -> None:
    """Reset the clocks to the driver's defaults with nvidia-smi (root) and record it."""
    _show(gpuclocks.unlock(index))
