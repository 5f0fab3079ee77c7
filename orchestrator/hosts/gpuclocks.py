"""The host GPUs' clocks, persistence and MIG state, and locking clocks for a stable benchmark (``gdbench gpu``,
whose commands are ``orchestrator.cli.gpu``).

A GPU's boost clock follows temperature and power, so two runs of the same kernel can differ by the clock
alone. ``gdbench gpu lock`` pins the SM and memory clocks with nvidia-smi (root only; ``-lgc``/``-lmc``, or
application clocks ``-ac`` on boards without locked clocks), ``gdbench gpu unlock`` resets them, and both
write what they ran to a small JSON record (``record_path()``) that a later run picks up and stores in its
provenance (``record_env()``: passed to the solver as ``GDBENCH_GPU_CLOCKS``, read by ``solvers.nvml``).

Without nvidia-smi or a GPU every command raises ``NoGpu``: the CLI's one error path prints one line
and exits with the environment error (5).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from orchestrator.errors import GdbenchError
from orchestrator.sweep.rundir import write_json_atomic

RECORD_ENV = "GDBENCH_GPU_CLOCKS"
_FIELDS = ("index", "name", "uuid", "clocks.sm", "clocks.mem", "clocks.applications.graphics",
           "clocks.applications.memory", "clocks.max.sm", "clocks.max.mem", "persistence_mode", "mig.mode.current")
_KEYS = ("index", "name", "uuid", "sm_mhz", "mem_mhz", "app_sm_mhz", "app_mem_mhz", "max_sm_mhz", "max_mem_mhz",
         "persistence", "mig")


class NoGpu(GdbenchError):
    """No NVIDIA driver, GPU or nvidia-smi on this host."""


def record_path() -> Path:
    """Where lock/unlock record what they did: $XDG_STATE_HOME/gdbench/gpu-clocks.json."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "gdbench" / "gpu-clocks.json"


def read_record(path: Path | None = None) -> dict[str, Any] | None:
    try:
        data = json.loads((path or record_path()).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def record_env(path: Path | None = None) -> dict[str, str]:
    """The environment a solver container needs to record the clock state in its provenance."""
    record = read_record(path)
    return {RECORD_ENV: json.dumps(record, sort_keys=True)} if record else {}


def _number(text: str) -> int | str | None:
    text = text.strip()
    if text in ("", "[N/A]", "N/A", "[Not Supported]"):
        return None
    try:
        return int(float(text))
    except ValueError:
        return text


def _from_nvml() -> list[dict[str, Any]] | None:
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # not installed, no library, no driver
        return None
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)

            def q(fn: Any, *args: Any, h: Any = h) -> Any:
                try:
                    value = fn(h, *args)
                except Exception:
                    return None
                return value.decode() if isinstance(value, bytes) else value

            sm, mem = pynvml.NVML_CLOCK_SM, pynvml.NVML_CLOCK_MEM
            mig = q(pynvml.nvmlDeviceGetMigMode)
            gpus.append(dict(zip(_KEYS, (
                i, q(pynvml.nvmlDeviceGetName), q(pynvml.nvmlDeviceGetUUID),
                q(pynvml.nvmlDeviceGetClockInfo, sm), q(pynvml.nvmlDeviceGetClockInfo, mem),
                q(pynvml.nvmlDeviceGetApplicationsClock, sm), q(pynvml.nvmlDeviceGetApplicationsClock, mem),
                q(pynvml.nvmlDeviceGetMaxClockInfo, sm), q(pynvml.nvmlDeviceGetMaxClockInfo, mem),
                {0: "Disabled", 1: "Enabled"}.get(q(pynvml.nvmlDeviceGetPersistenceMode)),
                None if mig is None else {0: "Disabled", 1: "Enabled"}.get(mig[0], mig[0]),
            ), strict=True)))
        return gpus
    except Exception:
        return None
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def _smi() -> str:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        raise NoGpu("no NVIDIA GPU visible: NVML is unusable and nvidia-smi is not on PATH",
                    fix="run on a host with the NVIDIA driver installed (nvidia-smi must work)")
    return smi


def _from_smi() -> list[dict[str, Any]]:
    done = subprocess.run([_smi(), f"--query-gpu={','.join(_FIELDS)}", "--format=csv,noheader,nounits"],
                          capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        line = (done.stderr or done.stdout).strip().splitlines()
        raise NoGpu(f"nvidia-smi failed: {line[0] if line else f'exit {done.returncode}'}",
                    fix="check the NVIDIA driver with `nvidia-smi`")
    return [dict(zip(_KEYS, map(_number, row.split(",")), strict=False)) for row in done.stdout.splitlines()
            if row.strip()]


def status() -> list[dict[str, Any]]:
    """Per GPU: current, application and maximum clocks, persistence and MIG (NVML, else nvidia-smi)."""
    gpus = _from_nvml()
    if gpus is None:
        gpus = _from_smi()
    if not gpus:
        raise NoGpu("no NVIDIA GPU found", fix="check the NVIDIA driver with `nvidia-smi`")
    return gpus


def _run(argv: list[str]) -> dict[str, Any]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    return {"argv": argv, "returncode": done.returncode, "output": (done.stdout + done.stderr).strip()[-500:]}


def _require_root() -> str:
    smi = _smi()
    if os.geteuid() != 0:
        raise GdbenchError("changing GPU clocks needs root", fix="sudo gdbench gpu lock|unlock")
    return smi


def lock(sm_mhz: int | None, mem_mhz: int | None, index: int | None = None) -> dict[str, Any]:
    """Lock SM and memory clocks (default: each GPU's default application clocks) and record what ran."""
    smi = _require_root()
    gpus = [g for g in status() if index is None or g["index"] == index]
    if not gpus:
        raise GdbenchError(f"no GPU with index {index}", fix="see `gdbench gpu` for the indices")
    steps = []
    for g in gpus:
        sm, mem = sm_mhz or g.get("app_sm_mhz"), mem_mhz or g.get("app_mem_mhz")
        if sm is None or mem is None:
            raise GdbenchError(f"GPU {g['index']} reports no default clocks", fix="give --sm MHZ and --mem MHZ")
        i = str(g["index"])
        steps += [_run([smi, "-i", i, "-lgc", f"{sm},{sm}"]), _run([smi, "-i", i, "-lmc", f"{mem},{mem}"])]
        if any(s["returncode"] for s in steps[-2:]):  # boards without locked clocks take application clocks
            steps.append(_run([smi, "-i", i, "-ac", f"{mem},{sm}"]))
    return _write("lock", steps, {"sm_mhz": sm_mhz, "mem_mhz": mem_mhz, "index": index})


def unlock(index: int | None = None) -> dict[str, Any]:
    """Reset locked and application clocks to the driver's defaults, and record it."""
    smi = _require_root()
    target = [] if index is None else ["-i", str(index)]
    steps = [_run([smi, *target, flag]) for flag in ("-rgc", "-rmc", "-rac")]
    return _write("unlock", steps, {"index": index})


def _write(action: str, steps: list[dict[str, Any]], asked: dict[str, Any]) -> dict[str, Any]:
    from solvers.schema import utc_now

    record = {"action": action, "asked": asked, "time_utc": utc_now(), "steps": steps, "gpus_after": status()}
    write_json_atomic(record_path(), record)
    return record
