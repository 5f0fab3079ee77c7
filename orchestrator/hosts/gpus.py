"""The host's GPUs as NVML sees them (nvidia-ml-py), used before any GPU container starts.

Every function fails soft: no NVML library, no driver, or no GPU all give ``None``/empty values, because a
GPU-less host is a normal place to run the CPU half of the benchmark.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class HostGpus:
    driver_version: str | None = None
    cuda_driver_version: str | None = None  # newest CUDA the driver supports, "12.4"
    gpus: list[str] = field(default_factory=list)
    error: str | None = None  # why NVML gave nothing, for doctor

    @property
    def gpu_name(self) -> str | None:
        return self.gpus[0] if self.gpus else None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def probe() -> HostGpus:
    """Driver version, newest supported CUDA version and GPU names, via NVML on this machine."""
    try:
        import pynvml
    except ImportError:
        return HostGpus(error="nvidia-ml-py is not installed (pip install nvidia-ml-py)")
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound / DriverNotLoaded / NoPermission
        return HostGpus(error=f"NVML unavailable: {exc}")
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        cuda = pynvml.nvmlSystemGetCudaDriverVersion()
        names = [_text(pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i)))
                 for i in range(pynvml.nvmlDeviceGetCount())]
        return HostGpus(driver_version=driver, cuda_driver_version=f"{cuda // 1000}.{cuda % 1000 // 10}",
                        gpus=names)
    except Exception as exc:
        return HostGpus(error=f"NVML query failed: {exc}")
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def cuda_tuple(version: str | None) -> tuple[int, int] | None:
    """"12.4.1" → (12, 4); anything unparsable → None."""
    m = re.match(r"\s*(\d+)\.(\d+)", version or "")
    return (int(m[1]), int(m[2])) if m else None


#: The oldest Linux x86_64 driver each CUDA toolkit minor ships for (NVIDIA's CUDA release notes, "CUDA Toolkit
#: and Corresponding Driver Versions"). gdbench asks for that driver, not the older one minor-version
#: compatibility would allow, for the reason ``cuda_incompatibility`` gives.
OLDEST_DRIVER: dict[tuple[int, int], str] = {
    (12, 0): "525.60.13", (12, 1): "530.30.02", (12, 2): "535.54.03", (12, 3): "545.23.06", (12, 4): "550.54.14",
    (12, 5): "555.42.02", (12, 6): "560.28.03", (12, 8): "570.26", (12, 9): "575.51.03", (13, 0): "580.65.06",
}


def oldest_driver(image_cuda: str | None) -> str | None:
    """The oldest NVIDIA driver that runs an image built for ``image_cuda`` (None where the table lacks it)."""
    key = cuda_tuple(image_cuda)
    return OLDEST_DRIVER.get(key) if key else None


def cuda_incompatibility(image_tag: str, image_cuda: str | None, gpus: HostGpus) -> str | None:
    """Why the host driver cannot run an image built for ``image_cuda``, or None when it can (or we can't tell).

    Strict major.minor comparison: CUDA's minor-version compatibility does not cover PTX JIT, which XLA and
    Triton rely on, so a driver older than the image's toolkit is refused rather than left to fail mid-run.
    """
    need, have = cuda_tuple(image_cuda), cuda_tuple(gpus.cuda_driver_version)
    if need is None or have is None or need <= have:
        return None
    return (f"image {image_tag} is built for CUDA {image_cuda} but the host driver {gpus.driver_version} supports "
            f"CUDA up to {gpus.cuda_driver_version}; upgrade the NVIDIA driver or build the image with an older "
            f"CUDA base")
