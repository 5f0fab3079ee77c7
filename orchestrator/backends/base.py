"""What every backend is, as one protocol and three values: the runner and the planner never ask which one.

A backend is where a sweep's containers run: one Docker engine, this environment (``local``), a scheduler.
It answers with values — ``Prepared`` (the image a container will run, or why it will not start) and
``HostRecord`` (the machine's facts, the same keys for every backend) — and never mutates the plan.
``slots`` says how many containers it may run at once: 1 where one machine runs them, more where a scheduler
holds several machines; a timed container never shares its machine either way.
"""

from __future__ import annotations

import os
import platform
import socket
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Protocol

from orchestrator.hosts import gpus as gpuhost

if TYPE_CHECKING:
    from orchestrator.backends.result import ContainerResult
    from orchestrator.sweep.spec import RunSpec


class ImageRef(Protocol):
    """The image one container runs from, whatever stores it (a Docker engine, a bundle on a shared disk)."""

    tag: str
    id: str
    digest: str | None

    @property
    def framework_version(self) -> str | None: ...

    @property
    def cuda_version(self) -> str | None: ...

    def provenance(self) -> dict[str, Any]:
        """What documents and the manifest say about the image (tag, id, digest, labels, python_version)."""
        ...


@dataclass(frozen=True)
class Prepared:
    """A container's fate, decided before anything runs: its image, or (status, reason) where it will not start."""

    image: ImageRef | None = None
    refusal: tuple[str, str] | None = None

    @classmethod
    def refused(cls, reason: str, status: str = "unavailable", image: ImageRef | None = None) -> Prepared:
        return cls(image=image, refusal=(status, reason))


@dataclass(frozen=True)
class HostRecord:
    """``provenance.host`` and the manifest's host: the machine's facts, the same keys for every backend.

    Everything comes from the engine, the scheduler or this machine when the engine runs here, never from
    inside a container (its hostname is random). What a backend cannot know stays None ("unknown" in reports).
    ``engine``/``engine_version`` name what runs containers (docker 28.2.2, slurm 22.05.8, local);
    ``extra`` holds a backend's own facts (a Slurm node's features, say).
    """

    name: str = "local"
    engine: str | None = None
    engine_version: str | None = None
    api_version: str | None = None
    engine_id: str | None = None
    hostname: str | None = None
    kernel: str | None = None
    os: str | None = None
    cpu_model: str | None = None
    ncpu: int | None = None
    architecture: str | None = None
    storage_driver: str | None = None
    cgroup_version: str | None = None
    cgroup_driver: str | None = None
    runtimes: list[str] | None = None
    nvidia_runtime: bool | None = None
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    gpu_name: str | None = None
    gpu_count: int = 0
    gpu_source: str | None = None
    reachable: bool = True
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    #: Keys of records written before ``engine``/``engine_version``: old name → new name.
    RENAMED = {"docker_version": "engine_version"}

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if not self.extra:
            out.pop("extra")
        if self.reachable:  # a reachable host's record keeps the keys it always had
            out.pop("reachable")
            out.pop("error")
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> HostRecord:
        """Any record gdbench wrote, older ones included (``docker_version`` is ``engine_version`` of docker)."""
        data = dict(data or {})
        for old, new in cls.RENAMED.items():
            if old in data:
                data.setdefault(new, data.pop(old))
                data.setdefault("engine", "docker")
        names = {f.name for f in fields(cls)}
        known = {k: v for k, v in data.items() if k in names}
        return cls(**{**known, "name": known.get("name") or "local", "gpu_count": known.get("gpu_count") or 0,
                      "reachable": known.get("reachable", True) is not False,
                      "extra": dict(known.get("extra") or {})})

    @classmethod
    def unreachable(cls, name: str, engine: str, error: str) -> HostRecord:
        """A host that never answered: every fact unknown, and why."""
        return cls(name=name, engine=engine, reachable=False, error=error)


def this_machine(name: str, engine: str, gpus: gpuhost.HostGpus, **facts: Any) -> HostRecord:
    """A record for an engine on this machine: what the engine does not say, this machine does."""
    from solvers.metadata import _cpu_model

    base = {"hostname": socket.gethostname(), "kernel": platform.release(), "os": platform.platform(terse=True),
            "cpu_model": _cpu_model(), "ncpu": os.cpu_count(), "architecture": platform.machine()}
    given = {k: v for k, v in facts.items() if v is not None and v != []}
    return HostRecord(name=name, engine=engine, **{**base, **given}, **gpu_facts(gpus, source="nvml"))


def gpu_facts(gpus: gpuhost.HostGpus, source: str | None) -> dict[str, Any]:
    """A record's GPU fields from what NVML (or nvidia-smi on a node) said; ``source`` None where nobody asked."""
    return {"driver_version": gpus.driver_version, "cuda_driver_version": gpus.cuda_driver_version,
            "gpu_name": gpus.gpu_name, "gpu_count": len(gpus.gpus), "gpu_source": source}


class Backend(Protocol):
    """Where containers run: its CPUs and GPUs, the checks before a run, the run itself, and the host's record."""

    #: The backend's kind (``docker``, ``local``, …): what the manifest records as ``backend``.
    name: str
    #: The inventory name of the host (``local`` for this machine's engine): part of every document's key.
    host: str
    #: How many containers may run at once: 1 for one machine; a scheduler holding N machines says N.
    slots: int
    #: Whether wall time minus the solver process's lifetime is a container start-up cost worth reporting.
    reports_startup_overhead: bool
    #: Whether the containers run on this machine, so this machine's load average and /proc/stat describe it.
    on_this_machine: bool
    #: The compose file the images come from, for the manifest (None where there are no images).
    compose_path: str | None

    def cpus(self) -> list[int] | None:
        """CPU numbers a cpuset may name where the containers run; None where a scheduler places each job
        (then only ``threads`` is fixed, and each document records the CPUs the job really got)."""
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

    def prepare(self, spec: RunSpec) -> Prepared:
        """Check before anything runs. Raises ``GdbenchError`` for a blocker of the whole sweep."""
        ...

    def run(self, spec: RunSpec, prepared: Prepared, on_line: Callable[[str], None]) -> ContainerResult:
        """Run one prepared container to its end, streaming its stderr lines to ``on_line``."""
        ...

    def host_record(self) -> HostRecord:
        ...

    def remove_run(self, run_id: str) -> None:
        """Remove whatever an interrupted run left behind (containers, jobs)."""
        ...

    def close(self) -> None:
        ...
