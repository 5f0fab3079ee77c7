"""What a sweep is, as plain typed data, validated before anything touches Docker.

The choices, defaults and rules come from ``solvers`` itself (the registry, and ``solvers.options`` for
devices, variants, dims, sizes and their limits) so the orchestrator can never offer a framework the solver
does not know, nor a default that differs from the solver's. ``SweepOptions`` is what the user asked for;
``RunSpec`` is one container of it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from typing import Any, TypeVar

from orchestrator import labels as label_keys
from orchestrator.backends import registry as backends
from orchestrator.errors import InvalidOptions
from solvers import options, registry
from solvers.options import DEFAULTS, DTYPES, OptionError

#: Choice types for Typer's help and parsing; the values themselves come from solvers and backend.py.
DType = StrEnum("DType", {name: name for name in DTYPES})
BackendName = StrEnum("BackendName", {name: name for name in backends.names()})


class Flavour(StrEnum):
    cpu = "cpu"
    cuda = "cuda"


_T = TypeVar("_T")


def _rule(check: Callable[..., _T], *args: Any) -> _T:
    """Apply one of ``solvers.options``' rules; its one-line ``OptionError`` becomes ``InvalidOptions``."""
    try:
        return check(*args)
    except OptionError as exc:
        raise InvalidOptions(str(exc)) from None


_split = options.split


#: ``FRAMEWORK@VERSION``'s version: PEP 440 release text, optionally ``-py3.13`` (a version on another base).
_VERSION_KEY = re.compile(r"(?P<version>[0-9][0-9A-Za-z.+!_]*)(?:-py(?P<python>3\.\d+))?")


def split_framework(token: str) -> tuple[str, str | None]:
    """``numpy`` → (numpy, None: its default version); ``numpy@1.26.4`` → (numpy, 1.26.4); ``numpy@all``."""
    name, sep, version = token.partition("@")
    if name not in registry.REGISTRY:
        raise InvalidOptions(f"unknown framework {name or token!r} in --frameworks; choose from "
                             f"{', '.join(registry.FRAMEWORKS)} (FRAMEWORK, FRAMEWORK@VERSION or FRAMEWORK@all)")
    if not sep:
        return name, None
    if version == "all":
        return name, "all"
    m = _VERSION_KEY.fullmatch(version)
    if not m or not _is_version(m["version"]):
        raise InvalidOptions(f"--frameworks {token!r}: {version!r} is not a version; give {name}@VERSION "
                             f"(e.g. {name}@1.2.3) or {name}@all", fix="gdbench images lists the declared versions")
    return name, version


def _is_version(text: str) -> bool:
    from packaging.version import InvalidVersion, Version

    try:
        Version(text)
    except InvalidVersion:
        return False
    return True


def parse_frameworks(text: str | None) -> list[str]:
    """Comma list of ``FRAMEWORK``, ``FRAMEWORK@VERSION`` or ``FRAMEWORK@all``; empty or ``all``: every
    registered framework at its default version. Versions are checked against what is declared by the planner
    (they depend on the flavour, which depends on the device)."""
    if text is None or text.strip() in ("", "all"):
        return list(registry.FRAMEWORKS)
    tokens = _split(text)
    for token in tokens:
        split_framework(token)
    return list(dict.fromkeys(tokens))


def parse_devices(text: str) -> list[str]:
    """Devices, plus ``auto``: the GPU where host and framework can, else the CPU (decided by the planner)."""
    return _rule(lambda t: options.devices(t, extra=("auto",)), text)


def parse_variants(text: str) -> list[str]:
    return _rule(options.variants, text)


def parse_dims(text: str) -> list[int]:
    return _rule(options.dims, text)


def parse_cpuset(text: str) -> list[int]:
    """Docker's ``--cpuset-cpus`` syntax (``0-3,6``) → sorted CPU numbers."""
    cpus: set[int] = set()
    for part in _split(text):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m or (m[2] is not None and int(m[2]) < int(m[1])):
            raise InvalidOptions(f"--cpuset must look like 0-3,6, got {text!r}")
        cpus.update(range(int(m[1]), int(m[2] or m[1]) + 1))
    if not cpus:
        raise InvalidOptions("--cpuset is empty")
    return sorted(cpus)


