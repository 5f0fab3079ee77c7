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
    #: The PyPI distribution whose wheels carry the framework's version and decide whether a version fits an
    #: image's Python and platform (jax's own wheel is pure Python: its compiled half is jaxlib; CuPy's wheels
    #: are per CUDA major, and the images use CUDA 12's).
    wheel: str
    #: The distributions whose installed (or locked) version is the framework's, asked in this order
    #: (tensorflow-cpu is TensorFlow's CPU build; CuPy installs as cupy-cuda12x, cupy-cuda13x or cupy).
    dists: tuple[str, ...]
    #: The framework's line colour in the report's plots (its other versions and hosts are shades of it).
    color: str


REGISTRY: dict[str, Entry] = {
    e.name: e
    for e in (
        Entry("numpy", "solvers.frameworks.numpy_", "numpy", ("cpu",),
              wheel="numpy", dists=("numpy",), color="#4c72b0"),
        Entry("numba", "solvers.frameworks.numba_cuda", "numba", ("cpu", "gpu"),
              wheel="numba", dists=("numba",), color="#dd8452"),
        Entry("jax", "solvers.frameworks.jax_", "jax", ("cpu", "gpu"),
              wheel="jaxlib", dists=("jax",), color="#55a868"),
        Entry("tensorflow", "solvers.frameworks.tensorflow_", "tensorflow", ("cpu", "gpu"),
              wheel="tensorflow", dists=("tensorflow", "tensorflow-cpu"), color="#c44e52"),
        Entry("torch", "solvers.frameworks.torch_", "torch", ("cpu", "gpu"),
              wheel="torch", dists=("torch",), color="#8172b3"),
        Entry("cupy", "solvers.frameworks.cupy_", "cupy-cuda12x", ("gpu",),
              wheel="cupy-cuda12x", dists=("cupy-cuda12x", "cupy-cuda13x", "cupy"), color="#17becf"),
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
