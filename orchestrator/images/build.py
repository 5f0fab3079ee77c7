"""The compose images: which are declared and built, what they pin, adding a version, and building them.

Listing reads compose.yaml and the engine; adding and removing a version is ``version_locks.add_pin`` /
``remove_pin`` (PyPI, the lock, one compose block); building has one path, ``scripts/build_image.py --fetch``
for any declared service (``gdbench images build``, ``gdbench images --build`` and ``make images`` alike),
since it checks the lock, fills the wheelhouse of that service's own lock and Python first and labels the image.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator import labels as label_keys
from orchestrator.errors import GdbenchError, InvalidOptions
from orchestrator.hosts import gpus
from orchestrator.images.compose import ComposeFile, Service
from orchestrator.sweep.spec import split_framework
from solvers import registry

if TYPE_CHECKING:
    from orchestrator.backends.docker.engine import DockerEngine


def default_flavour(framework: str) -> str:
    """A framework with no CPU device (cupy) means its CUDA image when no flavour is given."""
    return "cpu" if "cpu" in registry.REGISTRY[framework].devices else "cuda"


def image_rows(compose: ComposeFile, engine: DockerEngine | None) -> list[dict[str, Any]]:
    """One row per compose service, built or not: tag, version, Python, default?, built?, id, size, labels."""
    rows = []
    for svc in compose.services.values():
        info = engine.image(svc.image) if engine is not None else None
        labels = info.labels if info else {}
        default = svc.framework_version is not None and compose.service_for(svc.framework, svc.flavour) == svc
        cuda = labels.get(label_keys.CUDA_VERSION) or svc.args.get("CUDA_VERSION") or None
        rows.append({
            "service": svc.name, "tag": svc.image, "framework": svc.framework, "flavour": svc.flavour,
            "version": svc.version_key, "python": labels.get(label_keys.PYTHON_VERSION) or svc.python,
            "default": default, "built": info is not None,
            "id": info.id if info else None, "size_bytes": info.size_bytes if info else None,
            "created": info.created if info else None, "user": info.user if info else None,
            "framework_version": labels.get(label_keys.FRAMEWORK_VERSION),
            "cuda_version": cuda, "cuda_build": svc.cuda_build, "min_driver": gpus.oldest_driver(cuda),
            "labels": {k: labels[k] for k in label_keys.IMAGE if k in labels},
        })
    return rows


def select_services(compose: ComposeFile, names: list[str], flavour: str | None) -> list[Service]:
    """Services named directly (``jax-gpu``), by framework (``jax`` → its default ``--flavour`` service; a
    GPU-only framework → its CUDA one), ``FRAMEWORK@VERSION`` or ``FRAMEWORK@all``.

    No names: every CPU service, plus the CUDA ones when ``--flavour cuda``.
    """
    if not names:
        want = (flavour,) if flavour else ("cpu",)
        return [s for s in compose.services.values() if s.flavour in want]
    out: list[Service] = []
    for name in names:
        if name in compose.services:
            out.append(compose.services[name])
        elif name.partition("@")[0] in registry.REGISTRY:
            fw, asked = split_framework(name)
            fl = flavour or default_flavour(fw)
            out += [compose.service_for(fw, fl, v) for v in compose.framework_versions(fw, fl, asked)]
        else:
            raise InvalidOptions(f"unknown image {name!r}; give a framework ({', '.join(registry.FRAMEWORKS)}), "
                                 f"FRAMEWORK@VERSION or a compose service ({', '.join(compose.services)})")
    return list({s.name: s for s in out}.values())


def build_declared(compose: ComposeFile, services: list[Service], no_cache: bool = False) -> None:
    """Build with the project's scripts/build_image.py --fetch (lock checks, wheelhouse, base, labels): the
    one way gdbench builds an image. The project is the compose file's folder (``orchestrator.project``)."""
    root = compose.path.parent
    script = root / "scripts" / "build_image.py"
    if not script.is_file():
        raise GdbenchError(f"{script} is missing: gdbench images build needs the project of {compose.path}",
                           fix="pass --project with a gdbench project (gdbench init DIR makes one), or --compose "
                               "with the compose.yaml of one")
    for svc in services:
        cmd = [sys.executable, str(script), svc.name, "--fetch", *(["--no-cache"] if no_cache else [])]
        # The build's log is diagnostics: stderr (fd 2), so stdout stays the command's data (images --build --json).
        if _run_group(cmd, root):
            raise GdbenchError(f"building {svc.image} (service {svc.name}) failed; its log is above",
                               fix=f"fix it, then rerun: gdbench images build {svc.name}")


def _run_group(cmd: list[str], cwd: Path) -> int:
    """Run a build in its own process group, and end the whole group if this process is interrupted: killing
    only the build script would leave its ``docker build`` running to the end after Ctrl-C or SIGTERM."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=2, start_new_session=True)
    try:
        return proc.wait()
    except BaseException:
        for sig, wait_s in ((signal.SIGINT, 20), (signal.SIGKILL, 10)):  # docker build cancels on SIGINT
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=wait_s)
                break
        raise


def add_version(text: str, flavour: str | None, python: str | None, compose: ComposeFile,
                on_line: Callable[[str], None], cuda: str | None = None, index_url: str | None = None) -> list[str]:
    """``gdbench images add``: check on PyPI, lock, declare; returns the lines that say what was added.
    ``cuda`` names a CUDA build (``--cuda 13``: the cuda flavour), ``index_url`` one more package index."""
    from orchestrator.images import cuda as cuda_builds
    from orchestrator.images import locks as version_locks
    from orchestrator.images import versions

    fw, version = versions.parse_pin(text)
    major = cuda_builds.parse_major(cuda)
    if major and flavour == "cpu":
        raise InvalidOptions("--cuda names a CUDA build: it cannot be --flavour cpu", fix="drop --flavour cpu")
    if index_url and not index_url.startswith(("https://", "http://", "file://")):
        raise InvalidOptions(f"--index-url {index_url}: not a URL", fix="e.g. --index-url "
                             "https://download.pytorch.org/whl/cu126")
    added = version_locks.add_pin(fw, version, "cuda" if major else flavour or default_flavour(fw), python,
                                  compose.path.parent, compose.path, on_line=on_line, cuda=major,
                                  index_url=index_url)
    key = f"{version}{f'+cuda{major}' if major else ''}{added.base.suffix}"
    return [f"service  {added.service}", f"image    {added.image}",
            f"lock     {added.lock.relative_to(compose.path.parent)}", f"python   {added.base.python}",
            f"cuda     {added.cuda_version or '-'}", f"build it: gdbench images build {added.service}",
            f"run it:   gdbench run --frameworks {fw}@{key}"
            + (" --devices gpu" if added.service.endswith("-gpu") else "")]


def remove_version(text: str, flavour: str | None, python: str | None, compose: ComposeFile,
                   cuda: str | None = None) -> str:
    """``gdbench images remove``: the exact inverse of ``add_version``; returns the removed service."""
    from orchestrator.images import cuda as cuda_builds
    from orchestrator.images import locks as version_locks
    from orchestrator.images import versions

    fw, version = versions.parse_pin(text)
    major = cuda_builds.parse_major(cuda)
    return version_locks.remove_pin(fw, version, "cuda" if major else flavour or default_flavour(fw), python,
                                    compose.path.parent, compose.path, cuda=major)
