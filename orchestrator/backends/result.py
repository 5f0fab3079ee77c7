"""What one container (or local process) produced, independent of how it was run."""

from __future__ import annotations

import collections
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

STDERR_KEEP_LINES = 400
#: A process killed by SIGKILL exits 128 + 9: the kernel's OOM killer, or our own timeout's kill.
SIGKILL_EXIT = 137
#: How long a backend waits for Docker's ``oom`` event when a container exits 137 without ``State.OOMKilled``:
#: the flag is lost when the kernel's notification trails Docker's handling of the exit; the event is not.
OOM_EVENT_WAIT_S = 2


@dataclass
class ContainerResult:
    """What came out of one container, plus where its wall time went (for the start-up overhead)."""

    name: str
    exit_code: int | None = None
    oom_killed: bool = False
    timed_out: bool = False
    #: Who ended it where that was not ``--timeout`` (e.g. a scheduler's time limit); None: ``--timeout``.
    timeout_reason: str | None = None
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


class OutputPump:
    """A child's two pipes read as it runs: stderr line by line to ``on_line`` (and kept, the last ``keep``),
    stdout whole (it is the document). Lines ``hold`` matches are kept but not shown."""

    def __init__(self, proc: subprocess.Popen[bytes], on_line: Callable[[str], None], *,
                 keep: int = STDERR_KEEP_LINES, hold: Callable[[str], bool] = lambda _line: False) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=keep)
        self.first_line_at: float | None = None  # perf_counter() when the first stderr line came
        self._out: list[bytes] = []

        def pump_err() -> None:
            assert proc.stderr is not None
            for raw in proc.stderr:
                if self.first_line_at is None:
                    self.first_line_at = time.perf_counter()
                line = raw.decode("utf-8", errors="replace").rstrip("\n")
                self.lines.append(line)
                if not hold(line):
                    on_line(line)

        def pump_out() -> None:
            assert proc.stdout is not None
            self._out.append(proc.stdout.read())

        self._threads = [threading.Thread(target=pump_err, daemon=True), threading.Thread(target=pump_out,
                                                                                          daemon=True)]
        for t in self._threads:
            t.start()

    def join(self, timeout: float = 30) -> None:
        for t in self._threads:
            t.join(timeout=timeout)

    @property
    def stdout(self) -> str:
        return b"".join(self._out).decode("utf-8", errors="replace")
