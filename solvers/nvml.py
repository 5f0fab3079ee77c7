"""What a GPU user reads beside the time: energy per iteration, clocks and throttling *during* the timed runs,
and the static state of the board (MIG, ECC, PCIe link, persistence, application clocks).

Everything goes through NVML (nvidia-ml-py) and degrades to ``None`` where NVML, the driver or the counter is
absent: a GPU-less host and a simulator run are normal, and a missing diagnostic never refuses a row.

Energy comes from NVML's total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``, millijoules since the
driver loaded, Volta and newer), not from integrating power samples. The driver refreshes that counter only
every 20-100 ms, so a window shorter than about a second would be dominated by where the two readings fall
between updates: the window is kept open for at least ``MIN_WINDOW_S`` by running the same loop again after
the timed repeats (those extra runs count in the energy, never in the row's times).

A background thread samples SM/memory clocks, power, temperature and throttle reasons every
``SAMPLE_INTERVAL_S`` while the timed runs execute, so a clock drop in the middle of a row is seen, not only
the state before and after. Each sample is a few NVML calls through ctypes (which releases the GIL): tens of
microseconds every 50 ms, well below the repeat-to-repeat spread of any row.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

#: The energy window is extended to at least this long (the counter updates every 20-100 ms).
MIN_WINDOW_S = 1.0
#: Seconds between two background samples of clocks, power and throttle reasons.
SAMPLE_INTERVAL_S = 0.05
#: Extra runs allowed to stretch the energy window (a 1 µs loop must not loop forever).
MAX_EXTRA_RUNS = 100_000
RESOLUTION_NOTE = ("NVML total-energy counter (mJ) refreshed every 20-100 ms by the driver; window kept "
                   f">= {MIN_WINDOW_S:g} s by repeating the loop after the timed runs")
#: NVML's clock event ("throttle") reason bits, stable across driver versions (nvml.h).
THROTTLE_REASONS = {
    0x1: "gpu_idle", 0x2: "applications_clocks_setting", 0x4: "sw_power_cap", 0x8: "hw_slowdown",
    0x10: "sync_boost", 0x20: "sw_thermal_slowdown", 0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown", 0x100: "display_clock_setting",
}
#: The environment variable through which a run receives what ``gdbench gpu lock`` recorded (JSON text).
CLOCKS_ENV = "GDBENCH_GPU_CLOCKS"


def module() -> Any:
    """pynvml, initialised; None where it is not installed or has no library or driver to talk to."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound, DriverNotLoaded, …: no usable GPU management.
        return None
    return pynvml


def visible_index() -> int:
    """NVML's index of the first GPU ``CUDA_VISIBLE_DEVICES`` names (0 when it names none by index)."""
    first = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip()
    return int(first) if first.isdigit() else 0


