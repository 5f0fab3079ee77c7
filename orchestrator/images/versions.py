"""Which pinned framework versions an image can hold: asked of PyPI itself, before anything is locked.

A version is added to the sweep by resolving a hash lock for it; before that, this module answers the
questions a lock tool answers badly (one long resolver trace): does the release exist, does it ship a wheel
for the image's Python and platform, and if not, which of the project's bases would take it. Every refusal
is one line with the command that works. PyPI's JSON API is the source (the machine's pip mirror is not
consulted: a lock must resolve against the real index).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag
from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from orchestrator.errors import GdbenchError, InvalidOptions
from solvers import registry

PYPI = "https://pypi.org/pypi"


@dataclass(frozen=True)
class Base:
    """One registry-free base image: a Debian suite with its own python3."""

    python: str
    suite: str
    tag: str
    #: glibc of the suite: the newest manylinux tag its images can load.
    glibc: tuple[int, int]

    @property
    def cp(self) -> str:
        return "cp" + self.python.replace(".", "")

    @property
    def uv_platform(self) -> str:
        """The lock tool's target; the pinned uv names manylinux targets up to glibc 2.40, which is what
        trixie's 2.41 is asked as (no framework ships a wheel that needs 2.41 exactly)."""
        return f"x86_64-manylinux_{self.glibc[0]}_{min(self.glibc[1], 40)}"

    @property
    def suffix(self) -> str:
        """What a non-default base adds to a service name and tag, so two Pythons never share a tag."""
        return "" if self.python == DEFAULT_PYTHON else f"-py{self.python}"


BASES: dict[str, Base] = {
    b.python: b
    for b in (
        Base("3.11", "bookworm", "gdbench/base:bookworm-py3.11", (2, 36)),
        Base("3.13", "trixie", "gdbench/base:trixie-py3.13", (2, 41)),
    )
}
DEFAULT_PYTHON = "3.11"

class VersionRefused(InvalidOptions):
    """A framework version gdbench cannot pin into an image, with what would work instead."""


@dataclass(frozen=True)
class Pin:
    """A framework version that PyPI can serve for one base, and how it was decided."""

    framework: str
    version: str
    flavour: str
    base: Base
    wheels: tuple[str, ...]


def parse_pin(text: str) -> tuple[str, str]:
    """``FRAMEWORK==VERSION`` → (framework, version); anything else is one clear line."""
    name, sep, version = text.strip().partition("==")
    name, version = name.strip().lower(), version.strip()
    if not sep or not name or not version:
        raise InvalidOptions(f"expected FRAMEWORK==VERSION, got {text!r}", fix="e.g. gdbench images add numpy==1.26.4")
    if name not in registry.REGISTRY:
        raise InvalidOptions(f"unknown framework {name!r}; choose from {', '.join(registry.FRAMEWORKS)}")
    try:
        Version(version)
    except InvalidVersion:
        raise InvalidOptions(f"{version!r} is not a version number (PEP 440)", fix=f"e.g. {name}==1.2.3") from None
    return name, version


def _get_json(url: str, session: Any) -> dict[str, Any] | None:
    """GET a PyPI JSON page; None for 404, one clear error for anything else."""
    import requests

    try:
        resp = session.get(url, timeout=30)
    except requests.RequestException as exc:
        raise GdbenchError(f"PyPI did not answer ({url}): {type(exc).__name__}",
                           fix="check the network, then rerun the same command") from None
    if resp.status_code == 404:
        return None
    if resp.status_code != 200:
        raise GdbenchError(f"PyPI answered {resp.status_code} for {url}", fix="rerun the same command later")
    return resp.json()


def _session() -> Any:
    import requests

    s = requests.Session()
    s.headers["Accept"] = "application/json"
    return s


def project_releases(dist: str, session: Any | None = None) -> dict[str, list[dict[str, Any]]]:
    """PyPI's file list per release of ``dist`` (its project JSON page: one request answers every version)."""
    data = _get_json(f"{PYPI}/{dist}/json", session or _session())
    return dict((data or {}).get("releases") or {})


def final_versions(releases: dict[str, list[dict[str, Any]]]) -> list[Version]:
    """Releases that are neither pre-releases nor wholly yanked, oldest first: what a suggestion may name."""
    out = []
    for text, files in releases.items():
        try:
            v = Version(text)
        except InvalidVersion:
            continue
        if not v.is_prerelease and files and not all(f.get("yanked") for f in files):
            out.append(v)
    return sorted(out)


def wheel_fits(filename: str, base: Base) -> bool:
    """Does this wheel load on ``base`` (x86_64, its glibc, its CPython)?"""
    try:
        _, _, _, tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return False
    return any(_tag_fits(t, base) for t in tags)


def _tag_fits(tag: Tag, base: Base) -> bool:
    major, minor = (int(p) for p in base.python.split("."))
    interp_ok = (
        tag.interpreter == base.cp
        or tag.interpreter in ("py3", f"py{major}{minor}")
        or (tag.abi == "abi3" and tag.interpreter.startswith("cp3")
            and int(tag.interpreter[3:] or 0) <= minor)
    )
    if not interp_ok or tag.abi.endswith("t"):  # free-threaded builds need another interpreter
        return False
    if tag.platform == "any":
        return True
    m = re.fullmatch(r"manylinux_(\d+)_(\d+)_x86_64", tag.platform)
    if m:
        return (int(m[1]), int(m[2])) <= base.glibc
    legacy = {"manylinux1_x86_64": (2, 5), "manylinux2010_x86_64": (2, 12), "manylinux2014_x86_64": (2, 17)}
    return tag.platform in legacy and legacy[tag.platform] <= base.glibc


