"""The contract every framework module fulfils: a ``Framework`` that builds ``Solver`` objects.

A solver only knows how to put data on its device, run the fixed-iteration loop and wait for it. Timing,
warm-up, correctness and metadata live in shared code (``timing``, ``metadata``) so they are written once.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from .problem import ProblemData

DEVICES = ("cpu", "gpu")
VARIANTS = ("loop", "fused")
#: Variants only some frameworks offer on some devices; accepted by name, never in a default list.
EXTRA_VARIANTS = ("fused_cmdbuf", "compiled")
ALL_VARIANTS = (*VARIANTS, *EXTRA_VARIANTS)


class Solver(Protocol):
    """One (framework, device, variant) bound to one dataset."""

    def setup(self, data: ProblemData) -> None:
        """Copy X, y, W0, b0 to the device; called outside the clock (its time is reported as transfer)."""

    def run(self, iters: int) -> Any:
        """Run ``iters`` gradient steps from (W0, b0); return device handles to (W, b), possibly still queued."""

    def sync(self, out: Any) -> None:
        """Block until ``out`` is computed: the clock stops only after this returns."""

    def fetch(self, out: Any) -> tuple[np.ndarray, float]:
        """Host copy of (W, b); W keeps the dtype that actually ran so a silent downcast is caught."""

    # Optional, read by ``timing`` into the row's ``layout`` (absent: 0 and None). A solver that keeps its own
    # re-layout of X (a transposed, padded or augmented copy made in setup) says what it costs in memory:
    #   extra_bytes: int   bytes of that copy
    #   relayout: str      what the copy is


#: One API a framework module needs: (first release that has it, what it is, the variants that use it).
Requirement = tuple[str, str, tuple[str, ...]]


def release_tuple(version: str) -> tuple[int, ...]:
    """``2.21.0`` → (2, 21, 0); ``2.13.0+cpu`` and ``0.4.38rc1`` keep their leading release numbers only."""
    parts = []
    for piece in version.split("+")[0].split("."):
        digits = re.match(r"\d+", piece)
        if digits is None:
            break
        parts.append(int(digits[0]))
        if digits[0] != piece:
            break
    return tuple(parts)


def api_gaps(name: str, version: str, requires: tuple[Requirement, ...]) -> dict[str, str]:
    """variant → why the installed ``version`` cannot run it: the first missing API it needs, in one line."""
    have = release_tuple(version)
    gaps: dict[str, str] = {}
    for minimum, what, variants in requires:
        if have < release_tuple(minimum):
            for v in variants:
                gaps.setdefault(v, f"{name} {version} lacks {what} (added in {name} {minimum}), which the {v} "
                                   f"variant needs; pin {name} >= {minimum}")
    return gaps


class Unavailable(Exception):
    """The framework, device or variant cannot run here (not installed, no GPU visible, not offered)."""


class Framework(ABC):
    """One framework plugin. Subclasses import their library at module import time (the registry is lazy)."""

    name: str
    #: Variants per device this framework implements.
    variants: dict[str, tuple[str, ...]] = {"cpu": VARIANTS, "gpu": VARIANTS}

    @abstractmethod
    def version(self) -> str:
        """The framework's own version string."""

    @abstractmethod
    def configure_threads(self, threads: int) -> dict[str, Any]:
        """Apply the thread count through the framework's own API (env vars were set before import)."""

    def devices(self) -> list[str]:
        """Devices this process can use; the default is CPU only."""
        return ["cpu"]

    def gpu_unavailable_reason(self) -> str:
        """Why no GPU is visible, in words a user can act on."""
        return f"no GPU visible to {self.name}"

    def simulated(self, device: str) -> bool:
        """True where ``device`` is a simulator (its rows are checked for correctness but carry no timing)."""
        return False

    #: The APIs this module uses that older releases lack; an installed version without one makes the variants
    #: that use it ``unavailable`` with that reason (never a crash, never another code path).
    requires: tuple[Requirement, ...] = ()

    def api_gaps(self) -> dict[str, str]:
        """variant → why this installed version's API cannot run it (empty when every variant can run)."""
        return api_gaps(self.name, self.version(), self.requires)

    def variant_unavailable_reason(self, device: str, variant: str) -> str:
        """Why ``variant`` is not offered on ``device``, for the row's ``reason``."""
        return self.api_gaps().get(variant) or f"{self.name} offers no {variant} on {device}"

    @abstractmethod
    def make_solver(self, device: str, variant: str) -> Solver:
        """A fresh solver for (device, variant)."""

    def peak_device_memory(self, device: str) -> int | None:
        """Peak bytes allocated on the device since the last reset, when the framework can tell."""
        return None

    def reset_peak_device_memory(self, device: str) -> None:
        """Start a new peak-memory window (per dimension)."""

    def details(self, device: str) -> dict[str, Any]:
        """Framework-specific provenance: backend, device name, precision settings."""
        return {}

    #: Variants whose step reads X once (the row's gradient is accumulated while the row is in cache); every
    #: other variant makes two passes, one per product. The bench bounds one-pass rows by the floor (one read
    #: of X) and two-pass rows by twice the framework's own gemv (``gemv``).
    one_pass_variants: tuple[str, ...] = ()

    def gemv(self, data: ProblemData, W: np.ndarray) -> Callable[[int], np.ndarray] | None:
        """``run(k)``: k products X·W on the CPU with this framework's own matrix-vector product, in the layout
        its ``fused`` reads, waited for; returns the last product on the host (the tests check it is X·W).

        Twice its time per product is what a two-pass step cannot beat by much in this framework: the bench
        prints each row against it. Built outside the clock; None where the framework has no such product.
        """
        return None

    def kernel_path(self, device: str, variant: str) -> str | None:
        """The library and kernel the row's products ran on, as this process can read it (``solvers.kernels``):
        by default the OpenBLAS that loaded, with the core kernels it chose; None where nothing says."""
        from .kernels import openblas

        return openblas() if device == "cpu" else None
