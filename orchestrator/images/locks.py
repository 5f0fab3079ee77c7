"""Declaring a version: its hash lock, resolved for its base, and its service in compose.yaml — or nothing.

``versions`` says whether PyPI can serve a pin for a base; this module turns an accepted ``Pin`` into files:
the ``.in`` (the flavour's recipe with its pins moved), the lock (scripts/lock-image.sh with the project's
uv), and the compose service; ``remove_pin`` is the exact inverse. Any failure leaves nothing behind.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import GdbenchError, InvalidOptions
from orchestrator.images import cuda as cuda_builds
from orchestrator.images.versions import (
    BASES,
    DEFAULT_PYTHON,
    Base,
    Pin,
    VersionRefused,
    check_pin,
    cuda_from_lock,
)
from solvers import registry, schema


def requirements_in(pin: Pin, template: str, template_version: str, cuda: str | None = None,
                    index_url: str | None = None) -> str:
    """The new version's ``.in``: the flavour's existing ``.in`` with its version pins moved to ``pin.version``.

    Reusing the template keeps what each flavour needs besides the framework (numba's SciPy, jax's plugin
    extras, torch's ``+cpu`` local version) in one place; the comment block says where the file came from.
    """
    body = [line for line in template.splitlines() if not line.startswith("#")]
    moved = [re.sub(rf"==\s*{re.escape(template_version)}(?=[+\s]|$)", f"=={pin.version}", line) for line in body]
    if moved == body and pin.version != template_version:
        raise GdbenchError(f"the {pin.flavour} template of {pin.framework} pins no =={template_version}",
                           fix=f"check images/{pin.framework}/requirements-{pin.flavour}.in")
    build = f" --cuda {cuda}" if cuda else f" --flavour {pin.flavour}"
    header = [
        f"# {pin.framework} {pin.version} ({pin.flavour}{', CUDA ' + cuda if cuda else ''}, Python {pin.base.python}"
        f" on Debian {pin.base.suite}):",
        f"# added with `gdbench images add {pin.framework}=={pin.version}{build} --python {pin.base.python}"
        f"{' --index-url ' + index_url if index_url else ''}`, from the {pin.flavour} recipe of {pin.framework} "
        f"{template_version}.",
    ]
    text = "\n".join([*header, *moved]).rstrip("\n") + "\n"
    return cuda_builds.recipe_for(text, cuda, index_url)


def lock_env(pin: Pin) -> dict[str, str]:
    """What scripts/lock-image.sh needs to resolve for the pin's base rather than the host."""
    return {"PYTHON_VERSION": pin.base.python, "PYTHON_PLATFORM": pin.base.uv_platform}


def lock_pin(pin: Pin, root: Path, *, on_line: Callable[[str], None] = print, cuda: str | None = None,
             index_url: str | None = None) -> tuple[Path, Path]:
    """Write the pin's ``.in`` beside the framework's others and resolve its hash lock with the project's uv.

    Returns (in file, lock file). A resolver failure removes both and raises one line with uv's last words.
    """
    folder = root / "images" / pin.framework
    template = folder / f"requirements-{pin.flavour}.in"
    if not template.is_file():
        raise GdbenchError(f"{template} is missing: {pin.framework} has no {pin.flavour} recipe to start from",
                           fix=f"restore {template.relative_to(root)} from version control")
    current = _pinned_version(template.read_text(encoding="utf-8"), pin.framework)
    stem = lock_stem(pin.framework, pin.version, pin.flavour, pin.base, cuda)
    in_path, lock_path = folder / f"{stem}.in", folder / f"{stem}.txt"
    in_path.write_text(requirements_in(pin, template.read_text(encoding="utf-8"), current, cuda, index_url),
                       encoding="utf-8")
    tool = subprocess.run(["make", "-s", "-f", "images/images.mk", "lock-tool"], cwd=root, capture_output=True,
                          text=True)
    if tool.returncode != 0:
        in_path.unlink(missing_ok=True)
        raise GdbenchError(f"could not install the lock tool: {_last_line(tool.stderr or tool.stdout)}",
                           fix="check that PyPI is reachable, then run make -f images/images.mk lock-tool")
    env = {**os.environ, **lock_env(pin), "UV": str(root / ".cache/tools/bin/uv")}
    on_line(f"resolving {pin.framework}=={pin.version} ({pin.flavour}, Python {pin.base.python}) against PyPI …")
    proc = subprocess.run(["bash", "scripts/lock-image.sh", str(in_path.relative_to(root))], cwd=root, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        in_path.unlink(missing_ok=True)
        lock_path.unlink(missing_ok=True)
        raise VersionRefused(f"{pin.framework} {pin.version} ({pin.flavour}, Python {pin.base.python}) does not "
                             f"resolve: {_last_line(proc.stderr or proc.stdout)}")
    return in_path, lock_path


def _pinned_version(in_text: str, framework: str) -> str:
    """The version a recipe pins its framework (or jax's jaxlib) at: the one an added version replaces."""
    entry = registry.REGISTRY[framework]  # tensorflow-cpu is TF's CPU recipe, cupy-cuda12x CuPy's
    names = {framework, entry.wheel, *entry.dists}
    for line in in_text.splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\s+;]+)", line.strip())
        if m and m[1].lower() in names:
            return m[2]
    raise GdbenchError(f"recipe for {framework} pins no {framework}==VERSION line",
                       fix=f"pin {framework}==VERSION in images/{framework}/requirements-*.in")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


