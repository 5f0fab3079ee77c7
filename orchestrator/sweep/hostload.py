"""How busy the host was around each container: recorded in the manifest as a diagnostic, never a verdict.

The load average and /proc/stat describe the machine the orchestrator runs on, so they describe the
containers' host only where the engine runs here (a local socket, or the local backend); every record says
which of the two it is. Steal time is what a hypervisor took from this VM's CPUs while a container ran.
"""

from __future__ import annotations

import os
from typing import Any

from orchestrator.backends.result import ContainerResult

#: /proc/stat's aggregate ``cpu`` line: user nice system idle iowait irq softirq steal ...
_STEAL_FIELD = 8


def loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def steal_s() -> float | None:
    """Seconds of steal time summed over all CPUs since boot, or None where /proc/stat does not say."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = fh.readline().split()
        return int(fields[_STEAL_FIELD]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def busy_warning(load: list[float] | None, cpuset: list[int], ncpu: int | None = None) -> str | None:
    """One line when the host was busy as the sweep started, else None.

    The rule: busy when the 1-minute load average exceeds the CPUs the sweep leaves free (every online CPU
    minus the sweep's cpuset). Up to that many runnable tasks fit beside the benchmark; past it, other work
    competes for the CPUs being measured. Read before the first container, so the sweep's own work is not
    counted.
    """
    ncpu = ncpu or os.cpu_count() or 1
    if load is None:
        return None
    free = max(0, ncpu - len(cpuset))
    if load[0] <= free:
        return None
    return (f"host busy at start: load average {load[0]:.2f} exceeds the {free} CPU(s) outside the sweep's cpuset "
            f"({len(cpuset)} of {ncpu}); timings may be slower and noisier than on an idle host")


class LoadProbe:
    """Readings at a container's start and the deltas after it, as one manifest record."""

    def __init__(self, on_this_machine: bool) -> None:
        self.source = "this machine, where the engine runs" if on_this_machine else \
            "the orchestrator's machine, not the engine's (remote engine)"
        self._steal0: float | None = None
        self.record: dict[str, Any] = {}

    def start(self) -> None:
        self._steal0 = steal_s()
        self.record = {"source": self.source, "ncpu": os.cpu_count(), "loadavg_start": loadavg()}

    def finish(self, result: ContainerResult | None) -> dict[str, Any]:
        steal1 = steal_s()
        delta = steal1 - self._steal0 if steal1 is not None and self._steal0 is not None else None
        self.record["steal_s"] = round(delta, 3) if delta is not None else None
        self.record["involuntary_ctx_switches"] = result.involuntary_ctx_switches if result else None
        return self.record
