"""Provenance of a run: one ``collect_*`` function per source, each failing soft (null, never a crash)."""

from __future__ import annotations

import os
import platform
import socket
import sys
from typing import Any

from . import nvml
from .nvml import safe as _safe
from .schema import utc_now


def collect_python() -> dict[str, Any]:
    return {
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
    }


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _cgroup_cpuset() -> str | None:
    for path in ("/sys/fs/cgroup/cpuset.cpus.effective", "/sys/fs/cgroup/cpuset/cpuset.effective_cpus",
                 "/sys/fs/cgroup/cpuset/cpuset.cpus"):
        try:
            with open(path, encoding="utf-8") as fh:
                return fh.read().strip() or None
        except OSError:
            continue
    return None


def collect_platform() -> dict[str, Any]:
    return {
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpuset": _cgroup_cpuset(),
        "affinity": sorted(os.sched_getaffinity(0)),
    }


def collect_numpy() -> dict[str, Any]:
    import numpy as np

    return {"version": np.__version__}


def collect_image() -> dict[str, Any] | None:
    """Image tag and digest, passed in by whoever started the container (the orchestrator)."""
    tag, digest = os.environ.get("GDBENCH_IMAGE_TAG"), os.environ.get("GDBENCH_IMAGE_DIGEST")
    if not (tag or digest):
        return None
    return {"tag": tag, "digest": digest, "revision": os.environ.get("GDBENCH_IMAGE_REVISION")}


def _nvml_handle():
    """(pynvml, handle of the GPU this process uses), or None where NVML or the device is absent."""
    nv = nvml.module()
    if nv is None:
        return None
    handle = _safe(nv.nvmlDeviceGetHandleByIndex, nvml.visible_index())
    return None if handle is None else (nv, handle)


def collect_gpu() -> dict[str, Any] | None:
    """Static facts about the GPU this process uses, via NVML; ``None`` when NVML is absent."""
    found = _nvml_handle()
    if found is None:
        return None
    nv, handle = found
    mem = _safe(nv.nvmlDeviceGetMemoryInfo, handle)
    cuda = _safe(nv.nvmlSystemGetCudaDriverVersion_v2) or _safe(nv.nvmlSystemGetCudaDriverVersion)
    return {
        "name": _safe(nv.nvmlDeviceGetName, handle),
        "uuid": _safe(nv.nvmlDeviceGetUUID, handle),
        "memory_total_bytes": getattr(mem, "total", None),
        "driver_version": _safe(nv.nvmlSystemGetDriverVersion),
        "cuda_driver_version": f"{cuda // 1000}.{cuda % 1000 // 10}" if cuda else None,
        "power_limit_w": (_safe(nv.nvmlDeviceGetPowerManagementLimit, handle) or 0) / 1000 or None,
        "board": _board(nv, handle),
    }


def _board(nv: Any, handle: Any) -> dict[str, Any]:
    """MIG, ECC, PCIe link, persistence and application clocks (solvers.nvml owns these queries)."""
    return nvml.static_provenance(nv, handle)


def collect_gpu_state() -> dict[str, Any] | None:
    """Clocks, temperature and throttle reasons right now: taken before and after the timed runs."""
    found = _nvml_handle()
    if found is None:
        return None
    nv, handle = found
    reasons_fn = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
        nv, "nvmlDeviceGetCurrentClocksThrottleReasons", None
    )
    return {
        "sm_clock_mhz": _safe(nv.nvmlDeviceGetClockInfo, handle, nv.NVML_CLOCK_SM),
        "mem_clock_mhz": _safe(nv.nvmlDeviceGetClockInfo, handle, nv.NVML_CLOCK_MEM),
        "temperature_c": _safe(nv.nvmlDeviceGetTemperature, handle, nv.NVML_TEMPERATURE_GPU),
        "throttle_reasons": _safe(reasons_fn, handle) if reasons_fn else None,
        "utilization_pct": getattr(_safe(nv.nvmlDeviceGetUtilizationRates, handle), "gpu", None),
    }


def collect(framework: dict[str, Any], threads: dict[str, Any], blas: list | None, gpu: bool) -> dict[str, Any]:
    """The provenance block of a result document."""
    return {
        "framework": framework,
        "python": collect_python(),
        "numpy": collect_numpy(),
        "platform": collect_platform(),
        "threads": threads,
        "blas": blas,
        "gpu": collect_gpu() if gpu else None,
        "image": collect_image(),
        "timestamp_utc": utc_now(),
        "hostname": socket.gethostname(),
        "argv": sys.argv[1:],
    }
