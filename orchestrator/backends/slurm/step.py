"""What runs on the node inside one ``srun`` step: the hardened container, its timeout, its cleanup.

The step is a small shell script because the node has Docker's CLI, not this Python. ``scancel`` ends the step
with SIGTERM but would leave a ``docker run`` child of dockerd running (it is not in the job's process tree), so
the script traps TERM/INT/HUP and EXIT and removes the container itself; the node's Epilog
(scripts/slurm-epilog.sh) removes anything labelled with the job id that is left. The container's state comes
back as one last stderr line (``STATE_MARK``), which the orchestrator strips before the lines are kept.
"""

from __future__ import annotations

import datetime as dt
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from orchestrator.backends.result import OOM_EVENT_WAIT_S, SIGKILL_EXIT, OutputPump

#: The step's last stderr line: timed-out flag, exit code, OOM flag, StartedAt, FinishedAt (daemon clock).
STATE_MARK = "@@gdbench-step"
#: ``timeout``'s exit status when it ended the command (the OCI step's own limit).
TIMED_OUT = 124
#: Label every container a job starts carries: the Epilog removes what a cancelled job left behind.
JOB_LABEL = "io.gdbench.slurm-job"

#: ``oom_event NAME SINCE``: whether Docker reported an ``oom`` event for the container since SINCE (epoch s),
#: waiting ``OOM_EVENT_WAIT_S`` for one that trails the exit. ``State.OOMKilled`` is lost when the kernel's
#: notification comes after Docker handled the exit (a loaded node); the event is not.
OOM_EVENT_FUNCTION = f"""oom_event() {{
  docker events --since "$2" --until "$(( $(date +%s) + {OOM_EVENT_WAIT_S} ))" --filter "container=$1" \\
    --filter event=oom --format '{{{{.Action}}}}' 2>/dev/null | grep -q oom
}}
"""

_DOCKER_STEP = """set -u
name={name}
{oom_event}cleanup() {{ docker rm -f "$name" >/dev/null 2>&1; }}
trap 'cleanup; exit 143' TERM INT HUP
trap cleanup EXIT
cleanup
since=$(date +%s)
docker create {create} >/dev/null || exit 125
timeout {timeout} docker start -a "$name" &
wait $!
rc=$?
timed_out=0
if [ "$rc" -eq 124 ]; then timed_out=1; docker kill "$name" >/dev/null 2>&1; fi
state=$(docker inspect -f '{{{{.State.ExitCode}}}} {{{{.State.OOMKilled}}}} {{{{.State.StartedAt}}}} \
{{{{.State.FinishedAt}}}}' "$name" 2>/dev/null || echo "$rc false - -")
set -- $state
if [ "$timed_out" = 0 ] && [ "$1" = {sigkill} ] && [ "$2" = false ] && oom_event "$name" "$since"; then
  state="$1 true $3 $4"
fi
echo "{mark} $timed_out $state" >&2
"""

_FACTS = r"""echo "node=${SLURMD_NODENAME:-}"
echo "hostname=$(hostname)"
echo "kernel=$(uname -r)"
echo "architecture=$(uname -m)"
echo "ncpu=$(nproc --all)"
( . /etc/os-release 2>/dev/null && echo "os=$PRETTY_NAME" )
echo "cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
command -v docker >/dev/null && echo "docker=$(docker version -f '{{.Server.Version}}' 2>/dev/null)"
command -v runc >/dev/null && echo "runc=$(runc --version 2>/dev/null | head -1)"
if command -v nvidia-smi >/dev/null; then
  echo "gpus=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | paste -sd ';')"
  echo "driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)"
  echo "cuda=$(nvidia-smi 2>/dev/null | grep -o 'CUDA Version: [0-9.]*' | cut -d' ' -f3)"
fi
"""


def docker_step(name: str, create_args: list[str], timeout_s: float) -> str:
    """The script of one container's step: create, start attached (stdout = document, stderr live), time out,
    report the state, remove — on every way out."""
    return _DOCKER_STEP.format(name=shlex.quote(name), create=shlex.join(create_args),
                               timeout=f"{max(timeout_s, 0.1):g}s", mark=STATE_MARK, oom_event=OOM_EVENT_FUNCTION,
                               sigkill=SIGKILL_EXIT)


def facts_script() -> str:
    """One step per node: the node describes itself (kernel, CPU, GPUs where nvidia-smi answers)."""
    return _FACTS


def parse_facts(text: str) -> dict[str, str]:
    return {k: v.strip() for k, _, v in (line.partition("=") for line in text.splitlines()) if k and v.strip()}


@dataclass(frozen=True)
class StepState:
    timed_out: bool
    exit_code: int | None
    oom_killed: bool
    process_s: float | None


def split_state(stderr_lines: list[str]) -> tuple[list[str], StepState | None]:
    """The lines without the step's state mark, and the state it carried (None: the step never got there)."""
    kept, state = [], None
    for line in stderr_lines:
        if line.startswith(STATE_MARK + " "):
            state = _state(line.split()[1:])
        else:
            kept.append(line)
    return kept, state


def _state(parts: list[str]) -> StepState | None:
    if len(parts) < 3:
        return None
    started, finished = (_ts(parts[3]) if len(parts) > 3 else None), (_ts(parts[4]) if len(parts) > 4 else None)
    try:
        code = int(parts[1])
    except ValueError:
        code = None
    return StepState(timed_out=parts[0] == "1", exit_code=code, oom_killed=parts[2] == "true",
                     process_s=(finished - started).total_seconds() if started and finished else None)


def _ts(text: str) -> dt.datetime | None:
    from orchestrator.backends.docker.engine import parse_ts

    return parse_ts(text) if text != "-" else None


def stream(argv: list[str], env: dict[str, str], on_line: Callable[[str], None], timeout_s: float,
           stop: Callable[[subprocess.Popen[bytes]], None]) -> tuple[int, str, list[str]]:
    """Run one ``srun`` to its end: stderr lines to ``on_line`` as they come (the state mark held back), stdout
    kept whole (it is the document). An interrupt calls ``stop`` on the process before it propagates."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    pump = OutputPump(proc, on_line, keep=1000, hold=lambda line: line.startswith(STATE_MARK))
    try:
        code = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:  # the step hung past its own timeout: end it, call it timed out
        stop(proc)
        code = TIMED_OUT
    except BaseException:
        stop(proc)
        raise
    pump.join()
    return code, pump.stdout, list(pump.lines)