# ---------------------------------------------------------------- add / remove, as `gdbench images` does them


@dataclass(frozen=True)
class Added:
    service: str
    image: str
    lock: Path
    cuda_version: str | None
    base: Base


def service_name(framework: str, version: str, flavour: str, base: Base | None = None, cuda: str | None = None) -> str:
    return (f"{framework}-{version}{cuda_builds.build_name(cuda)}{base.suffix if base else ''}"
            + ("-gpu" if flavour == "cuda" else ""))


def image_tag(framework: str, version: str, flavour: str, base: Base | None = None, cuda: str | None = None) -> str:
    """``gdbench/jax:0.10.2-cuda`` for a flavour's default build, ``…-cuda13`` for a named CUDA build."""
    kind = f"cuda{cuda}" if cuda else flavour
    return f"gdbench/{framework}:{version}-{kind}{base.suffix if base else ''}"


def lock_stem(framework: str, version: str, flavour: str, base: Base | None = None, cuda: str | None = None) -> str:
    """``requirements-<version>-<flavour|cudaN>[-py<X.Y>]``: one lock per version, build and base, beside the
    framework's others."""
    return f"requirements-{version}-{f'cuda{cuda}' if cuda else flavour}{base.suffix if base else ''}"


def add_pin(framework: str, version: str, flavour: str, python: str | None, root: Path, compose_path: Path,
            *, on_line: Callable[[str], None] = print, session: Any | None = None, cuda: str | None = None,
            index_url: str | None = None) -> Added:
    """Check the pin on PyPI, resolve its lock, then add its service to compose.yaml; on any failure nothing
    stays behind (no half-written lock, compose.yaml untouched). ``cuda``: a named CUDA build (``orchestrator.
    images.cuda``), refused unless the lock resolves that CUDA major."""
    from orchestrator.images import compose_edit

    pin = check_pin(framework, version, flavour, python, session)
    name = service_name(framework, version, flavour, pin.base, cuda)
    tag = image_tag(framework, version, flavour, pin.base, cuda)
    text = compose_path.read_text(encoding="utf-8")
    if name in compose_edit.service_names(text) or _declares_image(text, tag):
        raise InvalidOptions(f"{framework} {version} ({flavour}, Python {pin.base.python}) is already declared "
                             f"(image {tag})", fix="gdbench images lists every declared version")
    in_path, lock_path = lock_pin(pin, root, on_line=on_line, cuda=cuda, index_url=index_url)
    try:
        lock_text = lock_path.read_text(encoding="utf-8")
        resolved = cuda_from_lock(lock_text) if flavour == "cuda" else None
        if (why := cuda_builds.check_resolved(framework, version, cuda, resolved, index_url)) is not None:
            raise VersionRefused(why)
        if flavour == "cuda" and resolved is None:
            asked = [line for line in in_path.read_text(encoding="utf-8").splitlines()
                     if line.strip() and not line.startswith(("#", "-r"))]
            raise VersionRefused(f"{framework} {version}'s CUDA lock resolved no CUDA runtime wheel from "
                                 f"{', '.join(asked) or 'its recipe'} (images/{framework}/requirements-{flavour}.in "
                                 "with its version moved)",
                                 fix="choose a release whose package has what that line asks for (the extras "
                                     "that bring the CUDA runtime)")
        block = compose_edit.service_block(
            name=name, image=tag, framework=framework, version=version, flavour=flavour,
            lock=lock_path.relative_to(root).as_posix(),
            base_image=None if pin.base.python == DEFAULT_PYTHON else pin.base.tag, cuda_version=resolved,
            cuda_build=f"cuda{cuda}" if cuda else None, index_url=index_url)
        schema.write_atomic(compose_path, compose_edit.add_service(text, name, block))
    except BaseException:
        in_path.unlink(missing_ok=True)
        lock_path.unlink(missing_ok=True)
        raise
    return Added(name, tag, lock_path, resolved, pin.base)


def _declares_image(text: str, tag: str) -> bool:
    return re.search(rf"^\s+image:\s*{re.escape(tag)}\s*$", text, re.MULTILINE) is not None


def remove_pin(framework: str, version: str, flavour: str, python: str | None, root: Path,
               compose_path: Path, cuda: str | None = None) -> str:
    """``gdbench images remove``: the exact inverse of ``add_pin`` (its service, its .in and its lock)."""
    from orchestrator.images import compose_edit

    base = BASES.get(python or DEFAULT_PYTHON)
    if base is None:
        raise InvalidOptions(f"--python {python}: no such base; choose from {', '.join(BASES)}")
    name = service_name(framework, version, flavour, base, cuda)
    text = compose_path.read_text(encoding="utf-8")
    if name not in compose_edit.service_names(text):
        declared = [n for n in compose_edit.service_names(text) if n.startswith(f"{framework}-") or n == framework]
        raise InvalidOptions(f"{framework} {version} ({flavour}) is not a version added to {compose_path.name} "
                             f"(declared for {framework}: {', '.join(declared) or 'none'})",
                             fix="gdbench images lists every declared version")
    schema.write_atomic(compose_path, compose_edit.remove_service(text, name))
    stem = lock_stem(framework, version, flavour, base, cuda)
    for suffix in (".in", ".txt"):
        (root / "images" / framework / f"{stem}{suffix}").unlink(missing_ok=True)
    return name