def parse_labels(items: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` pairs; gdbench's own ``io.gdbench.*`` keys cannot be overridden."""
    labels: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidOptions(f"--label must be KEY=VALUE, got {item!r}")
        if key.startswith(label_keys.RESERVED):
            raise InvalidOptions(f"--label {key} is set by gdbench itself")
        labels[key.strip()] = value
    return labels


def format_cpuset(cpus: list[int]) -> str:
    return ",".join(map(str, cpus))


#: An NVML index (``0``), a GPU UUID (``GPU-8e2c…``) or a MIG instance UUID (``MIG-…``).
_GPU_ID = re.compile(r"\d+|(?:GPU|MIG)-[0-9a-fA-F-]+")


def parse_gpus(text: str) -> list[str] | None:
    """``--gpus``: ``all`` (None), or a comma list of GPU indices or UUIDs handed to the engine as device ids."""
    if text.strip() == "all":
        return None
    ids = _split(text)
    bad = [g for g in ids if not _GPU_ID.fullmatch(g)]
    if not ids or bad:
        raise InvalidOptions(f"--gpus must be all or a comma list of GPU indices or UUIDs (nvidia-smi -L lists "
                             f"them), got {', '.join(bad) or repr(text)}")
    return list(dict.fromkeys(ids))


_SIZE = re.compile(r"(\d+)([bkmg]?)", re.IGNORECASE)


def parse_mem(text: str) -> str:
    if not _SIZE.fullmatch(text.strip()):
        raise InvalidOptions(f"--mem-limit must look like 4g or 512m, got {text!r}")
    return text.strip().lower()


@dataclass(frozen=True)
class SweepOptions:
    """Everything ``gdbench run`` was asked for, already parsed and checked."""

    frameworks: list[str] = field(default_factory=lambda: list(registry.FRAMEWORKS))
    devices: list[str] = field(default_factory=lambda: ["cpu", "auto"])  # every device this host has
    variants: list[str] = field(default_factory=lambda: list(DEFAULTS.variants))
    dims: list[int] = field(default_factory=lambda: list(DEFAULTS.dims))
    n: int = DEFAULTS.n
    iters: int = DEFAULTS.iters
    repeats: int = DEFAULTS.repeats
    max_repeats: int = DEFAULTS.max_repeats
    ci_width: float = DEFAULTS.ci_width
    row_budget_s: float = DEFAULTS.row_budget_s
    dtype: str = DEFAULTS.dtype
    seed: int = DEFAULTS.seed
    lr: float = DEFAULTS.lr
    threads: int | None = None
    cpuset: list[int] | None = None
    flavour: str | None = None
    timeout_s: float = 3600.0
    mem_limit: str = "4g"
    pids_limit: int = 4096
    backend: str = "docker"
    sync_check: bool = True
    #: GPU indices or UUIDs a GPU container gets; None: every GPU.
    gpus: list[str] | None = None
    #: Extra container labels (e.g. a CI job id), on top of gdbench's own.
    labels: dict[str, str] = field(default_factory=dict)

    #: The fields that define the numbers; a resumed run must keep them.
    RESUME_FIXED_FIELDS = ("variants", "dims", "n", "iters", "repeats", "max_repeats", "ci_width", "row_budget_s",
                           "dtype", "seed", "lr", "threads", "cpuset", "sync_check", "gpus")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepOptions:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def with_cpus(self, available: list[int] | None) -> SweepOptions:
        """Fill in threads/cpuset from the CPUs the Docker host (or this process) offers, and check them.

        Default: ``threads`` = min(2, CPUs) and the cpuset is the first ``threads`` CPUs; a given cpuset
        without ``--threads`` uses all its CPUs. Every framework gets the same pair. ``available`` None: a
        scheduler places each job, so only ``threads`` is fixed (default 2) and the cpuset stays empty here —
        the job gets whole CPUs of an exclusive node, and each document records the ones it really had.
        """
        if available is None:
            if self.cpuset is not None:
                raise InvalidOptions("--cpuset names CPUs of one machine; this backend's scheduler places each "
                                     "job", fix="drop --cpuset (give --threads), or set cpuset per host")
            return replace(self, threads=self.threads or 2, cpuset=[])
        cpus = self.cpuset
        threads = self.threads
        if cpus is not None:
            missing = [c for c in cpus if c not in available]
            if missing:
                raise InvalidOptions(f"--cpuset names CPU(s) {format_cpuset(missing)} that the host lacks "
                                     f"(host CPUs: {format_cpuset(available)})")
            threads = threads or len(cpus)
        else:
            threads = threads or min(2, len(available))
            if threads > len(available):
                raise InvalidOptions(f"--threads {threads} exceeds the host's {len(available)} CPUs")
            cpus = available[:threads]
        if threads > len(cpus):
            raise InvalidOptions(f"--threads {threads} exceeds the {len(cpus)} CPU(s) of --cpuset "
                                 f"{format_cpuset(cpus)}")
        return replace(self, threads=threads, cpuset=cpus)

    def check(self) -> SweepOptions:
        """Reject values no container could run with; returns self for chaining."""
        for name in ("n", "iters"):
            _rule(options.check_int, name, getattr(self, name))
        _rule(options.check_sampling, self.repeats, self.max_repeats, self.ci_width, self.row_budget_s)
        if self.threads is not None:
            _rule(options.check_int, "threads", self.threads)
        _rule(options.check_lr, self.lr)
        if self.timeout_s <= 0:
            raise InvalidOptions(f"--timeout must be positive, got {self.timeout_s}")
        if self.pids_limit < 64:
            raise InvalidOptions(f"--pids-limit must be >= 64 (framework thread pools count), got {self.pids_limit}")
        _rule(options.check_dtype, self.dtype)
        if self.flavour not in (None, *Flavour):
            raise InvalidOptions(f"unknown flavour {self.flavour!r}; choose from cpu, cuda")
        if self.backend not in backends.names():
            raise InvalidOptions(f"unknown backend {self.backend!r}; choose from {', '.join(backends.names())}")
        parse_mem(self.mem_limit)
        return self


@dataclass(frozen=True)
class RunSpec:
    """One container: one framework on one device over all dims of the sweep."""

    framework: str
    device: str
    image: str | None  # compose tag; None for the local backend
    flavour: str
    dims: list[int]
    variants: list[str]
    n: int
    iters: int
    repeats: int
    dtype: str
    seed: int
    lr: float
    threads: int
    cpuset: list[int]
    timeout_s: float
    max_repeats: int = DEFAULTS.max_repeats
    ci_width: float = DEFAULTS.ci_width
    row_budget_s: float = DEFAULTS.row_budget_s
    mem_limit: str = "4g"
    pids_limit: int = 4096
    run_id: str = ""
    sync_check: bool = True
    labels: dict[str, str] = field(default_factory=dict)
    gpus: list[str] | None = None  # GPU device ids for a GPU container; None: all
    #: The declared version this container runs (a compose ``version_key``); None: the framework's default.
    framework_version: str | None = None
    host: str = "local"  # the inventory name of the engine it runs on

    @property
    def key(self) -> str:
        """File stem of this container's document in the run directory: ``numpy-cpu`` for the default version,
        ``numpy@1.26.4-cpu`` for an explicit one, ``…@gpu1`` on a host other than ``local``, so resume and
        merge see each version on each host as its own container (one run directory holds a whole fleet)."""
        return run_key(self.framework, self.device, self.framework_version, self.host)

    def solver_args(self) -> list[str]:
        """Arguments after ``python -m solvers``: the same for a container and a local process."""
        return ["run", "--framework", self.framework, "--device", self.device,
                "--variant", ",".join(self.variants), "--dims", ",".join(map(str, self.dims)),
                "--n", str(self.n), "--iters", str(self.iters), "--repeats", str(self.repeats),
                "--max-repeats", str(self.max_repeats), "--ci-width", repr(self.ci_width),
                "--row-budget", repr(self.row_budget_s),
                "--dtype", self.dtype, "--seed", str(self.seed), "--lr", repr(self.lr),
                "--threads", str(self.threads), *([] if self.sync_check else ["--no-sync-check"])]

    @classmethod
    def from_sweep(cls, opts: SweepOptions, framework: str, device: str, image: str | None, flavour: str,
                   run_id: str, framework_version: str | None = None, host: str = "local") -> RunSpec:
        assert opts.threads is not None and opts.cpuset is not None, "call SweepOptions.with_cpus first"
        return cls(framework=framework, device=device, image=image, flavour=flavour, dims=list(opts.dims),
                   variants=list(opts.variants), n=opts.n, iters=opts.iters, repeats=opts.repeats,
                   max_repeats=opts.max_repeats, ci_width=opts.ci_width, row_budget_s=opts.row_budget_s,
                   dtype=opts.dtype, seed=opts.seed, lr=opts.lr, threads=opts.threads, cpuset=list(opts.cpuset),
                   timeout_s=opts.timeout_s, mem_limit=opts.mem_limit, pids_limit=opts.pids_limit, run_id=run_id,
                   sync_check=opts.sync_check, labels=dict(opts.labels),
                   gpus=list(opts.gpus) if opts.gpus is not None and device == "gpu" else None,
                   framework_version=framework_version, host=host)


def run_key(framework: str, device: str, version: str | None = None, host: str = "local") -> str:
    """The one spelling of a container's key: ``numpy-cpu``, ``numpy@1.26.4-cpu``, ``numpy@1.26.4-cpu@gpu1``."""
    key = f"{framework}@{version}-{device}" if version is not None else f"{framework}-{device}"
    return key if host == "local" else f"{key}@{host}"


def framework_devices(framework: str) -> tuple[str, ...]:
    """Devices the solver registry says a framework has a backend for."""
    return registry.REGISTRY[framework].devices


def host_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))
