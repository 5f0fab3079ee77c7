"""How a sweep's containers run, as one protocol: the planner and the runner never ask which backend they have.

Two implementations: ``DockerBackend`` (dockerhost.py: hardened containers from the compose images, one object
per Docker engine) and ``LocalBackend`` (localrun.py: ``python -m solvers`` subprocesses in this environment).
``open_backend`` is the one place where a backend's name becomes an object.
"""

from __future__ import annotations

import os
import platform
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from orchestrator.errors import InvalidOptions
from orchestrator.hosts import gpus as gpuhost
from solvers.metadata import _cpu_model

if TYPE_CHECKING:
    from orchestrator.backends.result import ContainerResult
    from orchestrator.sweep.planner import Planned
    from orchestrator.sweep.spec import RunSpec

#: The names ``--backend`` accepts, in the order help lists them.
BACKENDS = ("docker", "local")


class Backend(Protocol):
    """Where containers run: its CPUs and GPUs, the checks before a run, the run itself, and the host's record."""

    #: What the manifest records as ``backend``.
    name: str
    #: The inventory name of the engine (``local`` for this machine's): part of every document's key.
    host: str
    #: Whether wall time minus the solver process's lifetime is a container start-up cost worth reporting.
    reports_startup_overhead: bool
    #: Whether the engine runs on this machine, so this machine's load average and /proc/stat describe it.
    on_this_machine: bool
    #: The compose file the images come from, for the manifest (None where there are no images).
    compose_path: str | None

    def cpus(self) -> list[int]:
        """CPU numbers a cpuset may name where the containers run."""
        ...

    def gpu_unavailable(self) -> str | None:
        """Why no GPU work can run here (one line with the fix), or None when it can."""
        ...

    def image_tag(self, framework: str, flavour: str, version: str | None = None) -> str | None:
        """The image a (framework, flavour, declared version) runs from, or None where there are no images."""
        ...

    def framework_versions(self, framework: str, flavour: str, asked: str | None) -> list[str | None]:
        """The versions ``--frameworks FRAMEWORK[@asked]`` means here: None (the default) for a bare name,
        every declared one for ``all``; an undeclared version raises ``InvalidOptions`` (one line, the fix)."""
        ...

    def prepare(self, item: Planned) -> None:
        """Check before anything runs: sets ``item.image`` and, where it cannot run, ``item.preflight``.

        Raises ``GdbenchError`` for a blocker of the whole sweep (a missing image).
        """
        ...

    def run(self, spec: RunSpec, on_line: Callable[[str], None]) -> ContainerResult:
        """Run one prepared container to its end, streaming its stderr lines to ``on_line``."""
        ...

    def host_record(self) -> dict[str, Any]:
        """``provenance.host`` and ``manifest.host``: the engine's facts plus the host GPUs."""
        ...

    def remove_run(self, run_id: str) -> None:
        """Remove whatever an interrupted run left behind."""
        ...

    def close(self) -> None:
        ...


def host_record(facts: dict[str, Any], gpus: gpuhost.HostGpus, *, name: str = "local",
                on_this_machine: bool = True) -> dict[str, Any]:
    """``provenance.host``: the engine's facts (none for local) plus the GPUs NVML lists on that host.

    Everything comes from the engine or from this machine when the engine runs here, never from inside a
    container (a container's hostname is random). A remote engine does not say its CPU model, and NVML is
    not reachable there: those stay None, which the report shows as unknown.
    """
    here = on_this_machine
    return {
        "name": name,
        "engine_id": facts.get("engine_id"),
        "hostname": facts.get("hostname") or (socket.gethostname() if here else None),
        "kernel": facts.get("kernel_version") or (platform.release() if here else None),
        "os": facts.get("operating_system") or (platform.platform(terse=True) if here else None),
        "cpu_model": _cpu_model() if here else None,
        "ncpu": facts.get("ncpu") or (os.cpu_count() if here else None),
        "architecture": facts.get("architecture") or (platform.machine() if here else None),
        "docker_version": facts.get("docker_version"),
        "api_version": facts.get("api_version"),
        "storage_driver": facts.get("storage_driver"),
        "cgroup_version": facts.get("cgroup_version"),
        "cgroup_driver": facts.get("cgroup_driver"),
        "runtimes": facts.get("runtimes"),
        "nvidia_runtime": facts.get("nvidia_runtime"),
        "driver_version": gpus.driver_version,
        "cuda_driver_version": gpus.cuda_driver_version,
        "gpu_name": gpus.gpu_name,
        "gpu_count": len(gpus.gpus),
        "gpu_source": "nvml" if here else None,
    }


def open_backend(name: str, *, compose_path: str | None = None, docker_url: str | None = None,
                 gpus: gpuhost.HostGpus | None = None) -> Backend:
    """The backend called ``name``: the only place a backend is chosen by its name."""
    gpus = gpus if gpus is not None else gpuhost.probe()
    if name == "local":
        from orchestrator.backends.local import LocalBackend

        return LocalBackend(gpus)
    if name == "docker":
        from orchestrator.backends.docker.engine import DockerBackend, DockerEngine
        from orchestrator.images.compose import load_compose

        compose = load_compose(compose_path)
        return DockerBackend(DockerEngine.connect(docker_url), compose, gpus)
    raise InvalidOptions(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
