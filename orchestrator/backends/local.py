"""The ``local`` backend: ``python -m solvers`` as a subprocess of this environment, same protocol as Docker.

For quick runs without images. The process gets the same arguments, the same cpuset (CPU affinity) and the
same timeout handling; its output crosses the same boundary check. There is no isolation and no image.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import solvers
from orchestrator.backends.base import HostRecord, Prepared, this_machine
from orchestrator.backends.result import ContainerResult, OutputPump
from orchestrator.errors import InvalidOptions
from orchestrator.hosts.gpus import HostGpus
from orchestrator.sweep.spec import RunSpec, host_cpus

#: The folder holding the ``solvers`` this environment imports (a checkout, or site-packages when installed):
#: the child's working directory and first import path, so a ``solvers/`` in the user's directory never wins.
_ROOT = Path(solvers.__file__).resolve().parents[1]


@dataclass(frozen=True)
class Settings:
    """The local backend has no keys of its own: it runs in this environment, on this machine."""

    @classmethod
    def parse(cls, raw: dict[str, Any], *, where: str, base: Path) -> Settings:
        if raw:
            raise InvalidOptions(f"{where}: the local backend takes no options, got {', '.join(sorted(raw))}",
                                 fix="drop them (local runs python -m solvers in this environment)")
        return cls()

    def to_dict(self) -> dict[str, Any]:
        return {}


def open(name: str, settings: Settings, context: Any) -> LocalBackend:
    if name != "local":
        raise InvalidOptions(f"host {name}: kind = \"local\" runs on this machine only, whose host name is local",
                             fix="name the table [hosts.local], or give it the kind of the machine it names")
    return LocalBackend(context.local_gpus)


class LocalBackend:
    """Child processes on this machine: its CPU affinity, and a GPU when NVML lists one."""

    name = "local"
    host = "local"
    slots = 1
    reports_startup_overhead = False  # no container: wall and process time differ by the fork alone
    on_this_machine = True
    compose_path = None

    def __init__(self, gpus: HostGpus) -> None:
        self.gpus = gpus

    def cpus(self) -> list[int]:
        return host_cpus()

    def gpu_unavailable(self) -> str | None:
        if self.gpus.gpus:
            return None
        return f"GPU requested but this machine has no usable NVIDIA GPU: {self.gpus.error or 'NVML lists no GPUs'}"

    def image_tag(self, framework: str, flavour: str, version: str | None = None) -> str | None:
        return None

    def framework_versions(self, framework: str, flavour: str, asked: str | None) -> list[str | None]:
        """Only the version installed here can run: ``@all`` means it, any other version is refused."""
        if asked in (None, "all"):
            return [None]
        installed = installed_version(framework)
        if asked != installed:
            raise InvalidOptions(f"--backend local runs the {framework} installed in this environment "
                                 f"({installed or 'not installed'}), not {framework}@{asked}",
                                 fix=f"drop @{asked}, or run it from its image with --backend docker")
        return [asked]

    def prepare(self, spec: RunSpec) -> Prepared:
        """Nothing to check: the environment is this one, and the solver reports what it lacks."""
        return Prepared()

    def run(self, spec: RunSpec, prepared: Prepared, on_line: Callable[[str], None]) -> ContainerResult:
        return run_local(spec, on_line)

    def host_record(self) -> HostRecord:
        return this_machine("local", "local", self.gpus)

    def remove_run(self, run_id: str) -> None:
        """A child process is killed where it is interrupted; nothing outlives it."""

    def close(self) -> None:
        pass


def installed_version(framework: str) -> str | None:
    """The framework's distribution version in this environment (local build tag dropped), None if absent."""
    from importlib import metadata

    from solvers.registry import REGISTRY

    entry = REGISTRY.get(framework)  # its distributions: tensorflow-cpu for TF's CPU build, cupy-cuda12x, …
    for dist in entry.dists if entry else (framework,):
        try:
            return metadata.version(dist).split("+")[0]
        except metadata.PackageNotFoundError:
            continue
    return None


def run_local(spec: RunSpec, on_line: Callable[[str], None]) -> ContainerResult:
    """Run one (framework, device) in a child process pinned to ``spec.cpuset``."""
    result = ContainerResult(name=f"local-{spec.key}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")]))}
    for var in ("GDBENCH_IMAGE_TAG", "GDBENCH_IMAGE_DIGEST"):
        env.pop(var, None)
    if spec.gpus:  # the same GPUs a container would get; CUDA takes indices and UUIDs alike
        env["CUDA_VISIBLE_DEVICES"] = ",".join(spec.gpus)
    if spec.device == "gpu":  # what `gdbench gpu lock` recorded, for the document's provenance
        from orchestrator.hosts.gpuclocks import record_env

        env.update(record_env())
    cpus = set(spec.cpuset)
    # Children run one at a time, so the growth of the reaped children's rusage is this child's own.
    nivcsw0 = resource.getrusage(resource.RUSAGE_CHILDREN).ru_nivcsw
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "solvers", *spec.solver_args()], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=_ROOT,
                            preexec_fn=lambda: os.sched_setaffinity(0, cpus))
    pump = OutputPump(proc, on_line)
    try:
        try:
            result.exit_code = proc.wait(timeout=spec.timeout_s)
        except subprocess.TimeoutExpired:
            result.timed_out = True
            proc.kill()
            result.exit_code = proc.wait()
        result.process_s = time.perf_counter() - t0
        pump.join(timeout=10)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    result.involuntary_ctx_switches = resource.getrusage(resource.RUSAGE_CHILDREN).ru_nivcsw - nivcsw0
    result.first_line_s = pump.first_line_at - t0 if pump.first_line_at is not None else None
    result.stdout = pump.stdout
    result.stderr = "\n".join(pump.lines)
    result.wall_s = time.perf_counter() - t0
    return result
