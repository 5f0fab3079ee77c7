"""``gdbench images``: list the declared images, add or remove a framework version, build them.

Commands only parse options and call ``orchestrator.images.build``; a bare ``gdbench images [NAMES…]`` is the list.
"""

from __future__ import annotations

import json
import os
from typing import Annotated, Any

import typer
import typer.core
from rich.markup import escape

from orchestrator.cli.common import ComposeOpt, DockerOpt, ProjectOpt, compose_arg, err_console, out_console
from orchestrator.errors import EXIT_OK, InvalidOptions
from orchestrator.sweep.spec import Flavour


class _ImagesGroup(typer.core.TyperGroup):
    """``gdbench images [NAMES…] [--build]`` stays the listing: anything that is not a subcommand goes to ``list``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = ["list", *args]
        return super().parse_args(ctx, args)


images_app = typer.Typer(cls=_ImagesGroup, no_args_is_help=False, add_completion=False,
                         help="The declared images: list them, add or remove a framework version, build them.")
PythonOpt = Annotated[str | None, typer.Option("--python", help="the image's Python: 3.11 (bookworm base) or 3.13 "
                                               "(trixie base)", show_default="3.11 where the version supports it")]
VersionArg = Annotated[str, typer.Argument(help="FRAMEWORK==VERSION, e.g. numpy==1.26.4", show_default=False)]
FlavourOpt = Annotated[Flavour | None, typer.Option(help="cpu or cuda", show_default="cpu (cuda for cupy)")]
CudaOpt = Annotated[str | None, typer.Option("--cuda", help="a CUDA build of its own (12 or 13): its tag, service "
                                             "and lock carry it, e.g. gdbench/jax:0.10.2-cuda13",
                                             show_default="the cuda flavour's default build")]
IndexUrlOpt = Annotated[str | None, typer.Option("--index-url", help="one more package index for the lock, e.g. "
                                                 "PyTorch's https://download.pytorch.org/whl/cu126 (recorded in "
                                                 "the lock and the image's labels)", show_default="PyPI only")]


@images_app.command("list")
def images_command(
    build: Annotated[bool, typer.Option("--build", help="build the named images (default: every CPU image) "
                                                        "as gdbench images build does, then list them")] = False,
    names: Annotated[list[str] | None, typer.Argument(
        help="frameworks, FRAMEWORK@VERSION or compose services, e.g. numpy jax-gpu numpy@1.26.4",
        show_default=False)] = None,
    flavour: Annotated[Flavour | None, typer.Option(help="with framework names: cpu or cuda images")] = None,
    compose: ComposeOpt = None,
    project: ProjectOpt = None,
    docker_url: DockerOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the list as JSON")] = False,
) -> int:
    """List every declared image, built or not (version, Python, default?, size); --build builds them first,
    the one way ``gdbench images build`` does."""
    from orchestrator.backends.docker.engine import DockerEngine
    from orchestrator.images.build import build_declared, image_rows, select_services
    from orchestrator.images.compose import load_compose

    cf = load_compose(compose_arg(compose, project))
    selected = None
    if build or names:
        selected = select_services(cf, list(names or []), flavour.value if flavour else None)
    if build:
        if docker_url and docker_url != os.environ.get("DOCKER_HOST"):  # the build script's docker CLI reads the env
            raise InvalidOptions("--build builds with scripts/build_image.py on the environment's Docker engine, "
                                 f"not --docker-host {docker_url}",
                                 fix=f"DOCKER_HOST={docker_url} gdbench images --build …")
        build_declared(cf, selected or [])
    engine = DockerEngine.connect(docker_url)
    rows = image_rows(cf, engine)
    if selected is not None:
        rows = [r for r in rows if r["service"] in {s.name for s in selected}]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return EXIT_OK
    from rich.table import Table

    table = Table(title=f"gdbench images ({cf.path})", title_justify="left")
    for col in ("service", "tag", "version", "python", "default", "built", "size", "cuda", "min driver", "id"):
        table.add_column(col)
    for r in rows:
        table.add_row(escape(r["service"]), escape(r["tag"]), escape(r["version"] or "-"), escape(r["python"]),
                      "yes" if r["default"] else "", "[green]yes[/]" if r["built"] else "[red]no[/]",
                      f"{r['size_bytes'] / 1e9:.2f} GB" if r["size_bytes"] else "-",
                      r["cuda_version"] or "-", r["min_driver"] or ("-" if not r["cuda_version"] else "?"),
                      (r["id"] or "-").removeprefix("sha256:")[:12])
    out_console().print(table)
    return EXIT_OK


@images_app.command("add")
def images_add_command(pin: VersionArg, flavour: FlavourOpt = None, python: PythonOpt = None, cuda: CudaOpt = None,
                       index_url: IndexUrlOpt = None, compose: ComposeOpt = None, project: ProjectOpt = None) -> int:
    """Declare another version: check it on PyPI, resolve its hash lock, add its service to compose.yaml."""
    from orchestrator.images.build import add_version
    from orchestrator.images.compose import load_compose

    err = err_console()
    lines = add_version(pin, flavour.value if flavour else None, python, load_compose(compose_arg(compose, project)),
                        lambda line: err.print(line, markup=False), cuda=cuda, index_url=index_url)
    typer.echo("\n".join(lines))
    return EXIT_OK


@images_app.command("remove")
def images_remove_command(pin: VersionArg, flavour: FlavourOpt = None, python: PythonOpt = None,
                          cuda: CudaOpt = None, compose: ComposeOpt = None, project: ProjectOpt = None) -> int:
    """Undo ``images add`` exactly: its compose service, its .in and its lock (a built image stays)."""
    from orchestrator.images.build import remove_version
    from orchestrator.images.compose import load_compose

    typer.echo(remove_version(pin, flavour.value if flavour else None, python,
                              load_compose(compose_arg(compose, project)), cuda=cuda))
    return EXIT_OK


@images_app.command("build")
def images_build_command(
    names: Annotated[list[str] | None, typer.Argument(
        help="services, frameworks or FRAMEWORK@VERSION / FRAMEWORK@all", show_default="every CPU service")] = None,
    flavour: Annotated[Flavour | None, typer.Option(help="with framework names: cpu or cuda images")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="rebuild every layer")] = False,
    compose: ComposeOpt = None,
    project: ProjectOpt = None,
) -> int:
    """Build declared images as make images does: base, wheel, the lock's wheelhouse, then the offline build."""
    from orchestrator.images.build import build_declared, select_services
    from orchestrator.images.compose import load_compose

    cf = load_compose(compose_arg(compose, project))
    build_declared(cf, select_services(cf, list(names or []), flavour.value if flavour else None), no_cache)
    return EXIT_OK
