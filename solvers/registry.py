"""Explicit registry of framework plugins, imported lazily so ``import solvers`` needs only NumPy."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from .base import Framework, Unavailable


@dataclass(frozen=True)
class Entry:
    name: str
    module: str
    #: The distribution that must be importable, named in the "not installed" message.
    requires: str
    devices: tuple[str, ...]


REGISTRY: dict[str, Entry] = {
    e.name: e
    for e in (
        Entry("numpy", "solvers.frameworks.numpy_", "numpy", ("cpu",)),
        Entry("numba", "solvers.frameworks.numba_cuda", "numba", ("cpu", "gpu")),
        Entry("jax", "solvers.frameworks.jax_", "jax", ("cpu", "gpu")),
        Entry("tensorflow", "solvers.frameworks.tensorflow_", "tensorflow", ("cpu", "gpu")),
        Entry("torch", "solvers.frameworks.torch_", "torch", ("cpu", "gpu")),
        Entry("cupy", "solvers.frameworks.cupy_", "cupy-cuda12x", ("gpu",)),
    )
}

FRAMEWORKS: tuple[str, ...] = tuple(REGISTRY)


def load(name: str) -> Framework:
    """Import one framework plugin; a missing library becomes ``Unavailable`` with the fix in the message."""
    entry = REGISTRY[name]
    try:
        module = importlib.import_module(entry.module)
    except ImportError as exc:
        raise Unavailable(
            f"{name} is not installed ({exc}); install it with `pip install {entry.requires}` "
            f"or use the gdbench/{name} image"
        ) from exc
    return module.FRAMEWORK
