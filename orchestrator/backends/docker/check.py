"""``gdbench hosts check`` for a Docker host: what its engine reports, and what a sweep there would need.

The row says what the engine reports (version, API, OS, kernel, architecture, CPUs, NVIDIA runtime) and, where
NVML answers — only for an engine on this machine — the GPUs, driver and newest CUDA the driver supports; for a
remote engine those are "unknown", said as such. Images are compared by id with this machine's: a host that
lacks one, or holds another id under the tag, is shipped it by ``gdbench run``. The problems are ``gdbench
doctor``'s checks of that engine (``doctor.engine_checks``), each with its fix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.backends.docker.engine import DockerEngine, local_engine
from orchestrator.errors import GdbenchError
from orchestrator.hosts import doctor
from orchestrator.hosts import gpus as gpuhost
from orchestrator.hosts.check import UNKNOWN, HostRow
from solvers.metadata import _cpu_model

if TYPE_CHECKING:
    from orchestrator.backends.registry import OpenContext
    from orchestrator.hosts.inventory import HostEntry
    from orchestrator.images.compose import ComposeFile


def check_host(entry: HostEntry, compose: ComposeFile, context: OpenContext) -> HostRow:
    """The engine's facts and GPUs, each compose image's state there, and doctor's checks of that engine."""
    local, local_gpus = local_engine(context), context.local_gpus
    row = HostRow(name=entry.name, address=entry.address, reachable=False)
    if (warning := entry.warning()) is not None:
        row.problems.append(doctor.Check("insecure", doctor.WARN, warning, "set cert_path (TLS) for this engine"))
    try:
        engine = DockerEngine.for_host(entry.name, entry.settings)
    except GdbenchError as exc:
        row.problems.append(doctor.Check("docker daemon", doctor.BLOCKER, exc.message, exc.fix))
        return row
    try:
        f = engine.facts()
        gpus = local_gpus if engine.on_this_machine else gpuhost.HostGpus(error="remote engine")
        row.reachable = True
        row.engine = f"{f.docker_version} (API {f.api_version})"
        row.os = f"{f.operating_system}, kernel {f.kernel_version}"
        row.architecture = f.architecture or UNKNOWN
        model = _cpu_model() if engine.on_this_machine else None
        row.cpu = f"{f.ncpu} x {model}" if model else f"{f.ncpu} CPUs (model unknown: remote engine)"
        row.nvidia_runtime = ", ".join(r for r in f.runtimes if "nvidia" in r) or (
            "CDI: " + ", ".join(f.cdi_gpus) if f.cdi_gpus else "none")
        if engine.on_this_machine:
            row.gpus = ", ".join(gpus.gpus) or f"none ({gpus.error or 'NVML lists no GPU'})"
            row.driver = gpus.driver_version or (UNKNOWN if gpus.error else "none")
            row.cuda = gpus.cuda_driver_version or (UNKNOWN if gpus.error else "none")
        else:
            row.gpus = f"{UNKNOWN} (remote engine; NVML answers only here)" + (
                f"; CDI devices {', '.join(f.cdi_gpus)}" if f.cdi_gpus else "")
        same = local is not None and _same_engine(local, engine)
        for svc in compose.services.values():
            state = _image_state(svc.image, engine, local, same)
            row.images.append({"service": svc.name, "tag": svc.image, "state": state})
            if state in ("missing", "other id") and svc.flavour == "cpu" and not same:
                row.problems.append(doctor.Check(
                    f"image {svc.image}", doctor.INFO, f"{state} on {entry.name}",
                    f"nothing to do: gdbench run --hosts {entry.name} ships it from this machine "
                    "(or --registry REPO)"))
        checks = doctor.engine_checks(engine, compose if same else None, gpus, images=same)
        row.problems += [c for c in checks if c.level in (doctor.WARN, doctor.BLOCKER)]
    finally:
        engine.close()
    return row


def _same_engine(local: DockerEngine, engine: DockerEngine) -> bool:
    from orchestrator.backends.docker.ship import Shipper

    return Shipper(local).same_engine(engine)


def _image_state(tag: str, engine: DockerEngine, local: DockerEngine | None, same: bool) -> str:
    there = engine.image(tag)
    if same:
        return "local" if there is not None else "missing"
    if there is None:
        return "missing"
    here = local.image(tag) if local is not None else None
    if here is None:
        return "present (not built here)"
    return "same id" if here.id == there.id else "other id"
