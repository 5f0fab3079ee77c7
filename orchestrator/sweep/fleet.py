"""A sweep over several Docker engines: one ``DockerBackend`` per inventory entry, opened before planning.

A host that cannot be reached at start is not a reason to stop the others: it becomes an ``Unreachable``
backend whose every container is planned ``unavailable`` with the connection's one-line reason, so the
run directory says what was asked of it and why it did not run. Images the hosts lack are shipped from
this machine's engine (``ship.py``). Each host's inventory ``cpuset``/``threads``/``gpus`` replace the
command line's for that host, since they describe that machine.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.errors import GdbenchError
from orchestrator.hosts import gpus as gpuhost
from orchestrator.hosts import inventory
from orchestrator.sweep.planner import Sweep, plan

if TYPE_CHECKING:
    from orchestrator.backends.base import Backend
    from orchestrator.backends.result import ContainerResult
    from orchestrator.hosts.inventory import HostEntry
    from orchestrator.images.compose import ComposeFile
    from orchestrator.sweep.planner import Planned
    from orchestrator.sweep.progress import SweepProgress
    from orchestrator.sweep.rundir import RunDir
    from orchestrator.sweep.spec import RunSpec, SweepOptions

#: CPU numbers an unreachable host is assumed to offer: its planned (never started) containers need a cpuset.
UNREACHABLE_CPUS = 256


class Unreachable:
    """The ``Backend`` of a host that did not answer at start: every container ``unavailable``, nothing runs."""

    name = "docker"
    reports_startup_overhead = True
    on_this_machine = False

    def __init__(self, entry: HostEntry, compose: ComposeFile, reason: str) -> None:
        self.host = entry.name
        self.compose = compose
        self.compose_path = str(compose.path)
        self.reason = reason

    def cpus(self) -> list[int]:
        return list(range(UNREACHABLE_CPUS))

    def gpu_unavailable(self) -> str | None:
        return self.reason

    def image_tag(self, framework: str, flavour: str, version: str | None = None) -> str:
        return self.compose.service_for(framework, flavour, version).image

    def framework_versions(self, framework: str, flavour: str, asked: str | None) -> list[str | None]:
        return self.compose.framework_versions(framework, flavour, asked)

    def prepare(self, item: Planned) -> None:
        item.preflight = ("unavailable", self.reason)

    def run(self, spec: RunSpec, on_line: Callable[[str], None]) -> ContainerResult:
        raise AssertionError("an unreachable host runs nothing")

    def host_record(self) -> dict[str, Any]:
        """The contract's keys, all unknown: the engine never answered."""
        from orchestrator.backends.base import host_record

        record = {k: None for k in host_record({}, gpuhost.HostGpus(), on_this_machine=False)}
        return {**record, "name": self.host, "gpu_count": 0, "reachable": False, "error": self.reason}

    def remove_run(self, run_id: str) -> None:
        pass

    def close(self) -> None:
        pass


def host_gpus(on_this_machine: bool, local: gpuhost.HostGpus) -> gpuhost.HostGpus:
    """NVML answers for this machine only; a remote engine's GPUs, driver and CUDA are unknown from here."""
    if on_this_machine:
        return local
    return gpuhost.HostGpus(error="remote engine: NVML is not reachable from here, so its driver and CUDA "
                                  "version are unknown (the CUDA-vs-driver check cannot run there)")


def host_options(opts: SweepOptions, entry: HostEntry) -> SweepOptions:
    """The sweep as it runs on one host: that host's inventory cpuset/threads/gpus where it names them."""
    return replace(opts, cpuset=entry.cpuset if entry.cpuset is not None else opts.cpuset,
                   threads=entry.threads if entry.threads is not None else opts.threads,
                   gpus=list(entry.gpus) if entry.gpus else opts.gpus)


def open_backends(entries: list[HostEntry], compose_path: str | None, *, registry: str | None = None,
                  note: Callable[[str], None] = lambda _line: None) -> list[Backend]:
    """One backend per host, in inventory order; the insecure-TCP warning is printed on every run."""
    from orchestrator.backends.docker.engine import DockerBackend, DockerEngine
    from orchestrator.backends.docker.ship import Shipper
    from orchestrator.images.compose import load_compose

    compose = load_compose(compose_path)
    local_gpus = gpuhost.probe()
    shipper: Shipper | None = None
    backends: list[Backend] = []
    try:
        for entry in entries:
            if (warning := entry.warning()) is not None:
                note(warning)
            try:
                engine = DockerEngine.for_host(entry)
            except GdbenchError as exc:
                reason = exc.message + (f" — fix: {exc.fix}" if exc.fix else "")
                backends.append(Unreachable(entry, compose, reason))
                continue
            if shipper is None and (len(entries) > 1 or entry.name != inventory.LOCAL):
                try:
                    shipper = Shipper(DockerEngine.connect(), registry, note)
                except GdbenchError as exc:
                    note(f"images cannot be shipped (this machine's engine: {exc.message})")
            backends.append(DockerBackend(engine, compose, host_gpus(engine.on_this_machine, local_gpus), shipper))
    except BaseException:
        for b in backends:
            with contextlib.suppress(Exception):
                b.close()
        raise
    return backends


def fleet_record(entries: list[HostEntry], hosts_file: str | Path | None, registry: str | None) -> dict[str, Any]:
    """What the manifest keeps so ``--resume`` reopens the same hosts."""
    return {"hosts": [e.name for e in entries],
            "hosts_file": str(Path(hosts_file).resolve()) if hosts_file else None, "registry": registry}


def resolve(hosts_text: str | None, hosts_file: str | Path | None, registry: str | None,
            resume_dir: Path | None = None) -> tuple[list[HostEntry] | None, dict[str, Any] | None]:
    """The hosts a ``run`` drives: ``--hosts``/``--hosts-file``, else (on ``--resume``) those the run had.

    (None, None) is today's single-engine sweep; a resumed fleet reopens the same hosts from the same file.
    """
    if resume_dir is not None:
        from orchestrator.sweep.rundir import RunDir

        with contextlib.suppress(GdbenchError):
            before = RunDir(resume_dir).read_manifest().get("fleet") or {}
            hosts_text = hosts_text or ",".join(before.get("hosts") or []) or None
            hosts_file = hosts_file or before.get("hosts_file")
            registry = registry or before.get("registry")
    if hosts_text is None and hosts_file is None:
        return None, None
    entries = inventory.select(inventory.load(hosts_file), hosts_text)
    return entries, fleet_record(entries, hosts_file, registry)


def plan_hosts(opts: SweepOptions, run_dir: RunDir, backends: list[Backend], hosts: list[HostEntry], run_id: str,
                resume: bool, progress: SweepProgress) -> list[Sweep]:
    """Plan every host at once: planning ships the images a host lacks, which takes as long as the slowest
    host, not as long as all of them. The first blocker (in inventory order) stops the whole sweep."""
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
