"""Planning a sweep: every (framework, version, device) container and its fate, decided before anything runs.

Planning touches nothing that runs: through the backend it resolves images, the cpuset, GPU availability
and CUDA compatibility, so a bad option or a missing image stops the sweep before any container exists.
A resumed run keeps every container whose document is already there and did not fail.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from orchestrator.backends.base import Prepared
from orchestrator.errors import InvalidOptions
from orchestrator.sweep.rundir import RunDir
from orchestrator.sweep.spec import RunSpec, SweepOptions, framework_devices, split_framework

if TYPE_CHECKING:
    from orchestrator.backends.base import Backend, HostRecord, ImageRef
    from orchestrator.hosts.inventory import HostEntry
    from orchestrator.sweep.progress import SweepProgress


@dataclass(frozen=True)
class Planned:
    """One container of the sweep, with everything decided before anything runs (a value: never mutated)."""

    spec: RunSpec
    gpu: bool
    #: What the backend's ``prepare`` said: the image, or (status, reason) for a container that will not start.
    prepared: Prepared = field(default_factory=Prepared)
    resumed: bool = False

    @property
    def image(self) -> ImageRef | None:
        return self.prepared.image

    @property
    def preflight(self) -> tuple[str, str] | None:
        return self.prepared.refusal

    def image_provenance(self) -> dict[str, Any] | None:
        """What the documents and the manifest say about the image: all of it once prepared, else the tag."""
        if self.image is not None:
            return self.image.provenance()
        return {"tag": self.spec.image, "id": None, "digest": None, "labels": {}} if self.spec.image else None

    @property
    def gpu_request(self) -> list[str] | str | None:
        """The GPUs a GPU container asks for (``--gpus``), ``"all"`` by default; None for a CPU container."""
        return (self.spec.gpus or "all") if self.gpu else None

    @property
    def framework_version(self) -> str | None:
        return self.image.framework_version if self.image else None


@dataclass(frozen=True)
class Sweep:
    """One host's share of a run: its options (its own cpuset and threads), backend, record and containers."""

    opts: SweepOptions
    run_id: str
    run_dir: RunDir
    planned: list[Planned]
    backend: Backend
    host_record: HostRecord
    notes: list[str] = field(default_factory=list)


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def host_options(opts: SweepOptions, entry: HostEntry) -> SweepOptions:
    """The sweep as it runs on one host: that host's inventory cpuset/threads/gpus where it names them."""
    return replace(opts, cpuset=entry.cpuset if entry.cpuset is not None else opts.cpuset,
                   threads=entry.threads if entry.threads is not None else opts.threads,
                   gpus=list(entry.gpus) if entry.gpus else opts.gpus)


def plan(opts: SweepOptions, run_dir: RunDir, backend: Backend, *, run_id: str | None = None, resume: bool = False,
         progress: SweepProgress | None = None) -> Sweep:
    """Check the whole sweep and decide each container's fate; raises ``GdbenchError`` on any blocker."""
    opts = opts.check().with_cpus(backend.cpus())
    run_id = run_id or new_run_id()
    no_gpu = backend.gpu_unavailable()
    done = run_dir.done_keys() if resume else set()
    notes: list[str] = []
    planned: list[Planned] = []
    gpu_line_said = False
    for fw, version, device, flavour in containers(opts, backend, gpu_possible=no_gpu is None, notes=notes):
        gpu = device == "gpu"
        spec = RunSpec.from_sweep(opts, fw, device, backend.image_tag(fw, flavour, version), flavour, run_id,
                                  framework_version=version, host=backend.host)
        if spec.key in done:
            planned.append(Planned(spec=spec, gpu=gpu, resumed=True))
            continue
        if gpu and no_gpu is not None:
            prepared = Prepared.refused(no_gpu)
            if not gpu_line_said and progress:
                progress.note(no_gpu)
            gpu_line_said = True
        else:
            prepared = backend.prepare(spec)
            if prepared.refusal is not None and progress:
                progress.note(prepared.refusal[1])
        planned.append(Planned(spec=spec, gpu=gpu, prepared=prepared))
    if not planned:
        raise InvalidOptions("nothing to run: no framework offers the requested device(s)"
                             + (f" ({'; '.join(notes)})" if notes else ""))
    return Sweep(opts=opts, run_id=run_id, run_dir=run_dir, planned=planned, backend=backend,
                 host_record=backend.host_record(), notes=notes)


def plan_hosts(opts: SweepOptions, run_dir: RunDir, backends: list[Backend], hosts: list[HostEntry], run_id: str,
               resume: bool, progress: SweepProgress) -> list[Sweep]:
    """Plan every host at once: planning may ship the images a host lacks, which takes as long as the slowest
    host, not as long as all of them. The first blocker (in inventory order) stops the whole sweep."""
    if len(backends) == 1:
        return [plan(host_options(opts, hosts[0]), run_dir, backends[0], run_id=run_id, resume=resume,
                     progress=progress)]
    results: list[Sweep | BaseException | None] = [None] * len(backends)

    def one(i: int) -> None:
        try:
            results[i] = plan(host_options(opts, hosts[i]), run_dir, backends[i], run_id=run_id, resume=resume,
                              progress=progress)
        except BaseException as exc:  # re-raised in the main thread below
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,), daemon=True, name=f"gdbench-plan-{h.name}")
               for i, h in enumerate(hosts)]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(timeout=0.2)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return [r for r in results if isinstance(r, Sweep)]


def containers(opts: SweepOptions, backend: Backend, *, gpu_possible: bool,
               notes: list[str]) -> list[tuple[str, str | None, str, str]]:
    """(framework, version, device, flavour) of every container, each version checked against what the backend
    declares before anything is prepared or started (an undeclared version stops the whole sweep here)."""
    out: list[tuple[str, str | None, str, str]] = []
    seen: set[tuple[str, str, str | None]] = set()  # one container per image and device, however it was named
    for token in opts.frameworks:
        fw, asked = split_framework(token)
        offered = framework_devices(fw)
        for device in _devices(fw, offered, opts.devices, gpu_possible=gpu_possible, notes=notes):
            flavour = (opts.flavour or ("cuda" if device == "gpu" else "cpu")) if "gpu" in offered else "cpu"
            for version in backend.framework_versions(fw, flavour, asked):
                same = (fw, device, backend.image_tag(fw, flavour, version) or version)
                if same not in seen:
                    seen.add(same)
                    out.append((fw, version, device, flavour))
    return out


def _devices(framework: str, offered: tuple[str, ...], asked: list[str], *, gpu_possible: bool,
             notes: list[str]) -> list[str]:
    """The devices one framework runs on: ``auto`` is the GPU where the host and the framework can, else the CPU."""
    devices: list[str] = []
    for d in asked:
        if d == "auto":
            d = "gpu" if gpu_possible and "gpu" in offered else "cpu"
        if d not in offered:
            notes.append(f"{framework} has no {d} backend; skipped")
            continue
        if d not in devices:
            devices.append(d)
    return devices
