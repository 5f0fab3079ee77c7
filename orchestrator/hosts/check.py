"""``gdbench hosts check``: one row per inventory host — can a sweep run there, and on what.

Each host is contacted the way ``gdbench run --hosts`` contacts it, by its kind's ``check_host``
(backends/docker/check.py, backends/slurm): the row says what the host reports, "unknown" where it cannot
say, and every problem with its fix. This module owns the row and the order; the kinds fill it in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from orchestrator.backends import registry
from orchestrator.hosts import doctor

if TYPE_CHECKING:
    from orchestrator.hosts.inventory import HostEntry
    from orchestrator.images.compose import ComposeFile

UNKNOWN = "unknown"


@dataclass
class HostRow:
    name: str
    address: str
    reachable: bool
    engine: str = UNKNOWN
    os: str = UNKNOWN
    architecture: str = UNKNOWN
    cpu: str = UNKNOWN
    nvidia_runtime: str = UNKNOWN
    gpus: str = UNKNOWN
    driver: str = UNKNOWN
    cuda: str = UNKNOWN
    #: One per compose service: {service, tag, state}; state is "same id", "missing", "other id",
    #: "present (not built here)", or "local" (this machine's own engine holds it).
    images: list[dict[str, str]] = field(default_factory=list)
    problems: list[doctor.Check] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "problems": [p.to_dict() for p in self.problems]}


def check_hosts(entries: list[HostEntry], compose: ComposeFile) -> list[HostRow]:
    """Every host's row, in inventory order, from its kind's ``check_host``; an unreachable host is a row with
    its one-line reason."""
    context = registry.OpenContext()  # what the hosts' checks share: this machine's engine and GPUs
    try:
        return [_row(entry, compose, context) for entry in entries]
    finally:
        context.close()


def _row(entry: HostEntry, compose: ComposeFile, context: registry.OpenContext) -> HostRow:
    check = getattr(registry.plugin(entry.kind), "check_host", None)  # a backend's own row, where it has one
    if check is not None:
        return check(entry, compose, context)
    return HostRow(name=entry.name, address=entry.kind, reachable=True,
                   problems=[doctor.Check("kind", doctor.INFO, f"kind {entry.kind} runs here: nothing to check", None)])


def summary(row: HostRow) -> str:
    """The images column: each state with the compose services in it (``--json`` has the tags)."""
    if not row.reachable:
        return "-"
    by_state: dict[str, list[str]] = {}
    for image in row.images:
        by_state.setdefault(image["state"], []).append(image["service"])
    return "; ".join(f"{state}: {', '.join(services)}" for state, services in by_state.items())

