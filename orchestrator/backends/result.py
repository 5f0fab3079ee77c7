"""What one container (or local process) produced, independent of how it was run."""

from __future__ import annotations

from dataclasses import dataclass

STDERR_KEEP_LINES = 400


@dataclass
class ContainerResult:
    """What came out of one container, plus where its wall time went (for the start-up overhead)."""

    name: str
    exit_code: int | None = None
    oom_killed: bool = False
    timed_out: bool = False
    stdout: str = ""
    stderr: str = ""
    user: str | None = None
    create_s: float | None = None  # containers.create()
    start_s: float | None = None  # start() call
    process_s: float | None = None  # solver process lifetime, from the daemon's StartedAt/FinishedAt
    first_line_s: float | None = None  # process start → first stderr line (daemon timestamps)
    wall_s: float | None = None  # create → output in hand
    remove_s: float | None = None
    #: Times the kernel took the CPU from the solver process (local backend only: the child's rusage).
    involuntary_ctx_switches: int | None = None

    @property
    def overhead_s(self) -> float | None:
        """Container cost beyond the process's own life: create, start, exit detection, log collection."""
        if self.wall_s is None or self.process_s is None:
            return None
        return max(0.0, self.wall_s - self.process_s)

    def timings(self) -> dict[str, float | None]:
        keys = ("create_s", "start_s", "process_s", "first_line_s", "wall_s", "remove_s")
        return {**{k: getattr(self, k) for k in keys}, "overhead_s": self.overhead_s}
