"""``gdbench doctor``: is this host ready to run the benchmark, and if not, which command fixes it.

Each check is ok, a warning (the sweep can run, with less: e.g. no GPU), or a blocker (``gdbench run`` would
refuse). Only blockers make the exit code non-zero.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator import labels
from orchestrator.errors import GdbenchError, InvalidOptions
from orchestrator.hosts import gpus as gpuhost

if TYPE_CHECKING:
    from orchestrator.backends.docker.engine import DockerEngine
    from orchestrator.images.compose import ComposeFile

OK, WARN, BLOCKER, INFO = "ok", "warning", "blocker", "info"


@dataclass
class Check:
    name: str
    level: str
    detail: str
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fmt_size(n: int | None) -> str:
    return "-" if not n else f"{n / 1e9:.2f} GB"


def gpu_check(gpus: gpuhost.HostGpus) -> Check:
    """What NVML says about a host's GPUs, driver and newest CUDA (or why it says nothing)."""
    if gpus.gpus:
        return Check("host GPUs", OK, f"{len(gpus.gpus)} x {gpus.gpu_name}; driver {gpus.driver_version}, "
                                      f"supports CUDA up to {gpus.cuda_driver_version}")
    return Check("host GPUs", INFO, f"none usable ({gpus.error or 'NVML lists no GPU'}); GPU runs will be "
                                    "recorded as unavailable")


def diagnose(compose_path: str | None = None, docker_url: str | None = None,
             project: str | Path | None = None) -> list[Check]:
    """Every check, in the order a user would fix them. A ``--project`` that is not one is refused (exit 2)
    before any check, as every command refuses it."""
    from orchestrator import project as projects
    from orchestrator.images.compose import load_compose

    checks: list[Check] = []
    compose = None
    try:
        where = projects.locate(compose_path, project)
        checks.append(Check("project", OK, f"{where.root} ({where.source})"))
        compose = load_compose(where.compose)
        checks.append(Check("compose file", OK, f"{compose.path}: services {', '.join(compose.services)}"))
    except InvalidOptions:
        raise
    except GdbenchError as exc:
        checks.append(Check("compose file", BLOCKER, exc.message, exc.fix))
    gpus = gpuhost.probe()
    checks.insert(0, gpu_check(gpus))

    try:
        from orchestrator.backends.docker.engine import DockerEngine

        engine = DockerEngine.connect(docker_url)
    except GdbenchError as exc:
        checks.append(Check("docker daemon", BLOCKER, exc.message, exc.fix))
        return checks
    return checks + engine_checks(engine, compose, gpus)


def engine_checks(engine: DockerEngine, compose: ComposeFile | None, gpus: gpuhost.HostGpus, *,
                  images: bool = True) -> list[Check]:
    """The checks of one connected engine (``gdbench doctor``'s, and each host's in ``gdbench hosts check``)."""
    checks: list[Check] = []
    f = engine.facts()
    checks.append(Check("docker daemon", OK, f"server {f.docker_version} (API {f.api_version}), {f.operating_system}, "
                                              f"kernel {f.kernel_version}, {f.ncpu} CPUs"))
    checks.append(Check("storage driver", OK if f.storage_driver == "overlay2" else WARN, f.storage_driver or "?",
                        None if f.storage_driver == "overlay2" else "overlay2 is the tested driver"))
    checks.append(Check("cgroup", OK, f"v{f.cgroup_version or '?'} ({f.cgroup_driver}); cpuset and memory limits "
                                      "are applied per container"))
    for w in f.warnings:
        checks.append(Check("daemon warning", WARN, w))
    if f.nvidia_runtime:
        checks.append(Check("NVIDIA runtime", OK, f"runtimes: {', '.join(f.runtimes)}"
                            + (f"; CDI devices: {', '.join(f.cdi_gpus)}" if f.cdi_gpus else "")))
    else:
        level = WARN if gpus.gpus else INFO
        checks.append(Check("NVIDIA runtime", level, f"absent (runtimes: {', '.join(f.runtimes) or 'none'}, no CDI); "
                                                     "GPU containers cannot start",
                            "install the NVIDIA Container Toolkit, then: sudo nvidia-ctk runtime configure "
                            "--runtime=docker && sudo systemctl restart docker"))
    if compose is not None and images:
        from orchestrator.images.build import image_rows

        for row in image_rows(compose, engine):
            name = f"image {row['tag']}"
            if row["built"]:
                image_labels = row["labels"]
                detail = (f"built ({_fmt_size(row['size_bytes'])}); {image_labels.get(labels.FRAMEWORK, '?')} "
                          f"{row['framework_version'] or '?'}, flavour {image_labels.get(labels.FLAVOUR, '?')}"
                          + (f", CUDA {row['cuda_version']} (driver >= {row['min_driver'] or '?'})"
                             if row["cuda_version"] else ""))
                level, fix = OK, None
                if row["flavour"] == "cuda" and f.nvidia_runtime:
                    why = gpuhost.cuda_incompatibility(row["tag"], row["cuda_version"], gpus)
                    if why:
                        level, detail, fix = WARN, why, "upgrade the NVIDIA driver"
                if not image_labels:
                    level, fix = WARN, (f"rebuild it (gdbench images build {row['service']}): it carries no "
                                        f"{labels.PREFIX}* labels")
                checks.append(Check(name, level, detail, fix))
            elif row["flavour"] == "cpu":
                checks.append(Check(name, BLOCKER, "not built", f"gdbench images build {row['service']}"))
            else:
                checks.append(Check(name, WARN if f.nvidia_runtime else INFO, "not built (only needed for GPU runs)",
                                    f"gdbench images build {row['service']}"))
    leftovers = engine.managed_containers()
    if leftovers:
        checks.append(Check("leftover containers", WARN, f"{len(leftovers)} gdbench container(s) still exist: "
                                                         + ", ".join(c["name"] for c in leftovers[:5]),
                            "gdbench clean"))
    return checks


def blockers(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.level == BLOCKER]
