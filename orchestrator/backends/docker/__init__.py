"""The ``docker`` backend: hardened containers from the compose images on one Docker engine per host.

Plugin entry points for the registry: ``Settings`` (how to reach the engine) and ``open``. A sweep over
several engines ships the images a host lacks from this machine's engine (or through ``--registry``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.backends.docker.settings import Settings
from orchestrator.errors import GdbenchError

if TYPE_CHECKING:
    from orchestrator.backends.docker.backend import DockerBackend
    from orchestrator.backends.docker.ship import Shipper
    from orchestrator.backends.registry import OpenContext
    from orchestrator.hosts.check import HostRow
    from orchestrator.hosts.inventory import HostEntry
    from orchestrator.images.compose import ComposeFile

__all__ = ["Settings", "check_host", "clean", "open"]

LOCAL = "local"


def open(name: str, settings: Settings, context: OpenContext) -> DockerBackend:
    """Connect to the host's engine (one line naming the host when it does not answer) and wrap it."""
    from orchestrator.backends.docker.backend import DockerBackend
    from orchestrator.backends.docker.engine import DockerEngine
    from orchestrator.hosts.gpus import HostGpus
    from orchestrator.images.compose import load_compose

    if (warning := settings.warning(name)) is not None:
        context.note(warning)
    compose = context.shared("compose", lambda: load_compose(context.compose_path))
    engine = DockerEngine.for_host(name, settings)
    shipper = context.shared("docker-shipper", lambda: _shipper(context)) if (
        context.fleet and (context.host_count > 1 or name != LOCAL)) else None
    gpus = context.local_gpus if engine.on_this_machine else HostGpus(
        error="remote engine: NVML is not reachable from here, so its driver and CUDA version are unknown "
              "(the CUDA-vs-driver check cannot run there)")
    return DockerBackend(engine, compose, gpus, shipper)


def check_host(entry: HostEntry, compose: ComposeFile, context: OpenContext) -> HostRow:
    from orchestrator.backends.docker.check import check_host as check

    return check(entry, compose, context)


def _shipper(context: OpenContext) -> Shipper | None:
    """This machine's engine, which images are shipped from; None (and one line) where it does not answer."""
    from orchestrator.backends.docker.engine import DockerEngine
    from orchestrator.backends.docker.ship import Shipper

    try:
        return Shipper(DockerEngine.connect(), context.registry, context.note)
    except GdbenchError as exc:
        context.note(f"images cannot be shipped (this machine's engine: {exc.message})")
        return None


def clean(name: str, settings: Settings) -> str:
    """Remove the containers gdbench labelled on the host's engine."""
    from orchestrator.backends.docker.engine import DockerEngine

    return f"removed {DockerEngine.for_host(name, settings).remove_containers()} container(s)"
