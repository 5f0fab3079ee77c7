"""The ``local`` backend: ``python -m solvers`` as a subprocess of this environment, same interface as a container.

For quick runs without images. The process gets the same arguments, the same cpuset (CPU affinity) and the
same timeout handling; its output crosses the same boundary check. There is no isolation and no image.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from .outcome import STDERR_KEEP_LINES, ContainerResult
from .spec import RunSpec

_ROOT = Path(__file__).resolve().parents[1]


def run_local(spec: RunSpec, on_line: Callable[[str], None]) -> ContainerResult:
    """Run one (framework, device) in a child process pinned to ``spec.cpuset``."""
    result = ContainerResult(name=f"local-{spec.key}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")]))}
    for var in ("GDBENCH_IMAGE_TAG", "GDBENCH_IMAGE_DIGEST"):
        env.pop(var, None)
    cpus = set(spec.cpuset)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "solvers", *spec.solver_args()], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=_ROOT,
                            preexec_fn=lambda: os.sched_setaffinity(0, cpus))
    stderr_lines: deque[str] = deque(maxlen=STDERR_KEEP_LINES)
    stdout_parts: list[bytes] = []
    first: list[float] = []

    def pump_stderr() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            if not first:
                first.append(time.perf_counter() - t0)
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            stderr_lines.append(line)
            on_line(line)

    def pump_stdout() -> None:
        assert proc.stdout is not None
        stdout_parts.append(proc.stdout.read())

    threads = [threading.Thread(target=pump_stderr, daemon=True), threading.Thread(target=pump_stdout, daemon=True)]
    for t in threads:
        t.start()
    try:
        try:
            result.exit_code = proc.wait(timeout=spec.timeout_s)
        except subprocess.TimeoutExpired:
            result.timed_out = True
            proc.kill()
            result.exit_code = proc.wait()
        result.process_s = time.perf_counter() - t0
        for t in threads:
            t.join(timeout=10)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    result.first_line_s = first[0] if first else None
    result.stdout = b"".join(stdout_parts).decode("utf-8", errors="replace")
    result.stderr = "\n".join(stderr_lines)
    result.wall_s = time.perf_counter() - t0
    return result