def check_pin(framework: str, version: str, flavour: str = "cpu", python: str | None = None,
              session: Any | None = None) -> Pin:
    """The pin if PyPI can serve it for the chosen (or default) base; else ``VersionRefused`` saying why."""
    if flavour not in ("cpu", "cuda"):
        raise InvalidOptions(f"unknown flavour {flavour!r}; choose from cpu, cuda")
    if flavour == "cuda" and "gpu" not in registry.REGISTRY[framework].devices:
        cuda = [n for n, e in registry.REGISTRY.items() if "gpu" in e.devices]
        raise VersionRefused(f"{framework} has no CUDA flavour: it runs on the CPU only "
                             f"(CUDA flavours exist for {', '.join(cuda)})", fix="drop --flavour cuda")
    if flavour == "cpu" and "cpu" not in registry.REGISTRY[framework].devices:
        raise VersionRefused(f"{framework} has no CPU flavour: it runs on the GPU only",
                             fix=f"drop --flavour cpu (gdbench images add {framework}=={version} declares its "
                                 "cuda image)")
    if python is not None and python not in BASES:
        raise InvalidOptions(f"--python {python}: no such base; choose from {', '.join(BASES)}")
    dist = registry.REGISTRY[framework].wheel  # the wheel that carries the version (jax's is jaxlib)
    releases = project_releases(dist, session)
    files = releases.get(version)
    if not files:
        known = final_versions(releases)
        recent = ", ".join(str(v) for v in known[-5:]) or "none"
        raise VersionRefused(f"{framework} {version} does not exist on PyPI ({dist}'s newest releases: {recent})",
                             fix=f"gdbench images add {framework}=={known[-1]}" if known else None)
    if all(f.get("yanked") for f in files):
        raise VersionRefused(f"{framework} {version} was yanked from PyPI: "
                             f"{files[0].get('yanked_reason') or 'no reason given'}")
    wheels = [f["filename"] for f in files if f.get("packagetype") == "bdist_wheel" and not f.get("yanked")]
    requires = next((f["requires_python"] for f in files if f.get("requires_python")), "")
    candidates = [BASES[python]] if python else [BASES[DEFAULT_PYTHON], *(b for p, b in BASES.items()
                                                                            if p != DEFAULT_PYTHON)]
    for base in candidates:
        fitting = tuple(w for w in wheels if wheel_fits(w, base))
        if fitting and _python_allowed(requires, base.python):
            return Pin(framework, version, flavour, base, fitting)
    raise VersionRefused(_why_not(framework, version, wheels, requires, python))


def release_fits(files: list[dict[str, Any]], base: Base) -> bool:
    """Does a release (its PyPI file list) ship a wheel that loads on ``base``, for a Python it allows? What
    ``check_pin`` asks of one version, asked here of a whole release list at once (``gdbench bisect``)."""
    wheels = [f["filename"] for f in files if f.get("packagetype") == "bdist_wheel" and not f.get("yanked")]
    requires = next((f["requires_python"] for f in files if f.get("requires_python")), "")
    return any(wheel_fits(w, base) for w in wheels) and _python_allowed(requires, base.python)


def _python_allowed(requires: str, python: str) -> bool:
    try:
        return not requires or Version(python + ".0") in SpecifierSet(requires) or \
            Version(python + ".99") in SpecifierSet(requires)
    except InvalidSpecifier:
        return True


def _why_not(framework: str, version: str, wheels: list[str], requires: str, asked: str | None) -> str:
    """One line: what the release lacks, and which base (if any) would take it."""
    works = [b for b in BASES.values() if any(wheel_fits(w, b) for w in wheels) and _python_allowed(requires, b.python)]
    if asked and works:
        return (f"{framework} {version} has no x86_64 Linux wheel for Python {asked}"
                + (f" (it requires Python {requires})" if requires else "")
                + f": add it with --python {works[0].python}")
    if works:  # only reached when a default was tried and refused, which `works` would have taken
        return f"{framework} {version}: add it with --python {works[0].python}"
    pythons = sorted({m[1] for w in wheels if (m := re.search(r"-cp3(\d+)-", w))}, key=int)
    have = ", ".join(f"3.{p}" for p in pythons) or "none"
    need = f"requires Python {requires}; " if requires else ""
    bases = ", ".join(f"Python {b.python} ({b.suite}, glibc {b.glibc[0]}.{b.glibc[1]})" for b in BASES.values())
    return (f"{framework} {version} has no wheel that fits any gdbench base ({need}x86_64 CPython wheels for: "
            f"{have}; bases: {bases})")


_CUDA_RUNTIME = re.compile(r"^nvidia-cuda-runtime(?:-cu\d+)?==(\d+)\.(\d+)", re.MULTILINE)


def cuda_from_lock(lock_text: str) -> str | None:
    """The CUDA version a lock actually resolved (its CUDA runtime wheel), as ``MAJOR.MINOR``."""
    m = _CUDA_RUNTIME.search(lock_text)
    return f"{m[1]}.{m[2]}" if m else None
