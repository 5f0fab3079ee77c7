"""Planning a sweep: every (framework, version, device) container and its fate, decided before anything runs.

Planning touches nothing that runs: through the backend it resolves images, the cpuset, GPU availability
and CUDA compatibility, so a bad option or a missing image stops the sweep before any container exists.
A resumed run keeps every container whose document is already there and did not fail.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orchestrator.errors import InvalidOptions
from orchestrator.sweep.rundir import MANIFEST, RunDir
from orchestrator.sweep.spec import RunSpec, SweepOptions, framework_devices, split_framework

if TYPE_CHECKING:
    from orchestrator.backends.base import Backend
    from orchestrator.backends.docker.engine import ImageInfo
    from orchestrator.sweep.progress import SweepProgress


@dataclass
class Planned:
    """One container of the sweep, with everything decided before anything runs."""

    spec: RunSpec
    gpu: bool
    image: ImageInfo | None = None  # set by ``Backend.prepare`` where the backend has images
    #: Decided up front: (status, reason) for a container that will not be started.
    preflight: tuple[str, str] | None = None
    resumed: bool = False

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


@dataclass
class Sweep:
    opts: SweepOptions
    run_id: str
    run_dir: RunDir
    planned: list[Planned]
    backend: Backend
    host_record: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def resume_options(run_dir: RunDir, given: dict[str, Any]) -> tuple[SweepOptions, str]:
    """The sweep of an earlier run in ``run_dir``; options given now must agree on everything that sets the numbers."""
    if not run_dir.holds_run():
        raise InvalidOptions(f"--resume {run_dir.path}: no {MANIFEST} there (not a gdbench run directory)")
    manifest = run_dir.read_manifest()
    base = SweepOptions.from_dict(manifest.get("sweep") or {})
    clash = [f"--{k.replace('_', '-')} {given[k]!r} (run has {getattr(base, k)!r})"
             for k in SweepOptions.RESUME_FIXED_FIELDS if given.get(k) is not None and given[k] != getattr(base, k)]
    if clash:
        raise InvalidOptions(f"--resume {run_dir.path}: options differ from the run being resumed: {'; '.join(clash)}")
    merged = {**base.to_dict(), **{k: v for k, v in given.items() if v is not None}}
    return SweepOptions.from_dict(merged), run_dir.run_id()


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
        item = Planned(spec=spec, gpu=gpu)
        if spec.key in done:
            item.resumed = True
        elif gpu and no_gpu is not None:
            item.preflight = ("unavailable", no_gpu)
            if not gpu_line_said and progress:
                progress.note(no_gpu)
            gpu_line_said = True
        else:
            backend.prepare(item)
            if item.preflight is not None and progress:
                progress.note(item.preflight[1])
        planned.append(item)
    if not planned:
        raise InvalidOptions("nothing to run: no framework offers the requested device(s)"
                             + (f" ({'; '.join(notes)})" if notes else ""))
    return Sweep(opts=opts, run_id=run_id, run_dir=run_dir, planned=planned, backend=backend,
                 host_record=backend.host_record(), notes=notes)


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
