"""The backend of a host that did not answer at start, of any kind: every container ``unavailable``, nothing runs.

It still knows what was asked of it — the image tags and versions come from the compose file, as on any
host — so the run directory says which containers that host owed and why they did not run, and ``--resume``
runs them once the host is back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from orchestrator.backends.base import HostRecord, Prepared

if TYPE_CHECKING:
    from orchestrator.backends.result import ContainerResult
    from orchestrator.sweep.spec import RunSpec

#: CPU numbers an unreachable host is assumed to offer: its planned (never started) containers need a cpuset.
UNREACHABLE_CPUS = 256


class Unreachable:
    reports_startup_overhead = True
    on_this_machine = False
    slots = 1

    def __init__(self, host: str, kind: str, reason: str, compose_path: str | None) -> None:
        from orchestrator.images.compose import load_compose

        self.name = kind
        self.host = host
        self.reason = reason
        self.compose = load_compose(compose_path)
        self.compose_path = str(self.compose.path)

    def cpus(self) -> list[int]:
        return list(range(UNREACHABLE_CPUS))

    def gpu_unavailable(self) -> str | None:
        return self.reason

    def image_tag(self, framework: str, flavour: str, version: str | None = None) -> str:
        return self.compose.service_for(framework, flavour, version).image

    def framework_versions(self, framework: str, flavour: str, asked: str | None) -> list[str | None]:
        return self.compose.framework_versions(framework, flavour, asked)

    def prepare(self, spec: RunSpec) -> Prepared:
        return Prepared.refused(self.reason)

    def run(self, spec: RunSpec, prepared: Prepared, on_line: Callable[[str], None]) -> ContainerResult:
        raise AssertionError("an unreachable host runs nothing")

    def host_record(self) -> HostRecord:
        return HostRecord.unreachable(self.host, self.name, self.reason)

    def remove_run(self, run_id: str) -> None:
        pass

    def close(self) -> None:
        pass
