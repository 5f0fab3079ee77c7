"""The ``slurm`` backend: a sweep's containers as steps of an exclusive Slurm allocation, one node per host.

Plugin entry points for the registry: ``Settings`` (partition, constraint, gres, runtime, limits), ``open``
(checks the commands, the controller and — with ``sbatch --test-only``, so nothing is queued — that the
request can run at all) and ``check_host`` (``gdbench hosts check``'s row).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.backends.slurm.client import Slurm
from orchestrator.backends.slurm.settings import Settings

if TYPE_CHECKING:
    from orchestrator.backends.registry import OpenContext
    from orchestrator.backends.slurm.backend import SlurmBackend
    from orchestrator.hosts.check import HostRow
    from orchestrator.hosts.inventory import HostEntry
    from orchestrator.images.compose import ComposeFile

__all__ = ["Settings", "check_host", "clean", "open"]


def open(name: str, settings: Settings, context: OpenContext) -> SlurmBackend:
    from orchestrator.backends.docker.engine import local_engine
    from orchestrator.backends.slurm.backend import SlurmBackend
    from orchestrator.images.compose import load_compose

    slurm = Slurm(settings.slurm_conf)
    slurm.check_commands()
    slurm.ping()
    slurm.test_only(settings.allocation_args(), f"host {name}", settings.partition, settings.constraint)
    compose = context.shared("compose", lambda: load_compose(context.compose_path))
    return SlurmBackend(name, settings, slurm, compose, lambda: local_engine(context), context.note,
                        context.registry)


def check_host(entry: HostEntry, compose: ComposeFile, context: OpenContext) -> HostRow:
    """The controller, the partition's nodes that match, their features and GRES; every problem with its fix."""
    from orchestrator.errors import GdbenchError
    from orchestrator.hosts import doctor
    from orchestrator.hosts.check import HostRow

    s: Settings = entry.settings
    slurm = Slurm(s.slurm_conf)
    row = HostRow(name=entry.name, address=s.address, reachable=False)
    try:
        slurm.check_commands()
        row.engine = f"slurm {slurm.version()}"
        slurm.ping()
        nodes = slurm.nodes(s.partition)
        slurm.test_only(s.allocation_args(), f"host {entry.name}", s.partition, s.constraint)
    except GdbenchError as exc:
        row.problems.append(doctor.Check("slurm", doctor.BLOCKER, exc.message, exc.fix))
        return row
    row.reachable = True
    wanted = set(filter(None, (s.constraint or "").replace("|", "&").split("&")))
    matching = [n for n in nodes if wanted <= set(n["features"].split(","))]
    row.os = f"partition {s.partition}: {len(nodes)} node(s), {len(matching)} matching {s.constraint or 'any'}"
    row.cpu = "; ".join(f"{n['name']} {n['state']} [{n['features']}] {n['gres']}" for n in matching) or "none"
    row.nvidia_runtime = f"runtime {s.runtime}"
    row.gpus = s.gres or "none requested"
    if not matching:
        row.problems.append(doctor.Check("nodes", doctor.BLOCKER, f"no node of partition {s.partition} has the "
                                         f"features {s.constraint}", "sinfo -N -o '%N %f' lists them"))
        return row
    row.nvidia_runtime = f"runtime {s.runtime}: {_runtime_on_a_node(slurm, s)}"
    return row


def _runtime_on_a_node(slurm: Slurm, s: Settings) -> str:
    """The runtime's version as one matching node reports it (a step of its own, if a node is free within 10 s)."""
    probe = "docker version -f '{{.Server.Version}}'" if s.runtime == "docker" else "runc --version | head -1"
    proc = slurm.run("srun", *s.allocation_args(), "--immediate=10", "--quiet", "bash", "-c", probe, check=False,
                     timeout=60)
    if proc.returncode == 0 and proc.stdout.strip():
        return proc.stdout.strip().splitlines()[0]
    return f"unknown ({(proc.stderr.strip().splitlines() or ['no node free within 10 s'])[-1][:120]})"


def clean(name: str, settings: Settings) -> str:
    """Cancel this user's gdbench jobs on the host's partition (by their name); the steps' traps and the Epilog
    remove their containers."""
    from orchestrator.backends.slurm.backend import JOB_PREFIX

    slurm = Slurm(settings.slurm_conf)
    slurm.check_commands()
    listed = slurm.run("squeue", "-h", "--me", "-p", settings.partition, "-o", "%i %j", timeout=30).stdout
    jobs = [job for job, _, job_name in (line.partition(" ") for line in listed.splitlines())
            if job_name.startswith(JOB_PREFIX)]
    for job in jobs:
        slurm.cancel(job_id=job)
    return f"cancelled {len(jobs)} Slurm job(s) ({', '.join(jobs) or 'none'})"
