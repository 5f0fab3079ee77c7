"""What one ``gdbench run`` asks for, as one value: the options, the hosts (each with its backend), the run
directory. Built here from the command line (or, on ``--resume``, from the run's manifest plus what is given
now), so ``run_sweep`` takes a single typed argument and never an untyped dict.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from orchestrator.backends import registry
from orchestrator.errors import GdbenchError, InvalidOptions
from orchestrator.hosts import inventory
from orchestrator.hosts.inventory import HostEntry
from orchestrator.sweep.rundir import MANIFEST, RunDir
from orchestrator.sweep.spec import SweepOptions


@dataclass(frozen=True)
class RunRequest:
    """A checked request: ``opts`` as asked (defaults filled in), one ``HostEntry`` per host, where to write."""

    opts: SweepOptions
    hosts: list[HostEntry]
    out_dir: Path | None = None
    resume: bool = False
    compose_path: str | None = None
    #: ``--hosts``/``--hosts-file``/``--registry``, kept so ``--resume`` reopens the same hosts; None: no inventory.
    fleet: dict[str, Any] | None = None
    #: ``--backend-opt`` pairs of a run without an inventory, kept for ``--resume``.
    backend_opts: dict[str, str] = field(default_factory=dict)

    @property
    def registry(self) -> str | None:
        return (self.fleet or {}).get("registry")


def build_request(given: dict[str, Any], *, out: Path | None, resume: Path | None, hosts: str | None,
                  hosts_file: Path | None, registry_repo: str | None, backend_opts: list[str] | None,
                  compose: str | None, docker_url: str | None) -> RunRequest:
    """The request ``gdbench run`` makes: options given now, over the resumed run's (``--resume``), over defaults.

    A backend is chosen in one place: without an inventory, ``--backend`` (and ``--backend-opt``) name this
    machine's host; with ``--hosts``, each host's table names its kind, and a ``--backend`` that disagrees is
    refused in one line rather than silently ignored.
    """
    opts_given = registry.parse_opts(backend_opts)
    before = None
    if resume is not None:
        if out is not None and out != resume:
            raise GdbenchError("give either --out or --resume, not both", fix="--resume DIR writes into DIR")
        opts = resume_options(RunDir(resume), given)
        before = RunDir(resume).manifest()
        out = resume
        opts_given = opts_given or dict(before.backend_opts)
    else:
        opts = SweepOptions.from_dict({**SweepOptions().to_dict(), **{k: v for k, v in given.items() if v is not None}})
    opts.check()
    fleet_before = (before.fleet if before else None) or {}
    hosts = hosts or ",".join(fleet_before.get("hosts") or []) or None
    hosts_file = hosts_file or fleet_before.get("hosts_file")
    registry_repo = registry_repo or fleet_before.get("registry")
    if hosts is None and hosts_file is None:
        entry = inventory.local_host(opts.backend, opts_given)
        if docker_url is not None and hasattr(entry.settings, "docker_host"):  # --docker-host / DOCKER_HOST
            entry = replace(entry, settings=replace(entry.settings, docker_host=docker_url))
        return RunRequest(opts=opts, hosts=[entry], out_dir=out, resume=resume is not None, compose_path=compose,
                          backend_opts=opts_given)
    if opts_given:
        raise InvalidOptions("--backend-opt sets the backend of a run without --hosts",
                             fix="put the keys in the host's [hosts.NAME] table of the hosts file")
    entries = inventory.select(inventory.load(hosts_file), hosts)
    backend = given.get("backend")
    wrong = [f"{e.name} (kind = {e.kind})" for e in entries if backend is not None and e.kind != backend]
    if wrong:
        raise InvalidOptions(f"--backend {backend} disagrees with the hosts of --hosts: {', '.join(wrong)}",
                             fix="drop --backend (each host's table names its kind), or choose hosts of that kind")
    fleet = {"hosts": [e.name for e in entries],
             "hosts_file": str(Path(hosts_file).resolve()) if hosts_file else None, "registry": registry_repo}
    opts = replace(opts, backend=entries[0].kind)
    return RunRequest(opts=opts, hosts=entries, out_dir=out, resume=resume is not None, compose_path=compose,
                      fleet=fleet)


def resume_options(run_dir: RunDir, given: dict[str, Any]) -> SweepOptions:
    """The sweep of an earlier run in ``run_dir``; options given now must agree on everything that sets the numbers."""
    if not run_dir.holds_run():
        raise InvalidOptions(f"--resume {run_dir.path}: no {MANIFEST} there (not a gdbench run directory)")
    base = SweepOptions.from_dict(run_dir.manifest().sweep)
    clash = [f"--{k.replace('_', '-')} {given[k]!r} (run has {getattr(base, k)!r})"
             for k in SweepOptions.RESUME_FIXED_FIELDS if given.get(k) is not None and given[k] != getattr(base, k)]
    if clash:
        raise InvalidOptions(f"--resume {run_dir.path}: options differ from the run being resumed: {'; '.join(clash)}")
    merged = {**base.to_dict(), **{k: v for k, v in given.items() if v is not None}}
    return SweepOptions.from_dict(merged)