def safe(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` with bytes decoded; None where the call raises (not supported on this board, no driver)."""
    try:
        value = fn(*args)
    except Exception:
        return None
    return value.decode() if isinstance(value, bytes) else value


def device_handle() -> tuple[Any, Any] | None:
    """(pynvml, handle of the GPU or MIG instance this process uses), or None without NVML or device.

    ``CUDA_VISIBLE_DEVICES`` may name a device by UUID (``GPU-…``, ``MIG-…``), as MIG setups must.
    """
    nv = module()
    if nv is None:
        return None
    first = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    if first.startswith(("GPU-", "MIG-")):
        handle = safe(nv.nvmlDeviceGetHandleByUUID, first)
    else:
        handle = safe(nv.nvmlDeviceGetHandleByIndex, visible_index())
    return None if handle is None else (nv, handle)


def decode_throttle(mask: int | None) -> list[str]:
    """Names of the reason bits set in an NVML clock-event mask (unknown bits as hex)."""
    if not mask:
        return []
    names = [name for bit, name in THROTTLE_REASONS.items() if mask & bit]
    unknown = mask & ~sum(THROTTLE_REASONS)
    return names + ([hex(unknown)] if unknown else [])


def _pair(value: Any) -> dict[str, Any] | None:
    """NVML's (current, pending) mode pairs."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        return None
    return {"current": value[0], "pending": value[1]}


def static_provenance(nv: Any, handle: Any) -> dict[str, Any]:
    """Board state that changes a GPU's speed or its meaning: MIG, ECC, PCIe link, persistence, app clocks."""
    is_mig = bool(safe(nv.nvmlDeviceIsMigDeviceHandle, handle))
    sm, mem = nv.NVML_CLOCK_SM, nv.NVML_CLOCK_MEM
    app = {"sm_mhz": safe(nv.nvmlDeviceGetApplicationsClock, handle, sm),
           "mem_mhz": safe(nv.nvmlDeviceGetApplicationsClock, handle, mem)}
    default = {"sm_mhz": safe(nv.nvmlDeviceGetDefaultApplicationsClock, handle, sm),
               "mem_mhz": safe(nv.nvmlDeviceGetDefaultApplicationsClock, handle, mem)}
    changed = None if None in (*app.values(), *default.values()) else app != default
    try:
        recorded = json.loads(os.environ[CLOCKS_ENV]) if os.environ.get(CLOCKS_ENV) else None
    except ValueError:
        recorded = {"error": f"{CLOCKS_ENV} is not JSON"}
    return {
        "mig": {
            "mode": _pair(safe(nv.nvmlDeviceGetMigMode, handle)) if not is_mig else None,
            "is_instance": is_mig,
            # A MIG instance's name carries its profile, e.g. "NVIDIA H100 80GB HBM3 MIG 1g.10gb".
            "profile": safe(nv.nvmlDeviceGetName, handle) if is_mig else None,
            "uuid": safe(nv.nvmlDeviceGetUUID, handle),
        },
        "ecc": _pair(safe(nv.nvmlDeviceGetEccMode, handle)),
        "pcie": {"gen": safe(nv.nvmlDeviceGetCurrPcieLinkGeneration, handle),
                 "width": safe(nv.nvmlDeviceGetCurrPcieLinkWidth, handle),
                 "max_gen": safe(nv.nvmlDeviceGetMaxPcieLinkGeneration, handle),
                 "max_width": safe(nv.nvmlDeviceGetMaxPcieLinkWidth, handle)},
        "persistence_mode": safe(nv.nvmlDeviceGetPersistenceMode, handle),
        "applications_clocks": app,
        "default_applications_clocks": default,
        "applications_clocks_changed": changed,
        "max_clocks": {"sm_mhz": safe(nv.nvmlDeviceGetMaxClockInfo, handle, sm),
                       "mem_mhz": safe(nv.nvmlDeviceGetMaxClockInfo, handle, mem)},
        "clock_lock_record": recorded,
    }


def read_sample(nv: Any, handle: Any) -> dict[str, Any]:
    """One background sample; every field may be None (not supported on this board)."""
    reasons = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
        nv, "nvmlDeviceGetCurrentClocksThrottleReasons", None)
    power_mw = safe(nv.nvmlDeviceGetPowerUsage, handle)
    return {
        "sm_clock_mhz": safe(nv.nvmlDeviceGetClockInfo, handle, nv.NVML_CLOCK_SM),
        "mem_clock_mhz": safe(nv.nvmlDeviceGetClockInfo, handle, nv.NVML_CLOCK_MEM),
        "power_w": power_mw / 1000 if power_mw is not None else None,
        "temperature_c": safe(nv.nvmlDeviceGetTemperature, handle, nv.NVML_TEMPERATURE_GPU),
        "throttle_mask": safe(reasons, handle) if reasons else None,
    }


def _spread(values: list[float | int | None]) -> dict[str, float] | None:
    got = [v for v in values if v is not None]
    if not got:
        return None
    return {"min": min(got), "median": statistics.median(got), "max": max(got)}


def summarise(samples: list[dict[str, Any]], interval_s: float = SAMPLE_INTERVAL_S) -> dict[str, Any] | None:
    """The row's ``gpu_samples``: min/median/max of each quantity and every throttle reason seen."""
    if not samples:
        return None
    mask = 0
    for s in samples:
        mask |= s.get("throttle_mask") or 0
    return {
        "count": len(samples),
        "interval_s": interval_s,
        **{key: _spread([s.get(key) for s in samples])
           for key in ("sm_clock_mhz", "mem_clock_mhz", "power_w", "temperature_c")},
        "throttle_reasons_seen": decode_throttle(mask),
    }


def energy_record(start_mj: int | None, end_mj: int | None, seconds: float, iterations: int) -> dict[str, Any] | None:
    """The row's ``energy`` from two counter readings over ``seconds`` and ``iterations`` gradient steps."""
    if start_mj is None or end_mj is None or seconds <= 0 or iterations <= 0 or end_mj < start_mj:
        return None
    joules = (end_mj - start_mj) / 1000
    return {"joules_per_iter": joules / iterations, "avg_power_w": joules / seconds, "window_s": seconds,
            "counter_resolution_note": RESOLUTION_NOTE}


class NvmlWindow:
    """Energy counter read at both ends, a sampling thread in between (see the module docstring)."""

    def __init__(self, nv: Any, handle: Any, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self.nv, self.handle, self.interval_s = nv, handle, interval_s
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="gdbench-nvml-sampler", daemon=True)
        self.start_mj = safe(nv.nvmlDeviceGetTotalEnergyConsumption, handle)
        self.t0 = time.perf_counter()
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.samples.append(read_sample(self.nv, self.handle))
            self._stop.wait(self.interval_s)

    def finish(self, run_once: Callable[[], float], *, iters: int, runs: int) -> dict[str, Any]:
        """Stretch the window to ``MIN_WINDOW_S`` with extra runs, then read the counter and stop sampling."""
        extra = 0
        try:
            while time.perf_counter() - self.t0 < MIN_WINDOW_S and extra < MAX_EXTRA_RUNS:
                run_once()
                extra += 1
        finally:
            end_mj = safe(self.nv.nvmlDeviceGetTotalEnergyConsumption, self.handle)
            seconds = time.perf_counter() - self.t0
            self.close()
        energy = energy_record(self.start_mj, end_mj, seconds, (runs + extra) * iters)
        if energy is not None:
            energy["runs"] = runs + extra
        return {"energy": energy, "gpu_samples": summarise(self.samples, self.interval_s)}

    def close(self) -> None:
        """Stop the sampling thread (idempotent)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def open_window() -> NvmlWindow | None:
    """A window on the GPU this process uses, or None where NVML or the device is absent."""
    found = device_handle()
    return None if found is None else NvmlWindow(*found)
