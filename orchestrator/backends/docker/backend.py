"""The ``Backend`` protocol over one Docker engine: compose images, hardened containers, the engine's facts."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from orchestrator.backends.base import HostRecord, Prepared, gpu_facts, this_machine
from orchestrator.backends.docker import container
from orchestrator.backends.docker.engine import DockerEngine, ImageInfo
from orchestrator.hosts import gpus as gpuhost
from orchestrator.images.compose import ComposeFile

if TYPE_CHECKING:
    from orchestrator.backends.docker.ship import Shipper
    from orchestrator.backends.result import ContainerResult
    from orchestrator.sweep.spec import RunSpec


class DockerBackend:
    """One engine, one container at a time (``slots`` 1): a timed container never shares its machine."""

    name = "docker"
    slots = 1
    reports_startup_overhead = True

    def __init__(self, engine: DockerEngine, compose: ComposeFile, gpus: gpuhost.HostGpus,
                 shipper: Shipper | None = None) -> None:
        self.engine = engine
        self.compose = compose
        self.gpus = gpus
        #: Where images come from when this engine lacks them: None for the local engine itself.
        self.shipper = shipper if shipper is not None and not shipper.same_engine(engine) else None
        self.compose_path = str(compose.path)

    @property
    def on_this_machine(self) -> bool:
        return self.engine.on_this_machine

    @property
    def host(self) -> str:
        return self.engine.name

    def cpus(self) -> list[int]:
        return self.engine.cpus()

    def gpu_unavailable(self) -> str | None:
        facts = self.engine.facts()
        if facts.nvidia_runtime:
            return None
        runtimes = ", ".join(facts.runtimes) if facts.runtimes else "none"
        return (f"GPU requested but this Docker host has no NVIDIA runtime: docker info lists runtimes [{runtimes}] "
                "and no NVIDIA CDI devices; install the NVIDIA Container Toolkit (nvidia-ctk runtime configure "
                "--runtime=docker, then restart dockerd) or run with --devices cpu")

    def image_tag(self, framework: str, flavour: str, version: str | None = None) -> str:
        return self.compose.service_for(framework, flavour, version).image

    def framework_versions(self, framework: str, flavour: str, asked: str | None) -> list[str | None]:
        return self.compose.framework_versions(framework, flavour, asked)

    def prepare(self, spec: RunSpec) -> Prepared:
        """The image must be built (or shipped here); a CUDA image must not need a newer CUDA than the driver."""
        service = self.compose.service_for(spec.framework, spec.flavour, spec.framework_version)
        image: ImageInfo
        if self.shipper is not None:
            from orchestrator.backends.docker.ship import ShipRefused

            try:
                image = self.shipper.ensure(self.engine, service.image)
            except ShipRefused as exc:
                return Prepared.refused(exc.message + (f" — fix: {exc.fix}" if exc.fix else ""))
        else:
            image = self.engine.require_image(service)
        if spec.device == "gpu":
            why = gpuhost.cuda_incompatibility(service.image, image.cuda_version, self.gpus)
            if why:
                return Prepared.refused(why, image=image)
        return Prepared(image=image)

    def run(self, spec: RunSpec, prepared: Prepared, on_line: Callable[[str], None]) -> ContainerResult:
        assert isinstance(prepared.image, ImageInfo), "prepare() the container first"
        return container.run(self.engine, spec, prepared.image, gpu=spec.device == "gpu", on_line=on_line)

    def host_record(self) -> HostRecord:
        f = self.engine.facts()
        facts = dict(engine_id=f.engine_id, hostname=f.hostname, kernel=f.kernel_version, os=f.operating_system,
                     ncpu=f.ncpu, architecture=f.architecture, engine_version=f.docker_version,
                     api_version=f.api_version, storage_driver=f.storage_driver, cgroup_version=f.cgroup_version,
                     cgroup_driver=f.cgroup_driver, runtimes=f.runtimes, nvidia_runtime=f.nvidia_runtime)
        if self.on_this_machine:
            return this_machine(self.engine.name, "docker", self.gpus, **facts)
        # A remote engine does not say its CPU model, and NVML is not reachable there: those stay unknown.
        return HostRecord(name=self.engine.name, engine="docker", **facts, **gpu_facts(self.gpus, source=None))

    def remove_run(self, run_id: str) -> None:
        with contextlib.suppress(Exception):
            self.engine.remove_containers(run_id)

    def close(self) -> None:
        self.engine.close()
